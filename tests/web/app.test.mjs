// The React demo app (web/) in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the real binary, which serves the page it embeds: two users chat
// (typing, presence), a notification from the backend API shows with the badge, the page shows
// a killed server's reconnection attempts and recovers the messages it missed, Retry after
// the 5 attempts, one connection per page under StrictMode, no CSP violation on any page.
// Screenshots go to $SCREENSHOT_DIR (default: the system's temporary directory).

import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { after, before, describe } from "node:test";
import { io } from "socket.io-client";
import { nowS, sign } from "./lib/jwt.mjs";
import { SwitchyardServer, withTimeout, wrapTest } from "./lib/server.mjs";
import {
  APP_CSP,
  USE_VITE,
  WAIT,
  appFor,
  byTestId,
  cspViolations,
  eventually,
  go,
  launchBrowser,
  listenerCount,
  messages,
  openApp,
  serverCounts,
  signIn,
  waitState,
  waitText,
} from "./lib/app.mjs";

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || os.tmpdir();
const screenshot = (page, name) => page.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
const API_KEY = "test-api-key-0123456789abcdef";
// APP_OLD_SERVER=1: developing against a binary older than the app's contract (no /auth/*, no
// message ids, mentions, inbox or /api/v1/notify): the steps that need those are skipped, and
// the 404 of /auth/config is not an error. The real runs never set it.
const OLD_SERVER = !!process.env.APP_OLD_SERVER;
const pageErrors = (errors) =>
  OLD_SERVER ? errors.filter((e) => !e.includes("status of 404")) : errors;

let browser;
before(async () => (browser = await launchBrowser()), { timeout: 40_000 });
after(() => browser?.close(), { timeout: 10_000 });

/** A server (and where its app is served) for one describe block. */
function useApp(env = {}) {
  const server = new SwitchyardServer(env);
  const app = { url: "", stop: async () => {} };
  before(async () => {
    await server.start();
    Object.assign(app, await appFor(server));
  }, { timeout: 40_000 });
  after(async () => {
    await app.stop();
    await server.stop();
  }, { timeout: 20_000 });
  return { server, app, test: wrapTest(server) };
}

/**
 * Another user's socket from Node, as the page authenticates: a dev token when the server
 * issues them, else (an older server) the handshake's name.
 */
