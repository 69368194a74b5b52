// Cluster nodes as child processes. Each listens on 127.0.0.1:<free port>, uses a Redis adapter
// protocol on the given Redis (the classic one unless its extra arguments say
// `--adapter streams` or, on a Redis Cluster, `--adapter sharded`), and implements the control
// protocol described in ../README.md. Kinds:
//
//   switchyard  the Rust fixture binary in CLUSTER_NODE_BIN (resolved from tests/cluster), else
//               ../../target/release/examples/cluster_node
//   node        `node node-node.mjs` (socket.io 4.8.1 + @socket.io/redis-adapter 8.3.0, or
//               @socket.io/redis-streams-adapter 0.3.1 with `--adapter streams`, or
//               createShardedAdapter of @socket.io/redis-adapter 8.3.0 with `--adapter sharded`)
//
// Both get `--port P --redis-url redis://127.0.0.1:RP --name NAME --requests-timeout-ms 3000`,
// then the cluster's extra node arguments, if any (e.g. `--adapter streams --recovery-ms 60000`).
// A node is ready once `GET /socket.io/?EIO=4&transport=polling` answers 200. Its stdout and
// stderr go to <os temp dir>/switchyard-cluster-*/NAME.log and the tail shows in failures.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, logDirectory, sleep, stopChild, trackChild } from "./util.mjs";

export const CLUSTER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const NODE_NODE_SCRIPT = path.join(CLUSTER_DIR, "node-node.mjs");
export const DEFAULT_NODE_BIN = path.resolve(CLUSTER_DIR, "../../target/release/examples/cluster_node");
export const REQUESTS_TIMEOUT_MS = 3000;

const START_TIMEOUT_MS = 30_000;
const START_ATTEMPTS = 3; // a new port each time
const LOG_LIMIT = 64 * 1024;

export function clusterNodeBin() {
  const fromEnv = process.env.CLUSTER_NODE_BIN;
  if (fromEnv && fromEnv.length > 0) return path.resolve(CLUSTER_DIR, fromEnv);
  return DEFAULT_NODE_BIN;
}

/** The node kinds of the cluster: CLUSTER_KINDS (comma-separated), default switchyard,switchyard,node. */
export function clusterKinds() {
  const raw =
    process.env.CLUSTER_KINDS && process.env.CLUSTER_KINDS.trim().length > 0
      ? process.env.CLUSTER_KINDS
      : "switchyard,switchyard,node";
  const kinds = raw
    .split(",")
    .map((k) => k.trim())
    .filter((k) => k.length > 0);
  for (const k of kinds) {
    if (k !== "switchyard" && k !== "node") {
      throw new Error(`CLUSTER_KINDS: unknown kind ${JSON.stringify(k)} (expected switchyard or node)`);
    }
  }
  if (kinds.length !== 3) throw new Error(`CLUSTER_KINDS must name 3 nodes, got ${JSON.stringify(raw)}`);
  return kinds;
}

/**
 * The nodes that initiate operations: the first node of each distinct kind; with a single kind,
 * nodes 0 and 1.
 */
export function initiatorIndexes(kinds) {
  const seen = new Map();
  kinds.forEach((k, i) => {
    if (!seen.has(k)) seen.set(k, i);
  });
  const first = [...seen.values()];
  return first.length > 1 ? first : [0, 1];
}

