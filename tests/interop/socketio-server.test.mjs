// The official socket.io-client (4.8) against the `testbed` example, which exercises the
// whole server API (rooms, broadcasts, acks both ways, namespaces, middleware, disconnects).
// What each event does is defined by the top comment of crates/server/examples/testbed.rs.
//
// The binary is taken from TESTBED_BIN (resolved from this directory), else
// ../../target/release/examples/testbed. Each describe block that needs an exact view of the
// server (every socket of the namespace, or the full list of disconnect reasons) starts its
// own testbed, so that sockets of other tests cannot interfere.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { after, before, describe, test as nodeTest } from "node:test";
import { io, Manager } from "socket.io-client";
import { Testbed } from "./lib/testbed.mjs";
import { sleep, withTimeout } from "./lib/raw.mjs";

const require = createRequire(import.meta.url);
const msgpackParser = require("socket.io-msgpack-parser");

// the testbed's timeout for the acks it asks of clients
const ASK_TIMEOUT_MS = 500;

// ---------------------------------------------------------------------------------------
// the testbed process
// ---------------------------------------------------------------------------------------

/** Starts a testbed for the enclosing describe block; returns it and a `test` that adds its log to failures. */
function useTestbed(args = []) {
  const server = new Testbed(args);
  before(() => server.start(), { timeout: 20_000 });
  after(() => server.stop(), { timeout: 10_000 });
  const test = (name, fn, timeout = 10_000) =>
    nodeTest(name, { timeout }, async () => {
      try {
        await fn();
      } catch (err) {
        if (err && typeof err === "object") {
          try {
            err.message = `${err.message}\n${server.logTail()}`;
          } catch {}
        }
        throw err;
      } finally {
        closeAll();
      }
      server.assertAlive();
    });
  return { server, test };
}

// ---------------------------------------------------------------------------------------
// client helpers
// ---------------------------------------------------------------------------------------

/** Sockets opened by the current test, closed by closeAll(). */
let open = [];

function track(socketOrManager) {
  open.push(socketOrManager);
  return socketOrManager;
}

function closeAll() {
  for (const s of open.splice(0)) {
    try {
      if (s instanceof Manager) {
        if (s.engine) s.engine.close();
      } else {
        s.disconnect();
      }
    } catch {}
  }
}

function once(emitter, event, timeout = 3000) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    timeout,
    `the "${event}" event`,
  );
}

/** Waits for an `event` whose arguments satisfy `pred`; resolves with them. */
function waitEvent(emitter, event, pred = () => true, timeout = 3000) {
  let listener;
  const p = new Promise((resolve) => {
    listener = (...args) => {
      if (pred(args)) resolve(args);
    };
    emitter.on(event, listener);
  });
  return withTimeout(p, timeout, `the "${event}" event`).finally(() => emitter.off(event, listener));
}

