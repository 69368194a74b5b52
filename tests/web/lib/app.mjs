// Helpers of the React app's browser tests (app.test.mjs): Chromium contexts that record
// errors and CSP violations, sign-in, waits on data-testids, the server's own counts.
//
// The page comes from the binary itself (it embeds web/dist). Before a binary embeds the app,
// `APP_VITE=1` serves it from Vite's dev server instead (web/, `npm ci` there first), proxying
// to the test's server: React's development build, so StrictMode really mounts twice; no CSP
// there, so the CSP test is skipped. `APP_VITE=preview` serves the build (web/dist, after
// `npm run build`) with `vite preview`, the contract's CSP header and the same proxy.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_ARGS, WEB_DIR, assertChromium, sleep, withTimeout } from "./server.mjs";

/** The Content-Security-Policy every page of the app gets (app-contract.md, "Static files"). */
export const APP_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** How long a condition may take to come true: generous, the tests never time instants. */
export const WAIT = 20_000;

export const USE_VITE = !!process.env.APP_VITE && process.env.APP_VITE !== "preview";
const USE_PREVIEW = process.env.APP_VITE === "preview";

export async function launchBrowser() {
  assertChromium();
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Where the browser loads the app for `server`: the server itself, or (APP_VITE=1) a Vite dev
 * server started for it and stopped by `stop()` (by its PID).
 */
export async function appFor(server) {
  if (!USE_VITE && !USE_PREVIEW) return { url: server.url, stop: async () => {} };
  const port = await freePort();
  const webDir = path.resolve(WEB_DIR, "../../web");
  const args = ["--port", String(port), "--strictPort", "--host", "127.0.0.1"];
  let configDir = null;
  if (USE_PREVIEW) {
    // A config of plain data (no imports), so it can live in a temporary directory.
    configDir = mkdtempSync(path.join(os.tmpdir(), "switchyard-preview-"));
    const config = path.join(configDir, "vite.preview.config.mjs");
    const target = server.url;
    writeFileSync(
      config,
      `export default ${JSON.stringify({
        root: webDir,
        logLevel: "warn",
        preview: {
          headers: { "Content-Security-Policy": APP_CSP },
          proxy: { "/socket.io": { target, ws: true }, "/auth": target, "/api": target },
        },
      })};\n`,
    );
    args.unshift("preview", "--config", config);
  }
  const child = spawn(process.execPath, [path.join(webDir, "node_modules/vite/bin/vite.js"), ...args], {
    cwd: webDir,
    env: { ...process.env, SWITCHYARD_URL: server.url },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => (out += c));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(url)).ok) break;
    } catch {}
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`vite did not start\n${out}`);
    await sleep(100);
  }
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(child.pid, "SIGTERM");
      await withTimeout(exited, 10_000, "vite to exit");
      if (configDir) rmSync(configDir, { recursive: true, force: true });
    },
  };
}

/**
 * A page in a new browser context (its own storage, like another browser profile), recording
 * console errors, page errors and CSP violations (`securitypolicyviolation`, listened to
 * before the app's own script runs).
 */
export async function openApp(browser, baseUrl, route = "/") {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await context.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) =>
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`),
    );
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  const response = await page.goto(`${baseUrl}${route}`);
  assert.equal(response.status(), 200);
  return { context, page, errors, requests };
}

export const byTestId = (id) => `[data-testid="${id}"]`;

/** Waits until the text of `selector` equals `expected` (or matches it, for a RegExp). */
export async function waitText(page, selector, expected, timeout = WAIT) {
  const isRegExp = expected instanceof RegExp;
  try {
    await page.waitForFunction(
      ([selector, source, flags, isRegExp]) => {
        const text = document.querySelector(selector)?.textContent ?? "";
        return isRegExp ? new RegExp(source, flags).test(text) : text === source;
      },
      [selector, isRegExp ? expected.source : expected, isRegExp ? expected.flags : "", isRegExp],
      { timeout },
    );
  } catch (err) {
    const actual = await page.locator(selector).first().textContent({ timeout: 1000 }).catch(() => "(missing)");
    throw new Error(`${selector}: expected ${expected}, got ${JSON.stringify(actual)} (${err.message.split("\n")[0]})`);
  }
}

/** Waits until the connection status is in `state` (data-state: connected, waiting, reconnecting, failed, …). */
export async function waitState(page, state, timeout = WAIT) {
  try {
    await page.waitForSelector(`${byTestId("connection-status")}[data-state="${state}"]`, { timeout });
  } catch (err) {
    const text = await page.textContent(byTestId("connection-status")).catch(() => "(missing)");
    throw new Error(`connection status: expected ${state}, shows ${JSON.stringify(text)} (${err.message.split("\n")[0]})`);
  }
}

/** Signs in with `name` on the sign-in screen and waits until connected. */
export async function signIn(page, name) {
  await page.fill(byTestId("signin-name"), name);
  await page.click(byTestId("signin-submit"));
  await waitText(page, byTestId("user-name"), name);
  await waitState(page, "connected");
}

/** Goes to `route` the way a click on a link does (History API, no reload). */
export async function go(page, route) {
  await page.evaluate((route) => {
    history.pushState(null, "", route);
    window.dispatchEvent(new PopStateEvent("popstate"));
  }, route);
}

/** The texts [sender, text] of the messages shown. */
export function messages(page) {
  return page.$$eval(`${byTestId("messages")} ${byTestId("message")}`, (nodes) =>
    nodes.map((n) => [
      n.querySelector('[data-testid="message-sender"]')?.textContent,
      n.querySelector('[data-testid="message-text"]')?.textContent,
    ]),
  );
}

/** How many listeners the page's socket for `nsp` has for `event` (window.__switchyard). */
export function listenerCount(page, nsp, event) {
  return page.evaluate(([nsp, event]) => window.__switchyard.listeners(nsp, event), [nsp, event]);
}

/** The CSP violations the page saw. */
export function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations ?? []);
}

/**
 * The server's own counts from its Prometheus metrics: Engine.IO sessions (all transports)
 * and the sockets of each namespace.
 */
export async function serverCounts(serverUrl) {
  const text = await (await fetch(`${serverUrl}/metrics`)).text();
  let sessions = 0;
  const sockets = {};
  for (const line of text.split("\n")) {
    let m = /^switchyard_sessions\{transport="[^"]+"\} (\d+)/.exec(line);
    if (m) sessions += Number(m[1]);
    m = /^switchyard_sockets\{namespace="([^"]+)"\} (\d+)/.exec(line);
    if (m) sockets[m[1]] = Number(m[2]);
  }
  return { sessions, sockets };
}

/** Polls `fn` until `predicate(value)`; returns the value, or throws with the last one. */
export async function eventually(fn, predicate, what, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let value;
  for (;;) {
    value = await fn();
    if (predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}; last: ${JSON.stringify(value)}`);
    await sleep(100);
  }
}
