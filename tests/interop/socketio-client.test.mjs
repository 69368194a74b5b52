// The official socket.io-client (4.8) against `conformance socketio`, over each transport
// setting, and with the msgpack parser against `conformance socketio --parser msgpack`.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe } from "node:test";
import { io, Manager } from "socket.io-client";
import msgpackParser from "socket.io-msgpack-parser";
import { useServer } from "./lib/server.mjs";
import { withTimeout, sleep, req, assertEioError } from "./lib/raw.mjs";

const { server, test } = useServer("socketio");

const TRANSPORTS = [
  { name: "polling only", opts: { transports: ["polling"] }, final: "polling" },
  { name: "websocket only", opts: { transports: ["websocket"] }, final: "websocket" },
  { name: "polling upgraded to websocket", opts: { transports: ["polling", "websocket"] }, final: "websocket" },
];

/** Replaces every binary value by a tagged hex string, so deepStrictEqual can compare. */
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

function once(emitter, event, timeout = 3000) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    timeout,
    `the "${event}" event`,
  );
}

/** Connects a socket and waits for both "connect" and the server's "auth" event. */
async function connect(url, opts) {
  const socket = io(url, { forceNew: true, reconnection: false, ...opts });
  const authP = once(socket, "auth");
  const errP = new Promise((_, reject) => socket.once("connect_error", (e) => reject(new Error(`connect_error: ${e.message}`))));
  errP.catch(() => {});
  await Promise.race([once(socket, "connect"), errP]);
  const [auth] = await Promise.race([authP, errP]);
  return { socket, auth };
}

async function waitTransport(socket, final) {
  const engine = socket.io.engine;
  if (engine.transport.name !== final) {
    const [t] = await once(engine, "upgrade", 5000);
    assert.equal(t.name, final);
  }
  assert.equal(engine.transport.name, final);
}

/** Arguments of many JSON types; every one must come back unchanged. */
const PLAIN_ARGS = [
  "a string",
  42,
  -3.25,
  0,
  9007199254740991,
  1.5e300,
  null,
  true,
  false,
  { nested: { deeper: [1, "x", { c: null, d: [] }] }, empty: {} },
  [1, [2, [3, []]]],
  "héllo wörld ✓ 日本語 🎉 \"quoted\" \\ back\nslash",
  "",
  [],
];

// notepack.io (under socket.io-msgpack-parser) encodes 1.5e300 as a 64-bit integer and so
// loses it on the client side already: the msgpack tests use a small float instead
const MSGPACK_ARGS = PLAIN_ARGS.map((x) => (x === 1.5e300 ? 1.25e-7 : x));

function binaryArgs() {
  return [
    { file: Buffer.from([1, 2, 3]), meta: { name: "f.bin", parts: [Buffer.from([4]), "x", { deep: Buffer.from([0, 255]) }] } },
    randomBytes(20_000),
    "text between",
    [Buffer.from("abc"), { again: Buffer.from([0x1e, 0x00]) }],
  ];
}

async function checkMessageBack(socket, args) {
  const back = once(socket, "message-back");
  socket.emit("message", ...args);
  const got = await back;
  assert.deepStrictEqual(norm(got), norm(args));
}

function assertBinaryPositions(got) {
  // binary values must arrive as binary, not as objects or strings
  assert.ok(Buffer.isBuffer(got[0].file) || got[0].file instanceof ArrayBuffer, "nested binary arrived as non-binary");
  assert.ok(Buffer.isBuffer(got[1]) || got[1] instanceof ArrayBuffer, "top-level binary arrived as non-binary");
}

