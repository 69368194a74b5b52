// The server side of the official Socket.IO Admin UI (@socket.io/admin-ui 0.5.1) in the
// switchyard binary, enabled with ADMIN_UI_AUTH="admin:<bcrypt hash>" (or `off`) and
// ADMIN_UI_READ_ONLY=true|false:
// - the protocol of the "/admin" namespace, driven with socket.io-client as the UI does: the
//   credentials check ("invalid credentials"), the session id, "config", "all_sockets",
//   "server_stats", the live events, and the actions the UI sends ("join", "leave",
//   "_disconnect"; "emit" when advertised), refused by a read-only server;
// - the UI itself (the package's ui/dist, served from 127.0.0.1 by a small node:http server)
//   in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core): its connection
//   form, the Sockets and Rooms pages listing a /chat client, and its disconnect button.
//
//   cargo build --release                   # at the repository root
//   cd tests/admin-ui && npm ci && npm test
//
// The binary comes from SWITCHYARD_BIN (default ../../target/release/switchyard), Chromium from
// CHROMIUM_PATH. Screenshots go to $SCREENSHOT_DIR (default: tests/admin-ui/screenshots/, whose
// *.png are not committed). The /chat namespace is used in dev mode (no JWT key): a client names
// itself with auth.name, and `join`/`leave`/`message` take a room name. Room names are not
// assumed: the adapter room behind the chat room "general" is read from what the admin
// namespace reports (Switchyard prefixes chat rooms, e.g. "chat:general"), and the same prefix
// is used for the rooms the tests have the admin namespace join.
// See PROTOCOL.md beside this file for the protocol.

import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { after, afterEach, before, describe } from "node:test";
import bcrypt from "bcryptjs";
import { chromium } from "playwright-core";
import { io, Manager } from "socket.io-client";
import {
  CHROMIUM,
  CHROMIUM_ARGS,
  SwitchyardServer,
  TEST_DIR,
  START_TIMEOUT_MS,
  assertChromium,
  serveStatic,
  withTimeout,
  wrapTest,
} from "./lib/server.mjs";

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || path.join(TEST_DIR, "screenshots");
const UI_DIR = path.join(TEST_DIR, "node_modules/@socket.io/admin-ui/ui/dist");

/** Deadline of each awaited step. The reference sends server_stats every 2 s. */
const WAIT = 10_000;

const USERNAME = "admin";
const PASSWORD = "correct horse battery staple";
const HASH = bcrypt.hashSync(PASSWORD, 10); // "$2a$10$…"

/** The features that let the UI act on sockets (the reference's list for Socket.IO v4). */
const ACTION_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"];

// One static server for the UI, shared by every Switchyard server (their --cors-origins).
let ui;
before(async () => {
  if (!existsSync(path.join(UI_DIR, "index.html"))) {
    throw new Error(`no admin UI at ${UI_DIR}: run npm ci in tests/admin-ui`);
  }
  ui = await serveStatic(UI_DIR);
});
after(() => ui?.close());

let browser;
async function getBrowser() {
  if (!browser) {
    assertChromium();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  }
  return browser;
}
after(() => browser?.close(), { timeout: 10_000 });

/** A Switchyard server for one describe block, started with the settings `env` and the UI's
 * origin allowed. */
function useServer(env) {
  const server = new SwitchyardServer(env);
  before(() => {
    server.env = { ...env, CORS_ORIGINS: ui.url };
    return server.start();
  }, { timeout: START_TIMEOUT_MS + 5000 });
  after(() => server.stop(), { timeout: 15_000 });
  return { server, test: wrapTest(server) };
}

/** Every socket a test opens, closed after each test. */
let open = [];
afterEach(() => {
  for (const socket of open) socket.disconnect();
  open = [];
});

function once(emitter, event, timeout = WAIT) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    timeout,
    `the "${event}" event`,
  );
}

/** Resolves once `socket` is connected; throws on connect_error. */
function connected(socket, what) {
  return withTimeout(
    new Promise((resolve, reject) => {
      if (socket.connected) return resolve(socket);
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", (err) => reject(new Error(`${what}: connect_error: ${err.message}`)));
    }),
    WAIT,
    `connecting ${what}`,
  );
}

/** A new connection (like a new tab) to namespace `nsp`, not awaited. */
function socketTo(server, nsp, auth, opts = {}) {
  const socket = io(`${server.url}${nsp}`, { forceNew: true, reconnection: false, auth, ...opts });
  open.push(socket);
  return socket;
}

