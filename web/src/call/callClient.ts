/**
 * A 1:1 WebRTC call signaled over the `/calls` namespace (the events are in the table at the
 * top of the server's `crates/server/src/calls.rs`, and in the app contract):
 *
 *   caller                          server                          callee
 *   call:invite {to}        ──▶   ack {callId}     call:incoming {callId, from}  ──▶  (rings)
 *                                                   ◀── call:accept {callId}    (or call:decline)
 *   ◀── call:accepted {callId, by}
 *   offer    ── call:signal ──▶   relayed to the other party only   ──▶ setRemoteDescription
 *   setRemoteDescription  ◀──   call:signal answer   ◀──   createAnswer
 *   candidates both ways (call:signal type "candidate"), then media flows browser to browser;
 *   call:hangup by either → call:ended {callId, reason} to both.
 *
 * Framework-free on purpose: the page creates one in an effect and destroys it in the cleanup
 * (StrictMode mounts twice; destroy() hangs up, stops the camera and closes the connection),
 * and React reads it through `subscribe` / `getSnapshot` (`useSyncExternalStore`).
 */
import type { Socket } from "socket.io-client";

export type Phase =
  /** No call. */
  | "idle"
  /** `call:invite` sent, waiting for its ack. */
  | "inviting"
  /** The callee's sockets ring. */
  | "ringing"
  /** Someone calls us: accept or decline. */
  | "incoming"
  /** `call:accept` sent, waiting for its ack. */
  | "accepting"
  /** Accepted: offer, answer and candidates, then media. */
  | "active";

export interface CallSnapshot {
  phase: Phase;
  /** Whether the `/calls` socket is connected (a call needs it). */
  online: boolean;
  callId: string | null;
  /** The other party. */
  peer: string | null;
  /** `RTCPeerConnection.connectionState` of the current call (null without one). */
  connection: RTCPeerConnectionState | null;
  localStream: MediaStream | null;
  remoteStream: MediaStream | null;
  /** How the last call ended, for the page to say. */
  ended: { peer: string | null; reason: string } | null;
  error: string | null;
}

/** How long an ack is awaited. */
const ACK_TIMEOUT_MS = 15_000;

/**
 * No STUN or TURN server: host candidates are enough between two browsers on one machine or
 * one network (the tests run on loopback). A deployment adds its own, e.g.
 * `[{ urls: "stun:stun.example.org:3478" }, { urls: "turn:turn.example.org:3478", username, credential }]`
 * with TURN credentials minted by its backend, so calls also cross NATs and firewalls.
 */
const RTC_CONFIG: RTCConfiguration = { iceServers: [] };

interface Ack {
  error?: unknown;
  callId?: unknown;
  ok?: unknown;
}

type SignalType = "offer" | "answer" | "candidate";

function ackProblem(err: Error | null, ack: Ack | undefined): string | null {
  if (err) return "no answer from the server";
  if (!ack || typeof ack !== "object") return "a malformed answer";
  if (ack.error !== undefined) return String(ack.error);
  return null;
}

const idle = (online: boolean): CallSnapshot => ({
  phase: "idle",
  online,
  callId: null,
  peer: null,
  connection: null,
  localStream: null,
  remoteStream: null,
  ended: null,
  error: null,
});

export class CallClient {
  private snapshot: CallSnapshot;
  private readonly listeners = new Set<() => void>();
  private destroyed = false;
  private pc: RTCPeerConnection | null = null;
  private local: MediaStream | null = null;
  private mediaRequest: { generation: number; done: Promise<void> } | null = null;
  /** Bumped whenever a call ends: late answers (getUserMedia, acks) of an older one are dropped. */
  private generation = 0;
  /** Candidates that arrived before the remote description. */
  private queuedCandidates: RTCIceCandidateInit[] = [];
  /** Signals are handled one after another (each is asynchronous). */
  private signals: Promise<void> = Promise.resolve();
  /** The invite waiting for its ack; `cancelled`: hang up as soon as the ack names the call. */
  private invite: { cancelled: boolean } | null = null;

  constructor(private readonly socket: Socket) {
    this.snapshot = idle(socket.connected);
    socket.on("connect", this.onConnect);
    socket.on("disconnect", this.onDisconnect);
    socket.on("connect_error", this.onConnectError);
    socket.on("call:incoming", this.onIncoming);
    socket.on("call:accepted", this.onAccepted);
    socket.on("call:ended", this.onEnded);
    socket.on("call:signal", this.onSignal);
  }

  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = () => this.snapshot;

