// The shared document page (/docs/<id>) in headless Chromium: two browser contexts (two users)
// type into the same document at once and converge to the same text; each sees the other's
// name, caret and mouse pointer; the text survives a server restart (same data directory);
// a page open across the restart reconnects and syncs; no CSP violation anywhere.
// Screenshots go to $SCREENSHOT_DIR (default: the system's temporary directory) as
// switchyard-docs-a.png and switchyard-docs-b.png.
//
// The server runs with DOCS=true and SWITCHYARD_DATA_DIR=<a temporary directory> (the
// environment forms of --docs and --data-dir). The page comes from the binary itself; before
// a binary embeds the app, APP_VITE=1 (Vite's dev server: StrictMode mounts twice) or
// APP_VITE=preview (the production build with the CSP) serve it, proxying to the test's
// server (lib/app.mjs).

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { chromium } from "playwright-core";
import { appFor } from "./lib/app.mjs";
import { CHROMIUM, CHROMIUM_ARGS, SwitchyardServer, assertChromium, wrapTest } from "./lib/server.mjs";

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || os.tmpdir();
/** Every wait for a condition: generous, so a loaded machine does not fail the test. */
const WAIT = 30_000;

const dataDir = mkdtempSync(path.join(os.tmpdir(), "switchyard-docs-test-"));
/** Updates over 16 KiB are refused (default 256 KiB): the last test pastes more. */
const MAX_UPDATE_BYTES = 16 * 1024;
const server = new SwitchyardServer({
  DOCS: "true",
  SWITCHYARD_DATA_DIR: dataDir,
  // lib/server.mjs keeps other tests' documents in memory; these are stored, for the restart.
  DOCS_IN_MEMORY: "false",
  DOCS_MAX_UPDATE_BYTES: String(MAX_UPDATE_BYTES),
});
const test = wrapTest(server);
/** Where the pages come from: the server, or a Vite server proxying to it (APP_VITE). */
let app;
const appOrigin = () => app.url;

let browser;
const contexts = new Set();

before(
  async () => {
    assertChromium();
    await server.start();
    app = await appFor(server);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  },
  { timeout: 60_000 },
);
after(
  async () => {
    await browser?.close();
    await app?.stop();
    await server.stop();
    rmSync(dataDir, { recursive: true, force: true });
  },
  { timeout: 30_000 },
);

/**
 * A user in a browser context of their own (like another browser profile): signed in as
 * `name` on the document page `docId`, its CSP violations and errors recorded.
 */
async function openEditor(name, docId) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  contexts.add(context);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on("console", (message) => {
    // Failed requests are checked by their responses below.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      errors.push(`console: ${message.text()}`);
    }
  });
  page.on("response", (response) => {
    const { pathname } = new URL(response.url());
    // A 404 of /auth/config is a server without tokens (the page falls back to names).
    const expected = pathname === "/favicon.ico" || (pathname === "/auth/config" && response.status() === 404);
    if (response.status() >= 400 && !expected) errors.push(`response: ${response.status()} ${response.url()}`);
  });
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  // The awareness updates this page sends over its WebSocket (Socket.IO's text frame of each
  // binary event names it; its attachment follows in a binary frame).
  const awarenessSent = [];
  page.on("websocket", (ws) =>
    ws.on("framesent", ({ payload }) => {
      if (typeof payload === "string" && payload.includes('"doc:awareness"')) awarenessSent.push(Date.now());
    }),
  );
  // Recorded from the first script on: CodeMirror's theme (style-mod), the carets, the pointers.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const response = await page.goto(`${appOrigin()}/docs/${docId}`);
  assert.equal(response.status(), 200);
  await signIn(page, name);
  await waitSynced(page);
  return { name, context, page, errors, awarenessSent };
}

async function signIn(page, name) {
  await page.getByTestId("signin-name").fill(name);
  await page.getByTestId("signin-submit").click();
  await page.getByTestId("user-name").filter({ hasText: name }).waitFor();
}

async function closeEditor(editor) {
  contexts.delete(editor.context);
  await editor.context.close();
}

/** Waits until the document is joined and everything typed is acknowledged by the server. */
async function waitSynced(page) {
  await page.locator('[data-testid="docs-status"][data-status="synced"]').waitFor({ timeout: WAIT });
}

/** The editor's text, without the other users' caret labels (widgets inside the lines). */
function editorText(page) {
  return page.$$eval("[data-testid=docs-editor] .cm-content .cm-line", (lines) =>
    lines
      .map((line) => {
        const copy = line.cloneNode(true);
        for (const widget of copy.querySelectorAll(".sy-caret")) widget.remove();
        return copy.textContent;
      })
      .join("\n"),
  );
}

