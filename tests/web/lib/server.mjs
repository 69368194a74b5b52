// Starts and stops the `switchyard` server binary for the tests.
//
// The binary comes from the environment variable SWITCHYARD_BIN (relative paths are taken
// from tests/web), else `../../target/release/switchyard`. These tests build nothing: build it
// first with `cargo build --release` at the repository root. The server is started with
// `HOST=127.0.0.1 PORT=0` (or the port of a restart) plus any extra environment, and must print
// `Switchyard listening on http://127.0.0.1:<port>` (https:// with TLS) on stdout once it accepts
// connections: the port is read from that line.

import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test as nodeTest, before, after } from "node:test";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const WEB_DIR = path.resolve(HERE, "..");

export function switchyardBin() {
  const fromEnv = process.env.SWITCHYARD_BIN;
  return fromEnv ? path.resolve(WEB_DIR, fromEnv) : path.resolve(WEB_DIR, "../../target/release/switchyard");
}

const START_TIMEOUT_MS = 15_000;
const LOG_LIMIT = 64 * 1024;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Debian's Chromium (or CHROMIUM_PATH), and the flags the browser tests launch it with.
 * playwright-core's launch() gives the browser a fresh temporary --user-data-dir of its own
 * and deletes it on close (it refuses one passed in the flags). */
export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Throws, saying how to get it, when there is no Chromium to launch. */
export function assertChromium() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
}

/**
 * Makes a self-signed certificate for 127.0.0.1 and localhost (EC P-256, one day) with
 * Debian's openssl, in directory `dir`; returns the paths of its `cert` and `key` (PEM).
 */
export function selfSignedCert(dir) {
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
  ], { stdio: "ignore" });
  return { cert, key };
}

