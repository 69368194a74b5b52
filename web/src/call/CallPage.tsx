/**
 * The call page (`/call`): a 1:1 video call between two signed-in users, signaled over the
 * `/calls` namespace (`CallClient`, ./callClient.ts); the media flows between the browsers.
 */
import { useEffect, useRef, useState, useSyncExternalStore, type FormEvent } from "react";
import { callsSocket } from "../socket";
import { useSession } from "../session";
import { CallClient, type CallSnapshot } from "./callClient";
import "./call.css";

const REASONS: Record<string, string> = {
  declined: "declined",
  hangup: "hung up",
  "no answer": "no answer",
  disconnected: "a connection was lost",
  "answered elsewhere": "answered in another tab",
};

const OFFLINE: CallSnapshot = {
  phase: "idle",
  online: false,
  callId: null,
  peer: null,
  connection: null,
  localStream: null,
  remoteStream: null,
  ended: null,
  error: null,
};
const noSubscription = () => () => {};

export function CallPage() {
  const session = useSession();
  const [client, setClient] = useState<CallClient | null>(null);

  useEffect(() => {
    if (!session) return;
    // The socket is the app's (one Engine.IO connection); this page connects its namespace
    // while it is open, so a user is reachable ("online" for call:invite) only on this page,
    // where someone can answer.
    const created = new CallClient(callsSocket);
    if (!callsSocket.active) callsSocket.connect();
    setClient(created);
    return () => {
      // StrictMode's first unmount, or leaving the page: hang up, camera off, connection
      // closed, and no longer reachable.
      created.destroy();
      callsSocket.disconnect();
      setClient(null);
    };
  }, [session]);

  const snapshot = useSyncExternalStore(client?.subscribe ?? noSubscription, client?.getSnapshot ?? (() => OFFLINE));
  if (!session) return <p>Sign in to make calls.</p>;
  return (
    <section className="sy-call" aria-labelledby="sy-call-title">
      <h2 id="sy-call-title">Video call</h2>
      <p className="sy-call-online" data-testid="call-online" data-online={String(snapshot.online)}>
        {snapshot.online ? `Reachable as ${session.name}` : "Connecting to /calls…"}
      </p>
      <CallForm snapshot={snapshot} me={session.name} onCall={(to) => client?.call(to)} />
      <CallStatus snapshot={snapshot} client={client} />
      <div className="sy-call-videos">
        <figure>
          <Video stream={snapshot.localStream} muted testId="call-local-video" label="You" />
          <figcaption>You</figcaption>
        </figure>
        <figure>
          <Video stream={snapshot.remoteStream} muted={false} testId="call-remote-video" label={snapshot.peer ?? "The other side"} />
          <figcaption>{snapshot.phase === "active" ? snapshot.peer : "—"}</figcaption>
        </figure>
      </div>
      <p className="sy-call-hint">
        Sign in as another user in a second window (a private window, or another browser), open this page there,
        and call the first user by name.
      </p>
    </section>
  );
}

function CallForm({ snapshot, me, onCall }: { snapshot: CallSnapshot; me: string; onCall: (to: string) => void }) {
  const [to, setTo] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const submit = (event: FormEvent) => {
    event.preventDefault();
    const name = to.trim();
    if (!name) return setProblem("Whom to call?");
    if (name === me) return setProblem("You cannot call yourself.");
    setProblem(null);
    onCall(name);
  };
  const busy = snapshot.phase !== "idle";
  return (
    <form className="sy-call-form" onSubmit={submit}>
      <label>
        Call{" "}
        <input
          value={to}
          onChange={(e) => setTo(e.target.value)}
          placeholder="user name"
          maxLength={64}
          disabled={busy}
          data-testid="call-to"
        />
      </label>{" "}
      <button type="submit" disabled={busy || !snapshot.online} data-testid="call-start">
        Call
      </button>
      {problem && (
        <span className="sy-call-error" role="alert">
          {" "}
          {problem}
        </span>
      )}
    </form>
  );
}

function CallStatus({ snapshot, client }: { snapshot: CallSnapshot; client: CallClient | null }) {
  const { phase, peer, connection, ended, error } = snapshot;
  let text: string;
  switch (phase) {
    case "idle":
      text = "No call.";
      break;
    case "inviting":
      text = `Calling ${peer}…`;
      break;
    case "ringing":
      text = `Calling ${peer}: ringing…`;
      break;
    case "incoming":
      text = `${peer} is calling you.`;
      break;
    case "accepting":
      text = `Answering ${peer}…`;
      break;
    case "active":
      text = `In a call with ${peer}.`;
      break;
  }
  return (
    <div className="sy-call-status">
      <p data-testid="call-state" data-phase={phase} aria-live="polite">
        {text}
      </p>
      {phase === "incoming" && (
        <p data-testid="call-incoming" data-from={peer ?? ""}>
          <button type="button" onClick={() => client?.accept()} data-testid="call-accept">
            Accept
          </button>{" "}
          <button type="button" onClick={() => client?.decline()} data-testid="call-decline">
            Decline
          </button>
        </p>
      )}
      {(phase === "inviting" || phase === "ringing" || phase === "accepting" || phase === "active") && (
        <p>
          <button type="button" onClick={() => client?.hangup()} data-testid="call-hangup">
            {phase === "active" || phase === "accepting" ? "Hang up" : "Cancel"}
          </button>
        </p>
      )}
      {connection && (
        <p>
          Connection: <output data-testid="call-connection">{connection}</output>
        </p>
      )}
      {phase === "idle" && ended && (
        <p data-testid="call-ended" data-reason={ended.reason}>
          Call{ended.peer ? ` with ${ended.peer}` : ""} ended: {REASONS[ended.reason] ?? ended.reason}.
        </p>
      )}
      {error && (
        <p className="sy-call-error" role="alert" data-testid="call-error">
          {error}
        </p>
      )}
    </div>
  );
}

/** A `<video>` showing a MediaStream (`srcObject` is set on the element, not in markup). */
function Video({ stream, muted, testId, label }: { stream: MediaStream | null; muted: boolean; testId: string; label: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    video.srcObject = stream;
    if (stream) video.play().catch(() => {}); // autoplay may wait for a click; the controls stay
  }, [stream]);
  return <video ref={ref} muted={muted} autoPlay playsInline aria-label={label} data-testid={testId} data-live={String(!!stream)} />;
}
