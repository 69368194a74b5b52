// The switchyard binary's abuse limits, each reached and answered while a well-behaved client
// on the same server sees no error; and TLS (HTTPS and WSS) with a self-signed certificate
// made here with openssl.
//
// Loopback only: the well-behaved client connects from 127.0.0.2 and the flood comes from
// 127.0.0.1 (and 127.0.0.3), so per-address limits tell them apart.

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe } from "node:test";
import { io } from "socket.io-client";
import { SwitchyardServer, selfSignedCert, withTimeout, sleep, wrapTest, roomAndMembers } from "./lib/server.mjs";

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

const ask = (socket, event, data) => socket.timeout(3000).emitWithAck(event, data);

/** A /chat client (dev mode: named by auth.name) over WebSocket from `localAddress`. */
async function chatClient(server, name, localAddress = "127.0.0.1", extra = {}) {
  const socket = io(`${server.url}/chat`, {
    forceNew: true,
    reconnection: false,
    transports: ["websocket"],
    localAddress,
    auth: { name },
    ...extra,
  });
  open.push(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    }),
    3000,
    `${name} to connect`,
  );
  return socket;
}

/**
 * A client that must see no error: it records every event, connect_error and disconnect, and
 * `check()` asserts that it still round-trips a message and saw nothing but its own messages.
 */
async function wellBehaved(server) {
  const socket = await chatClient(server, "good", "127.0.0.2");
  // Closed by its owner, not after each test.
  open = open.filter((s) => s !== socket);
  const seen = [];
  // Presence (on by default on /chat) is not what these tests look at.
  socket.onAny((event, data) => event !== "presence" && seen.push([event, data?.text]));
  socket.on("disconnect", (reason) => seen.push(["disconnect", reason]));
  socket.on("connect_error", (err) => seen.push(["connect_error", err.message]));
  assert.deepEqual(roomAndMembers(await ask(socket, "join", "calm")), { room: "calm", members: 1 });
  let n = 0;
  return {
    socket,
    async check() {
      n += 1;
      const got = once(socket, "message");
      assert.deepEqual(await ask(socket, "message", { room: "calm", text: `still fine ${n}` }), { ok: true });
      await got;
      assert.equal(socket.connected, true);
      assert.deepEqual(
        seen,
        Array.from({ length: n }, (_, i) => ["message", `still fine ${i + 1}`]),
      );
    },
  };
}

/** An Engine.IO polling handshake from `localAddress`: `{ status, body }`. */
function handshake(server, { localAddress = "127.0.0.1", headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const request = http.get(
      `${server.url}/socket.io/?EIO=4&transport=polling`,
      { localAddress, headers, agent: false },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode, body }));
      },
    );
    request.on("error", reject);
    request.setTimeout(3000, () => request.destroy(new Error("handshake timed out")));
  });
}

const refusedWith = (status, message) => ({ status, body: JSON.stringify({ code: 4, message }) });

/**
 * A server for one describe block, started before its tests (`started` resolves to the
 * startup line), with a test wrapper showing the server's log on failure.
 */
function serverFor(env) {
  // Short pings, so the sessions the raw handshakes leave behind end soon after each test
  // (the shutdown waits for them).
  const server = new SwitchyardServer({ PING_INTERVAL_MS: "1000", PING_TIMEOUT_MS: "500", ...env });
  let line = "";
  before(async () => {
    line = await server.start();
  }, { timeout: 20_000 });
  after(() => server.stop(), { timeout: 15_000 });
  return { server, test: wrapTest(server), line: () => line };
}

describe("connections per address and in total", () => {
  const { server, test } = serverFor({ MAX_CONNECTIONS_PER_IP: "3", MAX_CONNECTIONS: "6", HANDSHAKE_RATE: "off" });

  test("the 4th connection from one address gets 429, the 7th in all 503", async () => {
    const good = await wellBehaved(server); // 1 from 127.0.0.2
    open.push(good.socket);
    for (let i = 0; i < 3; i++) assert.equal((await handshake(server)).status, 200);
    assert.deepEqual(await handshake(server), refusedWith(429, "Too many connections from this address"));
    // socket.io-client from that address is refused too.
    const refused = io(`${server.url}/chat`, { forceNew: true, reconnection: false, auth: { name: "x" } });
    open.push(refused);
    const [err] = await once(refused, "connect_error");
    assert.equal(err.message, "xhr poll error");
    await good.check();
    // Another address may still connect, up to the total of 6.
    for (let i = 0; i < 2; i++) assert.equal((await handshake(server, { localAddress: "127.0.0.3" })).status, 200);
    assert.deepEqual(await handshake(server, { localAddress: "127.0.0.3" }), refusedWith(503, "Too many connections"));
    await good.check();
  });
});

describe("handshake rate per address", () => {
  const { server, test } = serverFor({ HANDSHAKE_RATE: "1", HANDSHAKE_BURST: "3" });

  test("a burst of 3 passes, the 4th gets 429, and a second later one more passes", async () => {
    const good = await wellBehaved(server);
    open.push(good.socket);
    for (let i = 0; i < 3; i++) assert.equal((await handshake(server)).status, 200);
    assert.deepEqual(await handshake(server), refusedWith(429, "Too many handshakes from this address"));
    await good.check();
    await sleep(1100);
    assert.equal((await handshake(server)).status, 200);
  });
});