async function waitUntil(cond, what, timeout = 3000) {
  const deadline = Date.now() + timeout;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Connects one socket with its own Manager; rejects on connect_error. */
async function connect(url, opts = {}) {
  const socket = track(io(url, { forceNew: true, reconnection: false, ...opts }));
  const err = new Promise((_, reject) =>
    socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`))),
  );
  err.catch(() => {});
  await Promise.race([once(socket, "connect"), err]);
  return socket;
}

function connectMany(url, n, opts) {
  return Promise.all(Array.from({ length: n }, () => connect(url, opts)));
}

/** emitWithAck with a client-side time limit (rejects instead of hanging). */
function ask(socket, event, ...args) {
  return socket.timeout(3000).emitWithAck(event, ...args);
}

/** Sorts strings the way Rust sorts `String`s: by their UTF-8 bytes. */
function byteSorted(list) {
  return [...list].sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

/** Replaces every binary value by a tagged hex string, so deepStrictEqual can compare bytes. */
function norm(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(new Uint8Array(v)).toString("hex") };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = norm(x);
    return out;
  }
  return v;
}

const isBinary = (v) => Buffer.isBuffer(v) || v instanceof ArrayBuffer;

/** Asserts that the binary leaves of nestedBinary() arrived as binary with the same bytes. */
function assertNestedBinary(got, sent) {
  assert.ok(isBinary(got.a), `"a" arrived as ${typeof got.a} ${JSON.stringify(got.a)}, not as binary`);
  assert.ok(isBinary(got.list[0]), `"list[0]" arrived as ${JSON.stringify(got.list[0])}, not as binary`);
  assert.ok(isBinary(got.list[1].deep), `"list[1].deep" arrived as ${JSON.stringify(got.list[1].deep)}, not as binary`);
  assert.deepStrictEqual(norm(got), norm(sent));
}

function nestedBinary() {
  return {
    a: Buffer.from([0, 1, 2, 253, 254, 255]),
    list: [randomBytes(4096), { deep: Buffer.from("deep ✓", "utf8"), n: 3 }],
    label: "nested",
  };
}

// a string of more than 100 KiB (102 400 ASCII characters, then multi-byte ones)
const LARGE = "0123456789abcdef".repeat(6400) + "é✓日🎉";

/** Values of many JSON types; each must come back unchanged. */
const VALUES = [
  "a string",
  42,
  -17,
  3.14159,
  -0.5,
  0,
  9007199254740991,
  null,
  true,
  false,
  { nested: { deeper: [1, "x", { c: null, d: [] }] }, empty: {}, f: 2.5 },
  [1, [2, [3, []]], "s", null],
  "héllo wörld ✓ 日本語 🎉 \"quoted\" \\ back\nslash\ttab",
  "",
  [],
  LARGE,
];

// notepack.io (under socket.io-msgpack-parser) round-trips all of VALUES (no 1.5e300-like
// floats, which it would turn into integers)
const MSGPACK_VALUES = VALUES;

let barrierSeq = 0;
const isBarrier = (args) =>
  args.length === 1 && args[0] !== null && typeof args[0] === "object" && typeof args[0].barrier === "string";

/**
 * Returns once every observer has received a `room-msg` sent by `sender` after everything
 * the sender did before: a message the server queued for an observer earlier has arrived by
 * then (the server keeps the order of the packets of one socket).
 */
async function barrier(sender, observers) {
  const token = `barrier-${++barrierSeq}`;
  await Promise.all(
    observers.map(async (o) => {
      const got = waitEvent(o, "room-msg", (args) => isBarrier(args) && args[0].barrier === token);
      assert.equal(await ask(sender, "ns-to-room", o.id, { barrier: token }), true);
      await got;
    }),
  );
}

/** Records the arguments of every `event` a socket receives (barrier messages left out). */
function record(socket, event) {
  const got = [];
  socket.on(event, (...args) => {
    if (!isBarrier(args)) got.push(args);
  });
  return got;
}

// ---------------------------------------------------------------------------------------
// the JSON testbed
// ---------------------------------------------------------------------------------------

describe("testbed (JSON parser) with socket.io-client", () => {
  const { server, test } = useTestbed();

  describe("namespaces and connect errors", () => {
    test("'/' and '/dyn-abc' through one Manager share one Engine.IO connection", async () => {
      const manager = track(new Manager(server.url, { reconnection: false, autoConnect: false, transports: ["websocket"] }));
      let opens = 0;
      manager.on("open", () => opens++);
      const root = track(manager.socket("/"));
      const dyn = track(manager.socket("/dyn-abc"));
      const dyn2 = track(manager.socket("/dyn-xyz"));
      const hello = once(dyn, "hello");
      const hello2 = once(dyn2, "hello");
      root.connect();
      dyn.connect();
      dyn2.connect();
      await Promise.all([once(root, "connect"), once(dyn, "connect"), once(dyn2, "connect")]);
      assert.deepStrictEqual(await hello, ["/dyn-abc"]);
      assert.deepStrictEqual(await hello2, ["/dyn-xyz"]);
      assert.equal(opens, 1);
      assert.equal(root.io, dyn.io);
      assert.equal(typeof root.io.engine.id, "string");
      assert.equal(root.io.engine.id, dyn.io.engine.id);
      assert.equal(root.io.engine.id, dyn2.io.engine.id);
      assert.equal(new Set([root.id, dyn.id, dyn2.id, root.io.engine.id]).size, 4, "namespace socket ids must differ from each other and from the Engine.IO id");
      assert.deepStrictEqual(await ask(root, "join", "ns-room"), byteSorted([root.id, "ns-room"]));
      assert.equal(dyn.connected && dyn2.connected, true);
      // closing the connection from '/' ends the dynamic namespaces too: they are on it
      const dynGone = once(dyn, "disconnect");
      const rootGone = once(root, "disconnect");
      root.emit("close-me");
      assert.equal((await rootGone)[0], "transport close");
      const [dynReason] = await dynGone;
      assert.equal(dynReason, "transport close");
    });

    test("unknown namespace '/nope' → connect_error 'Invalid namespace'; '/' on the same Manager stays connected", async () => {
      const manager = track(new Manager(server.url, { reconnection: false }));
      const root = track(manager.socket("/"));
      const nope = track(manager.socket("/nope"));
      const rootUp = once(root, "connect");
      const [err] = await once(nope, "connect_error");
      assert.ok(err instanceof Error);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(err.data, undefined);
      assert.equal(nope.connected, false);
      await rootUp;
      await sleep(50);
      assert.equal(root.connected, true);
      assert.deepStrictEqual(await ask(root, "rooms"), [root.id]);
      assert.equal(nope.io.engine.id, root.io.engine.id);
    });

    test("'/private': wrong or missing token → 'unauthorized' with data; right token → welcome", async () => {
      // wrong token, next to '/' on the same Manager: '/' is unaffected
      const manager = track(new Manager(server.url, { reconnection: false, transports: ["websocket"] }));
      const root = track(manager.socket("/"));
      const wrong = track(manager.socket("/private", { auth: { token: "wrong" } }));
      // no auth at all, on a connection of its own
      const missing = track(io(`${server.url}/private`, { forceNew: true, reconnection: false }));
      const [[errWrong], [errMissing]] = await Promise.all([once(wrong, "connect_error"), once(missing, "connect_error")]);
      for (const err of [errWrong, errMissing]) {
        assert.ok(err instanceof Error);
        assert.equal(err.message, "unauthorized");
        assert.deepStrictEqual(err.data, { code: 401, reason: "bad token" });
      }
      assert.equal(wrong.connected, false);
      assert.equal(missing.connected, false);
      if (!root.connected) await once(root, "connect");
      assert.deepStrictEqual(await ask(root, "rooms"), [root.id]);

      // the right token, next to '/' on one Manager
      const manager2 = track(new Manager(server.url, { reconnection: false, autoConnect: false }));
      const root2 = track(manager2.socket("/"));
      const right = track(manager2.socket("/private", { auth: { token: "secret" } }));
      const welcome = once(right, "welcome");
      const rightErr = new Promise((_, reject) => right.once("connect_error", (e) => reject(new Error(`connect_error ${e.message}`))));
      rightErr.catch(() => {});
      root2.connect();
      right.connect();
      await Promise.race([once(right, "connect"), rightErr]);
      assert.deepStrictEqual(await welcome, ["private"]);
      assert.equal(right.connected, true);
      if (!root2.connected) await once(root2, "connect");
      assert.equal(right.io.engine.id, root2.io.engine.id);
      assert.notEqual(right.id, root2.id);
    });
  });

  describe("argument types", () => {
    test("join/rooms/leave with room names of every kind of string, rooms ignores arguments", async () => {
      const s = await connect(server.url);
      const names = ["plain", "", "héllo wörld ✓ 日本語 🎉", "\"quoted\" \\ \n", "Zebra", "apple", "\u{1F600}", "\uFFFD", LARGE];
      const joined = [];
      for (const name of names) {
        joined.push(name);
        assert.deepStrictEqual(await ask(s, "join", name), byteSorted([s.id, ...joined]));
      }
      // joining a room twice changes nothing
      assert.deepStrictEqual(await ask(s, "join", "plain"), byteSorted([s.id, ...names]));
      assert.deepStrictEqual(await ask(s, "rooms", ...VALUES.slice(0, 12)), byteSorted([s.id, ...names]));
      assert.deepStrictEqual(await ask(s, "rooms"), byteSorted([s.id, ...names]));
      assert.deepStrictEqual(await ask(s, "leave", LARGE), byteSorted([s.id, ...names.slice(0, -1)]));
      assert.deepStrictEqual(await ask(s, "leave", ""), byteSorted([s.id, ...names.slice(0, -1).filter((n) => n !== "")]));
    });

    test("to-room / ns-to-room / except-room relay values of every JSON type unchanged", async () => {
      const [a, b] = await connectMany(server.url, 2);
      const room = "types-room";
      await ask(a, "join", room);
      await ask(b, "join", room);
      for (const value of VALUES) {
        const viaTo = waitEvent(b, "room-msg", (args) => !isBarrier(args));
        assert.equal(await ask(a, "to-room", room, value), true);
        assert.deepStrictEqual(await viaTo, [value]);
        const viaNs = waitEvent(a, "room-msg", (args) => !isBarrier(args));
        assert.equal(await ask(b, "ns-to-room", room, value), true);
        assert.deepStrictEqual(await viaNs, [value]);
      }
      const c = await connect(server.url);
      const viaExcept = waitEvent(c, "except-msg");
      assert.equal(await ask(a, "except-room", room, VALUES), true);
      assert.deepStrictEqual(await viaExcept, [VALUES]);
    });

    test("broadcast relays several arguments of every type, in order", async () => {
      const [a, b] = await connectMany(server.url, 2);
      const got = once(b, "broadcast");
      assert.equal(await ask(a, "broadcast", ...VALUES), true);
      assert.deepStrictEqual(await got, VALUES);
      const one = once(b, "broadcast");
      assert.equal(await ask(a, "broadcast", "only"), true);
      assert.deepStrictEqual(await one, ["only"]);
    });
  });

  describe("acks both ways", () => {
    test("emitWithAck('join') answers the sorted rooms including the socket's own id", async () => {
      const s = await connect(server.url);
      assert.deepStrictEqual(await ask(s, "join", "zz"), byteSorted([s.id, "zz"]));
      assert.deepStrictEqual(await ask(s, "join", "AA"), byteSorted([s.id, "zz", "AA"]));
      assert.deepStrictEqual(await ask(s, "join", "mm"), byteSorted([s.id, "zz", "AA", "mm"]));
      // plain emit with a callback, too
      const viaCb = await withTimeout(new Promise((resolve) => s.emit("rooms", (...r) => resolve(r))), 3000, "the rooms callback");
      assert.deepStrictEqual(viaCb, [byteSorted([s.id, "zz", "AA", "mm"])]);
      // 50 concurrent acks are matched to the right calls
      const many = await Promise.all(Array.from({ length: 50 }, (_, i) => ask(s, "join", `c${i}`)));
      for (let i = 0; i < 50; i++) assert.ok(many[i].includes(`c${i}`), `ack ${i} lacks room c${i}: ${JSON.stringify(many[i])}`);
      assert.equal(many.map((r) => r.length).sort((x, y) => x - y).at(-1), 4 + 50);
    });

    test("server-ask: the server's ack request is answered by the client's 'ask' callback", async () => {
      const s = await connect(server.url);
      const seen = [];
      s.on("ask", (data, cb) => {
        seen.push(data);
        cb({ answer: data, from: "client", n: -1.5 });
      });
      const data = { q: [1, "two", null, true], s: "✓🎉" };
      assert.deepStrictEqual(await ask(s, "server-ask", data), { answer: data, from: "client", n: -1.5 });
      assert.deepStrictEqual(seen, [data]);
      assert.deepStrictEqual(await ask(s, "server-ask", "plain"), { answer: "plain", from: "client", n: -1.5 });
    });

    test("server-ask with a binary question: the client's 'ask' gets the buffers", async () => {
      const s = await connect(server.url);
      const question = nestedBinary();
      const seen = [];
      s.on("ask", (d, cb) => {
        seen.push(d);
        cb("got it");
      });
      assert.equal(await ask(s, "server-ask", question), "got it");
      assert.equal(seen.length, 1);
      assertNestedBinary(seen[0], question);
    });

    test("server-ask with a binary answer: the client's buffers come back in the server's ack", async () => {
      const s = await connect(server.url);
      const answer = nestedBinary();
      s.on("ask", (d, cb) => cb(answer));
      assertNestedBinary(await ask(s, "server-ask", "plain question"), answer);
    });

    test("server-ask times out with {error:'timeout'} when the client does not answer", async () => {
      const s = await connect(server.url);
      let asked = 0;
      s.on("ask", () => asked++); // no callback call
      const t0 = Date.now();
      assert.deepStrictEqual(await ask(s, "server-ask", { x: 1 }), { error: "timeout" });
      const elapsed = Date.now() - t0;
      assert.equal(asked, 1);
      assert.ok(elapsed >= ASK_TIMEOUT_MS - 50, `the timeout answer came after ${elapsed} ms, before the ${ASK_TIMEOUT_MS} ms ask timeout`);
      assert.ok(elapsed < 2500, `the timeout answer came after ${elapsed} ms`);
      // an answer after the timeout is too late
      s.off("ask");
      s.on("ask", (d, cb) => setTimeout(() => cb("late"), ASK_TIMEOUT_MS + 200));
      assert.deepStrictEqual(await ask(s, "server-ask", 1), { error: "timeout" });
      // the socket still works and later asks are answered
      s.off("ask");
      s.on("ask", (d, cb) => cb(["on time", d]));
      assert.deepStrictEqual(await ask(s, "server-ask", 2), ["on time", 2]);
    });
  });

  describe("binary", () => {
    test("broadcast relays several binary arguments, nested and top-level, with identical bytes", async () => {
      const [a, b] = await connectMany(server.url, 2);
      const multi = [Buffer.from([9, 8, 7]), "between", { x: [Buffer.alloc(0), Buffer.from([0])], y: nestedBinary() }, randomBytes(70_000)];
      const got = once(b, "broadcast");
      assert.equal(await ask(a, "broadcast", ...multi), true);
      const args = await got;
      assert.ok(isBinary(args[0]) && isBinary(args[3]) && isBinary(args[2].x[1]), "binary arguments arrived as non-binary");
      assertNestedBinary(args[2].y, multi[2].y);
      assert.deepStrictEqual(norm(args), norm(multi));
    });

    test("to-room relays {a, list:[Buffer, {deep}]} with identical bytes, sender left out", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      const room = "bin-room-to";
      await ask(a, "join", room);
      await ask(b, "join", room);
      const [ra, rc] = [a, c].map((s) => record(s, "room-msg"));
      const sent = nestedBinary();
      const got = waitEvent(b, "room-msg", (args) => !isBarrier(args));
      assert.equal(await ask(a, "to-room", room, sent), true);
      const [value, ...rest] = await got;
      assert.deepStrictEqual(rest, []);
      assertNestedBinary(value, sent);
      await barrier(b, [a, c]);
      assert.deepStrictEqual(ra, [], "the sender got its own to-room message");
      assert.deepStrictEqual(rc, [], "a socket outside the room got a room message");
    });

    test("ns-to-room relays {a, list:[Buffer, {deep}]} with identical bytes to the whole room", async () => {
      const [a, b] = await connectMany(server.url, 2);
      const room = "bin-room-ns";
      await ask(a, "join", room);
      await ask(b, "join", room);
      const sent = nestedBinary();
      const gotA = waitEvent(a, "room-msg", (args) => !isBarrier(args));
      const gotB = waitEvent(b, "room-msg", (args) => !isBarrier(args));
      assert.equal(await ask(b, "ns-to-room", room, sent), true);
      assertNestedBinary((await gotA)[0], sent);
      assertNestedBinary((await gotB)[0], sent);
    });
  });

  describe("rooms and broadcasts", () => {
    test("to-room: the room without the sender", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(a, "join", "r-to");
      await ask(b, "join", "r-to");
      const [ra, rb, rc] = [a, b, c].map((s) => record(s, "room-msg"));
      assert.equal(await ask(a, "to-room", "r-to", { n: 1 }), true);
      await barrier(a, [a, b, c]);
      assert.deepStrictEqual(ra, []);
      assert.deepStrictEqual(rb, [[{ n: 1 }]]);
      assert.deepStrictEqual(rc, []);
      // a sender outside the room reaches all its members
      assert.equal(await ask(c, "to-room", "r-to", "from c"), true);
      await barrier(c, [a, b, c]);
      assert.deepStrictEqual(ra, [["from c"]]);
      assert.deepStrictEqual(rb, [[{ n: 1 }], ["from c"]]);
      assert.deepStrictEqual(rc, []);
    });

    test("ns-to-room: the whole room, sender included", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(a, "join", "r-ns");
      await ask(b, "join", "r-ns");
      const [ra, rb, rc] = [a, b, c].map((s) => record(s, "room-msg"));
      assert.equal(await ask(a, "ns-to-room", "r-ns", [2, "x"]), true);
      await barrier(a, [a, b, c]);
      assert.deepStrictEqual(ra, [[[2, "x"]]]);
      assert.deepStrictEqual(rb, [[[2, "x"]]]);
      assert.deepStrictEqual(rc, []);
    });

    test("except-room: every socket not in the room, sender included when outside it", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(b, "join", "r-ex");
      const [ra, rb, rc] = [a, b, c].map((s) => record(s, "except-msg"));
      assert.equal(await ask(a, "except-room", "r-ex", "not for b"), true);
      await barrier(a, [a, b, c]);
      assert.deepStrictEqual(ra, [["not for b"]]);
      assert.deepStrictEqual(rb, []);
      assert.deepStrictEqual(rc, [["not for b"]]);
      // a sender inside the room is left out
      assert.equal(await ask(b, "except-room", "r-ex", 5), true);
      await barrier(b, [a, b, c]);
      assert.deepStrictEqual(ra, [["not for b"], [5]]);
      assert.deepStrictEqual(rb, []);
      assert.deepStrictEqual(rc, [["not for b"], [5]]);
    });

    test("broadcast: every socket but the sender", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      const [ra, rb, rc] = [a, b, c].map((s) => record(s, "broadcast"));
      assert.equal(await ask(a, "broadcast", "hi all", 1), true);
      await barrier(a, [a, b, c]);
      assert.deepStrictEqual(ra, []);
      assert.deepStrictEqual(rb, [["hi all", 1]]);
      assert.deepStrictEqual(rc, [["hi all", 1]]);
    });

    test("volatile: delivered to an idle client and to the sender", async () => {
      const [a, b] = await connectMany(server.url, 2);
      const gotB = waitEvent(b, "volatile-msg", (args) => args[0] === 4242);
      const gotA = waitEvent(a, "volatile-msg", (args) => args[0] === 4242);
      assert.equal(await ask(a, "volatile", 4242), true);
      assert.deepStrictEqual(await gotB, [4242]);
      assert.deepStrictEqual(await gotA, [4242]);
    });

    test("fetch: exactly the ids of the sockets in a room", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(a, "join", "r-fetch");
      await ask(c, "join", "r-fetch");
      assert.deepStrictEqual(await ask(b, "fetch", "r-fetch"), byteSorted([a.id, c.id]));
      assert.deepStrictEqual(await ask(b, "fetch", b.id), [b.id]);
      assert.deepStrictEqual(await ask(b, "fetch", "r-fetch-empty"), []);
      await ask(a, "leave", "r-fetch");
      assert.deepStrictEqual(await ask(b, "fetch", "r-fetch"), [c.id]);
    });

    test("sockets-join moves the sockets of a room into another room", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(a, "join", "sj-src");
      await ask(b, "join", "sj-src");
      assert.equal(await ask(c, "sockets-join", "sj-src", "sj-dst"), true);
      assert.deepStrictEqual(await ask(a, "rooms"), byteSorted([a.id, "sj-src", "sj-dst"]));
      assert.deepStrictEqual(await ask(b, "rooms"), byteSorted([b.id, "sj-src", "sj-dst"]));
      assert.deepStrictEqual(await ask(c, "rooms"), [c.id]);
      assert.deepStrictEqual(await ask(c, "fetch", "sj-dst"), byteSorted([a.id, b.id]));
      // and messages to the new room reach them
      const rb = record(b, "room-msg");
      assert.equal(await ask(c, "to-room", "sj-dst", "moved"), true);
      await barrier(c, [b]);
      assert.deepStrictEqual(rb, [["moved"]]);
    });

    test("leave: the socket is out of the room and no longer gets its messages", async () => {
      const [a, b] = await connectMany(server.url, 2);
      assert.deepStrictEqual(await ask(a, "join", "l1"), byteSorted([a.id, "l1"]));
      assert.deepStrictEqual(await ask(a, "join", "l2"), byteSorted([a.id, "l1", "l2"]));
      assert.deepStrictEqual(await ask(a, "leave", "l1"), byteSorted([a.id, "l2"]));
      assert.deepStrictEqual(await ask(a, "leave", "never-joined"), byteSorted([a.id, "l2"]));
      assert.deepStrictEqual(await ask(a, "leave", "l2"), [a.id]);
      assert.deepStrictEqual(await ask(b, "fetch", "l1"), []);
      const ra = record(a, "room-msg");
      assert.equal(await ask(b, "to-room", "l2", "gone"), true);
      await barrier(b, [a]);
      assert.deepStrictEqual(ra, []);
    });

    test("disconnect-room disconnects the room's sockets from the namespace only", async () => {
      const [a, b, c] = await connectMany(server.url, 3);
      await ask(a, "join", "r-dc");
      await ask(b, "join", "r-dc");
      const goneA = once(a, "disconnect");
      const goneB = once(b, "disconnect");
      assert.equal(await ask(c, "disconnect-room", "r-dc"), true);
      assert.equal((await goneA)[0], "io server disconnect");
      assert.equal((await goneB)[0], "io server disconnect");
      assert.equal(c.connected, true);
      assert.deepStrictEqual(await ask(c, "fetch", "r-dc"), []);
      assert.deepStrictEqual(await ask(c, "rooms"), [c.id]);
    });
  });

  describe("transports", () => {
    const TRANSPORTS = [
      { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
      { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
      { name: "default (polling, then upgrade)", opts: {}, final: "websocket" },
    ];
    for (const tr of TRANSPORTS) {
      test(`${tr.name}: join ack and a binary ns-to-room relay`, async () => {
        const [a, b] = await connectMany(server.url, 2, tr.opts);
        for (const s of [a, b]) {
          if (s.io.engine.transport.name !== tr.final) {
            const [t] = await once(s.io.engine, "upgrade", 5000);
            assert.equal(t.name, tr.final);
          }
          assert.equal(s.io.engine.transport.name, tr.final);
        }
        const room = `tr-${tr.final}-${tr.name.length}`;
        assert.deepStrictEqual(await ask(a, "join", room), byteSorted([a.id, room]));
        assert.deepStrictEqual(await ask(b, "join", room), byteSorted([b.id, room]));
        const sent = nestedBinary();
        const gotA = waitEvent(a, "room-msg", (args) => !isBarrier(args));
        const gotB = waitEvent(b, "room-msg", (args) => !isBarrier(args));
        assert.equal(await ask(a, "ns-to-room", room, sent), true);
        assertNestedBinary((await gotA)[0], sent);
        assertNestedBinary((await gotB)[0], sent);
        assert.deepStrictEqual(await ask(b, "fetch", room), byteSorted([a.id, b.id]));
        assert.equal(a.io.engine.transport.name, tr.final);
      });
    }
  });
});

// ---------------------------------------------------------------------------------------
// exact views of the server: a testbed of their own
// ---------------------------------------------------------------------------------------

describe("testbed: broadcast-with-ack collects the answers of every socket", () => {
  const { server, test } = useTestbed();

  test("three sockets answer; then one does not and its answer is {error:'timeout'}", async () => {
    const [a, b, c] = await connectMany(server.url, 3);
    const data = { n: 7, s: "ü✓", list: [1, null, true] };
    const seen = { a: [], b: [], c: [] };
    a.on("ask", (d, cb) => {
      seen.a.push(d);
      cb(`from-a:${d.n}`);
    });
    b.on("ask", (d, cb) => {
      seen.b.push(d);
      cb(["from-b", d]);
    });
    const cAnswer = (d, cb) => {
      seen.c.push(d);
      cb(-2.5);
    };
    c.on("ask", cAnswer);
    // sorted by their JSON text: "from-a:7" (0x22) < -2.5 (0x2D) < ["from-b",…] (0x5B)
    assert.deepStrictEqual(await ask(a, "broadcast-with-ack", data), ["from-a:7", -2.5, ["from-b", data]]);
    assert.deepStrictEqual(seen, { a: [data], b: [data], c: [data] });

    c.off("ask", cAnswer);
    c.on("ask", (d) => seen.c.push(d)); // receives, never answers
    const t0 = Date.now();
    const answers = await ask(b, "broadcast-with-ack", data);
    const elapsed = Date.now() - t0;
    // sorted by their JSON text: "from-a:7" (0x22) < ["from-b",…] (0x5B) < {"error":"timeout"} (0x7B)
    assert.deepStrictEqual(answers, ["from-a:7", ["from-b", data], { error: "timeout" }]);
    assert.deepStrictEqual(seen, { a: [data, data], b: [data, data], c: [data, data] });
    assert.ok(elapsed >= ASK_TIMEOUT_MS - 50, `answers came after ${elapsed} ms, before the ${ASK_TIMEOUT_MS} ms timeout`);
  });
});

describe("testbed: disconnect reasons on both sides", () => {
  const { server, test } = useTestbed();

  test("disconnect-me, close-me, client disconnect, engine close (ws and polling), killed WebSocket", async () => {
    const observer = await connect(server.url, { transports: ["websocket"] });
    const expected = [];
    const serverSaw = async (reason) => {
      expected.push(reason);
      await waitUntil(async () => (await ask(observer, "disconnects")).length >= expected.length, `${expected.length} server-side disconnects`);
      assert.deepStrictEqual(await ask(observer, "disconnects"), expected);
    };

    assert.deepStrictEqual(await ask(observer, "disconnects"), []);

    // the server disconnects the socket from the namespace
    const s1 = await connect(server.url);
    let gone = once(s1, "disconnect");
    s1.emit("disconnect-me");
    assert.equal((await gone)[0], "io server disconnect");
    await serverSaw("server namespace disconnect");

    // the server disconnects the socket and closes its connection
    const s2 = await connect(server.url, { transports: ["websocket"] });
    gone = once(s2, "disconnect");
    s2.emit("close-me");
    assert.equal((await gone)[0], "transport close");
    await serverSaw("forced server close");

    // the same over long-polling
    const s2p = await connect(server.url, { transports: ["polling"] });
    gone = once(s2p, "disconnect");
    s2p.emit("close-me");
    assert.equal((await gone)[0], "transport close");
    await serverSaw("forced server close");

    // the client leaves the namespace
    const s3 = await connect(server.url);
    gone = once(s3, "disconnect");
    s3.disconnect();
    assert.equal((await gone)[0], "io client disconnect");
    await serverSaw("client namespace disconnect");

    // the client closes its Engine.IO connection (WebSocket)
    const s4 = await connect(server.url, { transports: ["websocket"] });
    gone = once(s4, "disconnect");
    s4.io.engine.close();
    await gone;
    await serverSaw("transport close");

    // the client closes its Engine.IO connection (long-polling: a close packet)
    const s5 = await connect(server.url, { transports: ["polling"] });
    gone = once(s5, "disconnect");
    s5.io.engine.close();
    await gone;
    await serverSaw("transport close");

    // the WebSocket dies without a close frame
    const s6 = await connect(server.url, { transports: ["websocket"] });
    const ws = s6.io.engine.transport.ws;
    assert.ok(ws && typeof ws.terminate === "function", "expected the ws WebSocket under the transport");
    gone = once(s6, "disconnect");
    ws.terminate();
    assert.equal((await gone)[0], "transport close");
    await serverSaw("transport close");

    assert.equal(observer.connected, true);
  }, 20_000);
});

// ---------------------------------------------------------------------------------------
// the msgpack parser
// ---------------------------------------------------------------------------------------

describe("testbed --parser msgpack with socket.io-msgpack-parser", () => {
  const { server, test } = useTestbed(["--parser", "msgpack"]);

  for (const tr of [
    { name: "websocket", opts: { transports: ["websocket"] } },
    { name: "polling", opts: { transports: ["polling"] } },
  ]) {
    test(`${tr.name}: join ack, values of every type, server-ask, fetch`, async () => {
      const opts = { ...tr.opts, parser: msgpackParser };
      const [a, b] = await connectMany(server.url, 2, opts);
      assert.equal(a.io.engine.transport.name, tr.name);
      const room = `mp-${tr.name}`;
      assert.deepStrictEqual(await ask(a, "join", room), byteSorted([a.id, room]));
      assert.deepStrictEqual(await ask(b, "join", room), byteSorted([b.id, room]));

      const bc = once(b, "broadcast");
      assert.equal(await ask(a, "broadcast", ...MSGPACK_VALUES), true);
      assert.deepStrictEqual(await bc, MSGPACK_VALUES);
      const viaRoom = waitEvent(b, "room-msg");
      assert.equal(await ask(a, "to-room", room, MSGPACK_VALUES), true);
      assert.deepStrictEqual(await viaRoom, [MSGPACK_VALUES]);

      a.on("ask", (d, cb) => cb({ back: d }));
      assert.deepStrictEqual(await ask(a, "server-ask", { q: "mp", n: [1, 2.5] }), { back: { q: "mp", n: [1, 2.5] } });
      assert.deepStrictEqual(await ask(b, "server-ask", "nobody answers"), { error: "timeout" });
      assert.deepStrictEqual(await ask(b, "fetch", room), byteSorted([a.id, b.id]));
    });

    test(`${tr.name}: binary relays (broadcast, ns-to-room, to-room) keep the bytes`, async () => {
      const opts = { ...tr.opts, parser: msgpackParser };
      const [a, b] = await connectMany(server.url, 2, opts);
      const room = `mp-bin-${tr.name}`;
      await ask(a, "join", room);
      await ask(b, "join", room);

      const multi = [Buffer.from([1, 2, 3]), { y: nestedBinary() }, randomBytes(30_000)];
      const bc = once(b, "broadcast");
      assert.equal(await ask(a, "broadcast", ...multi), true);
      const bcArgs = await bc;
      assertNestedBinary(bcArgs[1].y, multi[1].y);
      assert.deepStrictEqual(norm(bcArgs), norm(multi));

      const sent = nestedBinary();
      const gotA = waitEvent(a, "room-msg");
      const gotB = waitEvent(b, "room-msg");
      assert.equal(await ask(a, "ns-to-room", room, sent), true);
      assertNestedBinary((await gotA)[0], sent);
      assertNestedBinary((await gotB)[0], sent);

      const sent2 = nestedBinary();
      const got2 = waitEvent(b, "room-msg");
      assert.equal(await ask(a, "to-room", room, sent2), true);
      assertNestedBinary((await got2)[0], sent2);
    });
  }

  test("'/private' connect error data and '/dyn-*' hello over msgpack", async () => {
    const manager = track(new Manager(server.url, { reconnection: false, parser: msgpackParser, transports: ["websocket"] }));
    const bad = track(manager.socket("/private", { auth: { token: "nope" } }));
    const dyn = track(manager.socket("/dyn-mp"));
    const hello = once(dyn, "hello");
    const [err] = await once(bad, "connect_error");
    assert.equal(err.message, "unauthorized");
    assert.deepStrictEqual(err.data, { code: 401, reason: "bad token" });
    assert.deepStrictEqual(await hello, ["/dyn-mp"]);
  });
});
