// The switchyard binary driven by the official socket.io-client (Node): the /chat and
// /notifications namespaces, the static files, and the graceful shutdown.

import assert from "node:assert/strict";
import { after, afterEach, describe } from "node:test";
import { io, Manager } from "socket.io-client";
import { SwitchyardServer, useServer, withTimeout, sleep, wrapTest, roomAndMembers, notifyAck } from "./lib/server.mjs";
import { APP_CSP } from "./lib/app.mjs";

const { server, test } = useServer();

/** Every socket the tests open, closed after each test. */
let open = [];
afterEach(() => {
  for (const socket of open) socket.disconnect();
  open = [];
});

function once(emitter, event, timeout = 3000) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    timeout,
    `the "${event}" event`,
  );
}

/** A new connection (like a new tab) to namespace `nsp`, connected; throws on connect_error. */
async function connect(nsp, auth, opts = {}) {
  const socket = io(`${server.url}${nsp}`, { forceNew: true, reconnection: false, auth, ...opts });
  open.push(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    }),
    3000,
    `connecting to ${nsp}`,
  );
  return socket;
}

/** The connect_error message a connection attempt gets. */
async function refusal(nsp, auth) {
  const socket = io(`${server.url}${nsp}`, { forceNew: true, reconnection: false, auth });
  open.push(socket);
  const [err] = await Promise.race([
    once(socket, "connect_error"),
    once(socket, "connect").then(() => [new Error("unexpectedly connected")]),
  ]);
  return err.message;
}

const ask = (socket, event, data) => socket.timeout(3000).emitWithAck(event, data);

/**
 * Records every event a socket receives, in order, but `presence` (users arriving and leaving
 * rooms, on by default on /chat, which these tests do not look at).
 */
function record(socket) {
  const events = [];
  socket.onAny((event, ...args) => event !== "presence" && events.push([event, ...args]));
  return events;
}

async function waitFor(predicate, what, timeout = 3000) {
  const deadline = Date.now() + timeout;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(10);
  }
}

describe("static files", () => {
  test("the React app's page and its assets are served; its routes answer the page; other paths are 404", async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(page.headers.get("content-security-policy"), APP_CSP);
    const html = await page.text();
    assert.ok(html.startsWith("<!doctype html>"), html.slice(0, 40));
    // The build's fixed names (web/vite.config.ts), loaded from this server only: no inline
    // script or style (the CSP would refuse them).
    assert.ok(html.includes('src="/assets/app.js"'), html);
    assert.ok(html.includes('href="/assets/app.css"'), html);
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), "no inline script");
    assert.ok(!/<style|\sstyle=/.test(html), "no inline style");

    for (const [asset, type] of [
      ["/assets/app.js", "text/javascript; charset=utf-8"],
      ["/assets/app.css", "text/css; charset=utf-8"],
    ]) {
      const res = await fetch(`${server.url}${asset}`);
      assert.equal(res.status, 200, asset);
      assert.equal(res.headers.get("content-type"), type, asset);
      assert.ok((await res.arrayBuffer()).byteLength > 0, asset);
    }

    // The app's routes (History API) answer the same page, so a reload or a link works.
    for (const route of ["/index.html", "/chat", "/chat/general", "/notifications", "/docs", "/docs/notes", "/call"]) {
      const res = await fetch(`${server.url}${route}`);
      assert.equal(res.status, 200, route);
      assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8", route);
      assert.equal(await res.text(), html, route);
    }
    const head = await fetch(`${server.url}/chat/general`, { method: "HEAD" });
    assert.equal(head.status, 200);

    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    assert.ok(missing.headers.get("content-type")?.startsWith("application/json"), missing.headers.get("content-type"));
    assert.equal(typeof (await missing.json()).error, "string");
    const post = await fetch(`${server.url}/`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  });
});