describe("per-socket limits, payload size and origins", () => {
  const { server, test } = serverFor({
    EVENT_RATE: "5",
    EVENT_BURST: "10",
    MAX_ROOMS_PER_SOCKET: "3",
    MAX_PAYLOAD: "1000",
    ALLOWED_ORIGINS: "https://app.test",
    HANDSHAKE_RATE: "off",
  });
  let good;
  before(async () => {
    good = await wellBehaved(server);
  });
  after(() => good?.socket.disconnect());

  test("a socket may be in 3 rooms, its personal room included; the 4th join is answered with an error", async () => {
    const many = await chatClient(server, "many");
    // Its personal room user:many is the first of the 3.
    for (const room of ["r1", "r2"]) {
      assert.deepEqual(roomAndMembers(await ask(many, "join", room)), { room, members: 1 });
    }
    assert.deepEqual(await ask(many, "join", "r3"), { error: "too many rooms (at most 3)" });
    assert.deepEqual(await ask(many, "leave", "r1"), { room: "r1", members: 0 });
    assert.deepEqual(roomAndMembers(await ask(many, "join", "r3")), { room: "r3", members: 1 });
    await good.check();
  });

  test("past 5 events/s (burst 10): rate-limited acks, one warning, then a disconnect", async () => {
    const flooder = await chatClient(server, "flooder");
    const warnings = [];
    flooder.on("rate-limit", (data) => warnings.push(data));
    const disconnected = once(flooder, "disconnect");
    const answers = [];
    for (let i = 0; i < 40; i++) flooder.emit("leave", "nowhere", (answer) => answers.push(answer));
    const [reason] = await disconnected;
    assert.equal(reason, "io server disconnect");
    // The budget is the connection's: its CONNECT to /chat spent one of the 10 tokens.
    assert.deepEqual(answers, [
      ...Array(9).fill({ error: "not in room nowhere" }),
      ...Array(10).fill({ error: "rate limited" }),
    ]);
    assert.deepEqual(warnings, [{ message: "event rate exceeded", limit: 5 }]);
    await good.check();
  });

  test("a message larger than MAX_PAYLOAD closes its sender's connection only", async () => {
    const big = await chatClient(server, "big");
    await ask(big, "join", "calm");
    const disconnected = once(big, "disconnect");
    big.emit("message", { room: "calm", text: "x".repeat(1200) });
    const [reason] = await disconnected;
    assert.equal(reason, "transport close");
    await good.check();
  });

  test("a handshake from an origin outside the allow-list gets 403", async () => {
    assert.deepEqual(
      await handshake(server, { headers: { Origin: "https://evil.test" } }),
      refusedWith(403, "Origin not allowed"),
    );
    assert.equal((await handshake(server, { headers: { Origin: "https://app.test" } })).status, 200);
    // Clients that send no Origin (not browsers) are not concerned.
    assert.equal((await handshake(server)).status, 200);
  });
});

describe("TLS", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchyard-tls-"));
  const { cert, key } = selfSignedCert(dir);
  const { server, test, line } = serverFor({ TLS_CERT: cert, TLS_KEY: key });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("HTTPS serves the page and socket.io-client connects over WSS and over polling", async () => {
    assert.equal(line(), `Switchyard listening on https://127.0.0.1:${server.port}`);
    const page = await new Promise((resolve, reject) => {
      https
        .get(`${server.url}/`, { rejectUnauthorized: false }, (response) => {
          let body = "";
          response.on("data", (chunk) => (body += chunk));
          response.on("end", () => resolve({ status: response.statusCode, start: body.slice(0, 15) }));
        })
        .on("error", reject);
    });
    assert.deepEqual(page, { status: 200, start: "<!doctype html>" });

    const wss = await chatClient(server, "wss-user", "127.0.0.1", { rejectUnauthorized: false });
    assert.equal(wss.io.engine.transport.name, "websocket");
    assert.deepEqual(roomAndMembers(await ask(wss, "join", "secure")), { room: "secure", members: 1 });
    const polling = await chatClient(server, "polling-user", "127.0.0.1", {
      rejectUnauthorized: false,
      transports: ["polling"],
    });
    assert.equal(polling.io.engine.transport.name, "polling");
    await ask(polling, "join", "secure");
    const got = once(wss, "message");
    assert.deepEqual(await ask(polling, "message", { room: "secure", text: "over TLS" }), { ok: true });
    assert.equal((await got)[0].sender, "polling-user");
  });

  test("a client that checks certificates refuses the self-signed one", async () => {
    const strict = io(`${server.url}/chat`, {
      forceNew: true,
      reconnection: false,
      transports: ["websocket"],
      auth: { name: "strict" },
    });
    open.push(strict);
    const [err] = await once(strict, "connect_error");
    assert.equal(err.message, "websocket error");
  });
});
