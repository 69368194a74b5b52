/**
 * One open shared document: a `Y.Doc` (its text is `doc.getText("text")`) and its y-protocols
 * `Awareness`, kept in sync with the server over the `/docs` events (see README.md here and the
 * table at the top of the server's `crates/docs/src/lib.rs`).
 *
 * Framework-free on purpose: the page creates one in an effect and destroys it in the
 * cleanup (StrictMode mounts twice; each instance leaves cleanly), and React reads it through
 * `subscribe` / `getSnapshot` (`useSyncExternalStore`).
 *
 * The sync:
 * - on every connect (the first and each reconnection) `doc:join(docId, stateVector)`; the ack
 *   carries what the server has that we lack (`update`: applied) and the server's state vector
 *   (what it lacks of ours is sent back as one `doc:update`);
 * - local changes are sent as `doc:update`, one at a time with an ack: what changes while one
 *   is waiting is merged (`Y.mergeUpdates`) and sent after it, so a fast typist never has more
 *   than one update (plus a join) in flight (the server refuses past 4 per socket);
 * - an error ack (or no ack within 20 s) is shown and the document joined again, which sends
 *   whatever the server still lacks (the sync repairs it, nothing is lost locally);
 * - remote `doc:update`s are applied with the origin `REMOTE`, so they are not sent back.
 * Awareness (name, colour, text cursor, mouse pointer) goes out at most ~15 times a second, as
 * volatile packets (a stale position is worth nothing; the server relays them volatile too),
 * only this client's own state, and again when a newcomer appears (so it sees us at once).
 */
import type { Socket } from "socket.io-client";
import * as Y from "yjs";
import {
  Awareness,
  applyAwarenessUpdate,
  encodeAwarenessUpdate,
  removeAwarenessStates,
} from "y-protocols/awareness";
import { safeColorIndex } from "./colors";

/** The origin of everything the server sent: such changes are never sent back. */
export const REMOTE = Symbol("switchyard-remote");

export type SyncStatus = "connecting" | "syncing" | "synced" | "offline";

export interface Pointer {
  /** CSS pixels from the left of the editor's content. */
  x: number;
  /** CSS pixels from the top of the editor's content (scrolled content included). */
  y: number;
}

export interface Peer {
  clientId: number;
  name: string;
  colorIndex: number;
  pointer: Pointer | null;
  local: boolean;
}

export interface DocSnapshot {
  status: SyncStatus;
  error: string | null;
  peers: readonly Peer[];
}

/** How long an ack is awaited before the event counts as failed. */
const ACK_TIMEOUT_MS = 20_000;
/** At most one awareness update (and one pointer change) per this many ms: ~15 a second. */
export const AWARENESS_INTERVAL_MS = 66;
/** Waits before joining again after a failure, growing with each failure in a row. */
const RESYNC_DELAYS_MS = [300, 1000, 2000, 5000, 10_000];

interface Ack {
  error?: unknown;
  ok?: boolean;
  update?: unknown;
  stateVector?: unknown;
}