for (const tr of TRANSPORTS) {
  describe(`socket.io-client, ${tr.name}`, () => {
    test("connects, echoes the auth object, reaches the expected transport", async () => {
      const auth = { token: "abc", n: 1, nested: { list: [1, 2, { k: "v" }] } };
      const { socket, auth: got } = await connect(server.httpUrl, { ...tr.opts, auth });
      try {
        assert.deepStrictEqual(got, auth);
        assert.equal(typeof socket.id, "string");
        assert.ok(socket.id.length > 0);
        assert.notEqual(socket.id, socket.io.engine.id, "the socket id must not be the Engine.IO id");
        await waitTransport(socket, tr.final);
        assert.equal(socket.connected, true);
      } finally {
        socket.disconnect();
      }
    });

    test("without auth, the auth event carries {}", async () => {
      const { socket, auth } = await connect(server.httpUrl, tr.opts);
      try {
        assert.deepStrictEqual(auth, {});
      } finally {
        socket.disconnect();
      }
    });

    test("message-back returns arguments of every JSON type unchanged", async () => {
      const { socket } = await connect(server.httpUrl, tr.opts);
      try {
        await checkMessageBack(socket, PLAIN_ARGS);
        await waitTransport(socket, tr.final);
        await checkMessageBack(socket, PLAIN_ARGS);
        await checkMessageBack(socket, []);
      } finally {
        socket.disconnect();
      }
    });

    test("nested binary goes both ways with the exact bytes", async () => {
      const { socket } = await connect(server.httpUrl, tr.opts);
      try {
        const args = binaryArgs();
        const back = once(socket, "message-back");
        socket.emit("message", ...args);
        const got = await back;
        assertBinaryPositions(got);
        assert.deepStrictEqual(norm(got), norm(args));
        await waitTransport(socket, tr.final);
        await checkMessageBack(socket, binaryArgs());
      } finally {
        socket.disconnect();
      }
    });

    test("acks: emitWithAck, multi-argument callbacks, 100 concurrent acks, binary acks", async () => {
      const socket = io(server.httpUrl, { forceNew: true, reconnection: false, ...tr.opts });
      try {
        // an ack emitted the instant "connect" fires must still be answered
        const early = new Promise((resolve) =>
          socket.once("connect", () => socket.emit("message-with-ack", "early", 1, (...a) => resolve(a))),
        );
        assert.deepStrictEqual(await withTimeout(early, 3000, "the early ack"), ["early", 1]);
        assert.deepStrictEqual(await socket.emitWithAck("message-with-ack", { x: 1, y: [true, null] }), { x: 1, y: [true, null] });
        const multi = await new Promise((resolve) => socket.emit("message-with-ack", ...PLAIN_ARGS, (...a) => resolve(a)));
        assert.deepStrictEqual(multi, PLAIN_ARGS);
        const many = await withTimeout(
          Promise.all(Array.from({ length: 100 }, (_, i) => socket.emitWithAck("message-with-ack", `n${i}`, i))),
          5000,
          "100 acks",
        );
        assert.deepStrictEqual(many, Array.from({ length: 100 }, (_, i) => `n${i}`));
        const args = binaryArgs();
        const binAck = await new Promise((resolve) => socket.emit("message-with-ack", ...args, (...a) => resolve(a)));
        assertBinaryPositions(binAck);
        assert.deepStrictEqual(norm(binAck), norm(args));
        await waitTransport(socket, tr.final);
        assert.equal(await socket.timeout(2000).emitWithAck("message-with-ack", "after"), "after");
      } finally {
        socket.disconnect();
      }
    });
  });
}