/** A /chat client named `name`, connected. */
function chatClient(server, name, opts) {
  return connected(socketTo(server, "/chat", { name }, opts), `/chat as ${name}`);
}

/** The connect_error message a connection attempt to `nsp` gets. */
async function refusal(server, nsp, auth) {
  const socket = socketTo(server, nsp, auth);
  const [err] = await Promise.race([
    once(socket, "connect_error"),
    once(socket, "connect").then(() => [new Error("unexpectedly connected")]),
  ]);
  return err.message;
}

const ask = (socket, event, data) => socket.timeout(3000).emitWithAck(event, data);

/** Checks a chat join's answer: the room and its member count (it carries more: users, history). */
function assertJoined(answer, room, members) {
  assert.equal(answer?.room, room, `join answer ${JSON.stringify(answer)}`);
  assert.equal(answer?.members, members, `join answer ${JSON.stringify(answer)}`);
}

/** Whether `socket` is in chat room `room`, as the server answers a message to it. */
async function inRoom(socket, room) {
  const answer = await ask(socket, "message", { room, text: `probe ${room}` });
  if (answer?.ok === true) return true;
  assert.equal(answer?.error, `not in room ${room}`, `unexpected answer ${JSON.stringify(answer)}`);
  return false;
}

/** Waits until `check()` resolves truthy (polled; the deadline is the failure). */
async function eventually(check, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Records every event an admin socket receives (from before it connects), in order. */
class Recorder {
  constructor(socket) {
    this.events = [];
    this.waiters = [];
    socket.onAny((event, ...args) => {
      const entry = { event, args, index: this.events.length };
      this.events.push(entry);
      this.waiters = this.waiters.filter((waiter) => !waiter(entry));
    });
  }

  /** The index the next event will have: pass it as `from` to wait for later events only. */
  mark() {
    return this.events.length;
  }

  /** Resolves with the arguments of the first `event` from index `from` that `pred` accepts. */
  wait(event, pred = () => true, { from = 0, timeout = WAIT } = {}) {
    const matches = (entry) => {
      if (entry.event !== event || entry.index < from) return false;
      try {
        return Boolean(pred(...entry.args));
      } catch {
        return false;
      }
    };
    const found = this.events.find(matches);
    if (found) return Promise.resolve(found.args);
    let timer;
    return new Promise((resolve, reject) => {
      const waiter = (entry) => {
        if (!matches(entry)) return false;
        clearTimeout(timer);
        resolve(entry.args);
        return true;
      };
      this.waiters.push(waiter);
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        const seen = this.events
          .slice(from)
          .map((e) => `${e.event} ${JSON.stringify(e.args).slice(0, 200)}`)
          .join("\n  ");
        reject(new Error(`timed out after ${timeout} ms waiting for the admin event "${event}"; received:\n  ${seen}`));
      }, timeout);
    });
  }
}

/** An admin connection with `auth`, connected, with its recorder. */
async function admin(server, auth = { username: USERNAME, password: PASSWORD }) {
  const socket = socketTo(server, "/admin", auth);
  const events = new Recorder(socket);
  await connected(socket, "/admin");
  return { socket, events };
}

/** The adapter room behind chat room `room` among `rooms` (e.g. "chat:general"). */
function roomKey(rooms, room, socketId) {
  const key = rooms.find((r) => r !== socketId && (r === room || r.endsWith(room)));
  assert.ok(key, `no room for ${room} in ${JSON.stringify(rooms)}`);
  return key;
}

/** The UI's test of a timestamp: a date it can show. */
function assertDate(value, what) {
  assert.ok(
    (typeof value === "string" || typeof value === "number") && !Number.isNaN(new Date(value).getTime()),
    `${what}: not a date: ${JSON.stringify(value)}`,
  );
}

