// Connection state recovery with the official socket.io-client (4.8) against the `testbed`
// example started with `--recovery-ms`: a client whose transport dies while the server keeps
// emitting to its room comes back with the same id and rooms and gets every message exactly
// once, in order; a session that expired, or whose gap is no longer held, is not recovered
// (and the middlewares run again); a client that reconnects while the server still holds its
// old, half-open connection takes the session over.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";
import { Testbed } from "./lib/testbed.mjs";
import { sleep, withTimeout } from "./lib/raw.mjs";

const opened = [];

function connect(url, options = {}) {
  const socket = io(url, {
    forceNew: true,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
    ...options,
  });
  opened.push(socket);
  return socket;
}

function once(socket, event, ms = 5000) {
  return withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), ms, `waiting for ${event}`);
}

function closeAll() {
  while (opened.length) opened.pop().close();
}

/** Collects `tick` values; resolves `done` once `count` distinct ticks arrived. */
function collectTicks(socket, count) {
  const ticks = [];
  let resolve;
  const done = new Promise((r) => (resolve = r));
  socket.on("tick", (n) => {
    ticks.push(n);
    if (new Set(ticks).size === count) resolve();
  });
  return { ticks, done };
}

function useTestbed(args) {
  const server = new Testbed(args);
  before(() => server.start(), { timeout: 20_000 });
  after(() => server.stop(), { timeout: 10_000 });
  return server;
}

for (const transports of [["websocket"], ["polling"]]) {
  describe(`recovery over ${transports[0]}`, () => {
    const server = useTestbed(["--recovery-ms", "5000"]);
    after(closeAll);

    test("a killed transport is recovered: same id and rooms, every message once and in order", { timeout: 20_000 }, async () => {
      const client = connect(server.url, { transports });
      const publisher = connect(server.url, { transports });
      await Promise.all([once(client, "connect"), once(publisher, "connect")]);
      assert.equal(client.recovered, false);
      const firstId = client.id;
      await client.emitWithAck("join", "live");
      const count = 200;
      const { ticks, done } = collectTicks(client, count);
      assert.equal(await publisher.emitWithAck("ticker", "live", count, 2), true);
      // Kill the transport twice while ticks flow.
      for (const wait of [60, 120]) {
        await sleep(wait);
        client.io.engine.close();
        await once(client, "connect");
        assert.equal(client.recovered, true);
        assert.equal(client.id, firstId);
      }
      await withTimeout(done, 10_000, "all ticks");
      await sleep(50);
      assert.deepEqual(ticks, Array.from({ length: count }, (_, i) => i));
      assert.equal(await client.emitWithAck("recovered"), true);
      assert.deepEqual(await client.emitWithAck("rooms"), [firstId, "live"].sort());
    });
  });
}

describe("no recovery past the bounds", () => {
  const server = useTestbed(["--recovery-ms", "300", "--recovery-max-packets", "20"]);
  after(closeAll);

  test("away longer than max_disconnection_duration: not recovered, middlewares run again", { timeout: 10_000 }, async () => {
    const client = connect(`${server.url}/private`, {
      auth: { token: "secret" },
      reconnectionDelay: 700,
      reconnectionDelayMax: 700,
      randomizationFactor: 0,
    });
    await once(client, "connect");
    const firstId = client.id;
    client.io.engine.close();
    // While away (longer than 300 ms), the token is revoked: only a run of the middleware sees it.
    client.auth = { token: "revoked" };
    const [error] = await once(client, "connect_error", 5000);
    assert.equal(error.message, "unauthorized");
    assert.deepEqual(error.data, { code: 401, reason: "bad token" });
    client.auth = { token: "secret" };
    client.connect();
    await once(client, "connect");
    assert.equal(client.recovered, false);
    assert.notEqual(client.id, firstId);
  });

  test("recovered within the duration skips the middlewares", { timeout: 10_000 }, async () => {
    const client = connect(`${server.url}/private`, { auth: { token: "secret" } });
    await once(client, "connect");
    const firstId = client.id;
    client.auth = { token: "revoked" };
    client.io.engine.close();
    await once(client, "connect");
    assert.equal(client.recovered, true);
    assert.equal(client.id, firstId);
  });

  test("a gap larger than the retention bound: not recovered, never a partial replay", { timeout: 10_000 }, async () => {
    const client = connect(server.url, { reconnectionDelay: 400, reconnectionDelayMax: 400, randomizationFactor: 0 });
    const publisher = connect(server.url);
    await Promise.all([once(client, "connect"), once(publisher, "connect")]);
    await client.emitWithAck("join", "gap");
    const ticks = [];
    client.on("tick", (n) => ticks.push(n));
    client.io.engine.close();
    // 50 packets while away, with only 20 kept: the first ones are gone.
    assert.equal(await publisher.emitWithAck("ticker", "gap", 50, 1), true);
    await once(client, "connect");
    assert.equal(client.recovered, false);
    await sleep(100);
    assert.deepEqual(ticks, []);
    assert.deepEqual(await client.emitWithAck("rooms"), [client.id]);
  });
});

describe("half-open connection", () => {
  const server = useTestbed(["--recovery-ms", "5000"]);
  after(closeAll);

  test("a client reconnecting while its old connection is still attached takes the session over", { timeout: 10_000 }, async () => {
    const stale = connect(server.url, { transports: ["websocket"], reconnection: false });
    const publisher = connect(server.url);
    await Promise.all([once(stale, "connect"), once(publisher, "connect")]);
    await stale.emitWithAck("join", "half");
    stale.on("tick", () => {});
    assert.equal(await publisher.emitWithAck("ticker", "half", 1, 1), true);
    await sleep(50);
    // The network "dies": a new client presents the stale one's private id and offset while
    // the server still sees the old connection as alive.
    const fresh = connect(server.url, { transports: ["websocket"], autoConnect: false });
    fresh._pid = stale._pid;
    fresh._lastOffset = stale._lastOffset;
    const staleGone = once(stale, "disconnect");
    fresh.connect();
    await once(fresh, "connect");
    assert.equal(fresh.recovered, true);
    assert.equal(fresh.id, stale.id);
    const [reason] = await staleGone;
    assert.equal(reason, "transport close");
    const got = once(fresh, "tick");
    assert.equal(await publisher.emitWithAck("ticker", "half", 1, 1), true);
    const [n, offset] = await got;
    assert.equal(n, 0);
    // socket.io-client hands the offset to the handler as a last string argument, and keeps it.
    assert.equal(typeof offset, "string");
    assert.equal(fresh._lastOffset, offset);
    assert.deepEqual(await fresh.emitWithAck("rooms"), [fresh.id, "half"].sort());
  });
});
