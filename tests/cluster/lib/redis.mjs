// A private redis-server for one test file: Debian's /usr/bin/redis-server (or REDIS_SERVER_BIN)
// on a free loopback port, no persistence, in the foreground; stopped by its PID. `restart()`
// starts it again on the same port (fault tests). Never touches port 6379 or a system service.
// `RedisClusterOfThree`: a Redis Cluster of three such servers (cluster-enabled), for the sharded
// pub/sub adapter; its `stop()` / `restart()` stop all three and start them again on the same
// ports, bus ports and config files (fault tests); `redisCommand(port, args)`: one command on a
// fresh connection (raw RESP).
//
// Install: apt-get install -y --no-install-recommends redis-server (the system service need not run).

import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { freePort, logDirectory, sleep, stopChild, trackChild, waitUntil } from "./util.mjs";

const LOG_LIMIT = 64 * 1024;
const START_TIMEOUT_MS = 15_000;
const START_ATTEMPTS = 3; // first start only: a new port each time

export function redisServerBin() {
  const fromEnv = process.env.REDIS_SERVER_BIN;
  if (fromEnv && fromEnv.length > 0) return fromEnv;
  if (existsSync("/usr/bin/redis-server")) return "/usr/bin/redis-server";
  return "redis-server"; // from PATH
}

/** Sends PING on a fresh connection; answers true on +PONG within 1 s. */
export function ping(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once("error", () => done(false));
    sock.once("connect", () => sock.write("PING\r\n"));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      if (buf.includes("\r\n")) done(buf.startsWith("+PONG"));
    });
  });
}

export class RedisServer {
  constructor(name = "redis") {
    this.name = name;
    this.port = 0;
    this.child = null;
    this.exit = null;
    this.log = "";
    this.starts = 0;
    this.logFile = path.join(logDirectory(), `${name}.log`);
    this.logStream = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  get running() {
    return !!this.child && !this.exit;
  }

  append(chunk) {
    const text = chunk.toString("utf8");
    this.log += text;
    if (this.log.length > LOG_LIMIT) this.log = this.log.slice(-LOG_LIMIT);
    if (this.logStream) this.logStream.write(text);
  }

  logTail(max = 2000) {
    const text = this.log.length > max ? `[…]${this.log.slice(-max)}` : this.log;
    const status = this.exit
      ? `exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `running (pid ${this.pid})`;
    return `--- ${this.name} (redis-server) on 127.0.0.1:${this.port}: ${status}; full log ${this.logFile} ---\n${text || "(no output)"}`;
  }

  /** The command-line arguments of redis-server. */
  args() {
    return [
      "--bind",
      "127.0.0.1",
      "--port",
      String(this.port),
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
      "--dir",
      logDirectory(),
      "--dbfilename",
      `${this.name}-${process.pid}.rdb`,
    ];
  }

  /**
   * Starts redis-server on a free port (first start) or on the same port (restart). A first
   * start whose server exits (or never answers) before it is ready, e.g. because another process
   * took the port between freePort() and the bind, is retried on a new port, START_ATTEMPTS in all.
   */
  async start() {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.pid})`);
    if (this.port) return this.startOnce(); // restart: same port
    for (let attempt = 1; ; attempt++) {
      do this.port = await freePort();
      while (this.port === 6379);
      try {
        return await this.startOnce();
      } catch (err) {
        if (!err.retryable || attempt >= START_ATTEMPTS) throw err;
        await this.stop();
        this.append(
          `=== start on port ${this.port} failed before ready; retrying on a new port ` +
            `(attempt ${attempt + 1} of ${START_ATTEMPTS}) ===\n`,
        );
      }
    }
  }