/** What the UI reads from a serialized socket (main.js store, Sockets/Socket/Clients views). */
function assertSerializedSocket(s, { id, nsp }) {
  assert.equal(s.id, id);
  assert.equal(s.nsp, nsp);
  assert.equal(typeof s.clientId, "string", "clientId");
  assert.ok(s.clientId.length > 0, "clientId");
  assert.ok(["polling", "websocket"].includes(s.transport), `transport ${s.transport}`);
  assert.equal(typeof s.data, "object", "data");
  assert.ok(s.data !== null && !Array.isArray(s.data), "data is an object");
  assert.ok(Array.isArray(s.rooms), "rooms");
  assert.ok(s.rooms.includes(id), `rooms ${JSON.stringify(s.rooms)} include the socket id`);
  const h = s.handshake;
  assert.equal(typeof h, "object", "handshake");
  assert.equal(typeof h.address, "string", "handshake.address");
  assert.match(h.address, /127\.0\.0\.1/);
  assert.equal(typeof h.headers, "object", "handshake.headers");
  assert.equal(typeof h.query, "object", "handshake.query");
  // SocketDetails: new Date(issued).toISOString() throws on a bad value.
  assert.ok(Number.isFinite(h.issued), `handshake.issued ${h.issued}`);
  assert.ok(Math.abs(Date.now() - h.issued) < 3_600_000, "handshake.issued is milliseconds since the epoch");
  assert.equal(typeof h.secure, "boolean", "handshake.secure");
  assert.equal(typeof h.url, "string", "handshake.url");
  assert.ok(!("auth" in h), "the handshake's auth is not sent to the UI");
}

function assertStats(stats) {
  for (const key of ["serverId", "hostname"]) assert.equal(typeof stats[key], "string", key);
  for (const key of ["pid", "uptime", "clientsCount", "pollingClientsCount"]) {
    assert.ok(Number.isFinite(stats[key]) && stats[key] >= 0, `${key}: ${stats[key]}`);
  }
  assert.ok(Array.isArray(stats.aggregatedEvents), "aggregatedEvents");
  for (const e of stats.aggregatedEvents) {
    assert.ok(Number.isFinite(e.timestamp) && e.timestamp % 1000 === 0, `aggregated timestamp ${e.timestamp}`);
    assert.equal(typeof e.type, "string");
    assert.ok(Number.isFinite(e.count));
  }
  assert.ok(Array.isArray(stats.namespaces), "namespaces");
  for (const n of stats.namespaces) {
    assert.equal(typeof n.name, "string");
    assert.ok(Number.isInteger(n.socketsCount));
  }
}

const socketsCount = (stats, name) => stats.namespaces.find((n) => n.name === name)?.socketsCount;

