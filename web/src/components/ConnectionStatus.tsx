// The connection as socket.io-client reports it, on every page: connected (and over which
// transport), reconnecting (attempt n of 5, with a countdown to the next try), failed after 5
// attempts (with Retry), refused by the server, and what was recovered after a reconnection.

import { useEffect, useState } from "react";
import { RECONNECTION_ATTEMPTS, chatSocket, manager, nominalDelayMs, notificationsSocket } from "../socket";
import { useSocketEvent } from "../hooks/useSocketEvent";

type EngineSocket = (typeof manager)["engine"];
import { resetRecovery, useRecovery } from "../hooks/recovery";

type Status =
  | { kind: "offline" }
  | { kind: "connecting"; why?: string }
  | { kind: "connected"; reconnectedAfter: number }
  // waiting before attempt `attempt`; `nextAt` from the backoff's nominal delay (±50% jitter)
  | { kind: "waiting"; attempt: number; nextAt: number; delayMs: number; reason: string }
  | { kind: "reconnecting"; attempt: number }
  | { kind: "failed" }
  | { kind: "refused"; message: string };

function initialStatus(): Status {
  if (chatSocket.connected) return { kind: "connected", reconnectedAfter: 0 };
  if (chatSocket.active) return { kind: "connecting" };
  return { kind: "offline" };
}

/** The engine's transport now ("polling" or "websocket"), "" when there is no engine. */
function transportName(): string {
  const engine = manager.engine as EngineSocket | undefined;
  return engine?.transport?.name ?? "";
}

