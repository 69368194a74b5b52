// Starts and stops the `switchyard` server binary for the admin UI tests, and serves the
// official admin UI's static files.
//
// The binary comes from the environment variable SWITCHYARD_BIN (relative paths are taken
// from tests/admin-ui), else `../../target/release/switchyard`. These tests build nothing:
// build it first with `cargo build --release` at the repository root. The server is started
// with `--host 127.0.0.1 --port 0` plus the flags of the test, and must print
// `Switchyard listening on http://127.0.0.1:<port>` on stdout once it accepts connections: the
// URL is read from that line. It is stopped by its PID (SIGTERM, then SIGKILL).

import { spawn } from "node:child_process";
import { existsSync, createReadStream, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test as nodeTest } from "node:test";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TEST_DIR = path.resolve(HERE, "..");

export function switchyardBin() {
  const fromEnv = process.env.SWITCHYARD_BIN;
  return fromEnv ? path.resolve(TEST_DIR, fromEnv) : path.resolve(TEST_DIR, "../../target/release/switchyard");
}

export const START_TIMEOUT_MS = 15_000;
const LOG_LIMIT = 64 * 1024;

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
  /** `args`: extra command-line flags; `env`: extra environment variables. */
  constructor(args = [], env = {}) {
    this.args = args;
    this.env = env;
    this.bin = switchyardBin();
    this.url = null;
    this.child = null;
    this.stdout = "";
    this.log = "";
    this.exit = null; // { code, signal } once the process has ended
    this.stopRequested = false;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
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
    return `--- switchyard ${this.args.join(" ")} at ${this.url ?? "?"}: ${status} ---\n${text || "(no output)"}`;
  }

  /** Starts the server on a port the kernel picks; resolves with its URL. */
  async start() {
    if (!existsSync(this.bin)) {
      throw new Error(
        `switchyard binary not found at ${this.bin} ` +
          "(build it with `cargo build --release` at the repository root, or set SWITCHYARD_BIN)",
      );
    }
    this.stdout = "";
    this.exit = null;
    this.stopRequested = false;
    const child = spawn(this.bin, ["--host", "127.0.0.1", "--port", "0", ...this.args], {
      env: { ...process.env, RUST_LOG: "info", ...this.env },
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
        const match = /Switchyard listening on (https?:\/\/127\.0\.0\.1:\d+)/.exec(this.stdout);
        if (match) resolve(match[1]);
      });
      child.once("error", (err) => reject(new Error(`cannot start ${this.bin}: ${err.message}`)));
      child.once("exit", () => reject(new Error(`switchyard exited before listening\n${this.logTail()}`)));
    });
    try {
      this.url = await withTimeout(ready, START_TIMEOUT_MS, `switchyard to listen\n${this.logTail()}`);
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this.url;
  }

  /** Throws if the server ended without being told to. */
  assertAlive() {
    if (this.exit && !this.stopRequested) throw new Error(`switchyard died\n${this.logTail()}`);
  }

  /** Sends SIGTERM (by PID) and waits for the exit; SIGKILL after `graceMs`. */
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

/** node:test's `test`, except that a failure also shows the output of the servers. */
export function wrapTest(servers) {
  const list = () => (typeof servers === "function" ? servers() : servers).filter(Boolean);
  return (name, options, fn) => {
    if (typeof options === "function") {
      fn = options;
      options = {};
    }
    return nodeTest(name, { timeout: 20_000, ...options }, async (t) => {
      try {
        await fn(t);
      } catch (err) {
        if (err && typeof err === "object") {
          try {
            err.message = `${err.message}\n${list()
              .map((s) => s.logTail())
              .join("\n")}`;
          } catch {}
        }
        throw err;
      }
      for (const server of list()) server.assertAlive();
    });
  };
}

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".map": "application/json",
};

/**
 * Serves the files under `root` (GET and HEAD only) on 127.0.0.1 and a port the kernel picks.
 * Resolves with `{ url, close }`.
 */
export function serveStatic(root) {
  const server = http.createServer((req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405).end();
      return;
    }
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url, "http://x").pathname);
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (pathname.endsWith("/")) pathname += "index.html";
    const file = path.resolve(root, `.${pathname}`);
    if (!file.startsWith(root + path.sep)) {
      res.writeHead(403).end();
      return;
    }
    let stat;
    try {
      stat = statSync(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    if (!stat.isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "content-length": stat.size,
      "cache-control": "no-store",
    });
    if (req.method === "HEAD") res.end();
    else createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((r) => {
            server.closeAllConnections?.();
            server.close(() => r());
          }),
      });
    });
  });
}
