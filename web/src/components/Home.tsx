import { Link } from "./router";

/** `/`: what the demo is, and how to try it. */
export function Home({ name }: { name: string }) {
  return (
    <div className="home">
      <h2>Welcome, {name}</h2>
      <p>
        This page is a demo of <strong>Switchyard</strong>, a Socket.IO server written in Rust, used from React with
        the official <code>socket.io-client</code>: one connection for the whole app (one Manager, one socket per
        namespace), a fresh token for every reconnection, and nothing lost across one.
      </p>
      <h3>Try it with two windows</h3>
      <ol>
        <li>Open this page in a second window that does not share this one's storage: a private window, or another browser.</li>
        <li>Sign in there with another name.</li>
        <li>
          In both, open <Link to="/chat/general">#general</Link>: type in one and watch the other see you typing,
          then your message. Who is online is listed above the messages.
        </li>
        <li>
          Mention the other with <code>@theirname</code>, or send them one from{" "}
          <Link to="/notifications">Notifications</Link>: the badge in their header counts it.
        </li>
        <li>
          Stop the server and start it again: the status at the top counts the reconnection attempts, and the
          messages sent meanwhile appear once it is back.
        </li>
      </ol>
      <h3>Also here</h3>
      <ul>
        <li>
          <Link to="/docs">Shared documents</Link>: edit together, with live cursors.
        </li>
        <li>
          <Link to="/call">Calls</Link>: 1:1 video, signaled through the server.
        </li>
      </ul>
    </div>
  );
}