describe("/chat", () => {
  test("the middleware refuses a missing or blank name", async () => {
    assert.equal(await refusal("/chat", undefined), "name required");
    assert.equal(await refusal("/chat", {}), "name required");
    assert.equal(await refusal("/chat", { name: "" }), "name required");
    assert.equal(await refusal("/chat", { name: "   " }), "name required");
    assert.equal(await refusal("/chat", { name: 42 }), "name required");
    assert.equal(await refusal("/chat", { name: "n".repeat(65) }), "invalid name: at most 64 characters");
  });

  test("join acks the room and its member count; joining twice changes nothing", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const bob = await connect("/chat", { name: "bob" });
    assert.deepEqual(roomAndMembers(await ask(alice, "join", "join-test")), { room: "join-test", members: 1 });
    assert.deepEqual(roomAndMembers(await ask(bob, "join", "join-test")), { room: "join-test", members: 2 });
    assert.deepEqual(roomAndMembers(await ask(alice, "join", "join-test")), { room: "join-test", members: 2 });
  });

  test("a message reaches the whole room, sender included, with the sender's name and the time", async () => {
    const alice = await connect("/chat", { name: " alice " }); // trimmed by the server
    const bob = await connect("/chat", { name: "bob" });
    const carol = await connect("/chat", { name: "carol" });
    await ask(alice, "join", "general");
    await ask(bob, "join", "general");
    await ask(carol, "join", "elsewhere");
    const carolGot = record(carol);

    const atAlice = once(alice, "message");
    const atBob = once(bob, "message");
    const before = Date.now();
    assert.deepEqual(await ask(alice, "message", { room: "general", text: "hello, room" }), { ok: true });
    const [[mine], [theirs]] = await Promise.all([atAlice, atBob]);
    const after = Date.now();
    assert.deepEqual(mine, theirs);
    const { time, id, ...rest } = mine;
    assert.deepEqual(rest, { room: "general", sender: "alice", text: "hello, room" });
    assert.equal(typeof id, "string", "every message has an id (a client merges history by it)");
    assert.equal(typeof time, "number");
    assert.ok(time >= before - 1000 && time <= after + 1000, `time ${time} within [${before}, ${after}]`);

    // carol is not in "general": the first message she gets is the later one in her room.
    await ask(carol, "message", { room: "elsewhere", text: "anyone?" });
    await waitFor(() => carolGot.length > 0, "carol's own message");
    assert.deepEqual(
      carolGot.map(([event, data]) => [event, data.room, data.text]),
      [["message", "elsewhere", "anyone?"]],
    );
  });

  test("a sender not in the room gets an error ack and nobody gets the message", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const bob = await connect("/chat", { name: "bob" });
    await ask(bob, "join", "lobby");
    const bobGot = record(bob);
    assert.deepEqual(await ask(alice, "message", { room: "lobby", text: "let me in" }), {
      error: "not in room lobby",
    });
    assert.deepEqual(await ask(alice, "typing", { room: "lobby" }), { error: "not in room lobby" });
    await ask(bob, "message", { room: "lobby", text: "marker" });
    await waitFor(() => bobGot.length > 0, "bob's marker");
    assert.deepEqual(
      bobGot.map(([event, data]) => [event, data.text]),
      [["message", "marker"]],
    );
  });

  test("bad input is answered with an error ack, and the socket keeps working", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const cases = [
      ["join", "", "room must be 1 to 64 characters"],
      ["join", "r".repeat(65), "room must be 1 to 64 characters"],
      ["join", 42, "room must be a string"],
      ["join", null, "room must be a string"],
      ["join", "a\u0000b", "room must not contain control characters"],
      ["leave", { room: "general" }, "room must be a string"],
      ["message", "hello", "expected an object { room, text }"],
      ["message", { text: "hello" }, "room must be a string"],
      ["message", { room: "general" }, "text must be a string"],
      ["message", { room: "general", text: "" }, "text must be 1 to 2000 characters"],
      ["message", { room: "general", text: "x".repeat(2001) }, "text must be 1 to 2000 characters"],
      ["message", { room: "general", text: " \n " }, "text must not be blank"],
      ["message", { room: "general", text: 5 }, "text must be a string"],
      ["typing", "general", "expected an object { room }"],
      ["typing", {}, "room must be a string"],
    ];
    for (const [event, data, error] of cases) {
      assert.deepEqual(await ask(alice, event, data), { error }, `${event} ${JSON.stringify(data)}`);
    }
    // No argument at all is refused too.
    assert.deepEqual(await alice.timeout(3000).emitWithAck("join"), { error: "room must be a string" });
    // The longest valid values pass.
    const room = "é".repeat(64);
    assert.deepEqual(roomAndMembers(await ask(alice, "join", room)), { room, members: 1 });
    const text = "x".repeat(2000);
    const got = once(alice, "message");
    assert.deepEqual(await ask(alice, "message", { room, text }), { ok: true });
    const [message] = await got;
    assert.equal(message.text, text);
  });

  test("typing goes to the rest of the room, not to the sender", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const bob = await connect("/chat", { name: "bob" });
    await ask(alice, "join", "typing-room");
    await ask(bob, "join", "typing-room");
    const aliceGot = record(alice);
    const atBob = once(bob, "typing");
    assert.deepEqual(await ask(alice, "typing", { room: "typing-room" }), { ok: true });
    assert.deepEqual(await atBob, [{ room: "typing-room", sender: "alice" }]);
    // Had alice been sent her own typing event, it would come before bob's later message.
    await ask(bob, "message", { room: "typing-room", text: "after typing" });
    await waitFor(() => aliceGot.length > 0, "bob's message at alice");
    assert.deepEqual(
      aliceGot.map(([event, data]) => [event, data.text]),
      [["message", "after typing"]],
    );
  });

  test("leave takes the socket out of the room", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const bob = await connect("/chat", { name: "bob" });
    await ask(alice, "join", "leave-room");
    await ask(bob, "join", "leave-room");
    await ask(bob, "join", "bob-only");
    assert.deepEqual(await ask(bob, "leave", "leave-room"), { room: "leave-room", members: 1 });
    assert.deepEqual(await ask(bob, "leave", "leave-room"), { error: "not in room leave-room" });
    assert.deepEqual(await ask(bob, "message", { room: "leave-room", text: "x" }), {
      error: "not in room leave-room",
    });
    const bobGot = record(bob);
    await ask(alice, "message", { room: "leave-room", text: "bob is gone" });
    await ask(bob, "message", { room: "bob-only", text: "marker" });
    await waitFor(() => bobGot.length > 0, "bob's marker");
    assert.deepEqual(
      bobGot.map(([event, data]) => [event, data.text]),
      [["message", "marker"]],
    );
  });

  test("a socket may be in at most 32 rooms, its personal room user:<name> included", async () => {
    const alice = await connect("/chat", { name: "alice" });
    for (let i = 0; i < 31; i++) {
      assert.deepEqual(roomAndMembers(await ask(alice, "join", `many-${i}`)), { room: `many-${i}`, members: 1 });
    }
    assert.deepEqual(await ask(alice, "join", "many-31"), { error: "too many rooms (at most 32)" });
    assert.deepEqual(roomAndMembers(await ask(alice, "join", "many-0")), { room: "many-0", members: 1 });
    await ask(alice, "leave", "many-0");
    assert.deepEqual(roomAndMembers(await ask(alice, "join", "many-31")), { room: "many-31", members: 1 });
  });

  test("a room named like a socket id is only a chat room", async () => {
    const alice = await connect("/chat", { name: "alice" });
    const mallory = await connect("/chat", { name: "mallory" });
    const aliceGot = record(alice);
    // Joining the room named by alice's socket id gives mallory a chat room of that name,
    // not a line to alice.
    assert.deepEqual(roomAndMembers(await ask(mallory, "join", alice.id)), { room: alice.id, members: 1 });
    assert.deepEqual(await ask(mallory, "message", { room: alice.id, text: "psst" }), { ok: true });
    await ask(alice, "join", "alice-only");
    await ask(alice, "message", { room: "alice-only", text: "marker" });
    await waitFor(() => aliceGot.length > 0, "alice's marker");
    assert.deepEqual(
      aliceGot.map(([event, data]) => [event, data.text]),
      [["message", "marker"]],
    );
  });
});