  async startOnce() {
    if (!this.logStream) this.logStream = createWriteStream(this.logFile, { flags: "a" });
    this.starts++;
    this.append(`\n=== start #${this.starts} on port ${this.port} ===\n`);
    const bin = redisServerBin();
    const args = this.args();
    const child = trackChild(spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] }));
    this.child = child;
    this.exit = null;
    child.stdout.on("data", (c) => this.append(c));
    child.stderr.on("data", (c) => this.append(c));
    child.once("exit", (code, signal) => {
      if (this.child === child) this.exit = { code, signal };
      this.append(`=== exited: code ${code}, signal ${signal} ===\n`);
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
            "`apt-get install -y --no-install-recommends redis-server`, or set REDIS_SERVER_BIN)",
        );
      }
      if (this.exit) {
        throw Object.assign(new Error(`redis-server exited before answering PING\n${this.logTail()}`), {
          retryable: true,
        });
      }
      if (await ping(this.port)) return;
      await sleep(25);
    }
    await this.stop();
    throw Object.assign(
      new Error(`redis-server did not answer PING within ${START_TIMEOUT_MS} ms\n${this.logTail()}`),
      { retryable: true },
    );
  }

  /** Stops the server by its PID: SIGTERM, SIGKILL after 5 s. */
  async stop() {
    const child = this.child;
    if (!child || this.exit) return;
    await stopChild(child, { graceMs: 5000 });
  }

  /** Stops (if running) and starts again on the same port. */
  async restart() {
    await this.stop();
    // the port was ours a moment ago; retry a few times in case the bind races
    let lastErr;
    for (let i = 0; i < 5; i++) {
      try {
        await this.start();
        return;
      } catch (err) {
        lastErr = err;
        await sleep(200);
      }
    }
    throw lastErr;
  }

  async close() {
    await this.stop();
    if (this.logStream) {
      const s = this.logStream;
      this.logStream = null;
      await new Promise((r) => s.end(r));
    }
  }
}

/** Encodes a command as a RESP array of bulk strings. */
function encodeCommand(args) {
  const parts = [`*${args.length}\r\n`];
  for (const a of args) {
    const s = Buffer.from(String(a), "utf8");
    parts.push(`$${s.length}\r\n`, s.toString("latin1"), "\r\n");
  }
  return Buffer.from(parts.join(""), "latin1");
}

/**
 * Parses one RESP reply at `pos` of `buf` (latin1 string). Answers [value, next position], or
 * null when the reply is not complete yet. An error reply becomes an Error value.
 */
function parseReply(buf, pos = 0) {
  const eol = buf.indexOf("\r\n", pos);
  if (eol < 0) return null;
  const kind = buf[pos];
  const line = buf.slice(pos + 1, eol);
  const next = eol + 2;
  switch (kind) {
    case "+":
      return [line, next];
    case "-":
      return [new Error(line), next];
    case ":":
      return [Number(line), next];
    case "$": {
      const len = Number(line);
      if (len < 0) return [null, next];
      if (buf.length < next + len + 2) return null;
      return [Buffer.from(buf.slice(next, next + len), "latin1").toString("utf8"), next + len + 2];
    }
    case "*": {
      const len = Number(line);
      if (len < 0) return [null, next];
      const items = [];
      let p = next;
      for (let i = 0; i < len; i++) {
        const r = parseReply(buf, p);
        if (!r) return null;
        items.push(r[0]);
        p = r[1];
      }
      return [items, p];
    }
    default:
      return [new Error(`unexpected RESP reply ${JSON.stringify(buf.slice(pos, pos + 40))}`), buf.length];
  }
}

/**
 * Sends one command on a fresh connection to 127.0.0.1:`port` and answers its reply (an error
 * reply rejects). Rejects when there is no complete reply within `timeout` ms.
 */
export function redisCommand(port, args, { timeout = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (err, value) => {
      sock.removeAllListeners();
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    sock.setTimeout(timeout, () =>
      done(new Error(`no reply to ${args.join(" ")} from 127.0.0.1:${port} within ${timeout} ms`)),
    );
    sock.once("error", (err) => done(new Error(`${args.join(" ")} on 127.0.0.1:${port}: ${err.message}`)));
    sock.once("connect", () => sock.write(encodeCommand(args)));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const r = parseReply(buf);
      if (!r) return;
      if (r[0] instanceof Error) done(new Error(`${args.join(" ")} on 127.0.0.1:${port}: ${r[0].message}`));
      else done(null, r[0]);
    });
  });
}

