// Raw HTTP long-polling and raw WebSocket helpers for the wire-level protocol tests.

import assert from "node:assert/strict";
import http from "node:http";
import WebSocket from "ws";

export const PING_INTERVAL = 300;
export const PING_TIMEOUT = 200;
export const MAX_PAYLOAD = 1_000_000;
export const SEP = "\x1e";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * fetch() with a time limit (the request is aborted when it runs out). Node's fetch never
 * pipelines, so concurrent requests travel on separate connections.
 */
export async function req(url, { method = "GET", body, headers = {}, timeout = 5000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  try {
    const res = await fetch(url, {
      method,
      body,
      headers,
      signal: controller.signal,
    });
    const buf = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers: res.headers, body: buf.toString("utf8"), raw: buf };
  } catch (err) {
    if (controller.signal.aborted) {
      throw new Error(`${method} ${url} got no complete response within ${timeout} ms`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts an Engine.IO HTTP error: exact status and exact JSON body. */
export function assertEioError(res, status, code, message) {
  assert.equal(res.status, status, `expected HTTP ${status}, got ${res.status} with body ${JSON.stringify(res.body)}`);
  let parsed;
  try {
    parsed = JSON.parse(res.body);
  } catch {
    assert.fail(`expected a JSON error body {"code":${code},...}, got ${JSON.stringify(res.body)}`);
  }
  assert.deepEqual(parsed, { code, message });
  const ct = res.headers.get("content-type") || "";
  assert.match(ct, /^application\/json/, `error content-type was ${JSON.stringify(ct)}`);
}

/**
 * Checks when a ping arrived. The server cannot have sent it before `earliestRef` +
 * pingInterval (earliestRef: a moment before the server's timer could start, e.g. when the
 * handshake request was sent), give or take `slack` for delivery jitter; and it must have come
 * within pingInterval + 500 ms of `latestRef` (when the timer had surely started).
 */
export function assertPingTime(label, arrivedAt, earliestRef, latestRef, slack = 50) {
  const early = arrivedAt - earliestRef;
  const late = arrivedAt - latestRef;
  assert.ok(early >= PING_INTERVAL - slack, `${label} came too early: ${early} ms after the reference`);
  assert.ok(late <= PING_INTERVAL + 500, `${label} came too late: ${late} ms after the reference`);
}

/** Checks the five keys and values of an open packet's JSON, returns it. */
export function assertOpenPacket(text, upgrades) {
  assert.equal(typeof text, "string", "open packet must be a text packet");
  assert.equal(text[0], "0", `expected an open packet, got ${JSON.stringify(text)}`);
  const value = JSON.parse(text.substring(1));
  assert.deepEqual(Object.keys(value).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
  assert.equal(typeof value.sid, "string");
  assert.ok(value.sid.length > 0, "sid must not be empty");
  assert.deepEqual(value.upgrades, upgrades);
  assert.equal(value.pingInterval, PING_INTERVAL);
  assert.equal(value.pingTimeout, PING_TIMEOUT);
  assert.equal(value.maxPayload, MAX_PAYLOAD);
  return value;
}

/**
 * Long-polling client state for one session.
 * base: e.g. http://127.0.0.1:1234/engine.io/
 */
export class Polling {
  constructor(base) {
    this.base = base;
    this.sid = null;
    this.open = null;
  }

  url(extra = "") {
    return `${this.base}?EIO=4&transport=polling${this.sid ? `&sid=${encodeURIComponent(this.sid)}` : ""}${extra}`;
  }

  async handshake() {
    this.handshakeSentAt = Date.now();
    const res = await req(this.url());
    assert.equal(res.status, 200, `handshake failed: ${res.status} ${res.body}`);
    this.open = assertOpenPacket(res.body, ["websocket"]);
    this.sid = this.open.sid;
    this.handshakeAt = Date.now();
    return this.open;
  }

  get(opts = {}) {
    return req(this.url(opts.extra || ""), { timeout: opts.timeout ?? 3000, headers: opts.headers });
  }

  post(body, opts = {}) {
    return req(this.url(opts.extra || ""), {
      method: "POST",
      body,
      timeout: opts.timeout ?? 3000,
      headers: { "content-type": "text/plain;charset=UTF-8", ...(opts.headers || {}) },
    });
  }

  /**
   * Polls until `count` packets other than pings have arrived, answering every ping with a
   * pong so that the session stays alive. Returns the non-ping packets in order.
   */
  async collect(count, { timeout = 3000 } = {}) {
    const deadline = Date.now() + timeout;
    const out = [];
    while (out.length < count) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`got only ${JSON.stringify(out)} of ${count} packets`);
      const res = await this.get({ timeout: left });
      assert.equal(res.status, 200, `poll failed: ${res.status} ${res.body}`);
      for (const p of res.body.split(SEP)) {
        if (p === "2") {
          const pong = await this.post("3");
          assert.equal(pong.status, 200);
        } else {
          out.push(p);
        }
      }
    }
    return out;
  }
}

/**
 * Sends raw bytes as an HTTP request without finishing the body, so that the request stays
 * open on the server. Returns { response: Promise<{status, body}>, finish(rest), destroy() }.
 */
export function openPartialPost(url, firstChunk, contentLength) {
  const u = new URL(url);
  const r = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname + u.search,
    method: "POST",
    agent: false,
    headers: { "content-type": "text/plain;charset=UTF-8", "content-length": String(contentLength) },
  });
  const response = new Promise((resolve, reject) => {
    r.on("response", (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    r.on("error", reject);
  });
  response.catch(() => {});
  r.write(firstChunk);
  return {
    response,
    finish: (rest) => r.end(rest),
    destroy: () => r.destroy(),
  };
}

/**
 * A WebSocket whose events are queued, so that nothing is missed between awaits.
 * Text frames come out as strings, binary frames as Buffers.
 * With autoPong, every "2" (ping) is answered with "3" and not queued.
 */
export class RawWs {
  constructor(url, { autoPong = false } = {}) {
    this.url = url;
    this.autoPong = autoPong;
    this.messages = [];
    this.waiters = [];
    this.pings = [];
    this.closed = false;
    this.closeInfo = null;
    this.rejectedStatus = null;
    this.ws = new WebSocket(url, { perMessageDeflate: false });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("unexpected-response", (_req, res) => {
        this.rejectedStatus = res.statusCode;
        res.resume();
        reject(new Error(`WebSocket upgrade rejected with HTTP ${res.statusCode}`));
      });
      this.ws.once("error", reject);
    });
    this.opened.catch(() => {});
    this.ws.on("error", () => {});
    this.closedPromise = new Promise((resolve) => {
      this.ws.once("close", (code, reason) => {
        this.closed = true;
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.flush();
      });
      // a rejected upgrade never emits "close" with a code on some paths: treat as closed
      this.ws.once("unexpected-response", () => {
        setImmediate(() => {
          if (!this.closed) {
            this.closed = true;
            this.closeInfo = { code: null, reason: "rejected" };
            resolve(this.closeInfo);
            this.flush();
          }
        });
      });
    });
    this.ws.on("message", (data, isBinary) => {
      const msg = isBinary ? Buffer.from(data) : data.toString("utf8");
      if (this.autoPong && msg === "2") {
        this.pings.push(Date.now());
        this.ws.send("3");
        return;
      }
      this.messages.push(msg);
      this.flush();
    });
  }

  flush() {
    while (this.waiters.length && (this.messages.length || this.closed)) {
      const w = this.waiters.shift();
      if (this.messages.length) w.resolve(this.messages.shift());
      else w.reject(new Error(`WebSocket closed (${JSON.stringify(this.closeInfo)}) while waiting for a message`));
    }
  }

  /** Next queued message (string or Buffer). */
  next(timeout = 3000) {
    const p = new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.flush();
    });
    return withTimeout(p, timeout, `a WebSocket message on ${this.url}`);
  }

  /** Next message that is not a ping ("2"). Pings met on the way are answered when autoPong. */
  async nextNonPing(timeout = 3000) {
    const deadline = Date.now() + timeout;
    for (;;) {
      const m = await this.next(Math.max(1, deadline - Date.now()));
      if (m === "2") {
        this.ws.send("3");
        continue;
      }
      return m;
    }
  }

  send(data) {
    this.ws.send(data);
  }

  waitClose(timeout = 3000) {
    return withTimeout(this.closedPromise, timeout, `the server to close ${this.url}`);
  }

  close() {
    try {
      if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
      else this.ws.close();
    } catch {}
  }

  terminate() {
    try {
      this.ws.terminate();
    } catch {}
  }
}

