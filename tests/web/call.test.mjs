// The call page (/call) in headless Chromium with fake camera and microphone: two browser
// contexts sign in as two users; one calls, the other accepts, and both pages show the
// RTCPeerConnection `connected`; a hang-up ends the call on both sides; a declined call; a
// call to a user who is not online shows the server's error; a call rings every tab of the
// callee and the others stop ("answered elsewhere") when one answers; no CSP violation. A screenshot
// goes to $SCREENSHOT_DIR (default: the system's temporary directory) as switchyard-call.png.
//
// No STUN or TURN server: the two browsers reach each other over loopback host candidates
// (`--allow-loopback-in-peer-connection`). The page comes from the binary itself; before a
// binary embeds the app, APP_VITE=1 (Vite's dev server: StrictMode mounts twice) or
// APP_VITE=preview (the production build with the CSP) serve it, proxying to the test's
// server (lib/app.mjs).

import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { chromium } from "playwright-core";
import { appFor } from "./lib/app.mjs";
import { CHROMIUM, CHROMIUM_ARGS, SwitchyardServer, assertChromium, wrapTest } from "./lib/server.mjs";

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || os.tmpdir();
/** Every wait for a condition: generous, so a loaded machine does not fail the test. */
const WAIT = 30_000;

const server = new SwitchyardServer();
const test = wrapTest(server);
/** Where the pages come from: the server, or a Vite server proxying to it (APP_VITE). */
let app;
const appOrigin = () => app.url;

let browser;

before(
  async () => {
    assertChromium();
    await server.start();
    app = await appFor(server);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        ...CHROMIUM_ARGS,
        // getUserMedia answered without a prompt, from a fake camera and microphone.
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        // Host candidates on 127.0.0.1 (Chromium leaves loopback out by default).
        "--allow-loopback-in-peer-connection",
        "--autoplay-policy=no-user-gesture-required",
      ],
      timeout: 30_000,
    });
  },
  { timeout: 60_000 },
);
after(
  async () => {
    await browser?.close();
    await app?.stop();
    await server.stop();
  },
  { timeout: 30_000 },
);

/** A user in a browser context of their own, signed in as `name` on /call. */
async function openCallPage(name) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
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
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const response = await page.goto(`${appOrigin()}/call`);
  assert.equal(response.status(), 200);
  await page.getByTestId("signin-name").fill(name);
  await page.getByTestId("signin-submit").click();
  await page.getByTestId("user-name").filter({ hasText: name }).waitFor();
  // Reachable: the /calls socket is connected (else a call to this user is "user not online").
  await page.locator('[data-testid="call-online"][data-online="true"]').waitFor();
  return { name, context, page, errors };
}

async function assertClean(user) {
  const violations = await user.page.evaluate(() => window.__cspViolations ?? []);
  assert.deepEqual(violations, [], `CSP violations in ${user.name}'s page`);
  assert.deepEqual(user.errors, [], `errors in ${user.name}'s page`);
}

const phase = (user, name) => user.page.locator(`[data-testid="call-state"][data-phase="${name}"]`).waitFor();
const connection = (user, state) =>
  user.page.locator('[data-testid="call-connection"]', { hasText: new RegExp(`^${state}$`) }).waitFor();
const ended = (user, reason) => user.page.locator(`[data-testid="call-ended"][data-reason="${reason}"]`).waitFor();

async function call(from, to) {
  await from.page.getByTestId("call-to").fill(to.name);
  await from.page.getByTestId("call-start").click();
  await to.page.locator(`[data-testid="call-incoming"][data-from="${from.name}"]`).waitFor();
  await phase(from, "ringing");
}

let alice;
let bob;

test("a call is accepted, both sides connect with media, and a hang-up ends it on both", { timeout: 120_000 }, async () => {
  alice = await openCallPage("alice");
  bob = await openCallPage("bob");

  // One listener per event however often React mounted the page.
  for (const user of [alice, bob]) {
    const count = await user.page.evaluate(() => window.__switchyard?.listeners("/calls", "call:incoming") ?? 1);
    assert.equal(count, 1, `${user.name}'s call:incoming listeners`);
  }

  await call(alice, bob);
  await bob.page.getByTestId("call-accept").click();
  await phase(alice, "active");
  await phase(bob, "active");
  await connection(alice, "connected");
  await connection(bob, "connected");
  // The fake camera's frames arrive on the other side.
  for (const user of [alice, bob]) {
    await user.page.waitForFunction(
      () => {
        const video = document.querySelector('[data-testid="call-remote-video"]');
        return video instanceof HTMLVideoElement && video.srcObject !== null && video.videoWidth > 0;
      },
      null,
      { timeout: WAIT },
    );
  }
  await alice.page.screenshot({ path: path.join(SCREENSHOT_DIR, "switchyard-call.png") });

  await bob.page.getByTestId("call-hangup").click();
  await ended(bob, "hangup");
  await ended(alice, "hangup");
  await phase(alice, "idle");
  assert.equal(await alice.page.getByTestId("call-connection").count(), 0, "no connection after the call");
  // The camera is released on both sides.
  for (const user of [alice, bob]) {
    const live = await user.page.evaluate(() => {
      const video = document.querySelector('[data-testid="call-local-video"]');
      return video instanceof HTMLVideoElement && video.srcObject !== null;
    });
    assert.equal(live, false, `${user.name}'s camera is off`);
  }
});

test("a declined call ends for the caller with the reason", { timeout: 60_000 }, async () => {
  await call(bob, alice);
  await alice.page.getByTestId("call-decline").click();
  await ended(bob, "declined");
  await ended(alice, "declined");
  await phase(bob, "idle");
});

test("calling a user who is not online shows the server's error", { timeout: 60_000 }, async () => {
  await alice.page.getByTestId("call-to").fill("nobody-here");
  await alice.page.getByTestId("call-start").click();
  await alice.page.getByTestId("call-error").filter({ hasText: "user not online" }).waitFor();
  await phase(alice, "idle");

  // And the two can call again afterwards (nothing left over from the earlier calls).
  await call(alice, bob);
  await alice.page.getByTestId("call-hangup").click(); // cancelled while it rings
  await ended(bob, "hangup");
  await phase(bob, "idle");

  await assertClean(alice);
  await assertClean(bob);
});

test("a call rings every tab of the callee; the others stop when one answers", { timeout: 90_000 }, async () => {
  // Bob's second tab (same browser profile, signed in there too).
  const page = await bob.context.newPage();
  page.setDefaultTimeout(WAIT);
  await page.goto(`${appOrigin()}/call`);
  await page.getByTestId("signin-name").fill(bob.name);
  await page.getByTestId("signin-submit").click();
  await page.locator('[data-testid="call-online"][data-online="true"]').waitFor();
  const bob2 = { name: "bob (second tab)", context: bob.context, page, errors: [] };

  await alice.page.getByTestId("call-to").fill(bob.name);
  await alice.page.getByTestId("call-start").click();
  await bob.page.locator('[data-testid="call-incoming"][data-from="alice"]').waitFor();
  await bob2.page.locator('[data-testid="call-incoming"][data-from="alice"]').waitFor();
  await bob2.page.getByTestId("call-accept").click();
  await ended(bob, "answered elsewhere");
  await connection(alice, "connected");
  await connection(bob2, "connected");
  await alice.page.getByTestId("call-hangup").click();
  await ended(bob2, "hangup");
  await ended(alice, "hangup");

  await assertClean(alice);
  await assertClean(bob);
  await alice.context.close();
  await bob.context.close();
});
