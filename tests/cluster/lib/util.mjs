// Small helpers shared by the cluster tests: free ports, waiting for a condition, log files,
// and stopping a child process by its PID.

import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A sleep that does not keep the process alive (grace periods of children that exited). */
const graceSleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());

/** Asks the kernel for a free TCP port on 127.0.0.1 (binds port 0, reads it, closes). */
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

/** Rejects after `ms` with a message naming what was awaited. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Polls `cond` (sync or async) every `interval` ms until it is truthy; answers its value.
 * Throws after `timeout` ms, with `what` (a string, or a function giving the details of the
 * last state) in the message.
 */
export async function waitUntil(cond, what, { timeout = 10_000, interval = 10 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await cond();
    if (value) return value;
    if (Date.now() > deadline) {
      const detail = typeof what === "function" ? what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${detail}`);
    }
    await sleep(interval);
  }
}

let logDir = null;

/** One directory under the OS temp dir per test process, holding every child's log file. */
export function logDirectory() {
  if (!logDir) logDir = mkdtempSync(path.join(os.tmpdir(), "switchyard-cluster-"));
  return logDir;
}

// Every child process started by the helpers, until it exits. If the test process ends
// without stopping them (a runner timeout, Ctrl-C), they are killed by their PIDs on the way out.
const live = new Set();
let guardInstalled = false;

/** Registers a spawned child for the exit-time safety net. */
export function trackChild(child) {
  live.add(child);
  child.once("exit", () => live.delete(child));
  if (!guardInstalled) {
    guardInstalled = true;
    const killAll = () => {
      for (const c of live) {
        try {
          process.kill(c.pid, "SIGKILL");
        } catch {}
      }
      live.clear();
    };
    process.on("exit", killAll);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
      process.once(sig, () => {
        killAll();
        process.exit(sig === "SIGINT" ? 130 : 143);
      });
    }
  }
  return child;
}

/**
 * Stops a child process by its PID: `signal` (SIGTERM) first, SIGKILL after `graceMs`.
 * Resolves once it has exited (or after a last 2 s wait).
 */
export async function stopChild(child, { signal = "SIGTERM", graceMs = 3000 } = {}) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  try {
    process.kill(child.pid, "SIGCONT"); // in case a test left it stopped
    process.kill(child.pid, signal);
  } catch {
    return;
  }
  if (signal === "SIGKILL") {
    await Promise.race([exited, graceSleep(5000)]);
    return;
  }
  const late = await Promise.race([exited.then(() => false), graceSleep(graceMs).then(() => true)]);
  if (late && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {}
    await Promise.race([exited, graceSleep(2000)]);
  }
}

/** Replaces every binary value by a tagged hex string, so deepStrictEqual can compare bytes. */
export function norm(v) {
  if (Buffer.isBuffer(v)) return { $bin: v.toString("hex") };
  if (v instanceof ArrayBuffer) return { $bin: Buffer.from(new Uint8Array(v)).toString("hex") };
  if (ArrayBuffer.isView(v)) return { $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex") };
  if (Array.isArray(v)) return v.map(norm);
  if (v && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = norm(x);
    return out;
  }
  return v;
}

export const isBinary = (v) => Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v);