/** Waits until the editor shows exactly `expected`. */
async function waitText(page, expected) {
  const deadline = Date.now() + WAIT;
  let text;
  while (Date.now() < deadline) {
    text = await editorText(page);
    if (text === expected) return;
    await page.waitForTimeout(100);
  }
  assert.equal(text, expected, "the editor's text");
}

async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations ?? []);
}

/** Chromium's reports of the reconnection attempts while the server restarts: not page errors. */
const connectionFailure = /net::ERR_CONNECTION_(REFUSED|RESET|CLOSED)|net::ERR_EMPTY_RESPONSE|WebSocket connection to .* failed/;

async function assertClean(editor) {
  assert.deepEqual(await cspViolations(editor.page), [], `CSP violations in ${editor.name}'s page`);
  const errors = editor.errors.filter((error) => !connectionFailure.test(error));
  assert.deepEqual(errors, [], `errors in ${editor.name}'s page`);
}

const LINE_A = "alice: the quick brown fox";
const LINE_B = "bob: jumps over the lazy dog";
const DOC = `page-test-${process.pid}`;

test("two users edit one document at once and converge; names, carets and pointers show", { timeout: 120_000 }, async () => {
  const alice = await openEditor("alice", DOC);
  const bob = await openEditor("bob", DOC);

  // Presence: each lists the other.
  await alice.page.getByTestId("docs-user").filter({ hasText: "bob" }).waitFor();
  await bob.page.getByTestId("docs-user").filter({ hasText: "alice" }).waitFor();

  // Two lines to type on, made by alice and seen by bob.
  await alice.page.locator(".cm-content").click();
  await alice.page.keyboard.type("alice:");
  await alice.page.keyboard.press("Enter");
  await alice.page.keyboard.type("bob:");
  await waitText(bob.page, "alice:\nbob:");

  // Both type at the same time, each at the end of their own line.
  await alice.page.keyboard.press("Control+Home");
  await alice.page.keyboard.press("End");
  await bob.page.locator(".cm-content").click();
  await bob.page.keyboard.press("Control+End");
  await Promise.all([
    alice.page.keyboard.type(LINE_A.slice("alice:".length), { delay: 15 }),
    bob.page.keyboard.type(LINE_B.slice("bob:".length), { delay: 15 }),
  ]);
  const expected = `${LINE_A}\n${LINE_B}`;
  await waitText(alice.page, expected);
  await waitText(bob.page, expected);
  await waitSynced(alice.page);
  await waitSynced(bob.page);

  // Each sees the other's caret, labelled with the name.
  await alice.page.locator(".sy-caret-name", { hasText: "bob" }).waitFor();
  await bob.page.locator(".sy-caret-name", { hasText: "alice" }).waitFor();

  // Bob's mouse over the editor shows in alice's page, with his name, where he points.
  const box = await bob.page.getByTestId("docs-editor").boundingBox();
  await bob.page.mouse.move(box.x + 40, box.y + 40);
  await bob.page.mouse.move(box.x + 200, box.y + 120, { steps: 8 });
  const pointer = alice.page.locator('[data-testid="docs-pointer"][data-name="bob"]');
  await pointer.waitFor();
  await alice.page.waitForFunction(
    () => {
      const el = document.querySelector('[data-testid="docs-pointer"][data-name="bob"]');
      const surface = document.querySelector('[data-testid="docs-editor"]');
      if (!el || !surface) return false;
      const p = el.getBoundingClientRect();
      const s = surface.getBoundingClientRect();
      return Math.abs(p.left - s.left - 200) <= 2 && Math.abs(p.top - s.top - 120) <= 2;
    },
    null,
    { timeout: WAIT },
  );
  assert.match(await pointer.textContent(), /bob/);
  // Throttled: a burst of mouse moves sends at most ~15 awareness updates a second (one per
  // 66 ms), however many moves there were.
  const sentBefore = bob.awarenessSent.length;
  const burstStart = Date.now();
  for (let i = 0; i < 60; i++) {
    await bob.page.mouse.move(box.x + 50 + i * 5, box.y + 60 + (i % 10) * 4);
    await bob.page.waitForTimeout(5);
  }
  await bob.page.waitForTimeout(300);
  const burstMs = Date.now() - burstStart;
  const sent = bob.awarenessSent.length - sentBefore;
  assert.ok(sent >= 1, "the pointer's moves were sent");
  assert.ok(sent <= Math.ceil(burstMs / 66) + 3, `${sent} awareness updates in ${burstMs} ms: not throttled`);
  assert.ok(sent < 60, `${sent} awareness updates for 60 moves`);

  // Alice's own pointer is not drawn for herself.
  await alice.page.mouse.move(300, 300);
  assert.equal(await alice.page.locator('[data-testid="docs-pointer"][data-name="alice"]').count(), 0);

  // One listener per event however often React mounted the page (StrictMode, reconnections).
  for (const editor of [alice, bob]) {
    const counts = await editor.page.evaluate(() =>
      ["doc:update", "doc:awareness"].map((event) => window.__switchyard?.listeners("/docs", event) ?? 1),
    );
    assert.deepEqual(counts, [1, 1], `${editor.name}'s listeners on /docs`);
  }

  await alice.page.screenshot({ path: path.join(SCREENSHOT_DIR, "switchyard-docs-a.png") });
  await bob.page.screenshot({ path: path.join(SCREENSHOT_DIR, "switchyard-docs-b.png") });

  // Bob leaves: his pointer and name go away from alice's page at once (not after 30 s).
  await closeEditor(bob);
  await alice.page.locator('[data-testid="docs-pointer"][data-name="bob"]').waitFor({ state: "detached", timeout: 15_000 });
  await alice.page.getByTestId("docs-user").filter({ hasText: "bob" }).waitFor({ state: "detached", timeout: 15_000 });

  await assertClean(alice);
  await closeEditor(alice);
});

