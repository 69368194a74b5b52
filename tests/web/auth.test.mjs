// JWT handshake authentication of the switchyard binary, with the official socket.io-client:
// tokens minted here with node:crypto (HS256, RS256, ES256, EdDSA), every refusal reason,
// the token sources, auth functions on reconnect, expiry while connected, the rooms a token
// allows, relayed events, personal rooms, public namespaces and the mint-token command.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import crypto from "node:crypto";
import { after, afterEach, before, describe } from "node:test";
import { promisify } from "node:util";
import { io } from "socket.io-client";
import { SwitchyardServer, switchyardBin, withTimeout, sleep, wrapTest, roomAndMembers, notifyAck } from "./lib/server.mjs";
import { makeKeys, nowS, sign } from "./lib/jwt.mjs";

const SECRET = "node-test-secret-0123456789abcdef";
const ISSUER = "https://issuer.test";
const AUDIENCE = "switchyard";
const keys = makeKeys();
const otherRsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
after(() => keys.cleanup());

const JWT_ENV = {
  JWT_SECRET: SECRET,
  JWT_PUBLIC_KEY: keys.rsaPem,
  JWT_JWKS: keys.jwks,
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
  JWT_LEEWAY_S: "0",
  JWT_TOKEN_SOURCES: "auth,header,query",
  RELAY_EVENTS: "/chat=message,typing,reaction",
  // Many handshakes in a short time from one address: not what these tests are about.
  HANDSHAKE_RATE: "off",
};

const server = new SwitchyardServer(JWT_ENV);
const test = wrapTest(server);
// A second server with only a JWKS (so a kid must name one of its keys) and /notifications
// public.
const jwksOnly = new SwitchyardServer({
  JWT_JWKS: keys.jwks,
  PUBLIC_NAMESPACES: "/notifications",
  HANDSHAKE_RATE: "off",
});
const jwksTest = wrapTest(jwksOnly);

