// What was recovered after the last reconnection, for the connection status to say:
// - "server": socket.io's connection state recovery (`socket.recovered`): the server kept the
//   session and replayed the missed packets itself;
// - "history": the page joined its rooms again and merged the messages it missed from the
//   rooms' history (and the notifications from the inbox), by id.

import { useSyncExternalStore } from "react";

export type Recovery = { server: boolean; messages: number; notifications: number } | null;

let recovery: Recovery = null;
const listeners = new Set<() => void>();

function emit() {
  for (const listener of listeners) listener();
}

export function resetRecovery(): void {
  if (recovery === null) return;
  recovery = null;
  emit();
}

export function reportRecovery(part: { server?: boolean; messages?: number; notifications?: number }): void {
  const base = recovery ?? { server: false, messages: 0, notifications: 0 };
  recovery = {
    server: base.server || !!part.server,
    messages: base.messages + (part.messages ?? 0),
    notifications: base.notifications + (part.notifications ?? 0),
  };
  emit();
}

export function useRecovery(): Recovery {
  return useSyncExternalStore(
    (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    () => recovery,
  );
}
