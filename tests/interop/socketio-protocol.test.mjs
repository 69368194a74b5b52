// Socket.IO v5 on the wire: raw HTTP long-polling (fetch) and raw WebSocket (ws) against
// `conformance socketio` (/socket.io/, pingInterval 300, pingTimeout 200, connectTimeout 1000).
// On "/" the server emits "auth" with the handshake auth, answers "message" with
// "message-back" and acks "message-with-ack" with the same arguments; "/custom" emits "auth";
// every other namespace is refused.
//
// Part 1 covers the cases of the official Socket.IO v5 protocol test suite (32 cases: 16 on
// the Engine.IO layer, 16 on the Socket.IO layer); part 2 adds further cases.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { useServer } from "./lib/server.mjs";
import {
  PING_INTERVAL,
  PING_TIMEOUT,
  SEP,
  sleep,
  req,
  assertEioError,
  assertOpenPacket,
  Polling,
  RawWs,
  wsHandshake,
  assertWsRejected,
  assertWsRefusedOrClosed,
  withTimeout,
  bytes,
  assertPingTime,
} from "./lib/raw.mjs";

const CONNECT_TIMEOUT = 1000;

const { server, test } = useServer("socketio");

const base = () => `${server.httpUrl}/socket.io/`;
const wsBase = () => `${server.wsUrl}/socket.io/`;

async function pollingSession() {
  const p = new Polling(base());
  await p.handshake();
  return p;
}

async function assertSessionGone(p) {
  assertEioError(await p.get(), 400, 1, "Session ID unknown");
}

/** Parses a CONNECT reply `40[/nsp,]{"sid":...}` and returns the sid. */
function assertConnectReply(data, nsp = "/") {
  const prefix = nsp === "/" ? "40" : `40${nsp},`;
  assert.equal(typeof data, "string", "CONNECT reply must be text");
  assert.ok(data.startsWith(prefix), `expected ${prefix}{...}, got ${JSON.stringify(data)}`);
  const payload = JSON.parse(data.substring(prefix.length));
  assert.deepEqual(Object.keys(payload), ["sid"]);
  assert.equal(typeof payload.sid, "string");
  assert.ok(payload.sid.length > 0);
  return payload.sid;
}

/** Engine.IO WebSocket session with a Socket.IO connection to "/" (CONNECT + auth packet). */
async function sioSocket({ autoPong = true, auth } = {}) {
  const ws = await wsHandshake(wsBase(), { autoPong });
  ws.send(auth === undefined ? "40" : `40${JSON.stringify(auth)}`);
  ws.sioSid = assertConnectReply(await ws.nextNonPing());
  assert.equal(await ws.nextNonPing(), `42["auth",${JSON.stringify(auth ?? {})}]`);
  return ws;
}

async function take(ws, n) {
  const out = [];
  while (out.length < n) out.push(await ws.nextNonPing());
  return out;
}