  private set(change: Partial<CallSnapshot>) {
    if (this.destroyed) return;
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of this.listeners) listener();
  }

  // --- what the user does ---

  /** Calls `to`: rings every tab of that user. */
  call(to: string) {
    const name = to.trim();
    if (this.snapshot.phase !== "idle" || !name) return;
    const generation = ++this.generation;
    const invite = { cancelled: false };
    this.invite = invite;
    this.set({ ...idle(this.socket.connected), phase: "inviting", peer: name });
    // The camera starts while it rings: the preview shows, and the offer can go at once.
    void this.startMedia(generation);
    this.socket.timeout(ACK_TIMEOUT_MS).emit("call:invite", { to: name }, (err: Error | null, ack?: Ack) => {
      if (this.invite === invite) this.invite = null;
      if (this.destroyed || generation !== this.generation) {
        // We hung up before the server named the call: end it there too.
        if (!err && typeof ack?.callId === "string" && invite.cancelled) {
          this.socket.emit("call:hangup", { callId: ack.callId });
        }
        return;
      }
      const problem = ackProblem(err, ack);
      if (problem || typeof ack?.callId !== "string") {
        this.end(null, `Cannot call ${name}: ${problem ?? "no call id"}`);
        return;
      }
      // call:accepted may have come first (it raced the ack): then the call is active already.
      if (this.snapshot.phase === "inviting") this.set({ phase: "ringing", callId: ack.callId });
    });
  }

  accept() {
    const { phase, callId } = this.snapshot;
    if (phase !== "incoming" || !callId) return;
    const generation = this.generation;
    this.set({ phase: "accepting" });
    void (async () => {
      // The connection exists, with our tracks, before the caller's offer can arrive.
      await this.startMedia(generation);
      if (generation !== this.generation || this.destroyed) return;
      this.createPeerConnection();
      this.socket.timeout(ACK_TIMEOUT_MS).emit("call:accept", { callId }, (err: Error | null, ack?: Ack) => {
        if (generation !== this.generation || this.destroyed) return;
        const problem = ackProblem(err, ack);
        if (problem) return this.end(null, `Could not accept: ${problem}`);
        this.set({ phase: "active" });
      });
    })();
  }

  decline() {
    const { phase, callId, peer } = this.snapshot;
    if (phase !== "incoming" || !callId) return;
    this.socket.emit("call:decline", { callId });
    this.end({ peer, reason: "declined" });
  }

  /** Hangs up a call, or cancels one that rings. */
  hangup() {
    const { phase, callId, peer } = this.snapshot;
    if (phase === "idle" || phase === "incoming") return;
    if (callId) this.socket.emit("call:hangup", { callId });
    else if (this.invite) this.invite.cancelled = true;
    this.end({ peer, reason: "hangup" });
  }

  // --- what the server says ---

  private onConnect = () => this.set({ online: true, error: null });

  /** A refused or failed connection (the manager retries a lost one by itself). */
  private onConnectError = (err: Error) => this.set({ error: `Cannot connect to /calls: ${err.message}` });

  private onDisconnect = () => {
    // The server ends our call when our socket goes (the other side gets `disconnected`).
    if (this.snapshot.phase !== "idle") this.end({ peer: this.snapshot.peer, reason: "disconnected" });
    this.set({ online: false });
  };

  private onIncoming = (event: { callId?: unknown; from?: unknown }) => {
    if (typeof event?.callId !== "string" || typeof event.from !== "string") return;
    // One call at a time (the server answers `busy` to a third party anyway).
    if (this.snapshot.phase !== "idle") return;
    this.generation++;
    this.set({ ...idle(this.socket.connected), phase: "incoming", callId: event.callId, peer: event.from });
  };

  private onAccepted = (event: { callId?: unknown; by?: unknown }) => {
    const { phase, callId } = this.snapshot;
    if (typeof event?.callId !== "string") return;
    const ours = (phase === "ringing" && callId === event.callId) || (phase === "inviting" && !callId);
    if (!ours) return;
    const generation = this.generation;
    this.set({ phase: "active", callId: event.callId });
    void (async () => {
      // The caller makes the offer, once the callee has accepted.
      await this.startMedia(generation);
      if (generation !== this.generation || this.destroyed) return;
      const pc = this.createPeerConnection();
      if (!this.local) {
        // No camera or microphone here: still receive the other side's.
        pc.addTransceiver("audio", { direction: "recvonly" });
        pc.addTransceiver("video", { direction: "recvonly" });
      }
      try {
        const offer = await pc.createOffer();
        if (generation !== this.generation) return;
        await pc.setLocalDescription(offer);
        this.signal("offer", { type: offer.type, sdp: offer.sdp });
      } catch (error) {
        if (generation === this.generation) this.set({ error: `Could not make the offer: ${String(error)}` });
      }
    })();
  };

  private onEnded = (event: { callId?: unknown; reason?: unknown }) => {
    const { phase, callId, peer } = this.snapshot;
    if (typeof event?.callId !== "string" || phase === "idle") return;
    if (event.callId !== callId && !(phase === "inviting" && !callId)) return;
    this.end({ peer, reason: typeof event.reason === "string" ? event.reason : "ended" });
  };

  private onSignal = (event: { callId?: unknown; type?: unknown; data?: unknown }) => {
    if (typeof event?.callId !== "string" || event.callId !== this.snapshot.callId) return;
    const generation = this.generation;
    this.signals = this.signals
      .then(() => this.handleSignal(event.type, event.data, generation))
      .catch((error: unknown) => {
        if (generation === this.generation) this.set({ error: `Signaling failed: ${String(error)}` });
      });
  };

  private async handleSignal(type: unknown, data: unknown, generation: number) {
    const pc = this.pc;
    if (!pc || generation !== this.generation || !data || typeof data !== "object") return;
    if (type === "offer" || type === "answer") {
      const description = data as RTCSessionDescriptionInit;
      if (description.type !== type || typeof description.sdp !== "string") return;
      await pc.setRemoteDescription({ type: description.type, sdp: description.sdp });
      for (const candidate of this.queuedCandidates.splice(0)) await pc.addIceCandidate(candidate);
      if (type === "offer") {
        const answer = await pc.createAnswer();
        if (generation !== this.generation) return;
        await pc.setLocalDescription(answer);
        this.signal("answer", { type: answer.type, sdp: answer.sdp });
      }
    } else if (type === "candidate") {
      const candidate = data as RTCIceCandidateInit;
      if (pc.remoteDescription) await pc.addIceCandidate(candidate);
      else this.queuedCandidates.push(candidate);
    }
  }

  // --- WebRTC ---

  private signal(type: SignalType, data: unknown) {
    const callId = this.snapshot.callId;
    if (!callId) return;
    const generation = this.generation;
    this.socket.timeout(ACK_TIMEOUT_MS).emit("call:signal", { callId, type, data }, (err: Error | null, ack?: Ack) => {
      const problem = ackProblem(err, ack);
      if (problem && generation === this.generation) this.set({ error: `Signal ${type} not relayed: ${problem}` });
    });
  }

  /** The camera and microphone (asked once per call); without them the call still receives. */
  private startMedia(generation: number): Promise<void> {
    if (this.mediaRequest?.generation !== generation) {
      this.mediaRequest = { generation, done: this.requestMedia(generation) };
    }
    return this.mediaRequest.done;
  }

  private async requestMedia(generation: number) {
    if (this.local) return;
    if (!navigator.mediaDevices?.getUserMedia) {
      this.set({ error: "This browser gives no camera access here (it needs HTTPS or localhost)." });
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
      if (generation !== this.generation || this.destroyed || this.local) {
        // The call ended (or the page left) while the browser asked: let the camera go.
        for (const track of stream.getTracks()) track.stop();
        return;
      }
      this.local = stream;
      this.set({ localStream: stream });
    } catch (error) {
      if (generation === this.generation) this.set({ error: `No camera or microphone: ${String(error)}` });
    }
  }

  private createPeerConnection(): RTCPeerConnection {
    if (this.pc) return this.pc;
    const pc = new RTCPeerConnection(RTC_CONFIG);
    this.pc = pc;
    this.queuedCandidates = [];
    if (this.local) for (const track of this.local.getTracks()) pc.addTrack(track, this.local);
    pc.onicecandidate = (event) => {
      if (event.candidate) this.signal("candidate", event.candidate.toJSON());
    };
    pc.ontrack = (event) => {
      const stream = event.streams[0] ?? this.snapshot.remoteStream ?? new MediaStream();
      if (!event.streams[0]) stream.addTrack(event.track);
      this.set({ remoteStream: stream });
    };
    pc.onconnectionstatechange = () => {
      if (this.pc === pc) this.set({ connection: pc.connectionState });
    };
    this.set({ connection: pc.connectionState });
    return pc;
  }

  /** Ends the current call here: tracks stopped, connection closed, the reason kept to show. */
  private end(ended: CallSnapshot["ended"], error: string | null = null) {
    this.generation++;
    this.release();
    this.set({ ...idle(this.socket.connected), ended, error });
  }

  private release() {
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      pc.onicecandidate = null;
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.close();
    }
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.local = null;
    this.mediaRequest = null;
    this.queuedCandidates = [];
    this.signals = Promise.resolve();
  }

  /** Leaves the page: hangs up (or declines) whatever is going on, and frees everything. */
  destroy() {
    if (this.destroyed) return;
    const { phase, callId } = this.snapshot;
    if (callId && phase === "incoming") this.socket.emit("call:decline", { callId });
    else if (callId && phase !== "idle") this.socket.emit("call:hangup", { callId });
    else if (phase === "inviting" && this.invite) this.invite.cancelled = true;
    this.generation++;
    this.release();
    this.destroyed = true;
    this.socket.off("connect", this.onConnect);
    this.socket.off("disconnect", this.onDisconnect);
    this.socket.off("connect_error", this.onConnectError);
    this.socket.off("call:incoming", this.onIncoming);
    this.socket.off("call:accepted", this.onAccepted);
    this.socket.off("call:ended", this.onEnded);
    this.socket.off("call:signal", this.onSignal);
    this.listeners.clear();
  }
}