async function httpReady(port) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), 2000);
  try {
    const res = await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling`, {
      signal: controller.signal,
    });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

export class ClusterNode {
  constructor({ kind, name, redisUrl, requestsTimeoutMs = REQUESTS_TIMEOUT_MS, extraArgs = [] }) {
    this.kind = kind;
    this.extraArgs = extraArgs;
    this.name = name;
    this.redisUrl = redisUrl;
    this.requestsTimeoutMs = requestsTimeoutMs;
    this.port = 0;
    this.child = null;
    this.exit = null;
    this.log = "";
    this.logFile = path.join(logDirectory(), `${name}.log`);
    this.logStream = null;
    this.killed = false; // SIGKILLed on purpose by a test
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  get label() {
    return `${this.name} (${this.kind})`;
  }

  append(chunk) {
    const text = chunk.toString("utf8");
    this.log += text;
    if (this.log.length > LOG_LIMIT) this.log = this.log.slice(-LOG_LIMIT);
    if (this.logStream) this.logStream.write(text);
  }

  logTail(max = 3000) {
    const headLen = Math.floor(max / 3);
    const text =
      this.log.length > max
        ? `${this.log.slice(0, headLen)}\n[… ${this.log.length - max} characters left out …]\n${this.log.slice(-(max - headLen))}`
        : this.log;
    const status = this.exit
      ? `exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `running (pid ${this.pid})`;
    return `--- ${this.label} on ${this.url}: ${status}; full log ${this.logFile} ---\n${text || "(no output)"}`;
  }

  command() {
    const args = [
      "--port",
      String(this.port),
      "--redis-url",
      this.redisUrl,
      "--name",
      this.name,
      "--requests-timeout-ms",
      String(this.requestsTimeoutMs),
      ...this.extraArgs,
    ];
    if (this.kind === "node") return { bin: process.execPath, args: [NODE_NODE_SCRIPT, ...args] };
    const bin = clusterNodeBin();
    if (!existsSync(bin)) {
      throw new Error(
        `cluster node binary not found at ${bin} (build it with ` +
          "`cargo build --release --example cluster_node`, or set CLUSTER_NODE_BIN)",
      );
    }
    return { bin, args };
  }

  /**
   * Starts the node on a free port. If it exits (or never answers) before it is ready, e.g.
   * because another process took the port between freePort() and the bind, it is stopped by its
   * PID and started again on a new port, START_ATTEMPTS in all.
   */
  async start() {
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort();
      try {
        return await this.startOnce();
      } catch (err) {
        if (!err.retryable || attempt >= START_ATTEMPTS) throw err;
        if (this.child && !this.exit) await stopChild(this.child, { graceMs: 3000 });
        this.append(
          `=== start on port ${this.port} failed before ready; retrying on a new port ` +
            `(attempt ${attempt + 1} of ${START_ATTEMPTS}) ===\n`,
        );
      }
    }
  }

  async startOnce() {
    const { bin, args } = this.command();
    if (!this.logStream) this.logStream = createWriteStream(this.logFile, { flags: "a" });
    this.append(`=== ${bin} ${args.join(" ")} ===\n`);
    const child = trackChild(
      spawn(bin, args, {
        cwd: CLUSTER_DIR,
        env: { ...process.env },
        // stdin is a pipe that closes when this process ends, however it ends: node-node.mjs
        // exits at its end (a fixture may do the same; one that never reads it is unaffected)
        stdio: ["pipe", "pipe", "pipe"],
      }),
    );
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
      if (spawnError) throw new Error(`cannot start ${bin}: ${spawnError.message}`);
      if (this.exit) {
        throw Object.assign(new Error(`${this.label} exited before serving HTTP\n${this.logTail()}`), {
          retryable: true,
        });
      }
      if (await httpReady(this.port)) return;
      await sleep(50);
    }
    await stopChild(child, { graceMs: 3000 });
    throw Object.assign(
      new Error(
        `${this.label} did not answer the Engine.IO handshake within ${START_TIMEOUT_MS} ms\n${this.logTail()}`,
      ),
      { retryable: true },
    );
  }

  assertAlive() {
    if (this.exit && !this.killed) throw new Error(`${this.label} died\n${this.logTail()}`);
  }

  /** Stops the node by its PID: SIGTERM, SIGKILL after 3 s. */
  async stop() {
    if (this.child && !this.exit) await stopChild(this.child, { graceMs: 3000 });
    await this.closeLog();
  }

  /** SIGKILL by PID (a crash, for fault tests). */
  async kill() {
    this.killed = true;
    if (this.child && !this.exit) await stopChild(this.child, { signal: "SIGKILL" });
  }

  async closeLog() {
    if (this.logStream) {
      const s = this.logStream;
      this.logStream = null;
      await new Promise((r) => s.end(r));
    }
  }
}
