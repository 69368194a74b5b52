// The app's shell: sign-in, the header (links, notifications badge, connection status) and
// the pages by pathname.

import { lazy, Suspense, useEffect } from "react";
import { loadAuthConfig, signOut, useSession } from "./session";
import { Link, usePathname } from "./components/router";
import { ConnectionStatus } from "./components/ConnectionStatus";
import { SignIn } from "./components/SignIn";
import { Home } from "./components/Home";
import { ChatProvider } from "./chat/ChatContext";
import { ChatPage } from "./chat/ChatPage";
import { NotificationsProvider, useNotifications } from "./notifications/NotificationsContext";
import { NotificationsPage } from "./notifications/NotificationsPage";
import { CallPage } from "./call/CallPage";

// The editor (CodeMirror and Yjs) is most of the app's code: it loads with the first visit of a
// document page, as its own file (assets/docs.js), so chat and notifications start faster.
const DocsPage = lazy(() => import("./docs/DocsPage").then((module) => ({ default: module.DocsPage })));

export function App() {
  const session = useSession();
  useEffect(loadAuthConfig, []);

  if (!session) {
    return (
      <div className="app">
        <header className="header">
          <h1 className="brand">Switchyard</h1>
          <ConnectionStatus />
        </header>
        <main>
          <SignIn />
        </main>
      </div>
    );
  }

  // The providers live as long as the session (a new name starts afresh: `key`).
  return (
    <ChatProvider me={session.name} key={`chat-${session.name}`}>
      <NotificationsProvider me={session.name} key={`notes-${session.name}`}>
        <Shell name={session.name} />
      </NotificationsProvider>
    </ChatProvider>
  );
}

function Shell({ name }: { name: string }) {
  const path = usePathname();
  const section = path.split("/")[1] ?? "";
  return (
    <div className="app">
      <header className="header">
        <h1 className="brand">
          <Link to="/">Switchyard</Link>
        </h1>
        <nav className="nav" aria-label="pages">
          <NavLink to="/chat" current={section === "chat"}>
            Chat
          </NavLink>
          <NavLink to="/notifications" current={section === "notifications"}>
            Notifications <Badge />
          </NavLink>
          <NavLink to="/docs" current={section === "docs"}>
            Docs
          </NavLink>
          <NavLink to="/call" current={section === "call"}>
            Call
          </NavLink>
        </nav>
        <div className="user">
          <span data-testid="user-name">{name}</span>
          <button type="button" className="link" onClick={signOut} data-testid="sign-out">
            sign out
          </button>
        </div>
        <ConnectionStatus />
      </header>
      <main>
        <Page path={path} name={name} />
      </main>
    </div>
  );
}

function NavLink({ to, current, children }: { to: string; current: boolean; children: React.ReactNode }) {
  return (
    <Link to={to} className={current ? "current" : ""}>
      {children}
    </Link>
  );
}

function Badge() {
  const { unread } = useNotifications();
  if (unread === 0) return null;
  return (
    <span className="badge" data-testid="notifications-badge" title="unread notifications">
      {unread}
    </span>
  );
}

function Page({ path, name }: { path: string; name: string }) {
  const parts = path.split("/").filter(Boolean).map(decodeSegment);
  switch (parts[0]) {
    case undefined:
    case "index.html":
      return <Home name={name} />;
    case "chat":
      return <ChatPage room={parts[1] ?? null} />;
    case "notifications":
      return <NotificationsPage />;
    case "docs":
      return (
        <Suspense fallback={<p className="loading">Loading the editor…</p>}>
          <DocsPage />
        </Suspense>
      );
    case "call":
      return <CallPage />;
    default:
      return (
        <p>
          No page here. <Link to="/">Home</Link>
        </p>
      );
  }
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
