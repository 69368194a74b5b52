// nginx in front of two Switchyard servers (the main binary, SWITCHYARD_BIN) sharing one
// redis-server, configured as in README.md ("Sticky sessions"): one nginx process, started by
// the test with a generated config, two `server` blocks on free loopback ports:
//
//   sticky      upstream with `ip_hash` over the two servers
//   roundrobin  the same servers without `ip_hash` (nginx's default round robin)
//
// Every client comes from 127.0.0.1, so `ip_hash` sends all of them to one server; which one is
// read from nginx's access log ($upstream_addr), and clients connected directly to the OTHER
// server make the messages cross nodes through Redis. Every client adds the query parameter
// `c=<label>` to its requests, which finds them in the access log. Checked on the demo namespace
// `/chat` (dev mode: `auth.name` names the sender):
//
// (a) polling-only clients through the sticky server connect, join a room and exchange
//     `message`s both ways with polling and WebSocket clients of the other server, each message
//     received once; one of them sends 20 messages, and every request of its session (> 20 in
//     the access log) went to one upstream, with no 4xx/5xx anywhere on the sticky server.
// (b) control: through the round-robin server a polling-only client fails before connecting.
//     Deterministic: nginx runs ONE worker process, and its round robin over two peers of equal
//     weight (smooth weighted round robin, no failed peer: both servers are up, and a 400 is not
//     a peer failure under the default `proxy_next_upstream error timeout`) alternates strictly
//     per request. The clients connect one after the other, so after a client's handshake
//     (served by X) its next request (the POST of the Socket.IO CONNECT, or the first GET poll,
//     both sent at once) is served by Y, which does not know the session: 400 "Session ID
//     unknown" and a connect_error. The same is shown with raw requests (handshake, then a poll:
//     400, code 1).
// (c) WebSocket-only clients through the round-robin server work: a WebSocket session is one
//     request, so it needs no stickiness; consecutive clients alternate between the servers
//     (checked in the access log once they close), and messages cross between them.
//
// nginx (Debian's /usr/sbin/nginx, or NGINX_BIN) runs in the foreground as
// `nginx -p DIR/ -c DIR/nginx.conf -g 'daemon off; master_process on;'`; its config, pid file,
// error and access logs and temp paths are in DIR, under the log directory of the test process.
// It is stopped by its master's PID (SIGTERM, SIGKILL after 5 s; its workers, recorded by PID
// once it is up, are SIGKILLed too if the master had to be). Never port 80, never the system
// service. Install: apt-get install -y --no-install-recommends nginx (the service need not run).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test as nodeTest } from "node:test";
import { io } from "socket.io-client";
import { ClusterNode, CLUSTER_DIR } from "./lib/nodes.mjs";
import { RedisServer } from "./lib/redis.mjs";
import { freePort, logDirectory, sleep, stopChild, trackChild, waitUntil } from "./lib/util.mjs";

const START_TIMEOUT_MS = 20_000;
const ACK_TIMEOUT_MS = 10_000;
const DELIVERY_TIMEOUT_MS = 15_000;

function switchyardBin() {
  const fromEnv = process.env.SWITCHYARD_BIN;
  return path.resolve(CLUSTER_DIR, fromEnv && fromEnv.length > 0 ? fromEnv : "../../target/release/switchyard");
}

function nginxBin() {
  const fromEnv = process.env.NGINX_BIN;
  if (fromEnv && fromEnv.length > 0) return fromEnv;
  if (existsSync("/usr/sbin/nginx")) return "/usr/sbin/nginx";
  return "nginx"; // from PATH
}

/**
 * The main Switchyard binary, clustered on Redis: `REDIS_URL=… PORT=0 HOST=127.0.0.1 switchyard`.
 * PORT=0 lets the kernel pick the port, read from the line `Switchyard listening on http://…`.
 * Log capture, logTail, assertAlive and stop (SIGTERM by PID, SIGKILL after 3 s) are ClusterNode's.
 */
class SwitchyardServer extends ClusterNode {
  constructor({ name, redisUrl }) {
    super({ kind: "switchyard main", name, redisUrl });
  }