/** Binary arguments arrive as ArrayBuffer (socket.io-client's attachments); anything else is not. */
function toBytes(value: unknown): Uint8Array | null {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

/** An update with no structs and no deletions (what `encodeStateAsUpdate` gives when nothing is missing). */
const isEmptyUpdate = (update: Uint8Array) => update.length <= 2 && update.every((b) => b === 0);

function describe(err: Error | null, ack: Ack | undefined): string | null {
  if (err) return "no answer from the server";
  if (!ack || typeof ack !== "object") return "a malformed answer";
  if (ack.error !== undefined) return String(ack.error);
  return null;
}

function readPointer(value: unknown): Pointer | null {
  if (!value || typeof value !== "object") return null;
  const { x, y } = value as { x?: unknown; y?: unknown };
  if (typeof x !== "number" || typeof y !== "number" || !Number.isFinite(x) || !Number.isFinite(y)) return null;
  // Another client wrote it: keep it within a sane area.
  return { x: Math.min(Math.max(x, 0), 10_000), y: Math.min(Math.max(y, 0), 1_000_000) };
}

export class DocSession {
  readonly doc = new Y.Doc();
  readonly text: Y.Text = this.doc.getText("text");
  readonly awareness = new Awareness(this.doc);

  private snapshot: DocSnapshot = { status: "connecting", error: null, peers: [] };
  private readonly listeners = new Set<() => void>();
  private destroyed = false;
  /** Set once a join was acknowledged on the current connection. */
  private joined = false;
  /** Bumped by each join and disconnect: acks of an older one are ignored. */
  private generation = 0;
  private inFlight = false;
  /** Local updates not sent yet. */
  private pending: Uint8Array[] = [];
  private failures = 0;
  private rejoinTimer: ReturnType<typeof setTimeout> | undefined;
  private awarenessTimer: ReturnType<typeof setTimeout> | undefined;
  private lastAwarenessAt = 0;
  private pointerTimer: ReturnType<typeof setTimeout> | undefined;
  private lastPointerAt = 0;
  private nextPointer: Pointer | null = null;

  constructor(
    private readonly socket: Socket,
    readonly docId: string,
    user: { name: string; colorIndex: number },
  ) {
    this.awareness.setLocalState({ user: { name: user.name, colorIndex: user.colorIndex }, pointer: null });
    this.doc.on("update", this.onLocalUpdate);
    this.awareness.on("update", this.onAwarenessUpdate);
    this.awareness.on("change", this.onAwarenessChange);
    socket.on("connect", this.onConnect);
    socket.on("disconnect", this.onDisconnect);
    socket.on("connect_error", this.onConnectError);
    socket.on("doc:update", this.onRemoteUpdate);
    socket.on("doc:awareness", this.onRemoteAwareness);
    this.refreshPeers();
    if (socket.connected) this.join();
    else this.set({ status: "connecting" });
  }

  // --- React's view of it ---

  subscribe = (listener: () => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };

  getSnapshot = () => this.snapshot;

  private set(change: Partial<DocSnapshot>) {
    this.snapshot = { ...this.snapshot, ...change };
    for (const listener of this.listeners) listener();
  }

  // --- the document ---

  private onConnect = () => {
    this.join();
  };

  private onDisconnect = () => {
    this.generation++;
    this.joined = false;
    this.inFlight = false;
    clearTimeout(this.rejoinTimer);
    // The others' states are stale while we are away; they come back with their renewals.
    const others = [...this.awareness.getStates().keys()].filter((id) => id !== this.doc.clientID);
    if (others.length > 0) removeAwarenessStates(this.awareness, others, REMOTE);
    this.set({ status: "offline" });
  };

  /** A refused or failed connection (the manager retries a lost one by itself). */
  private onConnectError = (err: Error) => {
    this.set({ status: "offline", error: `Cannot connect to /docs: ${err.message}` });
  };

  /** Sync step 1 (ours) and 2 (both ways): see the module comment. */
  private join() {
    clearTimeout(this.rejoinTimer);
    if (this.destroyed || !this.socket.connected) return;
    const generation = ++this.generation;
    this.joined = false;
    this.inFlight = false;
    this.set({ status: "syncing" });
    this.socket
      .timeout(ACK_TIMEOUT_MS)
      .emit("doc:join", this.docId, Y.encodeStateVector(this.doc), (err: Error | null, ack?: Ack) => {
        if (this.destroyed || generation !== this.generation) return;
        const problem = describe(err, ack);
        if (problem) return this.fail(`Could not open the document: ${problem}`);
        try {
          const update = toBytes(ack?.update);
          if (update) Y.applyUpdate(this.doc, update, REMOTE);
        } catch {
          return this.fail("The server sent an update that does not decode");
        }
        // Everything the server lacks, pending local changes included, as one update.
        const missing = Y.encodeStateAsUpdate(this.doc, toBytes(ack?.stateVector) ?? undefined);
        this.pending = isEmptyUpdate(missing) ? [] : [missing];
        this.joined = true;
        this.sendAwarenessNow();
        this.flush();
      });
  }

  private onLocalUpdate = (update: Uint8Array, origin: unknown) => {
    if (origin === REMOTE || this.destroyed) return;
    this.pending.push(update);
    this.flush();
  };

  /** Sends the pending local changes, merged, unless an update is waiting for its ack. */
  private flush() {
    if (!this.joined || this.inFlight) return;
    if (this.pending.length === 0) {
      this.failures = 0;
      this.set({ status: "synced", error: null });
      return;
    }
    const update = this.pending.length === 1 ? this.pending[0] : Y.mergeUpdates(this.pending);
    this.pending = [];
    this.inFlight = true;
    const generation = this.generation;
    this.set({ status: "syncing" });
    this.socket
      .timeout(ACK_TIMEOUT_MS)
      .emit("doc:update", this.docId, update, (err: Error | null, ack?: Ack) => {
        if (this.destroyed || generation !== this.generation) return;
        this.inFlight = false;
        const problem = describe(err, ack);
        // Not applied (or unknown): joining again sends whatever the server still lacks.
        if (problem) return this.fail(`An edit was refused: ${problem}. Syncing again…`);
        this.flush();
      });
  }

  private fail(message: string) {
    this.generation++;
    this.joined = false;
    this.inFlight = false;
    this.set({ status: this.socket.connected ? "syncing" : "offline", error: message });
    const delay = RESYNC_DELAYS_MS[Math.min(this.failures, RESYNC_DELAYS_MS.length - 1)];
    this.failures++;
    clearTimeout(this.rejoinTimer);
    this.rejoinTimer = setTimeout(() => this.join(), delay);
  }

  private onRemoteUpdate = (docId: unknown, update: unknown) => {
    if (docId !== this.docId || this.destroyed) return;
    const bytes = toBytes(update);
    if (!bytes) return;
    try {
      Y.applyUpdate(this.doc, bytes, REMOTE);
    } catch {
      this.fail("The server relayed an update that does not decode");
    }
  };

  // --- awareness ---

  /** Shows where this user's mouse pointer is over the editor (null: not over it). */
  setPointer(pointer: Pointer | null) {
    this.nextPointer = pointer && { x: Math.round(pointer.x), y: Math.round(pointer.y) };
    if (this.pointerTimer !== undefined) return;
    const wait = Math.max(0, this.lastPointerAt + AWARENESS_INTERVAL_MS - Date.now());
    this.pointerTimer = setTimeout(() => {
      this.pointerTimer = undefined;
      this.lastPointerAt = Date.now();
      const current = readPointer(this.awareness.getLocalState()?.pointer);
      const next = this.nextPointer;
      const same = current === next || (current && next && current.x === next.x && current.y === next.y);
      if (!same && !this.destroyed) this.awareness.setLocalStateField("pointer", next);
    }, wait);
  }

  private onAwarenessUpdate = (
    { added, updated, removed }: { added: number[]; updated: number[]; removed: number[] },
    origin: unknown,
  ) => {
    if (this.destroyed) return;
    const me = this.doc.clientID;
    if (origin === REMOTE) {
      // A newcomer: tell it about us now rather than at our next renewal (15 s).
      if (added.some((id) => id !== me) && this.awareness.getLocalState() !== null) this.sendAwarenessSoon();
      return;
    }
    if (added.includes(me) || updated.includes(me) || removed.includes(me)) this.sendAwarenessSoon();
  };

  private sendAwarenessSoon() {
    if (this.awarenessTimer !== undefined) return;
    const wait = Math.max(0, this.lastAwarenessAt + AWARENESS_INTERVAL_MS - Date.now());
    this.awarenessTimer = setTimeout(() => {
      this.awarenessTimer = undefined;
      this.sendAwarenessNow();
    }, wait);
  }

  private sendAwarenessNow() {
    clearTimeout(this.awarenessTimer);
    this.awarenessTimer = undefined;
    // Sent again after the next join; never buffered while offline.
    if (!this.joined || !this.socket.connected) return;
    this.lastAwarenessAt = Date.now();
    this.socket.volatile.emit("doc:awareness", this.docId, encodeAwarenessUpdate(this.awareness, [this.doc.clientID]));
  }

  private onRemoteAwareness = (docId: unknown, update: unknown) => {
    if (docId !== this.docId || this.destroyed) return;
    const bytes = toBytes(update);
    if (!bytes) return;
    try {
      applyAwarenessUpdate(this.awareness, bytes, REMOTE);
    } catch {
      // A malformed awareness update costs a cursor, not the document.
    }
  };

  private onAwarenessChange = () => {
    this.refreshPeers();
  };

  private refreshPeers() {
    const me = this.doc.clientID;
    const peers: Peer[] = [];
    this.awareness.getStates().forEach((state, clientId) => {
      const user = (state as { user?: { name?: unknown; colorIndex?: unknown } }).user;
      if (!user || typeof user.name !== "string") return;
      peers.push({
        clientId,
        name: user.name.slice(0, 64),
        colorIndex: safeColorIndex(user.colorIndex),
        pointer: readPointer((state as { pointer?: unknown }).pointer),
        local: clientId === me,
      });
    });
    peers.sort((a, b) => Number(b.local) - Number(a.local) || a.name.localeCompare(b.name) || a.clientId - b.clientId);
    this.set({ peers });
  }

  // --- the end ---

  /** Leaves the document (its awareness removed for the others first) and frees everything. */
  destroy() {
    if (this.destroyed) return;
    clearTimeout(this.rejoinTimer);
    clearTimeout(this.awarenessTimer);
    clearTimeout(this.pointerTimer);
    this.doc.off("update", this.onLocalUpdate);
    this.awareness.off("update", this.onAwarenessUpdate);
    this.awareness.off("change", this.onAwarenessChange);
    this.socket.off("connect", this.onConnect);
    this.socket.off("disconnect", this.onDisconnect);
    this.socket.off("connect_error", this.onConnectError);
    this.socket.off("doc:update", this.onRemoteUpdate);
    this.socket.off("doc:awareness", this.onRemoteAwareness);
    if (this.socket.connected) {
      if (this.joined) {
        // Local changes not sent yet go out before the leave (no ack: we are gone).
        if (this.pending.length > 0) this.socket.emit("doc:update", this.docId, Y.mergeUpdates(this.pending));
        removeAwarenessStates(this.awareness, [this.doc.clientID], "local");
        this.socket.emit("doc:awareness", this.docId, encodeAwarenessUpdate(this.awareness, [this.doc.clientID]));
      }
      // Also when the join is still waiting for its ack (StrictMode's first mount): the server
      // handles a socket's events in order, and a leave of a document not joined is answered ok.
      this.socket.emit("doc:leave", this.docId);
    }
    this.destroyed = true;
    this.joined = false;
    this.awareness.destroy();
    this.doc.destroy();
    this.listeners.clear();
  }
}
