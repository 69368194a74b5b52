// The app's one connection to Switchyard.
//
// One Manager = one Engine.IO connection (long-polling first, then upgraded to WebSocket),
// multiplexing one Socket per namespace. They are created ONCE, here at module level, never in
// a component: React StrictMode mounts every component twice in development, and a socket made
// in a component (or in a useEffect without cleanup) would open two connections. Components
// only subscribe to events, in useEffect, and unsubscribe in the cleanup (hooks/useSocketEvent.ts).
//
// `autoConnect: false`: nothing connects before the user has signed in (session.ts calls
// connect()). The manager retries a lost connection 5 times, waiting 1 s, 2 s, 4 s, 5 s, 5 s
// (exponential backoff capped at 5 s, ±50% jitter so a restarted server is not hit by every
// client at the same instant); then it stops and the page offers a "Retry" button.

import { Manager, type Socket } from "socket.io-client";

export const RECONNECTION_ATTEMPTS = 5;

export const manager = new Manager({
  autoConnect: false,
  reconnection: true,
  reconnectionAttempts: RECONNECTION_ATTEMPTS,
  reconnectionDelay: 1000,
  reconnectionDelayMax: 5000,
});

/** What the sockets send in their handshake: a function, so every (re)connection asks anew. */
type AuthProvider = () => Promise<Record<string, unknown>>;

let authProvider: AuthProvider | null = null;

/**
 * Sets how the sockets authenticate (session.ts calls it at sign-in). The provider is called
 * for every connection and reconnection of every namespace, so an expired token is never
 * reused: each handshake carries a fresh one.
 */
export function setAuthProvider(provider: AuthProvider | null): void {
  authProvider = provider;
}

function makeSocket(nsp: string): Socket {
  return manager.socket(nsp, {
    auth: (cb) => {
      if (!authProvider) {
        cb({});
        return;
      }
      authProvider().then(cb, () => cb({}));
    },
  });
}

export const chatSocket: Socket = makeSocket("/chat");
export const notificationsSocket: Socket = makeSocket("/notifications");
export const docsSocket: Socket = makeSocket("/docs");
export const callsSocket: Socket = makeSocket("/calls");

const allSockets: Record<string, Socket> = {
  "/chat": chatSocket,
  "/notifications": notificationsSocket,
  "/docs": docsSocket,
  "/calls": callsSocket,
};

// A token that expires while connected: the server emits `auth_expired`, then disconnects the
// socket ("io server disconnect"), which socket.io-client never retries by itself. The socket
// connects again at once; its auth function fetches a fresh token. These two listeners belong
// to the socket module, not to a component, so they are added once, here.
for (const socket of Object.values(allSockets)) {
  socket.on("disconnect", (reason) => {
    if (reason === "io server disconnect" && authProvider) socket.connect();
  });
}

/**
 * The nominal wait before reconnection attempt `attempt` (1-based), as the manager's backoff
 * computes it before its jitter: reconnectionDelay · 2^(attempt-1), at most reconnectionDelayMax.
 */
export function nominalDelayMs(attempt: number): number {
  return Math.min(manager.reconnectionDelay() * 2 ** Math.max(0, attempt - 1), manager.reconnectionDelayMax());
}

// A debug hook for the browser tests (and for the curious, in the devtools console): how many
// listeners each socket has for an event. With StrictMode's double mount it must stay 1.
declare global {
  interface Window {
    __switchyard?: {
      manager: Manager;
      sockets: Record<string, Socket>;
      listeners: (nsp: string, event: string) => number;
    };
  }
}
window.__switchyard = {
  manager,
  sockets: allSockets,
  listeners: (nsp, event) => allSockets[nsp]?.listeners(event).length ?? -1,
};