describe("Socket.IO v5 official suite: Engine.IO layer", () => {
  describe("handshake over HTTP long-polling", () => {
    test("opens a session", async () => {
      const res = await req(`${base()}?EIO=4&transport=polling`);
      assert.equal(res.status, 200);
      assertOpenPacket(res.body, ["websocket"]);
    });

    test("refuses a missing or non-numeric EIO parameter", async () => {
      assertEioError(await req(`${base()}?transport=polling`), 400, 5, "Unsupported protocol version");
      assertEioError(await req(`${base()}?EIO=abc&transport=polling`), 400, 5, "Unsupported protocol version");
    });

    test("refuses a missing or unknown transport", async () => {
      assertEioError(await req(`${base()}?EIO=4`), 400, 0, "Transport unknown");
      assertEioError(await req(`${base()}?EIO=4&transport=abc`), 400, 0, "Transport unknown");
    });

    test("refuses a handshake made with POST or PUT", async () => {
      assertEioError(await req(`${base()}?EIO=4&transport=polling`, { method: "POST" }), 400, 2, "Bad handshake method");
      assertEioError(await req(`${base()}?EIO=4&transport=polling`, { method: "PUT" }), 400, 2, "Bad handshake method");
    });
  });

  describe("handshake over WebSocket", () => {
    test("opens a session", async () => {
      const ws = await wsHandshake(wsBase());
      ws.close();
    });

    test("opens no session when EIO is missing or not a number", async () => {
      await assertWsRefusedOrClosed(`${wsBase()}?transport=websocket`);
      await assertWsRefusedOrClosed(`${wsBase()}?EIO=abc&transport=websocket`);
    });

    test("refuses the upgrade when transport is missing or unknown", async () => {
      await assertWsRejected(`${wsBase()}?EIO=4`, 400);
      await assertWsRejected(`${wsBase()}?EIO=4&transport=abc`, 400);
    });
  });

  describe("heartbeat", () => {
    test("polling: pings every pingInterval, accepts pongs", async () => {
      const p = await pollingSession();
      let earliest = p.handshakeSentAt;
      let latest = p.handshakeAt;
      let slack = 50;
      for (let i = 0; i < 3; i++) {
        const poll = await p.get();
        const now = Date.now();
        assert.equal(poll.status, 200);
        assert.equal(poll.body, "2");
        assertPingTime(`ping ${i}`, now, earliest, latest, slack);
        const pong = await p.post("3");
        assert.equal(pong.status, 200);
        assert.equal(pong.body, "ok");
        earliest = now;
        latest = Date.now();
        slack = 150;
      }
    });

    test("polling: the session is closed after pingInterval + pingTimeout without pong", async () => {
      const p = await pollingSession();
      await sleep(PING_INTERVAL + PING_TIMEOUT + 20);
      await assertSessionGone(p);
    });

    test("WebSocket: pings every pingInterval, accepts pongs", async () => {
      const ws = await wsHandshake(wsBase());
      let earliest = ws.handshakeSentAt;
      let latest = ws.handshakeAt;
      let slack = 50;
      for (let i = 0; i < 3; i++) {
        assert.equal(await ws.next(), "2");
        const now = Date.now();
        assertPingTime(`ping ${i}`, now, earliest, latest, slack);
        ws.send("3");
        earliest = now;
        latest = now;
        slack = 150;
      }
      ws.close();
    });

    test("WebSocket: the connection is closed when pongs stop", async () => {
      const ws = await wsHandshake(wsBase());
      await ws.waitClose(2500);
      const elapsed = Date.now() - ws.handshakeSentAt;
      assert.ok(elapsed >= PING_INTERVAL + PING_TIMEOUT - 50, `closed after ${elapsed} ms`);
      assert.ok(
        ["[\"2\"]", "[\"2\",\"1\"]"].includes(JSON.stringify(ws.messages)),
        `received ${JSON.stringify(ws.messages)}`,
      );
    });
  });

  describe("close", () => {
    test("polling: a close packet answers the waiting GET with noop and ends the session", async () => {
      const p = await pollingSession();
      const poll = p.get();
      await sleep(30);
      const post = await p.post("1");
      assert.equal(post.status, 200);
      assert.equal(post.body, "ok");
      const pollRes = await poll;
      assert.equal(pollRes.status, 200);
      assert.equal(pollRes.body, "6");
      await assertSessionGone(p);
    });

    test("WebSocket: a close packet makes the server close the connection", async () => {
      const ws = await wsHandshake(wsBase());
      ws.send("1");
      await ws.waitClose(2000);
    });
  });

  describe("upgrade", () => {
    async function probeAndUpgrade(p) {
      const ws = new RawWs(`${wsBase()}?EIO=4&transport=websocket&sid=${encodeURIComponent(p.sid)}`, { autoPong: true });
      await withTimeout(ws.opened, 3000, "the upgrade WebSocket to open");
      ws.send("2probe");
      assert.equal(await ws.next(), "3probe");
      ws.send("5");
      await sleep(50);
      return ws;
    }

    test("upgrades from polling to WebSocket", async () => {
      const p = await pollingSession();
      const ws = await probeAndUpgrade(p);
      // the upgraded session carries Socket.IO traffic
      ws.send("40");
      assertConnectReply(await ws.nextNonPing());
      assert.equal(await ws.nextNonPing(), '42["auth",{}]');
      ws.close();
    });

    test("refuses polling requests with the sid after the upgrade", async () => {
      const p = await pollingSession();
      const ws = await probeAndUpgrade(p);
      assertEioError(await p.get(), 400, 3, "Bad request");
      ws.close();
    });

    test("closes a second WebSocket with the same sid after the upgrade", async () => {
      const p = await pollingSession();
      const ws = await probeAndUpgrade(p);
      const ws2 = new RawWs(`${wsBase()}?EIO=4&transport=websocket&sid=${encodeURIComponent(p.sid)}`);
      await ws2.waitClose(2000);
      assert.deepEqual(ws2.messages, []);
      // the first one still works
      ws.send("40");
      assertConnectReply(await ws.nextNonPing());
      ws.close();
    });
  });
});