export function ConnectionStatus() {
  const [status, setStatus] = useState<Status>(initialStatus);
  const [transport, setTransport] = useState(transportName);
  const [now, setNow] = useState(() => Date.now());
  const recovery = useRecovery();

  // The transport: set when the engine opens, updated when it upgrades to WebSocket. A new
  // engine is made for each connection, so its "upgrade" listener is added on each "open" and
  // removed with it (or when this component unmounts).
  useEffect(() => {
    let engine: EngineSocket | null = null;
    const onUpgrade = () => setTransport(transportName());
    const attach = () => {
      engine?.off("upgrade", onUpgrade);
      engine = (manager.engine as EngineSocket | undefined) ?? null;
      engine?.on("upgrade", onUpgrade);
      setTransport(transportName());
    };
    const onClose = () => setTransport("");
    if (manager.engine) attach();
    manager.on("open", attach);
    manager.on("close", onClose);
    return () => {
      engine?.off("upgrade", onUpgrade);
      manager.off("open", attach);
      manager.off("close", onClose);
    };
  }, []);

  useSocketEvent(chatSocket, "connect", () => {
    setStatus((s) => ({ kind: "connected", reconnectedAfter: s.kind === "reconnecting" ? s.attempt : 0 }));
    setTransport(transportName());
  });
  useSocketEvent(chatSocket, "disconnect", (reason: string) => {
    resetRecovery();
    if (reason === "io client disconnect") setStatus({ kind: "offline" });
    // Disconnected by the server (after `auth_expired`, say): socket.ts connects again at once,
    // and the auth function fetches a fresh token.
    else if (reason === "io server disconnect") setStatus((s) => ({ kind: "connecting", why: s.kind === "connecting" ? s.why : undefined }));
    else setStatus({ kind: "waiting", attempt: 1, nextAt: Date.now() + nominalDelayMs(1), delayMs: nominalDelayMs(1), reason });
  });
  // The token expired: the server says so just before it disconnects the socket.
  useSocketEvent(chatSocket, "auth_expired", () => setStatus({ kind: "connecting", why: "token expired" }));
  useSocketEvent(chatSocket, "connect_error", (err: Error) => {
    // Refused by the server's middleware: the socket is no longer active and will not retry.
    if (!chatSocket.active) setStatus({ kind: "refused", message: err.message });
  });
  useSocketEvent(manager, "reconnect_attempt", (attempt: number) => {
    setStatus({ kind: "reconnecting", attempt });
  });
  useSocketEvent(manager, "reconnect_error", () => {
    setStatus((s) => {
      if (s.kind !== "reconnecting" || s.attempt >= RECONNECTION_ATTEMPTS) return s;
      const attempt = s.attempt + 1;
      const delayMs = nominalDelayMs(attempt);
      return { kind: "waiting", attempt, nextAt: Date.now() + delayMs, delayMs, reason: "no answer" };
    });
  });
  // Emitted before the last attempt's reconnect_error (which then changes nothing above).
  useSocketEvent(manager, "reconnect_failed", () => setStatus({ kind: "failed" }));

  // The countdown ticks while waiting.
  const waiting = status.kind === "waiting";
  useEffect(() => {
    if (!waiting) return;
    const timer = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(timer);
  }, [waiting]);

  const retry = () => {
    setStatus({ kind: "connecting" });
    // The sockets are still subscribed to the manager: connect() opens the manager again (one
    // connection), and each socket sends its handshake once it is open.
    chatSocket.connect();
    notificationsSocket.connect();
  };

  let text: string;
  switch (status.kind) {
    case "offline":
      text = "Not connected";
      break;
    case "connecting":
      text = status.why ? `The ${status.why}: connecting again with a fresh one…` : "Connecting…";
      break;
    case "connected":
      text = status.reconnectedAfter
        ? `Connected again after ${status.reconnectedAfter} attempt${status.reconnectedAfter === 1 ? "" : "s"}`
        : "Connected";
      break;
    case "waiting": {
      // `now` is from the last tick (at most 250 ms old), or older right after the change.
      const seconds = Math.max(0, Math.ceil(Math.min(status.delayMs, status.nextAt - now) / 1000));
      text = `Connection lost (${status.reason}). Reconnecting: attempt ${status.attempt} of ${RECONNECTION_ATTEMPTS} in ~${seconds} s`;
      break;
    }
    case "reconnecting":
      text = `Reconnecting: attempt ${status.attempt} of ${RECONNECTION_ATTEMPTS}…`;
      break;
    case "failed":
      text = `Could not reconnect after ${RECONNECTION_ATTEMPTS} attempts.`;
      break;
    case "refused":
      text = `Refused by the server: ${status.message}`;
      break;
  }

  let recovered = "";
  // Said only when something was recovered: a reconnection that missed nothing says nothing.
  if (status.kind === "connected" && recovery && (recovery.server || recovery.messages || recovery.notifications)) {
    if (recovery.server) recovered = "Session recovered by the server (socket.recovered): missed events were replayed.";
    else {
      const parts = [];
      if (recovery.messages) {
        parts.push(`${recovery.messages} missed message${recovery.messages === 1 ? "" : "s"} merged from room history`);
      }
      if (recovery.notifications) {
        parts.push(`${recovery.notifications} notification${recovery.notifications === 1 ? "" : "s"} from the inbox`);
      }
      recovered = `Recovered: ${parts.join(", ")}.`;
    }
  }

  const tone =
    status.kind === "connected" ? "ok" : status.kind === "failed" || status.kind === "refused" ? "bad" : status.kind === "offline" ? "idle" : "warn";

  return (
    <div className={`connection connection-${tone}`} data-testid="connection-status" data-state={status.kind} role="status">
      <span className="connection-dot" aria-hidden="true" />
      <span data-testid="connection-text">{text}</span>
      {status.kind === "connected" && transport && (
        <span className="connection-transport" data-testid="connection-transport" title="Engine.IO transport">
          {transport}
        </span>
      )}
      {status.kind === "failed" && (
        <button type="button" onClick={retry} data-testid="connection-retry">
          Retry
        </button>
      )}
      {recovered && (
        <span className="connection-recovered" data-testid="connection-recovered">
          {recovered}
        </span>
      )}
    </div>
  );
}