describe("the admin namespace with a password", () => {
  const { server, test } = useServer({ ADMIN_UI_AUTH: `${USERNAME}:${HASH}`, ADMIN_UI_READ_ONLY: "false" });

  test("wrong credentials are refused with the reference's connect_error", async () => {
    // The UI tests err.message === "invalid credentials" to show "Invalid credentials".
    assert.equal(await refusal(server, "/admin", { username: USERNAME, password: "wrong" }), "invalid credentials");
    assert.equal(await refusal(server, "/admin", { username: "root", password: PASSWORD }), "invalid credentials");
    assert.equal(await refusal(server, "/admin", { username: USERNAME }), "invalid credentials");
    assert.equal(await refusal(server, "/admin", {}), "invalid credentials");
    assert.equal(await refusal(server, "/admin", undefined), "invalid credentials");
    // What the UI sends when it reloads with a saved server URL: a session id it may not have.
    assert.equal(await refusal(server, "/admin", { sessionId: null }), "invalid credentials");
    assert.equal(await refusal(server, "/admin", { sessionId: "0123456789abcdef" }), "invalid credentials");
  });

  test("the right credentials: session, config, all_sockets and server_stats", async () => {
    const alice = await chatClient(server, "alice");
    assertJoined(await ask(alice, "join", "general"), "general", 1);

    const { socket, events } = await admin(server);

    // "session": an id that logs in again without the password (auth: { sessionId }).
    const [sessionId] = await events.wait("session");
    assert.equal(typeof sessionId, "string");
    assert.ok(sessionId.length > 0);

    // "config": what the UI may do. Dev mode (the UI's developmentMode getter) shows the
    // Sockets, Rooms, Clients and Events pages.
    const [config] = await events.wait("config");
    assert.ok(Array.isArray(config.supportedFeatures));
    for (const feature of ["JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS"]) {
      assert.ok(config.supportedFeatures.includes(feature), `${feature} in ${JSON.stringify(config.supportedFeatures)}`);
    }
    assert.ok(config.supportedFeatures.includes("ALL_EVENTS"), "development mode: ALL_EVENTS");

    // "all_sockets": every socket of every namespace, alice with her rooms.
    const [all] = await events.wait("all_sockets");
    assert.ok(Array.isArray(all));
    const mine = all.find((s) => s.id === alice.id);
    assert.ok(mine, `alice (${alice.id}) in ${JSON.stringify(all.map((s) => [s.nsp, s.id]))}`);
    assertSerializedSocket(mine, { id: alice.id, nsp: "/chat" });
    const general = roomKey(mine.rooms, "general", alice.id);
    // Her own id room, the chat room, and the personal room every /chat socket is in.
    assert.deepEqual([...mine.rooms].sort(), [alice.id, general, "user:alice"].sort());

    // "server_stats": periodic (the reference: every 2 s), with the namespaces' socket counts.
    const [stats] = await events.wait("server_stats", (s) => socketsCount(s, "/chat") === 1);
    assertStats(stats);
    assert.ok(socketsCount(stats, "/admin") >= 1, `/admin in ${JSON.stringify(stats.namespaces)}`);
    assert.ok(stats.clientsCount >= 2, `clientsCount ${stats.clientsCount}: alice and the admin`);
    const from = events.mark();
    const [next] = await events.wait("server_stats", () => true, { from, timeout: 6000 });
    assertStats(next);
    assert.equal(next.serverId, stats.serverId);

    // The session id logs in again without the password; a made-up one does not.
    const again = await admin(server, { sessionId });
    await again.events.wait("config");
    assert.equal(await refusal(server, "/admin", { sessionId: `${sessionId}0` }), "invalid credentials");
    socket.disconnect();
  });

  test("live events: socket_connected, socket_updated, room_joined, event_received, room_left, socket_disconnected", async () => {
    const { events } = await admin(server);
    await events.wait("all_sockets");
    const from = events.mark();

    // Polling first, then the upgrade: the UI must end up showing "websocket".
    const bob = await chatClient(server, "bob");
    const [connectedSocket, connectedAt] = await events.wait("socket_connected", (s) => s.id === bob.id, { from });
    assertSerializedSocket(connectedSocket, { id: bob.id, nsp: "/chat" });
    assertDate(connectedAt, "socket_connected timestamp");
    if (connectedSocket.transport !== "websocket") {
      const [update] = await events.wait("socket_updated", (s) => s.id === bob.id && s.transport === "websocket", { from });
      assert.equal(update.nsp, "/chat");
    }

    assertJoined(await ask(bob, "join", "general"), "general", 1);
    const [nsp, room, id, joinedAt] = await events.wait("room_joined", (n, r, i) => i === bob.id && r.endsWith("general"), { from });
    assert.equal(nsp, "/chat");
    assert.equal(id, bob.id);
    const general = roomKey([room], "general", bob.id);
    assertDate(joinedAt, "room_joined timestamp");

    // Development mode (ALL_EVENTS): the events a socket receives, without the ack function.
    const [rNsp, rId, rArgs, rAt] = await events.wait("event_received", (n, i, args) => i === bob.id && args[0] === "join", { from });
    assert.equal(rNsp, "/chat");
    assert.equal(rId, bob.id);
    assert.deepEqual(rArgs, ["join", "general"]);
    assertDate(rAt, "event_received timestamp");
    // ...and the events it is sent (here the room's message, which bob gets too).
    assert.deepEqual(await ask(bob, "message", { room: "general", text: "hello" }), { ok: true });
    const [sNsp, sId, sArgs, sAt] = await events.wait("event_sent", (n, i, args) => i === bob.id && args[0] === "message", { from });
    assert.equal(sNsp, "/chat");
    assert.equal(sId, bob.id);
    assert.equal(sArgs[1].text, "hello");
    assertDate(sAt, "event_sent timestamp");

    assert.deepEqual(await ask(bob, "leave", "general"), { room: "general", members: 0 });
    const [lNsp, lRoom, lId, lAt] = await events.wait("room_left", (n, r, i) => i === bob.id && r === general, { from });
    assert.equal(lNsp, "/chat");
    assert.equal(lRoom, general);
    assert.equal(lId, bob.id);
    assertDate(lAt, "room_left timestamp");

    const bobId = bob.id; // the client forgets it on disconnect
    bob.disconnect();
    const [dNsp, dId, reason, dAt] = await events.wait("socket_disconnected", (n, i) => i === bobId, { from });
    assert.equal(dNsp, "/chat");
    assert.equal(dId, bobId);
    assert.equal(typeof reason, "string");
    assert.ok(reason.length > 0);
    assertDate(dAt, "socket_disconnected timestamp");
  });

  test("the UI's room actions: join and leave one socket, clear a room, everyone joins", async () => {
    const alice = await chatClient(server, "alice");
    const carol = await chatClient(server, "carol");
    await ask(alice, "join", "general");
    await ask(carol, "join", "general");
    const { socket, events } = await admin(server);
    const [all] = await events.wait("all_sockets");
    const general = roomKey(all.find((s) => s.id === alice.id).rooms, "general", alice.id);
    const prefix = general.slice(0, -"general".length); // "chat:" for Switchyard's /chat
    let from = events.mark();

    // SocketRooms would send ("join", nsp, room, socketId) (JOIN).
    socket.emit("join", "/chat", `${prefix}lobby`, alice.id);
    await events.wait("room_joined", (n, r, i) => n === "/chat" && r === `${prefix}lobby` && i === alice.id, { from });
    assert.equal(await inRoom(alice, "lobby"), true);
    assert.equal(await inRoom(carol, "lobby"), false);

    // RoomSockets' and SocketRooms' leave button: ("leave", nsp, room, socketId) (LEAVE).
    socket.emit("leave", "/chat", general, alice.id);
    await events.wait("room_left", (n, r, i) => n === "/chat" && r === general && i === alice.id, { from });
    assert.equal(await inRoom(alice, "general"), false);
    assert.equal(await inRoom(carol, "general"), true);
    assert.equal(await inRoom(alice, "lobby"), true);

    // Rooms' and RoomDetails' "clear": ("leave", nsp, room) with no filter (MLEAVE).
    from = events.mark();
    socket.emit("leave", "/chat", general);
    await events.wait("room_left", (n, r, i) => n === "/chat" && r === general && i === carol.id, { from });
    assert.equal(await inRoom(carol, "general"), false);

    // ("join", nsp, room) with no filter: every socket of the namespace (MJOIN).
    socket.emit("join", "/chat", `${prefix}hall`);
    await eventually(async () => (await inRoom(alice, "hall")) && (await inRoom(carol, "hall")), "both in hall");
  });

  test("the UI's disconnect actions: one socket, the sockets of a room, a whole client", async () => {
    const alice = await chatClient(server, "alice");
    const carol = await chatClient(server, "carol");
    const dave = await chatClient(server, "dave");
    const erin = await chatClient(server, "erin");
    let carolDropped = false;
    carol.on("disconnect", () => (carolDropped = true));
    const { socket, events } = await admin(server);
    await events.wait("all_sockets");
    const from = events.mark();

    // Sockets' disconnect button: ("_disconnect", nsp, false, socketId) (DISCONNECT).
    const aliceId = alice.id;
    const aliceDown = once(alice, "disconnect");
    socket.emit("_disconnect", "/chat", false, aliceId);
    assert.equal((await aliceDown)[0], "io server disconnect");
    await events.wait("socket_disconnected", (n, i) => n === "/chat" && i === aliceId, { from });
    assert.equal(carol.connected, true);

    // Rooms' disconnect button: ("_disconnect", nsp, false, room) (MDISCONNECT).
    assertJoined(await ask(dave, "join", "doomed"), "doomed", 1);
    assertJoined(await ask(erin, "join", "doomed"), "doomed", 2);
    const [, room] = await events.wait("room_joined", (n, r, i) => i === dave.id && r !== dave.id, { from });
    const daveDown = once(dave, "disconnect");
    const erinDown = once(erin, "disconnect");
    socket.emit("_disconnect", "/chat", false, room);
    assert.equal((await daveDown)[0], "io server disconnect");
    assert.equal((await erinDown)[0], "io server disconnect");

    // Clients' disconnect button: ("_disconnect", nsp, true, socketId) closes the whole
    // connection, so the same client's socket on another namespace goes too.
    const manager = new Manager(server.url, { forceNew: true, reconnection: false });
    const frank = manager.socket("/chat", { auth: { name: "frank" } });
    const frankNotes = manager.socket("/notifications", { auth: { user: "u-frank" } });
    open.push(frank, frankNotes);
    await connected(frank, "/chat as frank");
    await connected(frankNotes, "/notifications as u-frank");
    const frankDown = once(frank, "disconnect");
    const notesDown = once(frankNotes, "disconnect");
    socket.emit("_disconnect", "/chat", true, frank.id);
    const [frankReason] = await frankDown;
    const [notesReason] = await notesDown;
    assert.ok(["io server disconnect", "transport close"].includes(frankReason), frankReason);
    assert.ok(["io server disconnect", "transport close"].includes(notesReason), notesReason);
    await eventually(() => manager.engine?.readyState !== "open", "the connection to close");

    // Carol, in none of those, is still there.
    assert.equal(await inRoom(carol, "general"), false); // a round trip: carol is still connected
    assert.equal(carolDropped, false);
  });

  test('"emit", when advertised, reaches the sockets of a room', async () => {
    const carol = await chatClient(server, "carol");
    const { socket, events } = await admin(server);
    const [config] = await events.wait("config");
    if (!config.supportedFeatures.includes("EMIT")) {
      // The UI 0.5.1 never sends "emit": a server may leave it out (and then ignores it).
      return;
    }
    const notice = once(carol, "notice");
    socket.emit("emit", "/chat", carol.id, "notice", { text: "from the admin" });
    assert.deepEqual(await notice, [{ text: "from the admin" }]);
  });

  test("the official UI in Chromium: connects, lists a /chat socket and its room, moves and disconnects it", { timeout: 120_000 }, async () => {
    const alice = await chatClient(server, "alice");
    assertJoined(await ask(alice, "join", "general"), "general", 1);
    const aliceId = alice.id; // the client forgets it on disconnect
    const { context, page, errors } = await openUi();
    try {
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      // No server URL saved: the connection dialog is open. A wrong password is shown as such.
      await connectForm(page, { serverUrl: server.url, username: USERNAME, password: "wrong" });
      await page.getByText("Invalid credentials", { exact: true }).waitFor();
      await connectForm(page, { serverUrl: server.url, username: USERNAME, password: PASSWORD });
      await waitConnected(page, server.url);

      // Sockets page (shown in development mode only), namespace /chat: alice's row.
      await goTo(page, "Sockets");
      await selectNamespace(page, "/chat");
      const row = page.getByRole("row").filter({ hasText: aliceId });
      await row.waitFor();
      await row.getByText("127.0.0.1").waitFor();
      // Polling then websocket: the row ends on WebSocket (socket_updated).
      await row.getByText("WebSocket", { exact: true }).waitFor();
      await screenshot(page, "admin-ui-sockets.png");

      // Rooms page: the public room with its one socket; its name as the server reports it.
      await goTo(page, "Rooms");
      const roomRow = page.getByRole("row").filter({ hasText: "general" });
      await roomRow.waitFor();
      await roomRow.getByText("Public", { exact: true }).waitFor();
      await roomRow.getByRole("cell", { name: "1", exact: true }).waitFor();
      const general = (await roomRow.getByRole("cell").first().textContent()).trim();
      const prefix = general.slice(0, -"general".length); // "chat:" for Switchyard's /chat
      assert.equal(`${prefix}general`, general);
      await screenshot(page, "admin-ui-rooms.png");

      // The socket's details page (a click on its row): its rooms, and "Join a room", which
      // sends ("join", "/chat", room, socketId).
      await goTo(page, "Sockets");
      await row.getByRole("cell", { name: aliceId, exact: true }).click();
      await page.getByText("Socket details", { exact: true }).waitFor();
      const roomsCard = page.locator(".v-card").filter({ has: page.getByText("Join a room") });
      await roomsCard.getByRole("row").filter({ hasText: general }).waitFor();
      await page.getByLabel("Join a room").fill(`${prefix}lobby`);
      await roomsCard.locator("form").getByRole("button").click();
      await eventually(() => inRoom(alice, "lobby"), "alice in lobby");
      await roomsCard.getByRole("row").filter({ hasText: `${prefix}lobby` }).waitFor();
      await screenshot(page, "admin-ui-socket.png");
      // The row's button "Leave this room": ("leave", "/chat", room, socketId).
      await roomsCard.getByRole("row").filter({ hasText: general }).getByRole("button").click();
      await eventually(async () => !(await inRoom(alice, "general")), "alice out of general");
      // The same quirk as below: the click reaches the row too, which opens the room's page;
      // room_left took its last socket, so the room shows as deleted.
      await page.getByText("Room details", { exact: true }).waitFor();
      await page.locator("main .v-chip").filter({ hasText: /^\s*deleted\s*$/i }).waitFor();
      await screenshot(page, "admin-ui-room-left.png");

      // Back to Sockets: the row's only button is "Disconnect this Socket instance" (its icon,
      // mdi-logout, is a CDN font the page cannot load here, so the button is blank):
      // ("_disconnect", "/chat", false, socketId).
      await goTo(page, "Sockets");
      const aliceDown = once(alice, "disconnect");
      await row.getByRole("button").click();
      assert.equal((await aliceDown)[0], "io server disconnect");
      // A quirk of the UI: an action button in a table row does not stop its click, which also
      // reaches the row, whose handler opens the details page of the socket (or room) of the
      // row. socket_disconnected marks the socket disconnected there.
      await page.getByText("Socket details", { exact: true }).waitFor();
      await page.locator("main .v-chip").filter({ hasText: /^\s*disconnected\s*$/i }).first().waitFor();
      await screenshot(page, "admin-ui-disconnected.png");
      // ...and removes the row from the Sockets page.
      await goTo(page, "Sockets");
      await page.getByRole("row").filter({ hasText: aliceId }).waitFor({ state: "detached" });
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});

describe("a read-only admin namespace", () => {
  const { server, test } = useServer({ ADMIN_UI_AUTH: `${USERNAME}:${HASH}`, ADMIN_UI_READ_ONLY: "true" });

  test("config offers no action, and the actions are ignored", async () => {
    const alice = await chatClient(server, "alice");
    const carol = await chatClient(server, "carol");
    await ask(alice, "join", "general");
    const dropped = [];
    alice.on("disconnect", () => dropped.push("alice"));
    carol.on("disconnect", () => dropped.push("carol"));

    const { socket, events } = await admin(server);
    // The UI hides its action buttons when the features are missing.
    const [config] = await events.wait("config");
    for (const feature of ACTION_FEATURES) {
      assert.ok(!config.supportedFeatures.includes(feature), `${feature} in ${JSON.stringify(config.supportedFeatures)}`);
    }
    assert.ok(config.supportedFeatures.includes("AGGREGATED_EVENTS"));
    assert.ok(config.supportedFeatures.includes("ALL_EVENTS"), "still development mode");
    // Still listed, and still told about.
    const [all] = await events.wait("all_sockets");
    const general = roomKey(all.find((s) => s.id === alice.id).rooms, "general", alice.id);
    const prefix = general.slice(0, -"general".length);
    await events.wait("server_stats");

    const from = events.mark();
    socket.emit("join", "/chat", `${prefix}lobby`, alice.id);
    socket.emit("join", "/chat", `${prefix}hall`);
    socket.emit("leave", "/chat", general, alice.id);
    socket.emit("leave", "/chat", general);
    socket.emit("emit", "/chat", alice.id, "notice", { text: "nope" });
    socket.emit("_disconnect", "/chat", false, alice.id);
    socket.emit("_disconnect", "/chat", true, carol.id);
    socket.emit("_disconnect", "/chat", false);
    // Nothing answers a refused action: give the server until the next server_stats (the
    // reference: 2 s), then a round trip from each client, to have done them.
    await events.wait("server_stats", () => true, { from, timeout: 6000 });
    assert.equal(await inRoom(alice, "general"), true);
    assert.equal(await inRoom(alice, "lobby"), false);
    assert.equal(await inRoom(carol, "hall"), false);
    assert.deepEqual(dropped, []);
    // No room_joined, room_left or socket_disconnected came for them.
    const moved = events.events
      .slice(from)
      .filter((e) => ["room_joined", "room_left", "socket_disconnected"].includes(e.event));
    assert.deepEqual(moved, []);
  });

  test("the official UI in Chromium (WebSocket only): the socket is listed with no action button", { timeout: 90_000 }, async () => {
    const alice = await chatClient(server, "alice");
    await ask(alice, "join", "general");
    const { context, page, errors } = await openUi();
    try {
      await connectForm(page, { serverUrl: server.url, username: USERNAME, password: PASSWORD, wsOnly: true });
      await waitConnected(page, server.url);
      await goTo(page, "Sockets");
      await selectNamespace(page, "/chat");
      const row = page.getByRole("row").filter({ hasText: alice.id });
      await row.waitFor();
      await row.getByText("WebSocket", { exact: true }).waitFor();
      assert.equal(await row.getByRole("button").count(), 0, "no disconnect button");
      await goTo(page, "Rooms");
      const roomRow = page.getByRole("row").filter({ hasText: "general" });
      await roomRow.waitFor();
      assert.equal(await roomRow.getByRole("button").count(), 0, "no clear or disconnect button");
      await screenshot(page, "admin-ui-read-only.png");
      assert.equal(alice.connected, true);
      assert.deepEqual(errors, []);
    } finally {
      await context.close();
    }
  });
});

describe("an admin namespace without authentication", () => {
  const { server, test } = useServer({ ADMIN_UI_AUTH: "off" });

  test("connects without credentials (and with any)", async () => {
    const alice = await chatClient(server, "alice");
    for (const auth of [undefined, { username: "anyone", password: "anything" }]) {
      const { socket, events } = await admin(server, auth);
      const [config] = await events.wait("config");
      assert.ok(config.supportedFeatures.includes("DISCONNECT"), "read-write by default");
      const [all] = await events.wait("all_sockets");
      assert.ok(all.some((s) => s.id === alice.id));
      socket.disconnect();
    }
  });
});

describe("without --admin-ui-auth", () => {
  const { server, test } = useServer({});

  test("there is no admin namespace", async () => {
    assert.equal(await refusal(server, "/admin", { username: USERNAME, password: PASSWORD }), "Invalid namespace");
  });
});

/**
 * The UI in a new browser context (its own localStorage: no saved connection). Requests to
 * anything but 127.0.0.1 are aborted: index.html links the Roboto font from fonts.googleapis.com
 * and the Material Design Icons CSS from cdn.jsdelivr.net (the page works without them; the
 * icon-only buttons are then blank). Records page errors (script errors), not console errors,
 * since those aborted loads log some.
 */
async function openUi() {
  const context = await (await getBrowser()).newContext({ viewport: { width: 1400, height: 900 } });
  await context.route(
    (url) => url.hostname !== "127.0.0.1",
    (route) => route.abort(),
  );
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  const response = await page.goto(`${ui.url}/`);
  assert.equal(response.status(), 200);
  return { context, page, errors };
}

/**
 * Fills and submits the connection dialog (ConnectionModal.vue): Server URL (the UI connects
 * to serverUrl + namespace, path /socket.io, transports polling then websocket, withCredentials
 * true, auth { username, password }); "Advanced options" shows "WebSocket only?", the admin
 * namespace (default /admin), the path and the parser.
 */
async function connectForm(page, { serverUrl, username, password, wsOnly = false }) {
  await page.getByText("Connection", { exact: true }).waitFor();
  await page.getByLabel("Server URL").fill(serverUrl);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  if (wsOnly) {
    // Vuetify's v-switch: a hidden checkbox with role "switch", toggled by clicking its label.
    await turnOn(page, "Advanced options");
    await turnOn(page, "WebSocket only?");
    assert.equal(await page.getByLabel("Admin namespace").inputValue(), "/admin");
    assert.equal(await page.getByLabel("Path").inputValue(), "/socket.io");
  }
  await page.getByRole("button", { name: "Connect", exact: true }).click();
}

/** A screenshot of the whole page once its transitions are over. */
async function screenshot(page, name) {
  await page.waitForFunction(() => document.getAnimations().every((a) => a.playState !== "running"));
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, name), fullPage: true });
}