describe("JWT", { concurrency: false }, () => {
  before(async () => {
    await Promise.all([server.start(), jwksOnly.start()]);
  });
  after(() => Promise.all([server.stop(), jwksOnly.stop()]));

  /** Every socket the tests open, closed after each test. */
  let open = [];
  afterEach(() => {
    for (const socket of open) socket.disconnect();
    open = [];
  });

  /** Valid claims for `sub`, overridable. */
  const claims = (sub, extra = {}) => ({
    sub,
    iss: ISSUER,
    aud: AUDIENCE,
    iat: nowS(),
    exp: nowS() + 600,
    ...extra,
  });
  const hs256 = (c) => sign("HS256", c, SECRET);

  function once(emitter, event, timeout = 3000) {
    return withTimeout(
      new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
      timeout,
      `the "${event}" event`,
    );
  }

  function socketFor(url, nsp, opts) {
    const socket = io(`${url}${nsp}`, { forceNew: true, reconnection: false, ...opts });
    open.push(socket);
    return socket;
  }

  /** Connects with `opts` (auth, extraHeaders, query…); throws on connect_error. */
  async function connect(nsp, opts, url = server.url) {
    const socket = socketFor(url, nsp, opts);
    await withTimeout(
      new Promise((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("connect_error", (err) =>
          reject(new Error(`connect_error: ${err.message} ${JSON.stringify(err.data)}`)),
        );
      }),
      3000,
      `connecting to ${nsp}`,
    );
    return socket;
  }

  /** The CONNECT_ERROR `{ message, data }` an attempt gets. */
  async function refusal(nsp, opts, url = server.url) {
    const socket = socketFor(url, nsp, opts);
    const [err] = await Promise.race([
      once(socket, "connect_error"),
      once(socket, "connect").then(() => [new Error("unexpectedly connected")]),
    ]);
    return { message: err.message, data: err.data };
  }

  const refused = (code, reason) => ({ message: "unauthorized", data: { code, reason } });
  const ask = (socket, event, data) => socket.timeout(3000).emitWithAck(event, data);

  test("valid tokens of each algorithm connect, and messages carry sender = sub", async () => {
    const tokens = [
      ["alice", hs256(claims("alice", { rooms: ["team-*"] }))],
      ["rsa-user", sign("RS256", claims("rsa-user", { rooms: ["team-*"] }), keys.rsa.privateKey)],
      ["ec-user", sign("ES256", claims("ec-user", { rooms: ["team-*"] }), keys.ec.privateKey, { kid: "ec-1" })],
      ["ed-user", sign("EdDSA", claims("ed-user", { rooms: ["team-*"] }), keys.ed.privateKey, { kid: "ed-1" })],
    ];
    for (const [sub, token] of tokens) {
      const socket = await connect("/chat", { auth: { token } });
      assert.deepEqual(roomAndMembers(await ask(socket, "join", "team-red")), { room: "team-red", members: 1 }, sub);
      const got = once(socket, "message");
      assert.deepEqual(await ask(socket, "message", { room: "team-red", text: `hi from ${sub}` }), { ok: true });
      const [{ time, id, ...message }] = await got;
      assert.deepEqual(message, { room: "team-red", sender: sub, text: `hi from ${sub}` });
      assert.equal(typeof id, "string");
      assert.equal(typeof time, "number");
      socket.disconnect();
    }
  });

  test("auth.name is ignored when a token is required: the identity is the token's sub", async () => {
    const socket = await connect("/chat", { auth: { token: hs256(claims("alice", { rooms: ["general"] })), name: "mallory" } });
    await ask(socket, "join", "general");
    const got = once(socket, "message");
    await ask(socket, "message", { room: "general", text: "who am I" });
    assert.equal((await got)[0].sender, "alice");
  });

  test("every refusal has its reason and code", async () => {
    const t = nowS();
    const cases = [
      ["missing", { auth: {} }, refused(4001, "missing")],
      ["missing (no auth)", {}, refused(4001, "missing")],
      ["malformed", { auth: { token: "not-a-jwt" } }, refused(4002, "malformed")],
      ["malformed parts", { auth: { token: "a.b.c" } }, refused(4002, "malformed")],
      ["malformed type", { auth: { token: 42 } }, refused(4002, "malformed")],
      ["malformed (no sub)", { auth: { token: hs256({ iss: ISSUER, aud: AUDIENCE, exp: t + 60 }) } }, refused(4002, "malformed")],
      ["expired", { auth: { token: hs256(claims("a", { exp: t - 10 })) } }, refused(4003, "expired")],
      ["not yet valid", { auth: { token: hs256(claims("a", { nbf: t + 60 })) } }, refused(4004, "not_yet_valid")],
      ["wrong signature", { auth: { token: sign("HS256", claims("a"), "another-secret-0123456789") } }, refused(4005, "invalid_signature")],
      ["alg none", { auth: { token: sign("none", claims("a")) } }, refused(4005, "invalid_signature")],
      [
        "algorithm confusion: HS256 keyed with the RSA public key",
        { auth: { token: sign("HS256", claims("a"), keys.rsaPublicPem) } },
        refused(4005, "invalid_signature"),
      ],
      [
        "RS256 signed by another key",
        { auth: { token: sign("RS256", claims("a"), otherRsa.privateKey) } },
        refused(4005, "invalid_signature"),
      ],
      ["wrong issuer", { auth: { token: hs256(claims("a", { iss: "https://evil.test" })) } }, refused(4006, "wrong_issuer")],
      ["wrong audience", { auth: { token: hs256(claims("a", { aud: "other" })) } }, refused(4007, "wrong_audience")],
    ];
    for (const [name, opts, expected] of cases) {
      assert.deepEqual(await refusal("/chat", opts), expected, name);
    }
    // /notifications requires a token too.
    assert.deepEqual(await refusal("/notifications", { auth: { user: "bob" } }), refused(4001, "missing"));
  });

  jwksTest("a kid that names no key is unknown_key; a public namespace needs no token", async () => {
    const token = sign("ES256", claims("a"), keys.ec.privateKey, { kid: "ec-9" });
    assert.deepEqual(await refusal("/chat", { auth: { token } }, jwksOnly.url), refused(4008, "unknown_key"));
    const good = sign("ES256", claims("a"), keys.ec.privateKey, { kid: "ec-1" });
    await connect("/chat", { auth: { token: good } }, jwksOnly.url);
    // Public: today's auth.user identity, no token.
    const bob = await connect("/notifications", { auth: { user: "bob" } }, jwksOnly.url);
    const note = once(bob, "notification");
    assert.deepEqual(notifyAck(await ask(bob, "notify", { to: "bob", text: "public" })), { delivered: 1 });
    assert.equal((await note)[0].from, "bob");
  });

  test("the token may come from an Authorization header or a query parameter", async () => {
    const byHeader = await connect("/chat", {
      extraHeaders: { Authorization: `Bearer ${hs256(claims("header-user", { rooms: ["r"] }))}` },
    });
    const byQuery = await connect("/chat", { query: { token: hs256(claims("query-user", { rooms: ["r"] })) } });
    for (const [socket, sub] of [
      [byHeader, "header-user"],
      [byQuery, "query-user"],
    ]) {
      await ask(socket, "join", "r");
      const got = once(socket, "message");
      await ask(socket, "message", { room: "r", text: "x" });
      assert.equal((await got)[0].sender, sub);
    }
    // auth comes first in the configured order.
    const both = await connect("/chat", {
      auth: { token: hs256(claims("auth-user", { rooms: ["r2"] })) },
      extraHeaders: { Authorization: `Bearer ${hs256(claims("header-user", { rooms: ["r2"] }))}` },
    });
    await ask(both, "join", "r2");
    const got = once(both, "message");
    await ask(both, "message", { room: "r2", text: "x" });
    assert.equal((await got)[0].sender, "auth-user");
    assert.deepEqual(await refusal("/chat", { extraHeaders: { Authorization: "Basic abc" } }), refused(4002, "malformed"));
  });

  test("autoConnect: false, then socket.auth = { token }, then connect()", async () => {
    const socket = io(`${server.url}/chat`, { forceNew: true, reconnection: false, autoConnect: false });
    open.push(socket);
    socket.auth = { token: hs256(claims("late", { rooms: ["x"] })) };
    const connected = once(socket, "connect");
    socket.connect();
    await connected;
    assert.deepEqual(roomAndMembers(await ask(socket, "join", "x")), { room: "x", members: 1 });
  });

  test("an auth function is called for a fresh token on every reconnection", async () => {
    let calls = 0;
    const socket = io(`${server.url}/chat`, {
      forceNew: true,
      reconnection: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
      auth: (cb) => {
        calls += 1;
        cb({ token: hs256(claims(`user-${calls}`, { rooms: ["re"] })) });
      },
    });
    open.push(socket);
    for (let round = 1; round <= 3; round++) {
      if (round > 1) {
        const reconnected = once(socket, "connect");
        socket.io.engine.close(); // the connection drops; the manager reconnects
        await reconnected;
      } else {
        await once(socket, "connect");
      }
      assert.equal(calls, round);
      await ask(socket, "join", "re");
      const got = once(socket, "message");
      await ask(socket, "message", { room: "re", text: `round ${round}` });
      assert.equal((await got)[0].sender, `user-${round}`);
    }
  });

  test("a token expiring while connected: auth_expired, then io server disconnect", async () => {
    const socket = await connect("/chat", { auth: { token: hs256(claims("short", { exp: nowS() + 2 })) } });
    const events = [];
    socket.onAny((event, ...args) => events.push([event, ...args]));
    const [reason] = await once(socket, "disconnect", 5000);
    assert.equal(reason, "io server disconnect");
    assert.deepEqual(events, [["auth_expired", { reason: "expired" }]]);
    // A later socket of the same user with a fresh token is not concerned.
  });

  test("a socket that leaves before its token expires is not disturbed later", async () => {
    // Two sockets expiring in 2 s; one leaves at once: the other alone gets the event.
    const a = await connect("/chat", { auth: { token: hs256(claims("a", { exp: nowS() + 2 })) } });
    const b = await connect("/chat", { auth: { token: hs256(claims("b", { exp: nowS() + 600 })) } });
    a.disconnect();
    const events = [];
    b.onAny((event) => events.push(event));
    await sleep(2500);
    assert.equal(b.connected, true);
    assert.deepEqual(events, []);
  });

  test("joins are limited to the token's rooms claim, and a refusal is answered", async () => {
    const scoped = await connect("/chat", { auth: { token: hs256(claims("scoped", { rooms: ["team-*", "general"] })) } });
    assert.deepEqual(roomAndMembers(await ask(scoped, "join", "team-blue")), { room: "team-blue", members: 1 });
    assert.deepEqual(roomAndMembers(await ask(scoped, "join", "general")), { room: "general", members: 1 });
    assert.deepEqual(await ask(scoped, "join", "random"), { error: "not allowed to join room random" });
    assert.deepEqual(await ask(scoped, "join", "teams"), { error: "not allowed to join room teams" });
    // No rooms claim: no room.
    const none = await connect("/chat", { auth: { token: hs256(claims("none")) } });
    assert.deepEqual(await ask(none, "join", "general"), { error: "not allowed to join room general" });
    // Messages to a room not joined are refused as before.
    assert.deepEqual(await ask(none, "message", { room: "general", text: "x" }), { error: "not in room general" });
  });

  test("configured events are relayed to the room with the sender", async () => {
    const alice = await connect("/chat", { auth: { token: hs256(claims("alice", { rooms: ["*"] })) } });
    const bob = await connect("/chat", { auth: { token: hs256(claims("bob", { rooms: ["*"] })) } });
    await ask(alice, "join", "party");
    await ask(bob, "join", "party");
    const atBob = once(bob, "reaction");
    assert.deepEqual(await ask(alice, "reaction", { room: "party", emoji: "🎉" }), { ok: true });
    const [{ time, ...reaction }] = await atBob;
    assert.deepEqual(reaction, { room: "party", emoji: "🎉", sender: "alice" });
    assert.equal(typeof time, "number");
    assert.deepEqual(await ask(alice, "reaction", { room: "elsewhere", emoji: "x" }), { error: "not in room elsewhere" });
  });

  test("/notifications addresses users by sub through their personal room", async () => {
    const alice = await connect("/notifications", { auth: { token: hs256(claims("alice")) } });
    const bob1 = await connect("/notifications", { auth: { token: hs256(claims("bob")) } });
    const bob2 = await connect("/notifications", { auth: { token: hs256(claims("bob")) } });
    const at1 = once(bob1, "notification");
    const at2 = once(bob2, "notification");
    assert.deepEqual(notifyAck(await ask(alice, "notify", { to: "bob", text: "build passed" })), { delivered: 2 });
    const [[n1], [n2]] = await Promise.all([at1, at2]);
    assert.deepEqual([n1.from, n1.text, n2.from], ["alice", "build passed", "alice"]);
  });

  test("mint-token signs tokens the server accepts", async () => {
    const run = promisify(execFile);
    const env = { ...process.env, JWT_SECRET: SECRET, JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE };
    const { stdout } = await run(switchyardBin(), ["mint-token", "--sub", "minted", "--rooms", "team-*", "--ttl", "60"], { env });
    const token = stdout.trim();
    const [, payload] = token.split(".");
    const decoded = JSON.parse(Buffer.from(payload, "base64url").toString());
    assert.deepEqual(
      { sub: decoded.sub, rooms: decoded.rooms, iss: decoded.iss, aud: decoded.aud, ttl: decoded.exp - decoded.iat },
      { sub: "minted", rooms: ["team-*"], iss: ISSUER, aud: AUDIENCE, ttl: 60 },
    );
    const socket = await connect("/chat", { auth: { token } });
    assert.deepEqual(roomAndMembers(await ask(socket, "join", "team-a")), { room: "team-a", members: 1 });
    // Without a secret, only --dev mints (with the development secret, which this server
    // does not accept).
    const bare = { ...process.env, JWT_SECRET: "" };
    await assert.rejects(run(switchyardBin(), ["mint-token"], { env: bare }), /mint-token signs with JWT_SECRET/);
    const dev = (await run(switchyardBin(), ["mint-token", "--dev", "--sub", "d"], { env: bare })).stdout.trim();
    assert.deepEqual(await refusal("/chat", { auth: { token: dev } }), refused(4005, "invalid_signature"));
  });
});