/** The slot ranges of the three masters. */
const THIRDS = [
  [0, 5460],
  [5461, 10922],
  [10923, 16383],
];

/**
 * A Redis Cluster of three masters (no replicas) for one test file or block: three cluster-enabled
 * redis-server processes on free loopback ports (never 6379), each with its own temp directory
 * (under the log directory) for its nodes-PORT.conf, no persistence, in the foreground. The
 * cluster is formed without redis-cli: each node takes a third of the slots (CLUSTER
 * ADDSLOTSRANGE), node 0 meets the others (CLUSTER MEET 127.0.0.1 PORT BUSPORT), and it is ready
 * once CLUSTER INFO on every node says cluster_state:ok and cluster_known_nodes:3. Stopped by
 * PID. Offers the same surface as RedisServer where the Cluster class uses it (`url`, `start`,
 * `close`, `logTail`); `url` is node 0, from which clients discover the others.
 */
export class RedisClusterOfThree {
  constructor(name = "rcluster") {
    this.name = name;
    this.nodes = [];
  }

  get url() {
    return this.urls[0];
  }

  get urls() {
    return this.nodes.map((n) => n.url);
  }

  get ports() {
    return this.nodes.map((n) => n.port);
  }

  logTail(max = 2000) {
    const each = Math.max(400, Math.floor(max / 3));
    return this.nodes.map((n) => n.logTail(each)).join("\n");
  }

