// The chat's state for the whole app (rooms, messages, who is online, who is typing, unread
// counts), kept while the user moves between pages so unread counts keep counting.
//
// Listeners are added with useSocketEvent (useEffect + cleanup): one per event, even under
// StrictMode. On every (re)connection the provider joins its rooms again; each join ack
// carries the room's history, merged with what is shown by message id, so messages sent while
// this page was away appear once, in order.

import { createContext, useCallback, useContext, useEffect, useMemo, useReducer, useRef, type ReactNode } from "react";
import { chatSocket } from "../socket";
import { useSocketEvent } from "../hooks/useSocketEvent";
import { reportRecovery } from "../hooks/recovery";

export type ChatMessage = { id?: string; room: string; sender: string; text: string; time: number };

export type Room = {
  name: string;
  joined: boolean; // the server acknowledged the join on the current connection
  messages: ChatMessage[];
  online: string[];
  typing: Record<string, number>; // user -> until (ms since epoch)
  unread: number;
  error: string;
};

type State = { rooms: Room[]; active: string | null };

type Action =
  | { type: "add"; room: string }
  | { type: "remove"; room: string }
  | { type: "joined"; room: string; history: ChatMessage[]; online: string[]; countUnread: boolean }
  | { type: "error"; room: string; error: string }
  | { type: "disconnected" }
  | { type: "message"; message: ChatMessage; me: string }
  | { type: "typing"; room: string; user: string; until: number }
  | { type: "presence"; room: string; user: string; online: boolean }
  | { type: "active"; room: string | null }
  | { type: "tick"; now: number };

/** The key messages are merged by: the server's `id`; older servers send none, so then the
 * sender, time and text together (a message sent twice in the same millisecond is one). */
export const messageKey = (m: ChatMessage) => m.id ?? `${m.sender}\u0000${m.time}\u0000${m.text}`;

/** `current` plus the messages of `incoming` it does not have, ordered by time. */
function merge(current: ChatMessage[], incoming: ChatMessage[]): { messages: ChatMessage[]; added: number } {
  const keys = new Set(current.map(messageKey));
  const fresh = incoming.filter((m) => {
    const key = messageKey(m);
    if (keys.has(key)) return false;
    keys.add(key);
    return true;
  });
  if (fresh.length === 0) return { messages: current, added: 0 };
  const messages = [...current, ...fresh].sort((a, b) => a.time - b.time); // stable: ties keep arrival order
  return { messages, added: fresh.length };
}

const newRoom = (name: string): Room => ({ name, joined: false, messages: [], online: [], typing: {}, unread: 0, error: "" });

function updateRoom(state: State, name: string, update: (room: Room) => Room): State {
  if (!state.rooms.some((r) => r.name === name)) return state;
  return { ...state, rooms: state.rooms.map((r) => (r.name === name ? update(r) : r)) };
}

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case "add":
      if (state.rooms.some((r) => r.name === action.room)) return state;
      return { ...state, rooms: [...state.rooms, newRoom(action.room)] };
    case "remove":
      return { ...state, rooms: state.rooms.filter((r) => r.name !== action.room) };
    case "joined":
      return updateRoom(state, action.room, (room) => {
        const { messages, added } = merge(room.messages, action.history);
        const unread = action.countUnread && state.active !== room.name ? room.unread + added : room.unread;
        return { ...room, joined: true, error: "", messages, online: [...action.online].sort(), unread };
      });
    case "error":
      return updateRoom(state, action.room, (room) => ({ ...room, error: action.error }));
    case "disconnected":
      return { ...state, rooms: state.rooms.map((r) => ({ ...r, joined: false, typing: {} })) };
    case "message":
      return updateRoom(state, action.message.room, (room) => {
        const { messages, added } = merge(room.messages, [action.message]);
        const { [action.message.sender]: _done, ...typing } = room.typing;
        const counts = added > 0 && state.active !== room.name && action.message.sender !== action.me;
        return { ...room, messages, typing, unread: room.unread + (counts ? 1 : 0) };
      });
    case "typing":
      return updateRoom(state, action.room, (room) => ({ ...room, typing: { ...room.typing, [action.user]: action.until } }));
    case "presence":
      return updateRoom(state, action.room, (room) => {
        const others = room.online.filter((u) => u !== action.user);
        return { ...room, online: action.online ? [...others, action.user].sort() : others };
      });
    case "active":
      return {
        active: action.room,
        rooms: action.room ? state.rooms.map((r) => (r.name === action.room && r.unread ? { ...r, unread: 0 } : r)) : state.rooms,
      };
    case "tick": {
      let changed = false;
      const rooms = state.rooms.map((room) => {
        const live = Object.entries(room.typing).filter(([, until]) => until > action.now);
        if (live.length === Object.keys(room.typing).length) return room;
        changed = true;
        return { ...room, typing: Object.fromEntries(live) };
      });
      return changed ? { ...state, rooms } : state;
    }
  }
}

type JoinAck = { error?: string; history?: ChatMessage[]; online?: string[]; users?: string[] };

type ChatApi = {
  rooms: Room[];
  active: string | null;
  me: string;
  join(room: string): void;
  leave(room: string): void;
  setActive(room: string | null): void;
  send(room: string, text: string): Promise<string | null>; // the error, or null
  typing(room: string): void;
};

const ChatContext = createContext<ChatApi | null>(null);

export function useChat(): ChatApi {
  const chat = useContext(ChatContext);
  if (!chat) throw new Error("useChat outside <ChatProvider>");
  return chat;
}

