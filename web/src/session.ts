// Who is signed in, and how the sockets get their credentials.
//
// `GET /auth/config` says how this server authenticates:
// - `devTokens: true` (dev mode): the page asks `POST /auth/dev-token` for a short-lived JWT
//   for a name. The sockets' `auth` is a function that fetches a FRESH token for every
//   (re)connection, so a reconnection after the token expired just works.
// - `devTokens: false` (`jwt: true`: a real key; or dev tokens turned off): tokens come from
//   the app's own backend, which signs them after its own login. The page lets a token be
//   pasted, for trying.
// - 404 (a server older than /auth/*): see `legacyProvider` below.

import { useSyncExternalStore } from "react";
import { callsSocket, chatSocket, docsSocket, notificationsSocket, setAuthProvider } from "./socket";

export type AuthConfig =
  | { kind: "loading" }
  | { kind: "dev"; tokenTtlS: number } // dev tokens from /auth/dev-token
  | { kind: "jwt"; tokenTtlS: number } // tokens from the app's backend (paste one)
  | { kind: "names" } // /auth/config is 404 (old servers): the handshake names the user
  | { kind: "error"; message: string };

export type Session = { name: string };

type State = { config: AuthConfig; session: Session | null };

let state: State = { config: { kind: "loading" }, session: null };
const listeners = new Set<() => void>();

function setState(next: Partial<State>) {
  state = { ...state, ...next };
  for (const listener of listeners) listener();
}

function subscribe(listener: () => void) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The signed-in user, null before sign-in. */
export function useSession(): Session | null {
  return useSyncExternalStore(subscribe, () => state.session);
}

export function useAuthConfig(): AuthConfig {
  return useSyncExternalStore(subscribe, () => state.config);
}

let configRequested = false;

/** Reads `/auth/config` once (App calls it on mount; StrictMode's second call does nothing). */
export function loadAuthConfig(): void {
  if (configRequested) return;
  configRequested = true;
  fetch("/auth/config", { headers: { accept: "application/json" } })
    .then(async (res) => {
      if (res.status === 404) {
        setState({ config: { kind: "names" } });
      } else {
        if (!res.ok) throw new Error(`/auth/config answered ${res.status}`);
        const body = (await res.json()) as { devTokens?: boolean; jwt?: boolean; tokenTtlS?: number };
        const tokenTtlS = body.tokenTtlS ?? 0;
        // No dev tokens (a real key, or `--dev-tokens=false`): tokens come from the app's backend.
        setState({ config: body.devTokens ? { kind: "dev", tokenTtlS } : { kind: "jwt", tokenTtlS } });
      }
      // Signed in in this tab before a reload: sign in again (dev tokens and names only).
      const saved = sessionStorage.getItem(SAVED_NAME);
      if (saved && !state.session && state.config.kind !== "jwt") void signIn(saved).catch(() => {});
    })
    .catch((err: Error) => setState({ config: { kind: "error", message: err.message } }));
}

const SAVED_NAME = "switchyard.name";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** POST /auth/dev-token; throws with the server's `{ error }` on a refusal. */
async function fetchDevToken(name: string): Promise<{ token: string; sub: string }> {
  const res = await fetch("/auth/dev-token", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ name }),
  });
  const body = (await res.json().catch(() => ({}))) as { token?: string; sub?: string; error?: string };
  if (!res.ok || !body.token) throw new RefusedError(body.error ?? `the server answered ${res.status}`);
  return { token: body.token, sub: body.sub ?? name };
}

class RefusedError extends Error {}

/**
 * The auth provider of dev mode: a fresh token per handshake. Handshakes that start together
 * (several namespaces on one connection) share one request. A failed request (the server
 * restarting right now) is tried again a few times before giving up.
 */
function devTokenProvider(name: string) {
  let inFlight: Promise<Record<string, unknown>> | null = null;
  return () => {
    inFlight ??= (async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          const { token } = await fetchDevToken(name);
          return { token };
        } catch (err) {
          if (err instanceof RefusedError || attempt >= 3) throw err;
          await sleep(500 * attempt);
        }
      }
    })().finally(() => {
      inFlight = null;
    });
    return inFlight;
  };
}

/**
 * FALLBACK FOR OLD SERVERS ONLY (those without `/auth/*`: `/auth/config` answered 404): there
 * is no token to get, and the server's dev mode takes
 * the name from the handshake (`name` on /chat, `user` on /notifications). Never do this
 * against a server that issues tokens.
 */
function legacyProvider(name: string) {
  return () => Promise.resolve({ name, user: name });
}

/** The `sub` claim of a JWT (not verified: the server does that), for display. */
function jwtSubject(token: string): string | null {
  try {
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === "string" ? sub : null;
  } catch {
    return null;
  }
}

function connectAll(name: string) {
  setState({ session: { name } });
  // The pages of chat and notifications are always live (unread counts, the badge); the
  // document and call pages connect their own namespaces when they open.
  chatSocket.connect();
  notificationsSocket.connect();
}

/** Signs in with a name (dev tokens, or names on old servers). Throws the refusal's text. */
export async function signIn(name: string): Promise<void> {
  const config = state.config;
  const trimmed = name.trim();
  if (!trimmed) throw new Error("Enter a name.");
  if (config.kind === "dev") {
    const { sub } = await fetchDevToken(trimmed); // refused names are shown before connecting
    setAuthProvider(devTokenProvider(sub));
    sessionStorage.setItem(SAVED_NAME, sub);
    connectAll(sub);
  } else if (config.kind === "names") {
    setAuthProvider(legacyProvider(trimmed));
    sessionStorage.setItem(SAVED_NAME, trimmed);
    connectAll(trimmed);
  } else {
    throw new Error("This server does not issue tokens: paste one from the app's backend.");
  }
}

/** Signs in with a token signed by the app's backend (servers with a real key). */
export function signInWithToken(token: string): void {
  const trimmed = token.trim();
  const sub = jwtSubject(trimmed);
  if (!sub) throw new Error("That is not a JWT with a `sub` claim.");
  // A pasted token cannot be renewed: once it expires the server refuses the reconnection.
  // In a real app this provider calls the backend's own endpoint for a fresh token.
  setAuthProvider(() => Promise.resolve({ token: trimmed }));
  connectAll(sub);
}

export function signOut(): void {
  setAuthProvider(null);
  sessionStorage.removeItem(SAVED_NAME);
  for (const socket of [chatSocket, notificationsSocket, docsSocket, callsSocket]) socket.disconnect();
  setState({ session: null });
}
