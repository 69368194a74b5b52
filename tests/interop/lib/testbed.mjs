// The `testbed` example server (crates/server/examples/testbed.rs) as a child process.
//
// The binary is taken from TESTBED_BIN (resolved from tests/interop), else
// ../../target/release/examples/testbed.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "./server.mjs";
import { sleep } from "./raw.mjs";

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const TESTBED_BIN = path.resolve(
  HERE,
  process.env.TESTBED_BIN && process.env.TESTBED_BIN.length > 0
    ? process.env.TESTBED_BIN
    : "../../target/release/examples/testbed",
);

const LOG_LIMIT = 64 * 1024;

export class Testbed {
  constructor(args = []) {
    this.args = args;
    this.port = 0;
    this.child = null;
    this.log = "";
    this.exit = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  logTail(max = 4096) {
    const text = this.log.length > max ? `[…]${this.log.slice(-max)}` : this.log;
    const status = this.exit
      ? `exited (code ${this.exit.code}, signal ${this.exit.signal})`
      : `running (pid ${this.child && this.child.pid})`;
    return `--- testbed ${this.args.join(" ")} on port ${this.port}: ${status} ---\n${text || "(no output)"}`;
  }

  async start() {
    if (!existsSync(TESTBED_BIN)) {
      throw new Error(
        `testbed binary not found at ${TESTBED_BIN} (build it with ` +
          "`cargo build --release --example testbed`, or set TESTBED_BIN)",
      );
    }
    this.port = await freePort();
    const child = spawn(TESTBED_BIN, this.args, {
      env: { ...process.env, PORT: String(this.port) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    const append = (chunk) => {
      this.log += chunk.toString("utf8");
      if (this.log.length > LOG_LIMIT) this.log = this.log.slice(-LOG_LIMIT);
    };
    child.stdout.on("data", append);
    child.stderr.on("data", append);
    child.once("exit", (code, signal) => {
      this.exit = { code, signal };
    });
    const failed = new Promise((_, reject) => {
      child.once("error", (err) => reject(new Error(`cannot start ${TESTBED_BIN}: ${err.message}`)));
    });
    failed.catch(() => {});
    // the testbed prints its "listening" line once the listener is bound
    const deadline = Date.now() + 15_000;
    const ready = (async () => {
      while (Date.now() < deadline) {
        if (this.exit) throw new Error(`testbed exited before listening\n${this.logTail()}`);
        if (this.log.includes("testbed listening on")) return;
        await sleep(20);
      }
      throw new Error(`testbed did not start listening within 15 s\n${this.logTail()}`);
    })();
    try {
      await Promise.race([ready, failed]);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  assertAlive() {
    if (this.exit) throw new Error(`testbed died\n${this.logTail()}`);
  }

  async stop() {
    const child = this.child;
    if (!child || this.exit) return;
    const exited = new Promise((r) => child.once("exit", r));
    try {
      process.kill(child.pid, "SIGTERM");
    } catch {
      return;
    }
    const late = await Promise.race([exited.then(() => false), sleep(3000).then(() => true)]);
    if (late && !this.exit) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {}
      await Promise.race([exited, sleep(2000)]);
    }
  }
}