/** A sleep that does not keep the process alive by itself. */
const unrefSleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class SwitchyardServer {
  /** `env`: extra environment variables, e.g. `{ PING_INTERVAL_MS: "300" }`. */
  constructor(env = {}) {
    this.env = env;
    this.bin = switchyardBin();
    this.port = 0;
    this.child = null;
    this.stdout = "";
    this.log = "";
    this.exit = null; // { code, signal } once the process has ended
    this.stopRequested = false;
    this.scheme = "http";
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  /** `http://127.0.0.1:<port>`, or `https://…` when the server said it speaks TLS. */
  get url() {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  appendLog(chunk) {
    this.log += chunk.toString("utf8");
    if (this.log.length > LOG_LIMIT) this.log = this.log.slice(this.log.length - LOG_LIMIT);
  }

  /** The last part of the server's output, for failure messages. */
  logTail(max = 4096) {
    const text = this.log.length > max ? `[…]\n${this.log.slice(-max)}` : this.log;
    const status = this.exit
      ? `exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `running (pid ${this.pid})`;
    return `--- switchyard on port ${this.port}: ${status} ---\n${text || "(no output)"}`;
  }

  /**
   * Starts the server, on `port` if given (to restart on the same one), else on a port the
   * kernel picks as it binds (PORT=0), read back from the server's first line: no other process
   * can take it in between.
   */
  async start(port) {
    if (!existsSync(this.bin)) {
      throw new Error(
        `switchyard binary not found at ${this.bin} ` +
          "(build it with `cargo build --release` at the repository root, or set SWITCHYARD_BIN)",
      );
    }
    this.port = port ?? 0;
    this.stdout = "";
    this.exit = null;
    this.stopRequested = false;
    const child = spawn(this.bin, [], {
      env: { ...process.env, RUST_LOG: "info", DOCS_IN_MEMORY: "true", ...this.env, HOST: "127.0.0.1", PORT: String(this.port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.once("exit", (code, signal) => {
      this.exit = { code, signal };
    });
    child.stderr.on("data", (c) => this.appendLog(c));
    const ready = new Promise((resolve, reject) => {
      child.stdout.on("data", (c) => {
        this.appendLog(c);
        this.stdout += c.toString("utf8");
        if (this.stdout.includes("\n")) resolve();
      });
      child.once("error", (err) => reject(new Error(`cannot start ${this.bin}: ${err.message}`)));
      child.once("exit", () => reject(new Error(`switchyard exited before listening\n${this.logTail()}`)));
    });
    try {
      await withTimeout(ready, START_TIMEOUT_MS, `switchyard to listen\n${this.logTail()}`);
    } catch (err) {
      await this.stop();
      throw err;
    }
    const listening = /Switchyard listening on (https?):\/\/127\.0\.0\.1:(\d+)/.exec(this.stdout);
    if (!listening) {
      await this.stop();
      throw new Error(`switchyard printed no listening address\n${this.logTail()}`);
    }
    this.scheme = listening[1];
    this.port = Number(listening[2]);
    return this.stdout.trim();
  }

  /**
   * The address of the gRPC API when started with GRPC_PORT (0 lets the kernel pick the port,
   * which no other process can take in between): read from its stdout line.
   */
  async grpcAddress() {
    const found = () => /Switchyard gRPC API listening on (\S+)/.exec(this.stdout ?? "")?.[1];
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!found()) {
      this.assertAlive();
      if (Date.now() > deadline) throw new Error(`no gRPC listening line\n${this.logTail()}`);
      await unrefSleep(20);
    }
    return found();
  }

  /** Throws if the server ended without being told to. */
  assertAlive() {
    if (this.exit && !this.stopRequested) throw new Error(`switchyard died\n${this.logTail()}`);
  }

  /** Kills the server at once (SIGKILL by its PID, no graceful close) and waits for the exit. */
  async kill() {
    const child = this.child;
    if (!child || this.exit) return this.exit;
    this.stopRequested = true;
    const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
    process.kill(child.pid, "SIGKILL");
    return withTimeout(exited, 10_000, "switchyard to exit after SIGKILL");
  }

  /**
   * Sends SIGTERM (by PID) and waits for the exit; SIGKILL after `graceMs`.
   * Resolves with `{ code, signal }`.
   */
  async stop(graceMs = 6000) {
    const child = this.child;
    if (!child) return null;
    if (this.exit) return this.exit;
    this.stopRequested = true;
    const exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
    try {
      process.kill(child.pid, "SIGTERM");
    } catch {
      return this.exit;
    }
    const result = await Promise.race([exited, unrefSleep(graceMs).then(() => null)]);
    if (result) return result;
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {}
    await Promise.race([exited, unrefSleep(2000)]);
    return { code: null, signal: "SIGKILL" };
  }
}

/**
 * One server for the current test file, started in `before` and stopped in `after`. Returns
 * the server and a `test` that adds the server's output to failure messages.
 */
export function useServer(env = {}) {
  const server = new SwitchyardServer(env);
  before(() => server.start(), { timeout: START_TIMEOUT_MS + 5000 });
  after(() => server.stop(), { timeout: 15_000 });
  return { server, test: wrapTest(server) };
}

/** node:test's `test`, except that a failure also shows the server's output. */
export function wrapTest(server) {
  return (name, options, fn) => {
    if (typeof options === "function") {
      fn = options;
      options = {};
    }
    return nodeTest(name, { timeout: 15_000, ...options }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        if (err && typeof err === "object") {
          try {
            err.message = `${err.message}\n${server.logTail()}`;
          } catch {}
        }
        throw err;
      }
      server.assertAlive();
    });
  };
}

/**
 * The room and member count of a join ack. On `/chat` the ack also carries the room's users
 * and history (presence and history are on there by default); the tests of rooms compare
 * these two.
 */
export const roomAndMembers = ({ room, members }) => ({ room, members });

/**
 * The ack of `notify` without its `id` (every notification has one, for the inbox merge),
 * after checking it is there: `{ delivered }`.
 */
export function notifyAck(ack) {
  if (ack && typeof ack === "object" && "delivered" in ack) {
    const { id, ...rest } = ack;
    if (typeof id !== "string") throw new Error(`notify ack without an id: ${JSON.stringify(ack)}`);
    return rest;
  }
  return ack;
}
