// /notifications: the list (newest first), marked read while shown, and a form to notify
// another user (every open tab of theirs gets it, and their inbox keeps it).

import { useEffect, useState, type FormEvent } from "react";
import { Link } from "../components/router";
import { useNotifications, notificationKey, type Notification } from "./NotificationsContext";

export function NotificationsPage() {
  const notes = useNotifications();
  const { items, markAllRead } = notes;

  // Whatever is shown here counts as read (also what arrives while the page is open).
  useEffect(() => {
    markAllRead();
  }, [items, markAllRead]);

  return (
    <div className="notifications">
      <section>
        <h2>Notifications</h2>
        {items.length === 0 ? (
          <p className="muted" data-testid="notifications-empty">
            Nothing yet. Someone can notify you with the form, mention you in a chat room with @yourname, or
            your backend can call <code>POST /api/v1/notify</code>.
          </p>
        ) : (
          <ol className="notification-list" data-testid="notification-list">
            {[...items].reverse().map((n) => (
              <NotificationItem key={notificationKey(n)} n={n} />
            ))}
          </ol>
        )}
      </section>
      <NotifyForm />
    </div>
  );
}

const KIND_LABEL: Record<string, string> = { direct: "direct", mention: "mention", backend: "from the backend" };

function NotificationItem({ n }: { n: Notification }) {
  const time = new Date(n.time);
  return (
    <li className={`notification kind-${n.kind ?? "direct"}`} data-testid="notification" data-kind={n.kind ?? ""}>
      <div className="notification-head">
        <span className="from" data-testid="notification-from">
          {n.from}
        </span>
        <span className="kind">
          {KIND_LABEL[n.kind ?? "direct"] ?? n.kind}
          {n.room && (
            <>
              {" in "}
              <Link to={`/chat/${encodeURIComponent(n.room)}`}>#{n.room}</Link>
            </>
          )}
        </span>
        <time dateTime={time.toISOString()}>{time.toLocaleString()}</time>
      </div>
      <p className="text" data-testid="notification-text">
        {n.text}
      </p>
    </li>
  );
}

function NotifyForm() {
  const { notify } = useNotifications();
  const [to, setTo] = useState("");
  const [text, setText] = useState("");
  const [result, setResult] = useState("");
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const target = to.trim();
    if (!target || !text.trim()) {
      setResult("Fill in both fields.");
      return;
    }
    const ack = await notify(target, text);
    if (ack.error) setResult(`Not sent: ${ack.error}`);
    else {
      const n = ack.delivered ?? 0;
      setResult(`Sent to ${target}: delivered to ${n} open tab${n === 1 ? "" : "s"} (kept in their inbox).`);
      setText("");
    }
  };
  return (
    <section className="card">
      <h2>Notify someone</h2>
      <form onSubmit={submit} className="stack">
        <label>
          To (user name)
          <input value={to} onChange={(e) => setTo(e.target.value)} maxLength={64} data-testid="notify-to" />
        </label>
        <label>
          Text
          <input value={text} onChange={(e) => setText(e.target.value)} maxLength={500} data-testid="notify-text" />
        </label>
        <button type="submit" data-testid="notify-send">
          Send notification
        </button>
      </form>
      <p className="muted" data-testid="notify-result" aria-live="polite">
        {result}
      </p>
    </section>
  );
}