/** Opens a WebSocket-only Engine.IO session and checks its open packet. */
export async function wsHandshake(wsBase, opts = {}) {
  const createdAt = Date.now();
  const s = new RawWs(`${wsBase}?EIO=4&transport=websocket`, opts);
  s.handshakeSentAt = createdAt;
  await withTimeout(s.opened, 3000, "the WebSocket to open");
  const first = await s.next();
  s.open = assertOpenPacket(first, []);
  s.sid = s.open.sid;
  s.handshakeAt = Date.now();
  return s;
}

/** Expects a WebSocket connection attempt to be refused with a plain HTTP error status. */
export async function assertWsRejected(url, status = 400) {
  const s = new RawWs(url);
  let err = null;
  try {
    await withTimeout(s.opened, 3000, "the WebSocket attempt to settle");
  } catch (e) {
    err = e;
  }
  s.terminate();
  assert.ok(err, `WebSocket to ${url} was accepted, expected the upgrade to be refused with HTTP ${status}`);
  assert.equal(s.rejectedStatus, status, `expected HTTP ${status} for the upgrade, got: ${err.message}`);
}

/**
 * Expects a WebSocket handshake that the server must not turn into a session: either the
 * upgrade is refused with a plain HTTP 400, or the WebSocket is accepted and then closed by
 * the server without a single frame of data (the Node reference server does the latter).
 */
export async function assertWsRefusedOrClosed(url) {
  const s = new RawWs(url);
  let openErr = null;
  try {
    await withTimeout(s.opened, 3000, "the WebSocket attempt to settle");
  } catch (e) {
    openErr = e;
  }
  if (openErr) {
    s.terminate();
    assert.equal(s.rejectedStatus, 400, `expected the upgrade refused with HTTP 400 or closed, got: ${openErr.message}`);
    return "rejected";
  }
  try {
    await s.waitClose(2000);
  } finally {
    s.terminate();
  }
  assert.deepEqual(s.messages, [], `the server sent ${JSON.stringify(s.messages)} before closing`);
  return "closed";
}

export function bytes(...xs) {
  return Buffer.from(xs);
}
