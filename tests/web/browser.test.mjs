// The demo page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core):
// two browser contexts chat and notify each other; a refused name is shown; the page shows a
// lost connection and recovers from it. Screenshots go to $SCREENSHOT_DIR (default: the
// system's temporary directory) as switchyard-page-a.png and switchyard-page-b.png.

import assert from "node:assert/strict";
import os from "node:os";
import path from "node:path";
import { after, before, describe } from "node:test";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";
import {
  CHROMIUM,
  CHROMIUM_ARGS,
  SwitchyardServer,
  assertChromium,
  useServer,
  withTimeout,
  wrapTest,
  roomAndMembers,
} from "./lib/server.mjs";

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR || os.tmpdir();
const WAIT = 10_000;

const { server, test } = useServer();

let browser;
before(
  async () => {
    assertChromium();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
  },
  { timeout: 40_000 },
);
after(() => browser?.close(), { timeout: 10_000 });

/**
 * A page in a new browser context (its own cookies and storage, like another browser
 * profile), recording every request URL and every console error or page error.
 */
async function openPage(url) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const requests = [];
  const errors = [];
  page.on("request", (request) => requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  const response = await page.goto(url);
  assert.equal(response.status(), 200);
  return { context, page, requests, errors };
}

/** Waits until the text of `selector` equals `expected` (or matches it, for a RegExp). */
async function waitText(page, selector, expected) {
  const isRegExp = expected instanceof RegExp;
  try {
    await page.waitForFunction(
      ([selector, source, flags, isRegExp]) => {
        const text = document.querySelector(selector)?.textContent ?? "";
        return isRegExp ? new RegExp(source, flags).test(text) : text === source;
      },
      [selector, isRegExp ? expected.source : expected, isRegExp ? expected.flags : "", isRegExp],
      { timeout: WAIT },
    );
  } catch (err) {
    const actual = await page.locator(selector).textContent().catch(() => "(missing)");
    throw new Error(`${selector}: expected ${expected}, got ${JSON.stringify(actual)} (${err.message.split("\n")[0]})`);
  }
}

/** The texts of the list items of `selector` that have `className`. */
function items(page, selector, className) {
  return page.$$eval(`${selector} li.${className}`, (nodes) =>
    nodes.map((node) => [...node.children].filter((c) => c.tagName !== "TIME").map((c) => c.textContent)),
  );
}

async function chatLogin(page, name) {
  await page.fill("#chat-name", name);
  await page.click("#chat-login button");
}

async function notifLogin(page, user) {
  await page.fill("#notif-user", user);
  await page.click("#notif-login button");
}

describe("the demo page", () => {
  test("two browser contexts chat and notify each other", { timeout: 60_000 }, async () => {
    const a = await openPage(`${server.url}/`);
    const b = await openPage(`${server.url}/`);
    try {
      for (const { page } of [a, b]) {
        assert.equal(await page.title(), "Switchyard demo");
        await waitText(page, "#connection", "not connected");
        await waitText(page, "#chat-status", "offline");
      }

      // Chat: both connect and join "general".
      await chatLogin(a.page, "alice");
      await chatLogin(b.page, "bob");
      await waitText(a.page, "#chat-status", "online as alice");
      await waitText(b.page, "#chat-status", "online as bob");
      await waitText(a.page, "#connection", "connected");
      await a.page.click("#chat-join button");
      await waitText(a.page, "#chat-messages li.system:last-child", "You joined #general (1 member here).");
      await b.page.click("#chat-join button");
      await waitText(b.page, "#chat-messages li.system:last-child", "You joined #general (2 members here).");
      assert.equal(await a.page.getAttribute("#chat-text", "placeholder"), "Message #general");

      // Typing in A shows in B, not in A.
      await a.page.locator("#chat-text").pressSequentially("hello", { delay: 20 });
      await waitText(b.page, "#chat-typing", "alice (#general) is typing…");
      assert.equal(await a.page.textContent("#chat-typing"), "");

      // A sends; both see the message, A's marked as its own; B's typing line clears.
      await a.page.fill("#chat-text", "hello from A");
      await a.page.press("#chat-text", "Enter");
      await waitText(b.page, "#chat-messages li.message:last-child .text", "hello from A");
      await waitText(a.page, "#chat-messages li.message:last-child .text", "hello from A");
      assert.deepEqual(await items(b.page, "#chat-messages", "message"), [["#general", "alice", "hello from A"]]);
      assert.deepEqual(await items(a.page, "#chat-messages", "mine"), [["#general", "alice", "hello from A"]]);
      await waitText(b.page, "#chat-typing", "");
      assert.equal(await a.page.inputValue("#chat-text"), "");

      // B answers.
      await b.page.fill("#chat-text", "hi alice");
      await b.page.click("#chat-send button");
      await waitText(a.page, "#chat-messages li.message:last-child .text", "hi alice");
      assert.deepEqual(await items(a.page, "#chat-messages", "message"), [
        ["#general", "alice", "hello from A"],
        ["#general", "bob", "hi alice"],
      ]);

      // Notifications: A notifies B's user id over the same connection (one Manager).
      await notifLogin(a.page, "u-alice");
      await notifLogin(b.page, "u-bob");
      await waitText(a.page, "#notif-status", "online as u-alice");
      await waitText(b.page, "#notif-status", "online as u-bob");
      await a.page.fill("#notif-to", "u-bob");
      await a.page.fill("#notif-text", "your build passed");
      await a.page.click("#notif-send button");
      await waitText(a.page, "#notif-result", "Delivered to 1 open tab of u-bob.");
      await waitText(b.page, "#notif-list li.note:last-child .text", "your build passed");
      assert.deepEqual(await items(b.page, "#notif-list", "note"), [["u-alice", "your build passed"]]);
      await waitText(b.page, "#notif-count", "1");
      assert.deepEqual(await items(a.page, "#notif-list", "note"), []);

      // A notification to nobody and a chat error are shown as such.
      await a.page.fill("#notif-to", "u-nobody");
      await a.page.fill("#notif-text", "hello?");
      await a.page.click("#notif-send button");
      await waitText(a.page, "#notif-result", "Delivered to 0 open tabs of u-nobody.");
      await a.page.fill("#chat-text", "   ");
      await a.page.click("#chat-send button");
      await waitText(a.page, "#chat-error", "text must not be blank");

      // The page upgraded to WebSocket and loaded nothing from elsewhere.
      await waitText(a.page, "#transport", "websocket");
      for (const { requests } of [a, b]) {
        const foreign = requests.filter((url) => !url.startsWith(`${server.url}/`));
        assert.deepEqual(foreign, []);
        assert.ok(requests.includes(`${server.url}/vendor/socket.io.min.js`));
      }
      assert.deepEqual(a.errors, []);
      assert.deepEqual(b.errors, []);

      await a.page.screenshot({ path: path.join(SCREENSHOT_DIR, "switchyard-page-a.png"), fullPage: true });
      await b.page.screenshot({ path: path.join(SCREENSHOT_DIR, "switchyard-page-b.png"), fullPage: true });
    } finally {
      await a.context.close();
      await b.context.close();
    }
  });

  test("a refused name is shown, and a good one then connects", async () => {
    const { context, page, errors } = await openPage(`${server.url}/`);
    try {
      await chatLogin(page, "   ");
      await waitText(page, "#chat-error", "Refused: name required");
      await waitText(page, "#chat-status", "refused");
      await notifLogin(page, "");
      await waitText(page, "#notif-error", "Refused: user required");
      await chatLogin(page, "carol");
      await waitText(page, "#chat-status", "online as carol");
      await waitText(page, "#chat-error", "");
      // The refusals are answers, not script errors. After a refusal the client closes its
      // connection while its next long-polling GET may already be on the way: that GET can
      // get the protocol's 400 "Session ID unknown", which Chromium logs as a failed load.
      assert.deepEqual(
        errors.filter((error) => !error.startsWith("console: Failed to load resource: the server responded with a status of 400")),
        [],
      );
    } finally {
      await context.close();
    }
  });
});