describe("socket.io-client namespaces", () => {
  test("'/' and '/custom' share one Manager and one Engine.IO connection", async () => {
    const manager = new Manager(server.httpUrl, { reconnection: false, transports: ["websocket"] });
    const main = manager.socket("/", { auth: { who: "main" } });
    const custom = manager.socket("/custom", { auth: { who: "custom" } });
    try {
      const [[mainAuth], [customAuth]] = await Promise.all([once(main, "auth"), once(custom, "auth")]);
      assert.deepStrictEqual(mainAuth, { who: "main" });
      assert.deepStrictEqual(customAuth, { who: "custom" });
      assert.equal(main.io, custom.io);
      assert.equal(main.connected && custom.connected, true);
      assert.notEqual(main.id, custom.id);
      assert.notEqual(custom.id, manager.engine.id);
      const engineId = manager.engine.id;
      // leaving /custom keeps / working on the same Engine.IO connection
      custom.disconnect();
      await sleep(50);
      assert.deepStrictEqual(await main.timeout(2000).emitWithAck("message-with-ack", "still"), "still");
      assert.equal(manager.engine.id, engineId);
    } finally {
      main.disconnect();
      custom.disconnect();
    }
  });

  test("an unknown namespace gets connect_error 'Invalid namespace', other namespaces are unaffected", async () => {
    const manager = new Manager(server.httpUrl, { reconnection: false });
    const bad = manager.socket("/does-not-exist");
    const good = manager.socket("/");
    const goodAuth = once(good, "auth");
    try {
      const [err] = await once(bad, "connect_error");
      assert.ok(err instanceof Error);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(err.data, undefined);
      assert.equal(bad.connected, false);
      assert.deepStrictEqual(await goodAuth, [{}]);
      assert.equal(good.connected, true);
      assert.deepStrictEqual(await good.timeout(2000).emitWithAck("message-with-ack", 7), 7);
    } finally {
      bad.disconnect();
      good.disconnect();
    }
  });

  test("a single io() to an unknown namespace fails with connect_error", async () => {
    const socket = io(`${server.httpUrl}/nope`, { forceNew: true, reconnection: false, transports: ["websocket"] });
    try {
      const [err] = await once(socket, "connect_error");
      assert.equal(err.message, "Invalid namespace");
    } finally {
      socket.disconnect();
    }
  });

  test("after a client-side disconnect the server has dropped the Engine.IO session", async () => {
    const { socket } = await connect(server.httpUrl, { transports: ["websocket"] });
    const sid = socket.io.engine.id;
    // while the WebSocket session lives, a polling request with its sid is a transport
    // mismatch (code 3), which shows the server knows the sid
    assertEioError(await req(`${server.httpUrl}/socket.io/?EIO=4&transport=polling&sid=${sid}`), 400, 3, "Bad request");
    const disc = once(socket, "disconnect");
    socket.disconnect();
    const [reason] = await disc;
    assert.equal(reason, "io client disconnect");
    // the Manager then closes the Engine.IO connection; the server must forget the sid
    await sleep(150);
    assertEioError(await req(`${server.httpUrl}/socket.io/?EIO=4&transport=polling&sid=${sid}`), 400, 1, "Session ID unknown");
  });
});

describe("socket.io-client with the msgpack parser (conformance socketio --parser msgpack)", () => {
  const mp = useServer("socketio", ["--parser", "msgpack"]);

  for (const tr of [TRANSPORTS[1], TRANSPORTS[0]]) {
    mp.test(`${tr.name}: auth echo, message-back with every type, nested binary, acks`, async () => {
      const opts = { ...tr.opts, parser: msgpackParser };
      const { socket, auth } = await connect(mp.server.httpUrl, { ...opts, auth: { token: "mp", n: 7 } });
      try {
        assert.deepStrictEqual(auth, { token: "mp", n: 7 });
        await waitTransport(socket, tr.final);
        await checkMessageBack(socket, MSGPACK_ARGS);
        const args = binaryArgs();
        const back = once(socket, "message-back");
        socket.emit("message", ...args);
        const got = await back;
        assertBinaryPositions(got);
        assert.deepStrictEqual(norm(got), norm(args));
        assert.deepStrictEqual(await socket.emitWithAck("message-with-ack", { k: [1, 2.5, "z"] }), { k: [1, 2.5, "z"] });
        const many = await withTimeout(
          Promise.all(Array.from({ length: 50 }, (_, i) => socket.emitWithAck("message-with-ack", i))),
          5000,
          "50 acks",
        );
        assert.deepStrictEqual(many, Array.from({ length: 50 }, (_, i) => i));
      } finally {
        socket.disconnect();
      }
    });
  }

  mp.test("msgpack: '/custom' connects and an unknown namespace is refused", async () => {
    const manager = new Manager(mp.server.httpUrl, { reconnection: false, parser: msgpackParser, transports: ["websocket"] });
    const custom = manager.socket("/custom", { auth: { c: true } });
    const bad = manager.socket("/missing");
    try {
      const [[customAuth], [err]] = await Promise.all([once(custom, "auth"), once(bad, "connect_error")]);
      assert.deepStrictEqual(customAuth, { c: true });
      assert.equal(err.message, "Invalid namespace");
    } finally {
      custom.disconnect();
      bad.disconnect();
    }
  });
});