const TYPING_EVERY_MS = 2000; // at most one `typing` per room this often
const TYPING_SHOWN_MS = 3500; // how long a `typing` shows

const savedRoomsKey = (me: string) => `switchyard.rooms.${me}`;

export function ChatProvider({ me, children }: { me: string; children: ReactNode }) {
  const [state, dispatch] = useReducer(reducer, me, (me): State => {
    let names: string[] = [];
    try {
      names = JSON.parse(sessionStorage.getItem(savedRoomsKey(me)) ?? "[]") as string[];
    } catch {}
    return { rooms: names.map(newRoom), active: null };
  });
  const stateRef = useRef(state);
  // The rooms to be in, updated at once by join/leave (not after a render): a "connect" that
  // comes before React has rendered a join still joins that room.
  const roomsRef = useRef<string[]>(state.rooms.map((r) => r.name));
  useEffect(() => {
    stateRef.current = state;
    sessionStorage.setItem(savedRoomsKey(me), JSON.stringify(state.rooms.map((r) => r.name)));
  }, [state, me]);

  /** Joins `room` on the server; resolves with how many messages of its history were new. */
  const joinOnServer = useCallback(async (room: string, countUnread: boolean): Promise<number> => {
    let ack: JoinAck;
    try {
      ack = (await chatSocket.timeout(10_000).emitWithAck("join", room)) as JoinAck;
    } catch {
      return 0; // no answer (the connection went away): the next connect joins again
    }
    if (ack.error) {
      dispatch({ type: "error", room, error: ack.error });
      return 0;
    }
    const history = ack.history ?? [];
    const current = stateRef.current.rooms.find((r) => r.name === room);
    const known = new Set((current?.messages ?? []).map(messageKey));
    const added = history.filter((m) => !known.has(messageKey(m))).length;
    dispatch({ type: "joined", room, history, online: ack.online ?? ack.users ?? [], countUnread });
    return added;
  }, []);

  const connectedBefore = useRef(false);
  const rejoinAll = useCallback(async () => {
    const again = connectedBefore.current;
    connectedBefore.current = true;
    const recovered = chatSocket.recovered;
    const added = await Promise.all(roomsRef.current.map((room) => joinOnServer(room, again)));
    if (!again) return;
    // `recovered`: the server kept this socket's session (and its rooms) and replayed what it
    // missed; joining again is harmless then (a join is idempotent) and refreshes presence.
    if (recovered) reportRecovery({ server: true });
    else reportRecovery({ messages: added.reduce((a, b) => a + b, 0) });
  }, [joinOnServer]);

  useSocketEvent(chatSocket, "connect", () => void rejoinAll());
  useEffect(() => {
    // Connected before this provider mounted: join the rooms (not a reconnection).
    if (chatSocket.connected) {
      connectedBefore.current = true;
      for (const room of roomsRef.current) void joinOnServer(room, false);
    }
  }, [joinOnServer]);
  useSocketEvent(chatSocket, "disconnect", () => dispatch({ type: "disconnected" }));
  useSocketEvent(chatSocket, "message", (message: ChatMessage) => dispatch({ type: "message", message, me }));
  useSocketEvent(chatSocket, "typing", ({ room, sender }: { room: string; sender: string }) =>
    dispatch({ type: "typing", room, user: sender, until: Date.now() + TYPING_SHOWN_MS }),
  );
  useSocketEvent(chatSocket, "presence", ({ room, user, online }: { room: string; user: string; online: boolean }) =>
    dispatch({ type: "presence", room, user, online }),
  );

  // Typing indicators expire.
  useEffect(() => {
    const timer = setInterval(() => {
      if (stateRef.current.rooms.some((r) => Object.keys(r.typing).length)) dispatch({ type: "tick", now: Date.now() });
    }, 500);
    return () => clearInterval(timer);
  }, []);

  const lastTyping = useRef(new Map<string, number>());
  const api = useMemo<ChatApi>(
    () => ({
      rooms: state.rooms,
      active: state.active,
      me,
      join(room) {
        if (roomsRef.current.includes(room)) return;
        roomsRef.current = [...roomsRef.current, room];
        dispatch({ type: "add", room });
        // Not connected: the next "connect" joins every room of the list.
        if (chatSocket.connected) void joinOnServer(room, false);
      },
      leave(room) {
        roomsRef.current = roomsRef.current.filter((r) => r !== room);
        dispatch({ type: "remove", room });
        if (chatSocket.connected) chatSocket.emit("leave", room);
      },
      setActive(room) {
        dispatch({ type: "active", room });
      },
      async send(room, text) {
        if (!chatSocket.connected) return "not connected: the message was not sent";
        lastTyping.current.delete(room);
        try {
          const ack = (await chatSocket.timeout(10_000).emitWithAck("message", { room, text })) as { error?: string };
          return ack.error ?? null;
        } catch {
          return "no answer from the server: the message may not have been sent";
        }
      },
      typing(room) {
        // Volatile: a typing notice that cannot be sent now is dropped, not queued for later.
        // Throttled: one per TYPING_EVERY_MS per room, however fast the keys are typed.
        const now = Date.now();
        if (now - (lastTyping.current.get(room) ?? 0) < TYPING_EVERY_MS) return;
        lastTyping.current.set(room, now);
        chatSocket.volatile.emit("typing", { room });
      },
    }),
    [state, me, joinOnServer],
  );

  return <ChatContext.Provider value={api}>{children}</ChatContext.Provider>;
}
