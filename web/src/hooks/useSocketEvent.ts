import { useEffect, useRef } from "react";
import type { Manager, Socket } from "socket.io-client";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Listener = (...args: any[]) => void;
type Emitter = { on(event: string, listener: Listener): unknown; off(event: string, listener: Listener): unknown };

/**
 * Subscribes `handler` to `event` of `source` (a Socket, or the Manager for its
 * reconnect_attempt, reconnect_error, reconnect_failed, reconnect) while the component is
 * mounted: added in useEffect, removed in its cleanup, so StrictMode's mount → unmount → mount
 * leaves exactly one listener. The latest `handler` is called (kept in a ref), so a new handler
 * at each render does not resubscribe.
 */
export function useSocketEvent(source: Socket | Manager, event: string, handler: Listener): void {
  const latest = useRef(handler);
  useEffect(() => {
    latest.current = handler;
  });
  useEffect(() => {
    const emitter = source as unknown as Emitter;
    const listener: Listener = (...args) => latest.current(...args);
    emitter.on(event, listener);
    return () => {
      emitter.off(event, listener);
    };
  }, [source, event]);
}