async function nodeUser(server, nsp, name) {
  let auth = { name, user: name };
  const config = await fetch(`${server.url}/auth/config`);
  if (config.ok && (await config.json()).devTokens) {
    const res = await fetch(`${server.url}/auth/dev-token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name }),
    });
    auth = { token: (await res.json()).token };
  }
  const socket = io(`${server.url}${nsp}`, { forceNew: true, reconnection: false, auth });
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`${name}: connect_error ${err.message}`)));
    }),
    WAIT,
    `${name} to connect`,
  );
  return socket;
}

describe("chat and notifications", () => {
  const { server, app, test } = useApp({ API_KEYS: API_KEY });

  test("two users chat in a room and see typing and presence", { timeout: 90_000 }, async () => {
    const a = await openApp(browser, app.url, "/chat/general");
    const b = await openApp(browser, app.url, "/chat/general");
    try {
      await signIn(a.page, "alice");
      await waitText(a.page, byTestId("room-title"), "#general");
      await waitText(a.page, byTestId("online-list"), "alice");
      await signIn(b.page, "bob");
      await waitText(b.page, byTestId("room-title"), "#general");

      // Presence: each sees both (B from the join ack, A from B's presence event).
      await waitText(b.page, byTestId("online-list"), "alice, bob");
      await waitText(a.page, byTestId("online-list"), "alice, bob");

      // Typing in A shows in B, not in A.
      await a.page.locator(byTestId("message-input")).pressSequentially("hello", { delay: 30 });
      await waitText(b.page, byTestId("typing"), "alice is typing…");
      assert.equal(await a.page.textContent(byTestId("typing")), "");

      // A sends: both show it exactly once; B's typing line clears.
      await a.page.fill(byTestId("message-input"), "hello from alice");
      await a.page.press(byTestId("message-input"), "Enter");
      await waitText(b.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "hello from alice");
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "hello from alice");
      await waitText(b.page, byTestId("typing"), "");
      assert.equal(await a.page.inputValue(byTestId("message-input")), "");

      // B answers, mentioning A: a chat message, and (on servers with mentions) A's badge.
      await b.page.fill(byTestId("message-input"), "hi @alice");
      await b.page.click(byTestId("message-send"));
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "hi @alice");
      for (const { page } of [a, b]) {
        assert.deepEqual(await messages(page), [
          ["alice", "hello from alice"],
          ["bob", "hi @alice"],
        ]);
      }
      if (!OLD_SERVER) await waitText(a.page, byTestId("notifications-badge"), "1");

      // A joins another room; a message there counts as unread in A's room list.
      await a.page.fill(byTestId("join-room-input"), "random");
      await a.page.click(byTestId("join-room-button"));
      await waitText(a.page, byTestId("room-title"), "#random");
      await b.page.fill(byTestId("message-input"), "still here?");
      await b.page.press(byTestId("message-input"), "Enter");
      await waitText(a.page, byTestId("unread-general"), "1");
      await a.page.click(`${byTestId("room-general")} a`);
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "still here?");
      assert.equal(await a.page.$(byTestId("unread-general")), null);

      // B leaves: A sees B go offline in #general.
      await b.page.click(byTestId("leave-general"));
      await waitText(a.page, byTestId("online-list"), "alice");

      await screenshot(a.page, "switchyard-chat-a.png");
      await screenshot(b.page, "switchyard-chat-b.png");
      for (const page of [a, b]) {
        assert.deepEqual(pageErrors(page.errors), []);
        assert.deepEqual(page.requests.filter((url) => !url.startsWith(`${app.url}/`)), [], "nothing from elsewhere");
      }
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test("a notification from the backend API appears with the badge, and one from the form", { timeout: 60_000, skip: OLD_SERVER && "no /api/v1/notify" }, async () => {
    const a = await openApp(browser, app.url, "/");
    const b = await openApp(browser, app.url, "/notifications");
    try {
      await signIn(a.page, "carol");
      await signIn(b.page, "dan");
      const res = await fetch(`${server.url}/api/v1/notify`, {
        method: "POST",
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: JSON.stringify({ to: "carol", text: "your invoice is ready", from: "billing" }),
      });
      assert.equal(res.status, 200, await res.clone().text());
      const sent = await res.json();
      assert.equal(typeof sent.id, "string");
      assert.equal(sent.delivered, 1);

      // On the home page: the badge counts it.
      await waitText(a.page, byTestId("notifications-badge"), "1");

      // Another user notifies carol from the form.
      await b.page.fill(byTestId("notify-to"), "carol");
      await b.page.fill(byTestId("notify-text"), "lunch at noon?");
      await b.page.click(byTestId("notify-send"));
      await waitText(b.page, byTestId("notify-result"), /delivered to 1 open tab/);
      await waitText(a.page, byTestId("notifications-badge"), "2");

      // The list shows both, newest first; seen, the badge goes.
      await a.page.click('a[href="/notifications"]');
      await waitText(a.page, `${byTestId("notification")}:first-child ${byTestId("notification-text")}`, "lunch at noon?");
      const list = await a.page.$$eval(byTestId("notification"), (nodes) =>
        nodes.map((n) => [n.dataset.kind, n.querySelector('[data-testid="notification-from"]').textContent, n.querySelector('[data-testid="notification-text"]').textContent]),
      );
      assert.deepEqual(list, [
        ["direct", "dan", "lunch at noon?"],
        ["backend", "billing", "your invoice is ready"],
      ]);
      await a.page.waitForSelector(byTestId("notifications-badge"), { state: "detached" });
      await screenshot(a.page, "switchyard-notifications.png");

      // A reload (a new connection) gets them back from the inbox, once each, still read.
      await a.page.reload();
      await waitState(a.page, "connected");
      await waitText(a.page, `${byTestId("notification")}:first-child ${byTestId("notification-text")}`, "lunch at noon?");
      assert.equal(await a.page.$$eval(byTestId("notification"), (n) => n.length), 2);
      assert.equal(await a.page.$(byTestId("notifications-badge")), null);
      assert.deepEqual(pageErrors(a.errors), []);
      assert.deepEqual(pageErrors(b.errors), []);
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test("StrictMode: one connection per page (counted on the server) and one listener per event", { timeout: 60_000 }, async () => {
    // The other tests' pages are closed: wait until the server counts none of theirs.
    const before = await eventually(() => serverCounts(server.url), (c) => c.sessions === 0, "no session left");
    const a = await openApp(browser, app.url, "/chat/general");
    try {
      await signIn(a.page, "erin");
      await waitText(a.page, byTestId("online-list"), /erin/);
      // Every page of the app, to mount and unmount each one's subscriptions.
      for (const route of ["/notifications", "/", "/chat", "/chat/general", "/notifications", "/chat/general"]) {
        await go(a.page, route);
        await a.page.waitForTimeout(100);
      }
      await waitText(a.page, byTestId("room-title"), "#general");
      const counts = await eventually(
        () => serverCounts(server.url),
        (c) =>
          c.sessions === before.sessions + 1 &&
          c.sockets["/chat"] === (before.sockets["/chat"] ?? 0) + 1 &&
          c.sockets["/notifications"] === (before.sockets["/notifications"] ?? 0) + 1,
        "one session, one /chat and one /notifications socket for the page",
      );
      assert.ok(counts);
      for (const [nsp, event] of [
        ["/chat", "message"],
        ["/chat", "typing"],
        ["/chat", "presence"],
        ["/notifications", "notification"],
      ]) {
        assert.equal(await listenerCount(a.page, nsp, event), 1, `${nsp} ${event}`);
      }
      // And a message shows once.
      await a.page.fill(byTestId("message-input"), "just once");
      await a.page.press(byTestId("message-input"), "Enter");
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "just once");
      await a.page.waitForTimeout(300);
      assert.equal((await messages(a.page)).filter(([, text]) => text === "just once").length, 1);
      // Still one connection after the upgrade to WebSocket.
      await waitText(a.page, byTestId("connection-transport"), "websocket");
      const later = await serverCounts(server.url);
      assert.equal(later.sessions, before.sessions + 1);
      assert.deepEqual(pageErrors(a.errors), []);
    } finally {
      await a.context.close();
    }
  });

  test("no CSP violation on any page", { timeout: 60_000, skip: USE_VITE && "served by Vite (no CSP)" }, async () => {
    const res = await fetch(`${app.url}/`);
    assert.equal(res.headers.get("content-security-policy"), APP_CSP);
    const a = await openApp(browser, app.url, "/");
    try {
      await a.page.waitForSelector(byTestId("signin"));
      await signIn(a.page, "frank");
      for (const route of ["/", "/chat", "/chat/general", "/notifications", "/docs", "/docs/notes", "/call"]) {
        const response = await a.page.goto(`${app.url}${route}`);
        assert.equal(response.status(), 200, route);
        assert.equal(response.headers()["content-security-policy"], APP_CSP, route);
        await waitState(a.page, "connected");
        await a.page.waitForTimeout(300);
        assert.deepEqual(await cspViolations(a.page), [], route);
      }
      assert.deepEqual(pageErrors(a.errors), []);
    } finally {
      await a.context.close();
    }
  });
});

describe("reconnection", () => {
  const { server, app, test } = useApp();

  test("a killed server: the page shows its attempts, then recovers the messages sent meanwhile", { timeout: 120_000 }, async () => {
    const a = await openApp(browser, app.url, "/chat/general");
    const others = [];
    try {
      await signIn(a.page, "gina");
      await waitText(a.page, byTestId("online-list"), "gina");
      await a.page.fill(byTestId("message-input"), "before the crash");
      await a.page.press(byTestId("message-input"), "Enter");
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "before the crash");

      const port = server.port;
      await server.kill();
      await waitText(a.page, byTestId("connection-text"), /attempt [1-5] of 5/);
      await screenshot(a.page, "switchyard-reconnecting.png");
      // Restart while the page waits for its third attempt, and send a message before the page
      // is back, so it can only reach the page from the room's history. Until it is sent, the
      // page's Socket.IO requests fail (an attempt then is one more failed attempt, whatever
      // the machine's speed), and an attempt starts with a long-polling request (then upgrades).
      await waitText(a.page, byTestId("connection-text"), /attempt [3-5] of 5 in/, 40_000);
      const blockSocketIo = (route) => route.abort();
      await a.page.route("**/socket.io/**", blockSocketIo);
      await server.start(port);
      const hank = await nodeUser(server, "/chat", "hank");
      others.push(hank);
      assert.equal((await hank.timeout(5000).emitWithAck("join", "general")).room, "general");
      assert.deepEqual(await hank.timeout(5000).emitWithAck("message", { room: "general", text: "sent while you were away" }), { ok: true });
      await a.page.unroute("**/socket.io/**", blockSocketIo);

      await waitState(a.page, "connected", 40_000);
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "sent while you were away");
      await waitText(a.page, byTestId("connection-recovered"), /^Recovered: 1 missed message merged from room history/);
      await waitText(a.page, byTestId("connection-text"), /^Connected again after [1-5] attempts?$/);
      // The page's own message was in the killed server's memory only; the restarted one's
      // history has hank's, merged once.
      assert.equal((await messages(a.page)).filter(([, t]) => t === "sent while you were away").length, 1);
      await waitText(a.page, byTestId("online-list"), "gina, hank");
    } finally {
      for (const s of others) s.disconnect();
      await a.context.close();
    }
  });

  test("after 5 failed attempts the page offers Retry, which reconnects once the server is back", { timeout: 120_000 }, async () => {
    const a = await openApp(browser, app.url, "/chat/general");
    const others = [];
    try {
      await signIn(a.page, "ivy");
      await waitText(a.page, byTestId("online-list"), "ivy");
      const port = server.port;
      await server.kill();
      await waitText(a.page, byTestId("connection-text"), /attempt [1-5] of 5/);
      // 1 + 2 + 4 + 5 + 5 s nominal, each ±50%: at most about 26 s.
      await waitState(a.page, "failed", 60_000);
      await waitText(a.page, byTestId("connection-text"), "Could not reconnect after 5 attempts.");
      await a.page.waitForTimeout(1500);
      await waitState(a.page, "failed", 1000); // it stays failed: no more attempts

      await server.start(port);
      await a.page.click(byTestId("connection-retry"));
      await waitState(a.page, "connected");
      // Back in its room: a message from elsewhere reaches it.
      const jay = await nodeUser(server, "/chat", "jay");
      others.push(jay);
      await jay.timeout(5000).emitWithAck("join", "general");
      await jay.timeout(5000).emitWithAck("message", { room: "general", text: "welcome back" });
      await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "welcome back");
    } finally {
      for (const s of others) s.disconnect();
      await a.context.close();
    }
  });
});

describe("sign-in", () => {
  describe("dev mode", () => {
    const { app, test } = useApp();
    test("a name the server refuses is shown, and a good one then connects", { timeout: 60_000, skip: OLD_SERVER && "no /auth/dev-token" }, async () => {
      const a = await openApp(browser, app.url, "/");
      try {
        await a.page.fill(byTestId("signin-name"), "a\u0007b");
        await a.page.click(byTestId("signin-submit"));
        await waitText(a.page, byTestId("signin-error"), /control characters/);
        await signIn(a.page, "kim");
        // A 400 of /auth/dev-token is logged by Chromium as a failed load: not a script error.
        assert.deepEqual(a.errors.filter((e) => !e.includes("status of 400")), []);
      } finally {
        await a.context.close();
      }
    });
  });

  describe("short-lived dev tokens", () => {
    const { server, app, test } = useApp({ DEV_TOKEN_TTL_S: "10" });
    test("a token that expires is replaced: the page connects again with a fresh one and stays in its rooms", { timeout: 90_000, skip: OLD_SERVER && "no /auth/dev-token" }, async () => {
      const a = await openApp(browser, app.url, "/chat/general");
      const others = [];
      try {
        await signIn(a.page, "max");
        await waitText(a.page, byTestId("online-list"), "max");
        // Count the server's `auth_expired` (a listener of the test's own, added after sign-in).
        await a.page.evaluate(() => {
          window.__expired = 0;
          window.__switchyard.sockets["/chat"].on("auth_expired", () => window.__expired++);
        });
        await a.page.waitForFunction(() => window.__expired > 0, null, { timeout: 40_000 });
        await waitState(a.page, "connected");
        // Connected with a fresh token, in #general again: another user's message arrives.
        const nia = await nodeUser(server, "/chat", "nia");
        others.push(nia);
        await nia.timeout(5000).emitWithAck("join", "general");
        await nia.timeout(5000).emitWithAck("message", { room: "general", text: "still with us?" });
        await waitText(a.page, `${byTestId("message")}:last-child ${byTestId("message-text")}`, "still with us?");
        assert.deepEqual(a.errors, []);
      } finally {
        for (const s of others) s.disconnect();
        await a.context.close();
      }
    });
  });

  describe("a real key: tokens come from the app's backend", () => {
    const SECRET = "app-test-secret-0123456789abcdef0123456789";
    const { app, test } = useApp({ JWT_SECRET: SECRET });
    test("the page asks for a token from the backend, and a pasted one connects", { timeout: 60_000, skip: OLD_SERVER && "no /auth/config" }, async () => {
      const a = await openApp(browser, app.url, "/chat/general");
      try {
        await waitText(a.page, byTestId("signin"), /your own backend/);
        assert.equal(await a.page.$(byTestId("signin-name")), null);
        const token = sign("HS256", { sub: "lena", exp: nowS() + 600, rooms: ["*"] }, SECRET);
        await a.page.fill(byTestId("signin-token"), token);
        await a.page.click(byTestId("signin-submit"));
        await waitText(a.page, byTestId("user-name"), "lena");
        await waitState(a.page, "connected");
        await waitText(a.page, byTestId("online-list"), "lena");
        assert.deepEqual(a.errors, []);
      } finally {
        await a.context.close();
      }
    });
  });
});
