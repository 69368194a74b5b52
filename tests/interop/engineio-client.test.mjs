// The official engine.io-client (6.x) against `conformance engineio` (an echo server at
// /engine.io/, pingInterval 300, pingTimeout 200).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe } from "node:test";
import { Socket } from "engine.io-client";
import { useServer } from "./lib/server.mjs";
import { PING_INTERVAL, PING_TIMEOUT, sleep, withTimeout, req, assertEioError } from "./lib/raw.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const { server, test } = useServer("engineio");

/** An engine.io-client socket whose messages are queued. */
class Client {
  constructor(opts) {
    this.socket = new Socket(server.httpUrl, { path: "/engine.io/", ...opts });
    this.messages = [];
    this.waiters = [];
    this.closeReason = null;
    this.opened = withTimeout(
      new Promise((resolve, reject) => {
        this.socket.once("open", resolve);
        this.socket.once("error", (e) => reject(e instanceof Error ? e : new Error(String(e))));
      }),
      5000,
      "the engine.io-client socket to open",
    );
    this.opened.catch(() => {});
    this.closed = new Promise((resolve) => {
      this.socket.once("close", (reason, description) => {
        this.closeReason = reason;
        resolve({ reason, description });
        this.flush();
      });
    });
    this.socket.on("message", (data) => {
      this.messages.push(data);
      this.flush();
    });
  }

  flush() {
    while (this.waiters.length && (this.messages.length || this.closeReason)) {
      const w = this.waiters.shift();
      if (this.messages.length) w.resolve(this.messages.shift());
      else w.reject(new Error(`socket closed (${this.closeReason}) while waiting for a message`));
    }
  }

  next(timeout = 3000) {
    const p = new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.flush();
    });
    return withTimeout(p, timeout, "an engine.io message");
  }

  async take(n, timeout = 5000) {
    const deadline = Date.now() + timeout;
    const out = [];
    while (out.length < n) out.push(await this.next(Math.max(1, deadline - Date.now())));
    return out;
  }

  send(data) {
    this.socket.send(data);
  }

  close() {
    this.socket.close();
  }
}

function asBytes(data) {
  assert.notEqual(typeof data, "string", `expected binary data, got the string ${JSON.stringify(data)}`);
  if (Buffer.isBuffer(data)) return Buffer.from(data);
  if (data instanceof ArrayBuffer) return Buffer.from(new Uint8Array(data));
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  assert.fail(`unexpected binary type ${Object.prototype.toString.call(data)}`);
}

const UNICODE = "héllo wörld ✓ 日本語 🎉 \u0000 end";

async function roundTrips(c) {
  // text, unicode text (an empty message is covered by the raw protocol tests: this client
  // reports the empty packet "4" as undefined)
  c.send("hello");
  assert.equal(await c.next(), "hello");
  c.send(UNICODE);
  assert.equal(await c.next(), UNICODE);
  // small binary with every edge byte, then a large random one
  const small = Buffer.from([0, 1, 2, 0x1e, 0x7f, 0x80, 0xfe, 0xff]);
  c.send(small);
  assert.deepEqual(asBytes(await c.next()), small);
  const large = randomBytes(64 * 1024);
  c.send(large);
  assert.ok(asBytes(await c.next()).equals(large), "64 KiB binary message came back altered");
  // a Uint8Array view into a bigger buffer: only the view's bytes travel
  const backing = Buffer.from([9, 9, 1, 2, 3, 9]);
  c.send(new Uint8Array(backing.buffer, backing.byteOffset + 2, 3));
  assert.deepEqual([...asBytes(await c.next())], [1, 2, 3]);
}