  /** Starts and forms the cluster; a cluster that does not form is stopped and started anew, 3 times in all. */
  async start() {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce(attempt);
      } catch (err) {
        await this.stopNodes();
        if (attempt >= START_ATTEMPTS) throw err;
      }
    }
  }

  async startOnce(attempt) {
    this.nodes = [];
    const used = new Set([6379]);
    const pick = async () => {
      let p;
      do p = await freePort();
      while (used.has(p));
      used.add(p);
      return p;
    };
    for (let i = 0; i < 3; i++) {
      const port = await pick();
      const bus = await pick();
      // the cluster bus port must be free too; a taken one makes the start fail and retry
      const dir = path.join(logDirectory(), `${this.name}-${i}-try${attempt}`);
      mkdirSync(dir, { recursive: true });
      const node = new ClusterRedisNode(`${this.name}-${i}`, port, bus, dir);
      this.nodes.push(node);
      await node.start();
    }
    for (const [i, node] of this.nodes.entries()) {
      await redisCommand(node.port, ["CLUSTER", "ADDSLOTSRANGE", ...THIRDS[i]]);
    }
    for (const node of this.nodes.slice(1)) {
      await redisCommand(this.nodes[0].port, ["CLUSTER", "MEET", "127.0.0.1", node.port, node.bus]);
    }
    let last = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      last = await Promise.all(
        this.nodes.map((n) => redisCommand(n.port, ["CLUSTER", "INFO"]).catch((e) => `error: ${e.message}`)),
      );
      if (last.every((info) => /cluster_state:ok\b/.test(info) && /cluster_known_nodes:3\b/.test(info))) return;
      for (const n of this.nodes) if (n.exit) throw new Error(`${n.name} exited while the cluster formed\n${n.logTail()}`);
      if (Date.now() > deadline) {
        throw new Error(
          `the Redis Cluster did not form within 30 s; CLUSTER INFO: ${JSON.stringify(
            last.map((s) => String(s).split("\r\n").slice(0, 6).join(" ")),
          )}\n${this.logTail()}`,
        );
      }
      await sleep(50);
    }
  }

  /** `PUBSUB SHARDNUMSUB channel` summed over the three nodes (only the slot's owner has any). */
  async shardNumSub(channel) {
    const replies = await Promise.all(this.nodes.map((n) => redisCommand(n.port, ["PUBSUB", "SHARDNUMSUB", channel])));
    return replies.reduce((sum, r) => sum + Number(r[1]), 0);
  }

  /** `PUBSUB SHARDCHANNELS pattern` of every node, as one sorted list. */
  async shardChannels(pattern) {
    const replies = await Promise.all(this.nodes.map((n) => redisCommand(n.port, ["PUBSUB", "SHARDCHANNELS", pattern])));
    return replies.flat().sort();
  }

  async stopNodes() {
    for (const n of this.nodes) await n.close();
  }

  /** The PIDs of the three servers (undefined for one never started). */
  get pids() {
    return this.nodes.map((n) => n.pid);
  }

  /** How each server last exited (null while it runs). */
  get exits() {
    return this.nodes.map((n) => n.exit);
  }

  /**
   * Stops the three servers at once, each by its PID (SIGTERM, SIGKILL after 5 s), keeping
   * their ports, bus ports, directories and nodes-PORT.conf files for `restart()`.
   */
  async stop() {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /**
   * Starts the three servers again (each stopped first if it runs) on the same ports and bus
   * ports, each with the same --dir and so its own nodes-PORT.conf: the same node IDs and slots,
   * and each knows the others' addresses. Resolves once CLUSTER INFO on all three says
   * cluster_state:ok and cluster_known_nodes:3 (`timeout` ms at most; a restarted master waits
   * a moment before it declares the state ok again). Answers the milliseconds that took.
   */
  async restart({ timeout = 60_000 } = {}) {
    const started = Date.now();
    await this.stop();
    // the ports were ours a moment ago; retry a few times in case a bind races
    await Promise.all(this.nodes.map((n) => n.restart()));
    let last = [];
    await waitUntil(
      async () => {
        last = await Promise.all(
          this.nodes.map((n) => redisCommand(n.port, ["CLUSTER", "INFO"]).catch((e) => `error: ${e.message}`)),
        );
        for (const n of this.nodes) if (n.exit) throw new Error(`${n.name} exited after its restart\n${n.logTail()}`);
        return last.every((info) => /cluster_state:ok\b/.test(info) && /cluster_known_nodes:3\b/.test(info));
      },
      () =>
        `the restarted Redis Cluster to be ok again; CLUSTER INFO: ${JSON.stringify(
          last.map((s) => String(s).split("\r\n").slice(0, 6).join(" ")),
        )}`,
      { timeout, interval: 50 },
    );
    return Date.now() - started;
  }

  /**
   * Per Redis node: `PUBSUB SHARDNUMSUB` of each channel matching `pattern` that node serves
   * (`{port, channels: {channel: count}}`), for diagnostics.
   */
  async shardSubscriptions(pattern) {
    return Promise.all(
      this.nodes.map(async (n) => {
        const names = await redisCommand(n.port, ["PUBSUB", "SHARDCHANNELS", pattern]);
        const channels = {};
        if (names.length > 0) {
          const r = await redisCommand(n.port, ["PUBSUB", "SHARDNUMSUB", ...names]);
          for (let i = 0; i < r.length; i += 2) channels[r[i]] = Number(r[i + 1]);
        }
        return { port: n.port, channels };
      }),
    );
  }

  async close() {
    for (const n of this.nodes) await n.close();
  }
}

/** One cluster-enabled redis-server of a RedisClusterOfThree. */
class ClusterRedisNode extends RedisServer {
  constructor(name, port, bus, dir) {
    super(name);
    this.port = port;
    this.bus = bus;
    this.dir = dir;
  }

  args() {
    return [
      "--bind",
      "127.0.0.1",
      "--port",
      String(this.port),
      "--cluster-enabled",
      "yes",
      "--cluster-port",
      String(this.bus),
      "--cluster-config-file",
      `nodes-${this.port}.conf`,
      "--dir",
      this.dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
    ];
  }

  /** One start on the chosen ports (the cluster retries as a whole). */
  start() {
    return this.startOnce();
  }
}
