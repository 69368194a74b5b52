// /chat and /chat/<room>: the rooms joined (with unread counts), one room's messages, who is
// online there and who is typing.

import { useEffect, useRef, useState, type FormEvent } from "react";
import { Link, navigate } from "../components/router";
import { useChat, messageKey, type ChatMessage, type Room } from "./ChatContext";

const SUGGESTED = ["general", "random", "help"];

export const roomPath = (room: string) => `/chat/${encodeURIComponent(room)}`;

export function ChatPage({ room }: { room: string | null }) {
  const chat = useChat();

  // Opening /chat/<room> joins it (once) and makes it the room being read.
  useEffect(() => {
    if (!room) return;
    chat.join(room);
    chat.setActive(room);
    return () => chat.setActive(null);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [room]);

  // /chat alone: the first room joined, if any.
  const first = chat.rooms[0]?.name;
  useEffect(() => {
    if (!room && first) navigate(roomPath(first), { replace: true });
  }, [room, first]);

  const current = room ? chat.rooms.find((r) => r.name === room) : undefined;
  return (
    <div className="chat">
      <RoomList active={room} />
      <section className="chat-room" aria-label="room">
        {current ? (
          <RoomView room={current} />
        ) : (
          <div className="empty">
            <h2>Join a room</h2>
            <p>Pick a room on the left, or type a name. Everyone in the same room sees its messages.</p>
          </div>
        )}
      </section>
    </div>
  );
}

function RoomList({ active }: { active: string | null }) {
  const chat = useChat();
  const [name, setName] = useState("");
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const room = name.trim();
    if (!room) return;
    setName("");
    navigate(roomPath(room));
  };
  const suggestions = SUGGESTED.filter((s) => !chat.rooms.some((r) => r.name === s));
  return (
    <nav className="rooms" aria-label="rooms">
      <h2>Rooms</h2>
      <ul data-testid="room-list">
        {chat.rooms.map((r) => (
          <li key={r.name} className={r.name === active ? "active" : ""} data-testid={`room-${r.name}`}>
            <Link to={roomPath(r.name)}>#{r.name}</Link>
            {r.unread > 0 && (
              <span className="badge" data-testid={`unread-${r.name}`} title="unread messages">
                {r.unread}
              </span>
            )}
            <button
              type="button"
              className="link"
              title={`leave #${r.name}`}
              data-testid={`leave-${r.name}`}
              onClick={() => {
                chat.leave(r.name);
                if (r.name === active) navigate("/chat");
              }}
            >
              leave
            </button>
          </li>
        ))}
      </ul>
      <form onSubmit={submit} className="join-form">
        <input
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="room name"
          aria-label="room to join"
          maxLength={64}
          data-testid="join-room-input"
        />
        <button type="submit" data-testid="join-room-button">
          Join
        </button>
      </form>
      {suggestions.length > 0 && (
        <p className="suggestions">
          Try{" "}
          {suggestions.map((s, i) => (
            <span key={s}>
              {i > 0 && ", "}
              <Link to={roomPath(s)}>#{s}</Link>
            </span>
          ))}
        </p>
      )}
    </nav>
  );
}

function RoomView({ room }: { room: Room }) {
  const chat = useChat();
  const [text, setText] = useState("");
  const [error, setError] = useState("");
  const list = useRef<HTMLOListElement>(null);

  // Keep the newest message in view.
  useEffect(() => {
    list.current?.lastElementChild?.scrollIntoView({ block: "nearest" });
  }, [room.messages.length]);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const body = text;
    if (!body.trim()) {
      setError("Type a message first.");
      return;
    }
    setText("");
    const failed = await chat.send(room.name, body);
    setError(failed ?? "");
    if (failed) setText(body);
  };

  const typing = Object.keys(room.typing).filter((u) => u !== chat.me);
  return (
    <>
      <header className="room-header">
        <h2 data-testid="room-title">#{room.name}</h2>
        <div className="online" data-testid="online">
          <span className="muted">Online:</span>{" "}
          <span data-testid="online-list">{room.online.join(", ") || "—"}</span>
        </div>
      </header>
      {room.error && (
        <p className="error" data-testid="room-error">
          {room.error}
        </p>
      )}
      <ol className="messages" ref={list} data-testid="messages">
        {room.messages.map((m) => (
          <MessageItem key={messageKey(m)} message={m} me={chat.me} />
        ))}
      </ol>
      <p className="typing" data-testid="typing" aria-live="polite">
        {typing.length === 0 ? "" : `${typing.join(", ")} ${typing.length === 1 ? "is" : "are"} typing…`}
      </p>
      <form className="compose" onSubmit={submit}>
        <input
          value={text}
          onChange={(e) => {
            setText(e.target.value);
            if (e.target.value) chat.typing(room.name);
          }}
          placeholder={`Message #${room.name} (mention someone with @name)`}
          aria-label="message"
          maxLength={2000}
          data-testid="message-input"
        />
        <button type="submit" data-testid="message-send">
          Send
        </button>
      </form>
      {error && (
        <p className="error" data-testid="chat-error">
          {error}
        </p>
      )}
    </>
  );
}

function MessageItem({ message, me }: { message: ChatMessage; me: string }) {
  const mine = message.sender === me;
  const mentionsMe = !mine && message.text.includes(`@${me}`);
  const time = new Date(message.time);
  return (
    <li
      className={`message${mine ? " mine" : ""}${mentionsMe ? " mention" : ""}`}
      data-testid="message"
      data-id={message.id ?? ""}
    >
      <span className="sender" data-testid="message-sender">
        {message.sender}
      </span>
      <span className="text" data-testid="message-text">
        {message.text}
      </span>
      <time dateTime={time.toISOString()}>{time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}</time>
    </li>
  );
}
