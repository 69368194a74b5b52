// The signed-in user's notifications, for the whole app (the badge is on every page).
//
// On every (re)connection the provider asks the server for the inbox (`inbox`, its last 50)
// and merges it with what it shows by `id`: a notification sent while this page was
// disconnected appears, and none appears twice. Which ones were read is kept in localStorage.

import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { notificationsSocket } from "../socket";
import { useSocketEvent } from "../hooks/useSocketEvent";
import { reportRecovery } from "../hooks/recovery";

export type Notification = {
  id?: string;
  from: string;
  text: string;
  time: number;
  kind?: "direct" | "mention" | "backend" | string;
  room?: string;
};

/** The server's `id`; older servers send none, so then sender, time and text together. */
export const notificationKey = (n: Notification) => n.id ?? `${n.from}\u0000${n.time}\u0000${n.text}`;

type NotificationsApi = {
  items: Notification[]; // oldest first
  unread: number;
  isRead(n: Notification): boolean;
  markAllRead(): void;
  notify(to: string, text: string): Promise<{ delivered?: number; error?: string }>;
};

const NotificationsContext = createContext<NotificationsApi | null>(null);

export function useNotifications(): NotificationsApi {
  const api = useContext(NotificationsContext);
  if (!api) throw new Error("useNotifications outside <NotificationsProvider>");
  return api;
}

const READ_LIMIT = 500;
const readKey = (me: string) => `switchyard.read.${me}`;

export function NotificationsProvider({ me, children }: { me: string; children: ReactNode }) {
  const [items, setItems] = useState<Notification[]>([]);
  const [read, setRead] = useState<Set<string>>(() => {
    try {
      return new Set(JSON.parse(localStorage.getItem(readKey(me)) ?? "[]") as string[]);
    } catch {
      return new Set();
    }
  });
  const itemsRef = useRef(items);
  useEffect(() => {
    itemsRef.current = items;
  }, [items]);

  /** Adds the notifications not shown yet; returns how many were new. */
  const merge = useCallback((incoming: Notification[]) => {
    const keys = new Set(itemsRef.current.map(notificationKey));
    const fresh = incoming.filter((n) => {
      const key = notificationKey(n);
      if (keys.has(key)) return false;
      keys.add(key);
      return true;
    });
    if (fresh.length) {
      const next = [...itemsRef.current, ...fresh].sort((a, b) => a.time - b.time);
      itemsRef.current = next;
      setItems(next);
    }
    return fresh.length;
  }, []);

  const connectedBefore = useRef(false);
  const loadInbox = useCallback(async () => {
    const again = connectedBefore.current;
    connectedBefore.current = true;
    try {
      const ack = (await notificationsSocket.timeout(10_000).emitWithAck("inbox")) as {
        notifications?: Notification[];
        error?: string;
      };
      const added = merge(ack.notifications ?? []);
      if (again && !notificationsSocket.recovered) reportRecovery({ notifications: added });
    } catch {
      // No answer: the connection went away (the next connect asks again), or a server
      // without an inbox (older than the contract): live notifications still arrive.
    }
  }, [merge]);

  useSocketEvent(notificationsSocket, "connect", () => void loadInbox());
  useEffect(() => {
    if (notificationsSocket.connected && !connectedBefore.current) void loadInbox();
  }, [loadInbox]);
  useSocketEvent(notificationsSocket, "notification", (n: Notification) => merge([n]));

  const markAllRead = useCallback(() => {
    setRead((current) => {
      const missing = itemsRef.current.map(notificationKey).filter((k) => !current.has(k));
      if (missing.length === 0) return current;
      const next = new Set([...current, ...missing]);
      localStorage.setItem(readKey(me), JSON.stringify([...next].slice(-READ_LIMIT)));
      return next;
    });
  }, [me]);

  const api = useMemo<NotificationsApi>(
    () => ({
      items,
      unread: items.filter((n) => !read.has(notificationKey(n))).length,
      isRead: (n) => read.has(notificationKey(n)),
      markAllRead,
      async notify(to, text) {
        if (!notificationsSocket.connected) return { error: "not connected" };
        try {
          return (await notificationsSocket.timeout(10_000).emitWithAck("notify", { to, text })) as {
            delivered?: number;
            error?: string;
          };
        } catch {
          return { error: "no answer from the server" };
        }
      },
    }),
    [items, read, markAllRead],
  );

  return <NotificationsContext.Provider value={api}>{children}</NotificationsContext.Provider>;
}
