// A tiny pathname router on the History API (no dependency needed for a handful of routes).
// The server answers index.html for every route of the app, so a reload or a shared link works.

import { useSyncExternalStore, type MouseEvent, type ReactNode } from "react";

const NAVIGATE = "switchyard:navigate";

function subscribe(listener: () => void) {
  window.addEventListener("popstate", listener);
  window.addEventListener(NAVIGATE, listener);
  return () => {
    window.removeEventListener("popstate", listener);
    window.removeEventListener(NAVIGATE, listener);
  };
}

export function usePathname(): string {
  return useSyncExternalStore(subscribe, () => window.location.pathname);
}

export function navigate(path: string, options: { replace?: boolean } = {}): void {
  if (path === window.location.pathname) return;
  if (options.replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  window.dispatchEvent(new Event(NAVIGATE));
}

type LinkProps = { to: string; children: ReactNode; className?: string; "data-testid"?: string };

/** An <a href> that navigates without reloading (a modified click still opens a new tab). */
export function Link({ to, children, className, ...rest }: LinkProps) {
  const onClick = (event: MouseEvent<HTMLAnchorElement>) => {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(to);
  };
  return (
    <a href={to} onClick={onClick} className={className} data-testid={rest["data-testid"]}>
      {children}
    </a>
  );
}