describe("/notifications", () => {
  test("the middleware refuses a missing or blank user", async () => {
    assert.equal(await refusal("/notifications", undefined), "user required");
    assert.equal(await refusal("/notifications", { name: "bob" }), "user required");
    assert.equal(await refusal("/notifications", { user: " " }), "user required");
  });

  test("every tab of a user gets the notification, and the ack counts them", async () => {
    const alice = await connect("/notifications", { user: "alice" });
    const bobTab1 = await connect("/notifications", { user: "bob" });
    const bobTab2 = await connect("/notifications", { user: "bob" });
    const aliceGot = record(alice);
    const at1 = once(bobTab1, "notification");
    const at2 = once(bobTab2, "notification");
    const before = Date.now();
    assert.deepEqual(notifyAck(await ask(alice, "notify", { to: "bob", text: "build passed" })), { delivered: 2 });
    const [[n1], [n2]] = await Promise.all([at1, at2]);
    const after = Date.now();
    assert.deepEqual(n1, n2);
    const { time, id, ...rest } = n1;
    assert.deepEqual(rest, { from: "alice", text: "build passed", kind: "direct" });
    assert.equal(typeof id, "string", "every notification has an id (the inbox is merged by it)");
    assert.ok(time >= before - 1000 && time <= after + 1000, `time ${time} within [${before}, ${after}]`);

    // A user may notify themselves (their other tabs): alice has one socket.
    assert.deepEqual(notifyAck(await ask(alice, "notify", { to: "alice", text: "note to self" })), { delivered: 1 });
    await waitFor(() => aliceGot.length > 0, "alice's note to self");
    assert.deepEqual(
      aliceGot.map(([event, data]) => [event, data.from, data.text]),
      [["notification", "alice", "note to self"]],
    );

    // A closed tab is no longer counted.
    bobTab2.disconnect();
    await waitFor(() => bobTab2.disconnected, "bob's second tab to close");
    let delivered;
    const deadline = Date.now() + 3000;
    do {
      ({ delivered } = await ask(alice, "notify", { to: "bob", text: "again" }));
      if (delivered !== 1) await sleep(20);
    } while (delivered !== 1 && Date.now() < deadline);
    assert.equal(delivered, 1);
  });

  test("a user with no open tab gets nothing, and bad input gets an error ack", async () => {
    const alice = await connect("/notifications", { user: "alice" });
    assert.deepEqual(notifyAck(await ask(alice, "notify", { to: "nobody-here", text: "hello?" })), { delivered: 0 });
    const cases = [
      [{ to: "", text: "x" }, "to must be a user id"],
      [{ text: "x" }, "to must be a user id"],
      [{ to: "u".repeat(65), text: "x" }, "to: at most 64 characters"],
      [{ to: "bob" }, "text must be a string"],
      [{ to: "bob", text: "" }, "text must be 1 to 2000 characters"],
      [{ to: "bob", text: "x".repeat(2001) }, "text must be 1 to 2000 characters"],
      ["bob", "expected an object { to, text }"],
    ];
    for (const [data, error] of cases) {
      assert.deepEqual(await ask(alice, "notify", data), { error }, JSON.stringify(data));
    }
  });

  test("both namespaces share one connection when the client uses one Manager", async () => {
    const manager = new Manager(server.url, { reconnection: false, autoConnect: false });
    const chat = manager.socket("/chat", { auth: { name: "dora" } });
    const notes = manager.socket("/notifications", { auth: { user: "dora" } });
    open.push(chat, notes);
    const connected = Promise.all([once(chat, "connect"), once(notes, "connect")]);
    chat.connect();
    notes.connect();
    await connected;
    assert.equal(manager.engine.readyState, "open");
    assert.notEqual(chat.id, notes.id);
    const note = once(notes, "notification");
    assert.deepEqual(notifyAck(await ask(notes, "notify", { to: "dora", text: "multiplexed" })), { delivered: 1 });
    assert.equal((await note)[0].text, "multiplexed");
    assert.deepEqual(roomAndMembers(await ask(chat, "join", "dora-room")), { room: "dora-room", members: 1 });
  });
});