/** Opens page `name` from the navigation drawer (shown at this width; Sockets and Rooms only in
 * development mode). Scoped to the drawer: a details page's breadcrumb links to its list too. */
async function goTo(page, name) {
  await page.locator("nav").getByRole("link", { name, exact: true }).click();
  // The current page is the breadcrumb's disabled item (during the slide transition the old
  // page is still there too).
  await page
    .locator("main .v-breadcrumbs__item--disabled")
    .filter({ hasText: new RegExp(`^\\s*${name}\\s*$`) })
    .first()
    .waitFor();
}

/** Turns on the v-switch labelled `label`. */
async function turnOn(page, label) {
  const input = page.getByRole("switch", { name: label, exact: true });
  await input.waitFor({ state: "attached" });
  if ((await input.getAttribute("aria-checked")) !== "true") {
    await page.locator("label", { hasText: label }).click();
  }
  await page.waitForFunction((el) => el.getAttribute("aria-checked") === "true", await input.elementHandle());
}

/** Waits until the dialog is gone and the app bar shows the server and "connected". */
async function waitConnected(page, serverUrl) {
  await page.getByLabel("Server URL").waitFor({ state: "hidden" });
  const header = page.locator("header");
  await header.getByText(serverUrl, { exact: true }).first().waitFor();
  // The chip says "connected" (shown upper-case by CSS); "disconnected" must not match.
  await header.locator(".v-chip").filter({ hasText: /^\s*connected\s*$/i }).first().waitFor();
}

/**
 * Picks `name` in the "Select namespace" dropdown (NamespaceSelector.vue, a Vuetify v-select).
 * The UI preselects "/" if it has sockets, else the first namespace of all_sockets, which is
 * "/admin" itself with the reference, so /chat has to be picked.
 */
async function selectNamespace(page, name) {
  const selection = page.locator(".v-select__selection").first();
  await selection.waitFor();
  if ((await selection.textContent()).trim() === name) return;
  await page.getByRole("button", { name: /Select namespace/ }).click();
  await page.getByRole("option", { name, exact: true }).click();
  await page.locator(".v-select__selection").filter({ hasText: new RegExp(`^\\s*${name}\\s*$`) }).first().waitFor();
}
