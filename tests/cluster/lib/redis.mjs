// A private redis-server for one test file: Debian's /usr/bin/redis-server (or REDIS_SERVER_BIN)
// on a free loopback port, no persistence, in the foreground; stopped by its PID. `restart()`
// starts it again on the same port (fault tests). Never touches port 6379 or a system service.
//
// Install: apt-get install -y --no-install-recommends redis-server (the system service need not run).

import { spawn } from "node:child_process";
import { createWriteStream, existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { freePort, logDirectory, sleep, stopChild, trackChild } from "./util.mjs";

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
    const args = [
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