describe("Socket.IO v5 official suite: Socket.IO layer", () => {
  describe("connect", () => {
    test("connects to the main namespace; auth is {} without payload", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send("40");
      const sid = assertConnectReply(await ws.nextNonPing());
      assert.notEqual(sid, ws.sid, "the Socket.IO sid must not be the Engine.IO sid");
      assert.equal(await ws.nextNonPing(), '42["auth",{}]');
      ws.close();
    });

    test("connects to the main namespace with an auth payload", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send('40{"token":"123"}');
      assertConnectReply(await ws.nextNonPing());
      assert.equal(await ws.nextNonPing(), '42["auth",{"token":"123"}]');
      ws.close();
    });

    test("connects to a custom namespace", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send("40/custom,");
      assertConnectReply(await ws.nextNonPing(), "/custom");
      assert.equal(await ws.nextNonPing(), '42/custom,["auth",{}]');
      ws.close();
    });

    test("connects to a custom namespace with an auth payload", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send('40/custom,{"token":"abc"}');
      assertConnectReply(await ws.nextNonPing(), "/custom");
      assert.equal(await ws.nextNonPing(), '42/custom,["auth",{"token":"abc"}]');
      ws.close();
    });

    test("refuses an unknown namespace with CONNECT_ERROR", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send("40/random");
      assert.equal(await ws.nextNonPing(), '44/random,{"message":"Invalid namespace"}');
      ws.close();
    });

    test("closes the connection on an invalid first packet", async () => {
      const ws = await wsHandshake(wsBase(), { autoPong: true });
      ws.send("4abc");
      await ws.waitClose(2000);
    });

    test("closes the connection when no CONNECT arrives", async () => {
      const ws = await wsHandshake(wsBase());
      await ws.waitClose(3000);
    });
  });

  describe("disconnect", () => {
    test("a DISCONNECT from the main namespace keeps the Engine.IO connection open", async () => {
      const ws = await sioSocket({ autoPong: false });
      ws.send("41");
      // the next thing the server sends is its regular ping: the connection is still up
      assert.equal(await ws.next(), "2");
      ws.send("3");
      assert.equal(ws.closed, false);
      // and it can connect again, getting a new Socket.IO sid
      ws.autoPong = true;
      ws.send("40");
      const sid2 = assertConnectReply(await ws.nextNonPing());
      assert.notEqual(sid2, ws.sioSid);
      assert.equal(await ws.nextNonPing(), '42["auth",{}]');
      ws.close();
    });

    test("connect then disconnect a custom namespace, the main one keeps working", async () => {
      const ws = await sioSocket();
      ws.send("40/custom");
      assertConnectReply(await ws.nextNonPing(), "/custom");
      assert.equal(await ws.nextNonPing(), '42/custom,["auth",{}]');
      ws.send("41/custom");
      ws.send('42["message","message to main namespace"]');
      assert.equal(await ws.nextNonPing(), '42["message-back","message to main namespace"]');
      ws.close();
    });
  });

  describe("messages", () => {
    test("an event with plain arguments is echoed", async () => {
      const ws = await sioSocket();
      ws.send('42["message",1,"2",{"3":[true]}]');
      assert.equal(await ws.nextNonPing(), '42["message-back",1,"2",{"3":[true]}]');
      ws.close();
    });

    test("an event with binary attachments is echoed with its attachments", async () => {
      const ws = await sioSocket();
      ws.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      ws.send(bytes(1, 2, 3));
      ws.send(bytes(4, 5, 6));
      const [head, a, b] = await take(ws, 3);
      assert.equal(head, '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.ok(Buffer.isBuffer(a) && Buffer.isBuffer(b), "attachments must be binary frames");
      assert.deepEqual([...a], [1, 2, 3]);
      assert.deepEqual([...b], [4, 5, 6]);
      ws.close();
    });

    test("an event with an ack id is acknowledged with the same arguments", async () => {
      const ws = await sioSocket();
      ws.send('42456["message-with-ack",1,"2",{"3":[false]}]');
      assert.equal(await ws.nextNonPing(), '43456[1,"2",{"3":[false]}]');
      ws.close();
    });

    test("a binary event with an ack id gets a binary ack", async () => {
      const ws = await sioSocket();
      ws.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      ws.send(bytes(1, 2, 3));
      ws.send(bytes(4, 5, 6));
      const [head, a, b] = await take(ws, 3);
      assert.equal(head, '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual([...a], [1, 2, 3]);
      assert.deepEqual([...b], [4, 5, 6]);
      ws.close();
    });

    test("an unknown packet type closes the connection", async () => {
      const ws = await sioSocket();
      ws.send("4abc");
      await ws.waitClose(2000);
    });

    test("an EVENT whose payload is not an array closes the connection", async () => {
      const ws = await sioSocket();
      ws.send("42{}");
      await ws.waitClose(2000);
    });

    test("an invalid ack id closes the connection", async () => {
      const ws = await sioSocket();
      ws.send('42abc["message-with-ack",1,"2",{"3":[false]}]');
      await ws.waitClose(2000);
    });
  });
});