  get address() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    const bin = switchyardBin();
    if (!existsSync(bin)) {
      throw new Error(
        `Switchyard binary not found at ${bin} (build it with \`cargo build --release\`, or set SWITCHYARD_BIN)`,
      );
    }
    const env = { ...process.env, REDIS_URL: this.redisUrl, PORT: "0", HOST: "127.0.0.1" };
    this.logStream = createWriteStream(this.logFile, { flags: "a" });
    this.append(`=== REDIS_URL=${this.redisUrl} PORT=0 HOST=127.0.0.1 ${bin} ===\n`);
    const child = trackChild(spawn(bin, [], { cwd: CLUSTER_DIR, env, stdio: ["ignore", "pipe", "pipe"] }));
    this.child = child;
    child.stdout.on("data", (c) => this.append(c));
    child.stderr.on("data", (c) => this.append(c));
    child.once("exit", (code, signal) => {
      this.exit = { code, signal };
      this.append(`=== exited: code ${code}, signal ${signal} ===\n`);
    });
    let spawnError = null;
    child.once("error", (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message}`);
      if (this.exit) throw new Error(`${this.label} exited before listening\n${this.logTail()}`);
      const m = /Switchyard listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(this.log);
      if (m) {
        this.port = Number(m[1]);
        return;
      }
      await sleep(25);
    }
    await this.stop();
    throw new Error(`${this.label} did not print its address within ${START_TIMEOUT_MS} ms\n${this.logTail()}`);
  }

  /**
   * SIGTERM by PID, SIGKILL after 6 s: on SIGTERM the server waits up to DRAIN_TIMEOUT_MS (3 s by
   * default) for its sessions to close, and a polling session whose client stopped polling (the
   * round-robin control leaves such sessions behind) cannot close before that.
   */
  async stop() {
    if (this.child && !this.exit) await stopChild(this.child, { graceMs: 6000 });
    await this.closeLog();
  }
}

/** nginx worker PIDs still alive (by /proc), so that an orphaned worker can be killed by PID. */
function isNginxWorker(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").startsWith("nginx: worker process");
  } catch {
    return false;
  }
}

const workerPids = new Set();
let workerGuard = false;
function guardWorkers() {
  if (workerGuard) return;
  workerGuard = true;
  // runs after the SIGKILL of the masters by util.mjs's safety net (also on SIGINT/SIGTERM/SIGHUP)
  process.on("exit", () => {
    for (const pid of workerPids) {
      if (isNginxWorker(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
  });
}

class Nginx {
  constructor(name = "nginx") {
    this.name = name;
    this.dir = path.join(logDirectory(), name);
    this.child = null;
    this.exit = null;
    this.log = ""; // nginx's own stderr/stdout (startup errors)
    this.workers = [];
    this.stickyPort = 0;
    this.rrPort = 0;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  file(name) {
    return path.join(this.dir, name);
  }

  config(upstreams) {
    const d = (name) => this.file(name);
    const servers = upstreams.map((a) => `        server ${a};`).join("\n");
    const location = (upstream) => `
        location = /ready { return 204; }
        location /socket.io/ {
            proxy_pass http://${upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
        }`;
    return `# generated by sticky.test.mjs
${
  // as root, the workers would run as nobody, who cannot enter the 0700 log directory (temp paths)
  process.getuid && process.getuid() === 0 ? "user root;\n" : ""
}worker_processes 1;
pid ${d("nginx.pid")};
error_log ${d("error.log")} info;
events { worker_connections 512; }
http {
    client_body_temp_path ${d("client_body_temp")};
    proxy_temp_path ${d("proxy_temp")};
    fastcgi_temp_path ${d("fastcgi_temp")};
    uwsgi_temp_path ${d("uwsgi_temp")};
    scgi_temp_path ${d("scgi_temp")};
    log_format sticky '$server_port $status $upstream_addr $upstream_status "$request"';
    access_log ${d("access.log")} sticky;

    upstream switchyard_sticky {
        ip_hash;
${servers}
    }
    upstream switchyard_rr {
${servers}
    }
    server {
        listen 127.0.0.1:${this.stickyPort};
${location("switchyard_sticky")}
    }
    server {
        listen 127.0.0.1:${this.rrPort};
${location("switchyard_rr")}
    }
}
`;
  }

  async ready(port) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), 1000);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/ready`, { signal: controller.signal });
      await res.arrayBuffer();
      return res.status === 204;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Starts nginx on two free loopback ports. If it exits (or never answers) before it is ready,
   * e.g. because another process took a port between freePort() and the bind, it is stopped by
   * its PID and started again on new ports, 3 attempts in all.
   */
  async start(upstreams) {
    mkdirSync(this.dir, { recursive: true });
    let lastErr;
    for (let attempt = 0; attempt < 3; attempt++) {
      for (;;) {
        this.stickyPort = await freePort();
        this.rrPort = await freePort();
        if (this.stickyPort !== this.rrPort && ![this.stickyPort, this.rrPort].includes(80)) break;
      }
      try {
        await this.startOnce(upstreams);
        return;
      } catch (err) {
        lastErr = err;
        await this.stop();
        if (!err.retryable) throw err;
        if (attempt < 2) {
          this.log +=
            `=== start on ports ${this.stickyPort}/${this.rrPort} failed before ready; retrying on new ports ` +
            `(attempt ${attempt + 2} of 3) ===\n`;
        }
      }
    }
    throw lastErr;
  }

