// Connection state recovery of the switchyard binary (RECOVERY_MS) with JWT on, with the
// official socket.io-client: a resuming client authenticates again before it gets its session
// back, keeps only the rooms its new token allows (and only their missed messages), and a
// stolen private id with someone else's token gets neither the victim's personal room nor what
// was sent to it.

import assert from "node:assert/strict";
import { after, afterEach, before, describe } from "node:test";
import { io } from "socket.io-client";
import { SwitchyardServer, withTimeout, wrapTest, notifyAck } from "./lib/server.mjs";
import { nowS, sign } from "./lib/jwt.mjs";

const SECRET = "recovery-test-secret-0123456789abcdef";
const server = new SwitchyardServer({
  JWT_SECRET: SECRET,
  RECOVERY_MS: "30000",
  RELAY_EVENTS: "/chat=message",
  HANDSHAKE_RATE: "off",
  JWT_LEEWAY_S: "0",
});
const test = wrapTest(server);

const token = (sub, rooms, lifetime = 600) =>
  sign("HS256", { sub, exp: nowS() + lifetime, rooms }, SECRET);

describe("recovery with JWT", { concurrency: false }, () => {
  before(() => server.start());
  after(() => server.stop());

  let open = [];
  afterEach(() => {
    for (const socket of open) socket.disconnect();
    open = [];
  });

  function socketFor(nsp, opts) {
    const socket = io(`${server.url}${nsp}`, {
      forceNew: true,
      transports: ["websocket"],
      reconnectionDelay: 100,
      reconnectionDelayMax: 200,
      ...opts,
    });
    open.push(socket);
    return socket;
  }

  function once(emitter, event, timeout = 5000) {
    return withTimeout(
      new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
      timeout,
      `the "${event}" event`,
    );
  }

  async function connected(socket) {
    const [err] = await Promise.race([
      once(socket, "connect").then(() => [null]),
      once(socket, "connect_error"),
    ]);
    if (err) throw new Error(`connect_error: ${err.message}`);
    return socket;
  }

  const ask = (socket, event, data) => socket.timeout(3000).emitWithAck(event, data);

  /** Every `message` a socket receives, as `room: text`. */
  function messages(socket) {
    const seen = [];
    socket.on("message", (message) => seen.push(`${message.room}: ${message.text}`));
    return seen;
  }

  async function waitFor(what, condition) {
    const deadline = Date.now() + 5000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  test("a resuming client keeps only the rooms its new token allows", async () => {
    let current = token("ann", ["team-*", "general"]);
    const ann = await connected(socketFor("/chat", { auth: (cb) => cb({ token: current }) }));
    const annId = ann.id;
    const seen = messages(ann);
    await ask(ann, "join", "team-a");
    await ask(ann, "join", "general");
    const bob = await connected(socketFor("/chat", { auth: { token: token("bob", ["team-*", "general"]) } }));
    await ask(bob, "join", "team-a");
    await ask(bob, "join", "general");

    // Ann's token loses team-* while her connection is down.
    current = token("ann", ["general"]);
    const reconnected = once(ann, "connect");
    ann.io.engine.close();
    await ask(bob, "message", { room: "team-a", text: "secret plans" });
    await ask(bob, "message", { room: "general", text: "hello all" });
    await reconnected;
    assert.equal(ann.recovered, true);
    assert.equal(ann.id, annId);

    await ask(bob, "message", { room: "team-a", text: "more plans" });
    await ask(bob, "message", { room: "general", text: "end" });
    await waitFor("the last message", () => seen.includes("general: end"));
    assert.deepEqual(seen, ["general: hello all", "general: end"]);
    assert.deepEqual(await ask(ann, "message", { room: "team-a", text: "x" }), { error: "not in room team-a" });
  });

  test("a stolen private id with another user's token gets nothing of the victim's own", async () => {
    const ann = await connected(
      socketFor("/notifications", { auth: { token: token("ann", []) }, reconnection: false }),
    );
    const { _pid: pid } = ann;
    assert.equal(typeof pid, "string");
    const annId = ann.id;
    ann.io.engine.close();
    const bob = await connected(socketFor("/notifications", { auth: { token: token("bob", []) } }));
    // Until the server has seen ann go, a notification still reaches her old socket.
    const deadline = Date.now() + 5000;
    while ((await ask(bob, "notify", { to: "ann", text: "while away" })).delivered !== 0) {
      if (Date.now() > deadline) throw new Error("the server never saw ann's socket go");
      await new Promise((r) => setTimeout(r, 20));
    }

    const mallory = socketFor("/notifications", { auth: { token: token("mallory", []), pid } });
    const notes = [];
    mallory.on("notification", (note) => notes.push(note.text));
    await connected(mallory);
    // The session itself is given back (the private id is the credential the client holds),
    // but not the room that was ann's.
    assert.equal(mallory.id, annId);
    await ask(bob, "notify", { to: "ann", text: "after" });
    assert.deepEqual(notifyAck(await ask(bob, "notify", { to: "mallory", text: "yours" })), { delivered: 1 });
    await waitFor("mallory's own notification", () => notes.includes("yours"));
    assert.deepEqual(notes, ["yours"]);
  });

  test("a recovered socket is still disconnected when its token expires", async () => {
    let current = token("dan", ["general"], 600);
    const dan = await connected(socketFor("/chat", { auth: (cb) => cb({ token: current }) }));
    const danId = dan.id;
    // The token it resumes with expires in about two seconds.
    current = token("dan", ["general"], 2);
    const reconnected = once(dan, "connect");
    dan.io.engine.close();
    await reconnected;
    assert.equal(dan.recovered, true);
    assert.equal(dan.id, danId);
    const expired = once(dan, "auth_expired", 6000);
    const [reason] = await once(dan, "disconnect", 6000);
    assert.equal(reason, "io server disconnect");
    assert.deepEqual((await expired)[0], { reason: "expired" });
  });

  test("a resuming client whose token is refused gets a CONNECT_ERROR, not the session", async () => {
    let current = token("cat", ["general"]);
    const cat = await connected(socketFor("/chat", { auth: (cb) => cb({ token: current }) }));
    const catId = cat.id;
    current = "not-a-token";
    cat.io.engine.close();
    const [err] = await once(cat, "connect_error");
    assert.equal(err.message, "unauthorized");
    // With a good token again, the session is still there to take.
    current = token("cat", ["general"]);
    cat.connect();
    await once(cat, "connect");
    assert.equal(cat.recovered, true);
    assert.equal(cat.id, catId);
  });
});