test("the text survives a server restart (same data directory), and an open page resyncs", { timeout: 120_000 }, async () => {
  const expected = `${LINE_A}\n${LINE_B}`;
  // Nobody has the document open: what comes back can only come from the server's store.
  await server.stop();
  await server.start(server.port);
  const carol = await openEditor("carol", DOC);
  await waitText(carol.page, expected);

  // A page open while the server restarts shows it, reconnects, joins again, and its edit
  // made while offline reaches the server.
  await server.stop();
  await carol.page.locator('[data-testid="docs-status"][data-status="offline"]').waitFor();
  await carol.page.locator(".cm-content").click();
  await carol.page.keyboard.press("Control+End");
  await carol.page.keyboard.type(" (carol)");
  await server.start(server.port);
  await waitSynced(carol.page);
  const dave = await openEditor("dave", DOC);
  await waitText(dave.page, `${expected} (carol)`);

  await assertClean(carol);
  await assertClean(dave);
  await closeEditor(carol);
  await closeEditor(dave);
});

test("another document is separate", { timeout: 60_000 }, async () => {
  const erin = await openEditor("erin", `${DOC}-other`);
  assert.equal(await editorText(erin.page), "");
  await erin.page.locator(".cm-content").click();
  await erin.page.keyboard.type("elsewhere");
  await waitSynced(erin.page);
  // The picker opens a document by id (History API, no reload).
  await erin.page.getByTestId("docs-id-input").fill(DOC);
  await erin.page.getByTestId("docs-open").click();
  await erin.page.waitForURL(`**/docs/${DOC}`);
  await waitSynced(erin.page);
  await waitText(erin.page, `${LINE_A}\n${LINE_B} (carol)`);
  await assertClean(erin);
  await closeEditor(erin);
});

test("an update over the server's limit is refused: the page says so and the other page never gets it", { timeout: 90_000 }, async () => {
  const docId = `${DOC}-large`;
  const frank = await openEditor("frank", docId);
  const grace = await openEditor("grace", docId);
  await frank.page.locator(".cm-content").click();
  await frank.page.keyboard.type("small");
  await waitText(grace.page, "small");

  await frank.page.keyboard.insertText("x".repeat(MAX_UPDATE_BYTES + 4096));
  await frank.page.getByTestId("docs-error").filter({ hasText: "update too large" }).waitFor();
  assert.notEqual(await frank.page.getByTestId("docs-status").getAttribute("data-status"), "synced");
  // Nothing of it reached the server, so nothing reached grace; her own edits still go through.
  await grace.page.locator(".cm-content").click();
  await grace.page.keyboard.press("Control+End");
  await grace.page.keyboard.type("!");
  await waitSynced(grace.page);
  assert.equal(await editorText(grace.page), "small!");

  await assertClean(frank);
  await assertClean(grace);
  await closeEditor(frank);
  await closeEditor(grace);
});