  async startOnce(upstreams) {
    writeFileSync(this.file("nginx.conf"), this.config(upstreams));
    const bin = nginxBin();
    const args = ["-p", `${this.dir}/`, "-c", this.file("nginx.conf"), "-g", "daemon off; master_process on;"];
    this.log += `=== ${bin} ${args.join(" ")} (ports: sticky ${this.stickyPort}, roundrobin ${this.rrPort}) ===\n`;
    const child = trackChild(spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] }));
    this.child = child;
    this.exit = null;
    this.workers = [];
    child.stdout.on("data", (c) => (this.log += c.toString("utf8")));
    child.stderr.on("data", (c) => (this.log += c.toString("utf8")));
    child.once("exit", (code, signal) => {
      if (this.child === child) this.exit = { code, signal };
      this.log += `=== exited: code ${code}, signal ${signal} ===\n`;
    });
    let spawnError = null;
    child.once("error", (err) => {
      spawnError = err;
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (spawnError) {
        throw new Error(
          `cannot start ${bin}: ${spawnError.message} (install it with ` +
            "`apt-get install -y --no-install-recommends nginx`, or set NGINX_BIN)",
        );
      }
      if (this.exit) {
        throw Object.assign(new Error(`nginx exited before serving\n${this.logTail()}`), { retryable: true });
      }
      if ((await this.ready(this.stickyPort)) && (await this.ready(this.rrPort))) {
        this.recordWorkers();
        return;
      }
      await sleep(25);
    }
    throw Object.assign(new Error(`nginx did not answer /ready within ${START_TIMEOUT_MS} ms\n${this.logTail()}`), {
      retryable: true,
    });
  }

  recordWorkers() {
    try {
      const pids = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, "latin1")
        .trim()
        .split(/\s+/)
        .filter((s) => s.length > 0)
        .map(Number);
      this.workers = pids;
      guardWorkers();
      for (const pid of pids) workerPids.add(pid);
    } catch {}
  }

  /** Stops the master by its PID: SIGTERM (fast shutdown), SIGKILL after 5 s; then its workers. */
  async stop() {
    const child = this.child;
    if (!child || this.exit) return;
    this.recordWorkers(); // in case a worker was respawned
    await stopChild(child, { signal: "SIGTERM", graceMs: 5000 });
    // the master waits for its workers before it exits; one SIGKILLed leaves them behind
    for (const pid of this.workers) {
      if (isNginxWorker(pid)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      workerPids.delete(pid);
    }
  }

  readText(name) {
    try {
      return readFileSync(this.file(name), "utf8");
    } catch {
      return "";
    }
  }

  /** Access-log entries: {port, status, upstream, upstreamStatus, method, uri, query}. */
  access() {
    const out = [];
    for (const line of this.readText("access.log").split("\n")) {
      const m = /^(\d+) (\d+) (\S+(?:, \S+)*) (\S+(?:, \S+)*) "(\S+) (\S+) [^"]*"$/.exec(line);
      if (!m) continue;
      const uri = m[6];
      out.push({
        port: Number(m[1]),
        status: Number(m[2]),
        upstream: m[3],
        upstreamStatus: m[4],
        method: m[5],
        uri,
        query: new URL(uri, "http://x").searchParams,
        line,
      });
    }
    return out;
  }

  /** The entries of the requests of the client labelled `label` (query parameter `c`). */
  entriesOf(label) {
    return this.access().filter((e) => e.query.get("c") === label);
  }

  logTail(max = 2500) {
    const tail = (s) => (s.length > max ? `[…]${s.slice(-max)}` : s) || "(empty)";
    const status = this.exit
      ? `exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `running (pid ${this.pid})`;
    return (
      `--- nginx (sticky :${this.stickyPort}, roundrobin :${this.rrPort}): ${status}; files in ${this.dir} ---\n` +
      `${tail(this.log)}\n--- nginx error.log ---\n${tail(this.readText("error.log"))}\n` +
      `--- nginx access.log ---\n${tail(this.readText("access.log"))}`
    );
  }
}

/** A /chat client (socket.io-client 4.8.1), recording every `message` it receives. */
class ChatClient {
  constructor(label, base, transport) {
    this.label = label;
    this.name = label; // auth.name: the `sender` of its messages
    this.base = base;
    this.transport = transport;
    this.messages = [];
    this.disconnects = [];
    this.socket = null;
    this.engineId = undefined;
  }

  open() {
    const socket = io(`${this.base}/chat`, {
      forceNew: true,
      reconnection: false,
      transports: [this.transport],
      upgrade: false,
      timeout: 10_000,
      auth: { name: this.name },
      query: { c: this.label }, // on every request: finds them in nginx's access log
    });
    this.socket = socket;
    socket.on("message", (m) => this.messages.push(m));
    socket.on("disconnect", (reason) => this.disconnects.push(reason));
    return socket;
  }

  /** Connects; rejects on connect_error or after 15 s. */
  async connect() {
    const res = await this.attempt(15_000);
    if (res !== "connected") throw new Error(`${this.label} (${this.transport} via ${this.base}): ${res}`);
    return this;
  }

  /** Answers "connected", or what happened instead: the connect_error, or "no answer". */
  attempt(timeout) {
    const socket = this.open();
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(`no connect and no connect_error within ${timeout} ms`), timeout);
      socket.once("connect", () => {
        clearTimeout(timer);
        this.engineId = socket.io.engine.id;
        resolve("connected");
      });
      socket.once("connect_error", (e) => {
        clearTimeout(timer);
        const detail = e.description ? ` (${e.description.message ?? e.description})` : "";
        resolve(`connect_error: ${e.message}${detail}`);
      });
    });
  }

  async ack(event, arg) {
    try {
      return await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, arg);
    } catch (err) {
      throw new Error(`${event} ${JSON.stringify(arg)} from ${this.label}: ${err.message}`);
    }
  }

  async join(room) {
    const res = await this.ack("join", room);
    assert.ok(
      res && res.room === room && Number.isInteger(res.members) && res.members >= 1,
      `join ack of ${this.label}: ${JSON.stringify(res)}`,
    );
    return res;
  }

  async send(room, text) {
    const res = await this.ack("message", { room, text });
    assert.deepStrictEqual(res, { ok: true }, `message ack of ${this.label} for ${text}`);
  }

  count(text) {
    return this.messages.filter((m) => m.text === text).length;
  }

  close() {
    try {
      if (this.socket) this.socket.disconnect();
    } catch {}
  }
}

let seq = 0;
const unique = (what) => `${what}-${process.pid}-${++seq}`;

/** Waits until every client has received every text. */
async function waitAll(clients, texts, what, timeout = DELIVERY_TIMEOUT_MS) {
  await waitUntil(
    () => clients.every((c) => texts.every((t) => c.count(t) > 0)),
    () => {
      const missing = clients
        .map((c) => ({ c, m: texts.filter((t) => c.count(t) === 0) }))
        .filter((x) => x.m.length > 0)
        .map((x) => `${x.c.label} misses ${x.m.length} (first ${x.m[0]})`);
      return `${what}: ${missing.join("; ")}`;
    },
    { timeout },
  );
}

/**
 * Cross-node readiness: `from` sends probes (every 200 ms) until `to` (on the other node) gets
 * one. Probes are never counted.
 */
async function crossReady(room, from, to) {
  const prefix = unique(`probe-${from.label}`);
  let k = 0;
  await waitUntil(
    async () => {
      await from.send(room, `${prefix}-${k++}`);
      return to.messages.some((m) => m.text.startsWith(prefix));
    },
    `a probe from ${from.label} at ${to.label}`,
    { timeout: DELIVERY_TIMEOUT_MS, interval: 200 },
  );
}

/**
 * The settle point before "exactly once" is judged: two rounds of a marker message from each
 * sender (one per server), each received by every client. Each server publishes to Redis in
 * order, each client receives in order: any duplicate of an earlier message has arrived by then.
 */
async function settle(room, senders, clients) {
  for (let round = 0; round < 2; round++) {
    const texts = [];
    for (const s of senders) {
      const text = unique(`marker-${s.label}`);
      texts.push(text);
      await s.send(room, text);
    }
    await waitAll(clients, texts, `markers of round ${round}`);
  }
}

/** Each client got each text exactly once, with the right room and sender, in send order. */
function assertExactlyOnce(clients, room, sent) {
  const wrong = [];
  for (const c of clients) {
    for (const { text } of sent) {
      const n = c.count(text);
      if (n !== 1) wrong.push(`${c.label}: ${text} ×${n}`);
    }
  }
  assert.deepStrictEqual(wrong, [], "messages not received exactly once");
  for (const c of clients) {
    for (const { text, sender } of sent) {
      const m = c.messages.find((x) => x.text === text);
      assert.equal(typeof m.time, "number", `${c.label}: time of ${text}`);
      // Each message carries the unique id the server gave it (the same on every node).
      assert.equal(typeof m.id, "string", `${c.label}: id of ${text}`);
      assert.deepStrictEqual({ ...m, time: 0, id: "" }, { room, sender, text, time: 0, id: "" }, `${c.label}: ${text}`);
    }
    // the messages of one sender arrive in the order it sent them
    const bySender = new Map();
    for (const s of sent) bySender.set(s.sender, [...(bySender.get(s.sender) ?? []), s.text]);
    for (const [sender, texts] of bySender) {
      const got = c.messages.filter((m) => texts.includes(m.text)).map((m) => m.text);
      assert.deepStrictEqual(got, texts, `${c.label}: order of the messages of ${sender}`);
    }
  }
}

async function sendAll(client, room, texts) {
  for (const t of texts) await client.send(room, t);
  return texts.map((text) => ({ text, sender: client.name }));
}

describe("nginx in front of two Switchyard servers on one Redis (sticky sessions)", () => {
  const redis = new RedisServer("st-redis");
  const servers = [0, 1].map((i) => new SwitchyardServer({ name: `st-switchyard-${i}`, redisUrl: "" }));
  const nginx = new Nginx("st-nginx");
  const clients = [];

  const logs = () =>
    [...servers.map((s) => s.logTail()), nginx.logTail(), redis.logTail(800)].join("\n");
  const chat = (label, base, transport) => {
    const c = new ChatClient(label, base, transport);
    clients.push(c);
    return c;
  };
  const viaSticky = () => `http://127.0.0.1:${nginx.stickyPort}`;
  const viaRoundRobin = () => `http://127.0.0.1:${nginx.rrPort}`;
  const direct = (s) => s.url;

  before(
    async () => {
      await redis.start();
      for (const s of servers) {
        s.redisUrl = redis.url;
        await s.start();
      }
      await nginx.start(servers.map((s) => s.address));
    },
    { timeout: 60_000 },
  );
  after(
    async () => {
      for (const c of clients.splice(0)) c.close();
      await nginx.stop();
      await Promise.all(servers.map((s) => s.stop()));
      await redis.close();
    },
    { timeout: 30_000 },
  );

  // like useCluster's: failures carry every log; the clients of a test are closed after it
  const test = (name, fn) =>
    nodeTest(name, { timeout: 60_000 }, async (t) => {
      try {
        await fn(t);
        for (const s of servers) s.assertAlive();
        assert.equal(nginx.exit, null, "nginx exited");
      } catch (err) {
        if (err && typeof err === "object") {
          try {
            err.message = `${err.message}\n(logs in ${logDirectory()})\n${logs()}`;
          } catch {}
        }
        throw err;
      } finally {
        for (const c of clients.splice(0)) c.close();
      }
    });

  test("(a) polling through ip_hash: each session stays on one server, messages cross nodes", async (t) => {
    const room = unique("sticky-a");
    const p1 = chat("a-p1", viaSticky(), "polling");
    const p2 = chat("a-p2", viaSticky(), "polling");
    await p1.connect();
    await p2.connect();

    // which server ip_hash chose: the upstream of p1's handshake in the access log
    const first = await waitUntil(
      () => nginx.entriesOf(p1.label).find((e) => !e.query.get("sid")),
      `the handshake of ${p1.label} in nginx's access log`,
    );
    const addresses = servers.map((s) => s.address);
    assert.ok(addresses.includes(first.upstream), `ip_hash upstream ${first.upstream} is one of ${addresses}`);
    const other = servers.find((s) => s.address !== first.upstream);
    t.diagnostic(`ip_hash sends 127.0.0.1 to ${first.upstream}; direct clients on ${other.address}`);

    const d1 = chat("a-d1", direct(other), "polling");
    const d2 = chat("a-d2", direct(other), "websocket");
    await d1.connect();
    await d2.connect();
    const all = [p1, p2, d1, d2];
    for (const c of all) await c.join(room);
    await crossReady(room, p1, d1);
    await crossReady(room, d1, p1);

    // 20 messages over polling through nginx, with traffic the other way at the same time
    const p1Texts = Array.from({ length: 20 }, (_, i) => `${unique("a-p1")}-${i}`);
    const sent = (
      await Promise.all([
        sendAll(p1, room, p1Texts),
        sendAll(p2, room, [unique("a-p2"), unique("a-p2")]),
        sendAll(d1, room, Array.from({ length: 5 }, () => unique("a-d1"))),
        sendAll(d2, room, Array.from({ length: 5 }, () => unique("a-d2"))),
      ])
    ).flat();
    await waitAll(all, sent.map((s) => s.text), "every message at every client");
    await settle(room, [p1, d1], all);
    assertExactlyOnce(all, room, sent);

    // every request of each nginx client's session went to the same upstream, all answered 200
    for (const c of [p1, p2]) {
      const entries = nginx.entriesOf(c.label);
      const withSid = entries.filter((e) => e.query.get("sid") === c.engineId);
      if (c === p1) {
        assert.ok(withSid.length > 20, `${c.label}: ${withSid.length} requests with its sid in the access log`);
      }
      assert.deepStrictEqual(
        [...new Set(entries.map((e) => `${e.upstream} ${e.status}`))],
        [`${first.upstream} 200`],
        `${c.label}: upstream and status of its ${entries.length} requests`,
      );
      t.diagnostic(
        `${c.label}: ${entries.length} requests through nginx (${withSid.length} with sid ${c.engineId}), ` +
          `all to ${first.upstream}`,
      );
    }
    const bad = nginx.access().filter((e) => e.port === nginx.stickyPort && e.status >= 400);
    assert.deepStrictEqual(bad.map((e) => e.line), [], "error answers on the sticky server");
  });

  test("(b) control: without ip_hash (round robin) a polling client loses its session", async (t) => {
    // raw Engine.IO: the handshake is served by one server, the next request by the other
    const base = `${viaRoundRobin()}/socket.io/?EIO=4&transport=polling`;
    const hs = await fetch(`${base}&c=b-raw`, { signal: AbortSignal.timeout(10_000) });
    const body = await hs.text();
    assert.equal(hs.status, 200, `handshake: ${body}`);
    const sid = JSON.parse(body.slice(1)).sid;
    const poll = await fetch(`${base}&c=b-raw&sid=${encodeURIComponent(sid)}`, {
      signal: AbortSignal.timeout(10_000),
    });
    const pollBody = await poll.text();
    t.diagnostic(`raw: handshake 200, then poll ${poll.status} ${pollBody}`);
    assert.equal(poll.status, 400, `the poll after the handshake: ${pollBody}`);
    assert.equal(JSON.parse(pollBody).code, 1, `the poll after the handshake: ${pollBody}`);
    // close that session on the server that has it (directly), so that it does not wait for its
    // ping timeout (or hold up the server's shutdown)
    const rawHandshake = nginx.entriesOf("b-raw").find((e) => !e.query.get("sid"));
    assert.ok(rawHandshake, "the raw handshake in nginx's access log");
    const closed = await fetch(
      `http://${rawHandshake.upstream}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`,
      {
        method: "POST",
        body: "1",
        headers: { "content-type": "text/plain;charset=UTF-8" },
        signal: AbortSignal.timeout(10_000),
      },
    );
    assert.equal(closed.status, 200, `close packet to ${rawHandshake.upstream}: ${await closed.text()}`);

    // official polling-only clients, one after the other
    const results = [];
    for (let i = 0; i < 4; i++) {
      const c = chat(`b-p${i}`, viaRoundRobin(), "polling");
      const res = await c.attempt(10_000);
      results.push({ c, res });
      c.close();
    }
    t.diagnostic(results.map((r) => `${r.c.label}: ${r.res}`).join("; "));
    const failed = results.filter((r) => r.res !== "connected");
    assert.ok(
      failed.length >= 1,
      `at least one polling client fails: ${JSON.stringify(results.map((r) => r.res))}`,
    );

    // in the access log: each failed client's handshake on one server, a 400 from the other
    for (const { c } of failed) {
      const entries = await waitUntil(() => {
        const e = nginx.entriesOf(c.label);
        return e.some((x) => x.status === 400) ? e : null;
      }, `a 400 for ${c.label} in nginx's access log`);
      const handshake = entries.find((e) => !e.query.get("sid"));
      const refused = entries.filter((e) => e.status === 400);
      assert.ok(handshake && handshake.status === 200, `${c.label}: handshake ${JSON.stringify(handshake?.line)}`);
      for (const r of refused) {
        assert.notEqual(
          r.upstream,
          handshake.upstream,
          `${c.label}: the 400 came from the other server (${r.line})`,
        );
      }
    }
  });

  test("(c) WebSocket-only clients through round robin need no stickiness", async (t) => {
    const room = unique("sticky-c");
    const ws = [0, 1, 2].map((i) => chat(`c-w${i}`, viaRoundRobin(), "websocket"));
    for (const c of ws) await c.connect(); // one after the other: they alternate between the servers
    const d0 = chat("c-d0", direct(servers[0]), "websocket");
    const d1 = chat("c-d1", direct(servers[1]), "polling");
    await d0.connect();
    await d1.connect();
    const all = [...ws, d0, d1];
    for (const c of all) await c.join(room);
    await crossReady(room, d0, d1);
    await crossReady(room, d1, d0);

    const sent = (
      await Promise.all(all.map((c) => sendAll(c, room, Array.from({ length: 3 }, () => unique(c.label)))))
    ).flat();
    await waitAll(all, sent.map((s) => s.text), "every message at every client");
    await settle(room, [d0, d1], all);
    assertExactlyOnce(all, room, sent);

    // nginx logs a WebSocket request when it ends: close them, then read where each one went
    for (const c of ws) {
      assert.deepStrictEqual(c.disconnects, [], `${c.label} stayed connected`);
      c.close();
    }
    const upstreams = [];
    for (const c of ws) {
      const e = await waitUntil(
        () => nginx.entriesOf(c.label).find((x) => x.status === 101),
        `the WebSocket request of ${c.label} (101) in nginx's access log`,
      );
      upstreams.push(e.upstream);
    }
    t.diagnostic(`round robin WebSocket upstreams: ${upstreams.join(", ")}`);
    assert.equal(new Set(upstreams).size, 2, `the WebSocket clients went to both servers: ${upstreams}`);
  });
});