describe("reconnection", () => {
  const own = new SwitchyardServer();
  const ownTest = wrapTest(own);
  before(() => own.start(), { timeout: 20_000 });
  after(() => own.stop(), { timeout: 15_000 });

  ownTest("the page shows the lost connection, reconnects, and joins its rooms again", { timeout: 60_000 }, async () => {
    const { context, page } = await openPage(`${own.url}/`);
    const others = [];
    try {
      await chatLogin(page, "dave");
      await notifLogin(page, "u-dave");
      await waitText(page, "#chat-status", "online as dave");
      await waitText(page, "#notif-status", "online as u-dave");
      await page.click("#chat-join button");
      await waitText(page, "#chat-messages li.system:last-child", "You joined #general (1 member here).");

      // The server goes away: the page says so and tries again.
      const port = own.port;
      assert.deepEqual(await own.stop(), { code: 0, signal: null });
      await waitText(page, "#connection", /^(disconnected \(transport close\)|reconnecting… \(attempt \d+\))$/);
      await waitText(page, "#connection", /^reconnecting… \(attempt \d+\)$/);
      await waitText(page, "#chat-status", "waiting for the server");

      // It comes back on the same port: the page reconnects both namespaces by itself.
      await own.start(port);
      await waitText(page, "#connection", /^reconnected after \d+ attempts?$/);
      await waitText(page, "#chat-status", "online as dave");
      await waitText(page, "#notif-status", "online as u-dave");
      await waitText(page, "#chat-messages li.system:last-child", "You joined #general (1 member here).");

      // It is in "general" again: a message from elsewhere reaches it...
      const erin = io(`${own.url}/chat`, { forceNew: true, reconnection: false, auth: { name: "erin" } });
      others.push(erin);
      assert.deepEqual(roomAndMembers(await withTimeout(erin.emitWithAck("join", "general"), 3000, "erin's join")), {
        room: "general",
        members: 2,
      });
      assert.deepEqual(await erin.emitWithAck("message", { room: "general", text: "welcome back" }), { ok: true });
      await waitText(page, "#chat-messages li.message:last-child .text", "welcome back");

      // ...and so does a notification.
      const notifier = io(`${own.url}/notifications`, { forceNew: true, reconnection: false, auth: { user: "ops" } });
      others.push(notifier);
      assert.deepEqual(
        await withTimeout(notifier.emitWithAck("notify", { to: "u-dave", text: "server restarted" }), 3000, "notify"),
        { delivered: 1 },
      );
      await waitText(page, "#notif-list li.note:last-child .text", "server restarted");
    } finally {
      for (const socket of others) socket.disconnect();
      await context.close();
    }
  });
});
