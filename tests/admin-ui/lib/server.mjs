// The Switchyard server for the admin UI tests (the web tests' harness, tests/web/lib, with a
// longer test deadline), and a static server for the official admin UI's files.
//
// The binary comes from SWITCHYARD_BIN (relative paths are taken from tests/web), else
// `../../target/release/switchyard`. These tests build nothing: build it first with
// `cargo build --release` at the repository root. Its settings are environment variables
// (ADMIN_UI_AUTH, CORS_ORIGINS, ...); it is stopped by its PID (SIGTERM, then SIGKILL).

import { createReadStream, statSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  CHROMIUM,
  CHROMIUM_ARGS,
  SwitchyardServer as WebServer,
  assertChromium,
  withTimeout,
  wrapTest as webWrapTest,
} from "../../web/lib/server.mjs";

export { CHROMIUM, CHROMIUM_ARGS, assertChromium, withTimeout };

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const TEST_DIR = path.resolve(HERE, "..");

export const START_TIMEOUT_MS = 15_000;

/** The web tests' server: its `url` is the one its clients connect to. */
export const SwitchyardServer = WebServer;

/** node:test's `test` with the server's output in failure messages, 30 s by default (the
 * reference's stats come every 2 s, and some tests wait for two of them). */
export function wrapTest(server) {
  const test = webWrapTest(server);
  return (name, options, fn) =>
    typeof options === "function"
      ? test(name, { timeout: 30_000 }, options)
      : test(name, { timeout: 30_000, ...options }, fn);
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