describe("Socket.IO v5 further cases", () => {
  test("connectTimeout: a session that answers pings but never CONNECTs is closed after about 1 s", async () => {
    const ws = await wsHandshake(wsBase(), { autoPong: true });
    await ws.waitClose(CONNECT_TIMEOUT + 1500);
    const now = Date.now();
    assert.ok(ws.pings.length >= 2, `expected the pings to be answered, saw ${ws.pings.length}`);
    // not before connectTimeout counted from before the handshake, not much after it counted
    // from the handshake's arrival
    const early = now - ws.handshakeSentAt;
    const late = now - ws.handshakeAt;
    assert.ok(early >= CONNECT_TIMEOUT - 50, `closed only ${early} ms after the handshake request`);
    assert.ok(late <= CONNECT_TIMEOUT + 700, `closed ${late} ms after the handshake, expected about ${CONNECT_TIMEOUT}`);
    // nothing but pings (answered) and, at most, a close packet
    assert.ok(["[]", "[\"1\"]"].includes(JSON.stringify(ws.messages)), `received ${JSON.stringify(ws.messages)}`);
  });

  test("a connected session outlives connectTimeout", async () => {
    const ws = await sioSocket();
    await sleep(CONNECT_TIMEOUT + 300);
    assert.equal(ws.closed, false);
    ws.send('42["message","still here"]');
    assert.equal(await ws.nextNonPing(), '42["message-back","still here"]');
    ws.close();
  });

  test("an unknown namespace leaves the connection open for a valid CONNECT", async () => {
    const ws = await wsHandshake(wsBase(), { autoPong: true });
    ws.send('40/nope,{"token":"x"}');
    assert.equal(await ws.nextNonPing(), '44/nope,{"message":"Invalid namespace"}');
    ws.send("40");
    assertConnectReply(await ws.nextNonPing());
    assert.equal(await ws.nextNonPing(), '42["auth",{}]');
    ws.close();
  });

  test("two namespaces on one connection get distinct sids and keep separate traffic", async () => {
    const ws = await sioSocket();
    ws.send("40/custom,");
    const customSid = assertConnectReply(await ws.nextNonPing(), "/custom");
    assert.notEqual(customSid, ws.sioSid);
    assert.notEqual(customSid, ws.sid);
    assert.equal(await ws.nextNonPing(), '42/custom,["auth",{}]');
    ws.send('421["message-with-ack","main"]');
    assert.equal(await ws.nextNonPing(), '431["main"]');
    ws.close();
  });

  test("an event without arguments and nested placeholders in objects", async () => {
    const ws = await sioSocket();
    ws.send('42["message"]');
    assert.equal(await ws.nextNonPing(), '42["message-back"]');
    ws.send('451-["message",{"a":{"b":[{"_placeholder":true,"num":0}]}},"text"]');
    ws.send(bytes(0, 255, 30));
    const [head, bin] = await take(ws, 2);
    assert.equal(head, '451-["message-back",{"a":{"b":[{"_placeholder":true,"num":0}]}},"text"]');
    assert.deepEqual([...bin], [0, 255, 30]);
    ws.close();
  });

  test("ack arguments: none, and many of every JSON type", async () => {
    const ws = await sioSocket();
    ws.send('427["message-with-ack"]');
    assert.equal(await ws.nextNonPing(), "437[]");
    const args = '[null,true,false,0,-1.5,"h\\u00e9",[],{},{"k":[1,{"z":null}]}]';
    ws.send(`428["message-with-ack",${args.slice(1)}`);
    const reply = await ws.nextNonPing();
    assert.ok(reply.startsWith("438["), reply);
    assert.deepEqual(JSON.parse(reply.slice(3)), JSON.parse(args));
    ws.close();
  });

  test("a reserved event name closes the connection", async () => {
    const ws = await sioSocket();
    ws.send('42["disconnect"]');
    await ws.waitClose(2000);
  });

  test("an empty EVENT array closes the connection", async () => {
    const ws = await sioSocket();
    ws.send("42[]");
    await ws.waitClose(2000);
  });

  test("a CONNECT whose payload is not an object closes the connection", async () => {
    const ws = await wsHandshake(wsBase(), { autoPong: true });
    ws.send('40"token"');
    await ws.waitClose(2000);
  });

  test("an event for a namespace the client has not joined closes the connection", async () => {
    const ws = await sioSocket();
    ws.send('42/custom,["message","x"]');
    await ws.waitClose(2000);
    assert.deepEqual(ws.messages, []);
  });

  test("a second CONNECT to a namespace already joined closes the connection", async () => {
    const ws = await sioSocket();
    ws.send("40");
    await ws.waitClose(2000);
    assert.deepEqual(ws.messages, []);
  });

  test("a CONNECT_ERROR sent by the client closes the connection", async () => {
    const ws = await sioSocket();
    ws.send('44{"message":"from the client"}');
    await ws.waitClose(2000);
    assert.deepEqual(ws.messages, []);
  });

  describe("over HTTP long-polling", () => {
    test("connect, auth echo and an event", async () => {
      const p = await pollingSession();
      const post = await p.post('40{"token":"poll"}');
      assert.equal(post.status, 200);
      assert.equal(post.body, "ok");
      const [connect, auth] = await p.collect(2);
      const sid = assertConnectReply(connect);
      assert.notEqual(sid, p.sid);
      assert.equal(auth, '42["auth",{"token":"poll"}]');
      assert.equal((await p.post('42["message",1,"2",{"3":[true]}]')).status, 200);
      assert.deepEqual(await p.collect(1), ['42["message-back",1,"2",{"3":[true]}]']);
      assert.equal((await p.post("1")).status, 200);
    });

    test("binary attachments travel as base64 packets in the same payload", async () => {
      const p = await pollingSession();
      await p.post("40");
      await p.collect(2);
      const post = await p.post(
        `452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]${SEP}bAQID${SEP}bBAUG`,
      );
      assert.equal(post.status, 200);
      assert.deepEqual(await p.collect(3), [
        '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        "bAQID",
        "bBAUG",
      ]);
      await p.post(`452-12["message-with-ack",{"_placeholder":true,"num":0},"x",{"_placeholder":true,"num":1}]${SEP}b/w==${SEP}bAA==`);
      assert.deepEqual(await p.collect(3), [
        '462-12[{"_placeholder":true,"num":0},"x",{"_placeholder":true,"num":1}]',
        "b/w==",
        "bAA==",
      ]);
      assert.equal((await p.post("1")).status, 200);
    });

    test("an invalid Socket.IO packet closes the polling session", async () => {
      const p = await pollingSession();
      await p.post("40");
      await p.collect(2);
      await p.post("42{}");
      await sleep(50);
      // the server either tells the client with a close packet on the next poll, or has
      // already dropped the session; afterwards the sid is unknown
      const poll = await p.get();
      if (poll.status === 200) {
        assert.equal(poll.body.split(SEP).at(-1), "1", `expected a close packet, got ${JSON.stringify(poll.body)}`);
        await sleep(50);
      } else {
        assertEioError(poll, 400, 1, "Session ID unknown");
      }
      await assertSessionGone(p);
    });
  });
});
