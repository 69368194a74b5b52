// Per-socket limits with the official socket.io-client (and a raw WebSocket for a reader that
// stops reading), against the `testbed` example started with limit options. Each limit is
// reached and answered as specified, while a well-behaved client connected at the same time
// sees no error.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { Testbed } from "./lib/testbed.mjs";
import { sleep, withTimeout } from "./lib/raw.mjs";

const opened = [];

function connect(url, options = {}) {
  const socket = io(url, { forceNew: true, reconnection: false, ...options });
  opened.push(socket);
  return socket;
}

function once(socket, event, ms = 5000) {
  return withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), ms, `waiting for ${event}`);
}

function useTestbed(args) {
  const server = new Testbed(args);
  before(() => server.start(), { timeout: 20_000 });
  after(() => {
    while (opened.length) opened.pop().close();
    return server.stop();
  }, { timeout: 10_000 });
  return server;
}

/** Asserts a client beside the limit still gets its answers. */
async function assertWellBehaved(client) {
  const rooms = await withTimeout(client.emitWithAck("rooms"), 2000, "well-behaved ack");
  assert.deepEqual(rooms, [client.id]);
  assert.equal(client.connected, true);
}

describe("event rate per socket", () => {
  // One token a second: a busy machine's round trips (tens of milliseconds) never refill the
  // bucket in the middle of the flood, which would make a second episode and a second warning.
  const server = useTestbed(["--event-rate", "1:10"]);

  test("excess events are dropped with an error ack and a warning, then a flooder is disconnected", { timeout: 10_000 }, async () => {
    const flooder = connect(server.url);
    const polite = connect(server.url);
    await Promise.all([once(flooder, "connect"), once(polite, "connect")]);
    const warnings = [];
    flooder.on("rate-limit", (warning) => warnings.push(warning));
    const disconnected = once(flooder, "disconnect");
    const answers = [];
    // The budget is the connection's and its CONNECT spent one token: 9 of the burst of 10 are
    // left for events.
    for (let i = 0; i < 9; i++) answers.push(flooder.emitWithAck("rooms"));
    for (const rooms of await Promise.all(answers)) assert.deepEqual(rooms, [flooder.id]);
    // The next one, sent at once, is dropped and answered with an error.
    assert.deepEqual(await flooder.emitWithAck("rooms"), { error: "rate limited" });
    assert.deepEqual(warnings, [{ message: "event rate exceeded", limit: 1 }]);
    // Keeping on flooding for a full burst more ends in a disconnect.
    for (let i = 0; i < 40; i++) flooder.emit("rooms");
    const [reason] = await disconnected;
    assert.equal(reason, "io server disconnect");
    assert.equal(warnings.length, 1, "the warning is sent once");
    await assertWellBehaved(polite);
  });
});

describe("rooms per socket and pending acks", () => {
  const server = useTestbed(["--max-rooms", "3", "--max-pending-acks", "5"]);

  test("a join past max rooms is refused with an error ack; the socket keeps its rooms", { timeout: 10_000 }, async () => {
    const client = connect(server.url);
    const polite = connect(server.url);
    await Promise.all([once(client, "connect"), once(polite, "connect")]);
    for (const room of ["r1", "r2", "r3"]) await client.emitWithAck("join", room);
    assert.deepEqual(await client.emitWithAck("join", "r4"), { error: "too many rooms (at most 3)" });
    // Joining a room it is already in adds nothing and is fine.
    assert.deepEqual(await client.emitWithAck("join", "r1"), [client.id, "r1", "r2", "r3"].sort());
    assert.deepEqual(await client.emitWithAck("rooms"), [client.id, "r1", "r2", "r3"].sort());
    await assertWellBehaved(polite);
  });

  test("asks past max pending acks are refused", { timeout: 10_000 }, async () => {
    const client = connect(server.url);
    const polite = connect(server.url);
    await Promise.all([once(client, "connect"), once(polite, "connect")]);
    // The client never answers `ask`: 5 stay pending until they time out, 3 are refused.
    assert.deepEqual(await client.emitWithAck("ask-many", 8), { refused: 3 });
    // Once they timed out, asking works again.
    client.on("ask", (n, answer) => answer(n));
    assert.deepEqual(await client.emitWithAck("ask-many", 5), { refused: 0 });
    await assertWellBehaved(polite);
  });
});

describe("slow consumer", () => {
  const server = useTestbed(["--max-buffer", "262144"]);

  test("a reader that stops reading is disconnected; server memory stays within the bound", { timeout: 15_000 }, async () => {
    const polite = connect(server.url);
    await once(polite, "connect");
    // A raw Socket.IO client over WebSocket that joins and then stops reading its socket.
    const port = new URL(server.url).port;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`);
    const frames = [];
    ws.on("message", (data) => frames.push(data.toString()));
    await withTimeout(new Promise((resolve) => ws.once("open", resolve)), 3000, "ws open");
    const deadline = Date.now() + 3000;
    while (!frames.some((f) => f.startsWith("0{"))) {
      assert.ok(Date.now() < deadline, "no open packet");
      await sleep(10);
    }
    ws.send("40");
    while (!frames.some((f) => f.startsWith("40{"))) {
      assert.ok(Date.now() < deadline, "no CONNECT reply");
      await sleep(10);
    }
    const slowSid = JSON.parse(frames.find((f) => f.startsWith("40{")).slice(2)).sid;
    ws._socket.pause();

    const before = await polite.emitWithAck("rss");
    // 3,000 messages of 10 kB: 30 MB if the server buffered them all.
    const queued = await polite.emitWithAck("flood-to", slowSid, 3000, 10_000);
    assert.ok(queued < 3000, `the server queued all ${queued} messages for a reader that stopped`);
    await sleep(500);
    const afterFlood = await polite.emitWithAck("rss");
    const growthKiB = afterFlood - before;
    assert.ok(growthKiB < 10 * 1024, `server memory grew by ${growthKiB} KiB`);
    const reasons = await polite.emitWithAck("disconnects");
    assert.equal(reasons.at(-1), "forced close");
    await assertWellBehaved(polite);
    ws.terminate();
  });
});