describe("process", () => {
  const own = new SwitchyardServer({ PING_INTERVAL_MS: "300", PING_TIMEOUT_MS: "200" });
  const ownTest = wrapTest(own);
  after(() => own.stop());

  ownTest("prints its URL, uses the configured ping timings and closes gracefully on SIGTERM", async () => {
    const line = await own.start();
    assert.equal(line, `Switchyard listening on http://127.0.0.1:${own.port}`);

    const handshake = await fetch(`${own.url}/socket.io/?EIO=4&transport=polling`);
    const body = await handshake.text();
    const open = JSON.parse(body.slice(1));
    assert.deepEqual(
      { type: body[0], pingInterval: open.pingInterval, pingTimeout: open.pingTimeout, maxPayload: open.maxPayload },
      { type: "0", pingInterval: 300, pingTimeout: 200, maxPayload: 1000000 },
    );

    const socket = io(`${own.url}/chat`, { forceNew: true, reconnection: false, auth: { name: "zed" }, transports: ["websocket"] });
    await once(socket, "connect");
    const disconnected = once(socket, "disconnect", 5000);
    const started = Date.now();
    const exit = await own.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    const [reason] = await disconnected;
    assert.equal(reason, "transport close");
    assert.ok(Date.now() - started < 5000, "stopped within 5 s");
    assert.match(own.log, /SIGTERM received/);
    assert.match(own.log, /stopped/);
  });
});
