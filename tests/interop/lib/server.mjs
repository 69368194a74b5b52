// Starts and stops the `conformance` example binary of the Rust server for one test file.
//
// The binary is found through the environment variable CONFORMANCE_BIN; without it, the
// release build `../../target/release/examples/conformance` (relative to tests/interop) is used.
// It is started as `conformance <mode> [extra args...]` with `PORT=<free port>` in its
// environment, and must listen on 127.0.0.1:$PORT.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test as nodeTest, before, after } from "node:test";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const INTEROP_DIR = path.resolve(HERE, "..");

export const DEFAULT_BIN = path.resolve(
  INTEROP_DIR,
  "../../target/release/examples/conformance",
);

export function conformanceBin() {
  const fromEnv = process.env.CONFORMANCE_BIN;
  if (fromEnv && fromEnv.length > 0) {
    return path.resolve(INTEROP_DIR, fromEnv);
  }
  return DEFAULT_BIN;
}

const START_TIMEOUT_MS = 30_000;
const LOG_LIMIT = 64 * 1024;

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    const done = (ok) => {
      sock.removeAllListeners();
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class ConformanceServer {
  constructor(mode, extraArgs = []) {
    this.mode = mode;
    this.extraArgs = extraArgs;
    this.bin = conformanceBin();
    this.port = 0;
    this.child = null;
    this.log = "";
    this.exit = null; // { code, signal } once the process has ended
    this.stopped = false;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}`;
  }

  appendLog(chunk) {
    this.log += chunk.toString("utf8");
    if (this.log.length > LOG_LIMIT) {
      this.log = this.log.slice(this.log.length - LOG_LIMIT);
    }
  }

  /** The last part of the server's stderr/stdout, for failure messages. */
  logTail(max = 4096) {
    // the head keeps the first error line (a Rust panic or error comes before its backtrace)
    const headLen = Math.floor(max / 3);
    const text =
      this.log.length > max
        ? `${this.log.slice(0, headLen)}\n[… ${this.log.length - max} characters left out …]\n${this.log.slice(-(max - headLen))}`
        : this.log;
    const status = this.exit
      ? `server exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `server running (pid ${this.pid})`;
    return `--- conformance ${this.mode} ${this.extraArgs.join(" ")} on port ${this.port}: ${status} ---\n${text || "(no output)"}`;
  }

  async start() {
    if (!existsSync(this.bin)) {
      throw new Error(
        `conformance binary not found at ${this.bin} ` +
          "(build it with `cargo build --release --example conformance`, or set CONFORMANCE_BIN)",
      );
    }
    this.port = await freePort();
    const child = spawn(this.bin, [this.mode, ...this.extraArgs], {
      env: { ...process.env, PORT: String(this.port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    child.stdout.on("data", (c) => this.appendLog(c));
    child.stderr.on("data", (c) => this.appendLog(c));
    const spawnError = new Promise((_, reject) => {
      child.once("error", (err) => reject(new Error(`cannot start ${this.bin}: ${err.message}`)));
    });
    spawnError.catch(() => {});
    child.once("exit", (code, signal) => {
      this.exit = { code, signal };
    });

    const deadline = Date.now() + START_TIMEOUT_MS;
    const waitReady = (async () => {
      while (Date.now() < deadline) {
        if (this.exit) {
          throw new Error(`conformance server exited before listening\n${this.logTail()}`);
        }
        if (await canConnect(this.port)) return;
        await sleep(50);
      }
      throw new Error(
        `conformance server did not accept TCP connections on 127.0.0.1:${this.port} within ${START_TIMEOUT_MS} ms\n${this.logTail()}`,
      );
    })();
    try {
      await Promise.race([waitReady, spawnError]);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Sends a signal to the server process (by its PID). */
  signal(sig) {
    if (!this.child || this.exit) throw new Error(`server is not running\n${this.logTail()}`);
    process.kill(this.child.pid, sig);
  }

  assertAlive() {
    if (this.exit) {
      throw new Error(`conformance server died\n${this.logTail()}`);
    }
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    const child = this.child;
    if (!child || this.exit) return;
    const exited = new Promise((r) => child.once("exit", r));
    try {
      process.kill(child.pid, "SIGCONT"); // in case a test left it stopped
      process.kill(child.pid, "SIGTERM");
    } catch {
      return;
    }
    const timedOut = await Promise.race([exited.then(() => false), sleep(3000).then(() => true)]);
    if (timedOut && !this.exit) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {}
      await Promise.race([exited, sleep(2000)]);
    }
  }
}

/**
 * Starts one server for the current test file (in a `before` hook) and stops it in an
 * `after` hook. Returns the ConformanceServer and a `test` function that behaves like
 * node:test's `test`, except that a failure message also shows the server's output.
 */
export function useServer(mode, extraArgs = []) {
  const server = new ConformanceServer(mode, extraArgs);
  before(() => server.start(), { timeout: START_TIMEOUT_MS + 5000 });
  after(() => server.stop(), { timeout: 10_000 });
  return { server, test: wrapTest(server) };
}

/** Wraps node:test's `test` so that failures carry the server log tail. */
export function wrapTest(server) {
  const wrapped = (name, options, fn) => {
    if (typeof options === "function") {
      fn = options;
      options = {};
    }
    const opts = { timeout: 10_000, ...options };
    return nodeTest(name, opts, async (t) => {
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
  return wrapped;
}