async function burst(c, n) {
  for (let i = 0; i < n; i++) c.send(`m${i}`);
  const got = await c.take(n, 15_000);
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`));
}

describe("engine.io-client transports", () => {
  test("HTTP long-polling only: text and binary both ways", async () => {
    const c = new Client({ transports: ["polling"] });
    try {
      await c.opened;
      assert.equal(c.socket.transport.name, "polling");
      assert.equal(typeof c.socket.id, "string");
      await roundTrips(c);
    } finally {
      c.close();
    }
  });

  test("WebSocket only: text and binary both ways", async () => {
    const c = new Client({ transports: ["websocket"] });
    try {
      await c.opened;
      assert.equal(c.socket.transport.name, "websocket");
      await roundTrips(c);
    } finally {
      c.close();
    }
  });

  test("polling then upgrade to WebSocket, without losing messages sent during the upgrade", async () => {
    const c = new Client({ transports: ["polling", "websocket"] });
    try {
      const upgraded = withTimeout(
        new Promise((resolve) => c.socket.once("upgrade", (t) => resolve(t.name))),
        5000,
        "the upgrade event",
      );
      await c.opened;
      assert.equal(c.socket.transport.name, "polling");
      const sent = [];
      for (let i = 0; i < 20; i++) {
        const m = i % 2 ? Buffer.from([i, 0xff - i]) : `during-${i}`;
        sent.push(m);
        c.send(m);
      }
      const got = await c.take(20);
      got.forEach((m, i) => {
        if (typeof sent[i] === "string") assert.equal(m, sent[i]);
        else assert.deepEqual(asBytes(m), sent[i]);
      });
      assert.equal(await upgraded, "websocket");
      assert.equal(c.socket.transport.name, "websocket");
      await roundTrips(c);
    } finally {
      c.close();
    }
  });

  test("a client close() reaches the server: the sid is gone afterwards", async () => {
    const c = new Client({ transports: ["polling"] });
    await c.opened;
    const sid = c.socket.id;
    c.close();
    const { reason } = await withTimeout(c.closed, 2000, "close");
    assert.equal(reason, "forced close");
    await sleep(100);
    const res = await req(`${server.httpUrl}/engine.io/?EIO=4&transport=polling&sid=${sid}`);
    assertEioError(res, 400, 1, "Session ID unknown");
  });
});

describe("ordering", () => {
  test("a burst of 1000 messages over WebSocket keeps its order", async () => {
    const c = new Client({ transports: ["websocket"] });
    try {
      await c.opened;
      await burst(c, 1000);
    } finally {
      c.close();
    }
  });

  test("a burst of 1000 messages over polling keeps its order", async () => {
    const c = new Client({ transports: ["polling"] });
    try {
      await c.opened;
      await burst(c, 1000);
    } finally {
      c.close();
    }
  });
});

describe("heartbeat", () => {
  const MARGIN = 700;

  for (const transport of ["websocket", "polling"]) {
    test(`${transport}: the client closes with "ping timeout" when the server stops`, async () => {
      const c = new Client({ transports: [transport] });
      let stopped = false;
      try {
        await c.opened;
        // wait for one heartbeat so the connection is known to be live
        await withTimeout(new Promise((r) => c.socket.once("ping", r)), 2000, "a ping");
        server.signal("SIGSTOP");
        stopped = true;
        const t0 = Date.now();
        const { reason } = await withTimeout(c.closed, PING_INTERVAL + PING_TIMEOUT + MARGIN + 1000, "the client to give up");
        const elapsed = Date.now() - t0;
        assert.equal(reason, "ping timeout");
        assert.ok(
          elapsed <= PING_INTERVAL + PING_TIMEOUT + MARGIN,
          `ping timeout came ${elapsed} ms after the server stopped`,
        );
      } finally {
        if (stopped) server.signal("SIGCONT");
        c.close();
      }
      // the server works again after SIGCONT
      const again = new Client({ transports: [transport] });
      try {
        await again.opened;
        again.send("back");
        assert.equal(await again.next(), "back");
      } finally {
        again.close();
      }
    });
  }

  for (const transport of ["websocket", "polling"]) {
    test(`${transport}: the server drops the session of a client that stopped answering pings`, async () => {
      const child = spawn(process.execPath, [path.join(HERE, "lib/eio-child.mjs"), server.httpUrl, transport], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      let err = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (err += d));
      const exited = new Promise((r) => child.once("exit", r));
      let stopped = false;
      try {
        const sid = await withTimeout(
          (async () => {
            for (;;) {
              const m = /^OPEN (\S+) (\S+)$/m.exec(out);
              if (m) {
                assert.equal(m[2], transport);
                return m[1];
              }
              if (child.exitCode !== null) throw new Error(`child ended early: ${out} ${err}`);
              await sleep(20);
            }
          })(),
          5000,
          "the child's session to open",
        );
        // let it answer a few pings, to show the session is healthy while the child runs
        await sleep(PING_INTERVAL * 2 + 100);
        assert.doesNotMatch(out, /CLOSE/, `child session closed early: ${out}`);
        if (transport === "websocket") {
          // a polling request on a WebSocket session is a transport mismatch (code 3), which
          // shows the sid is still known to the server
          assertEioError(await req(`${server.httpUrl}/engine.io/?EIO=4&transport=polling&sid=${sid}`), 400, 3, "Bad request");
          await sleep(50);
          assert.doesNotMatch(out, /CLOSE/, `the mismatched request killed the child's session: ${out}`);
        }
        process.kill(child.pid, "SIGSTOP");
        stopped = true;
        await sleep(PING_INTERVAL + PING_TIMEOUT + 400);
        const res = await req(`${server.httpUrl}/engine.io/?EIO=4&transport=polling&sid=${sid}`);
        assertEioError(res, 400, 1, "Session ID unknown");
      } finally {
        if (child.exitCode === null && child.signalCode === null) {
          try {
            process.kill(child.pid, "SIGKILL");
          } catch {}
        }
        await withTimeout(exited, 3000, "the child to exit").catch(() => {});
      }
      assert.ok(stopped);
    });
  }
});
