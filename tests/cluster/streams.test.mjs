// Clusters of three nodes (kinds from CLUSTER_KINDS, default switchyard,switchyard,node) sharing
// one redis-server through the protocol of @socket.io/redis-streams-adapter 0.3.1 (every node
// started with `--adapter streams`):
//
// (a) the operation matrix of lib/suite.mjs, without connection state recovery (so no offset is
//     appended to the events);
// (b) with `--recovery-ms 60000`: a WebSocket client whose transport closes on node A reconnects
//     by itself to node B, for every ordered pair of distinct nodes, and gets back its id, rooms
//     and data and every room broadcast it missed (from the third node and from A), exactly once
//     and in order per sender;
// (c) on the same cluster: a client presenting a session that cannot be recovered (unknown pid,
//     malformed offset, an offset that is not in the stream) connects afresh on every node;
// (d) on every node: a kept session presented with an earlier offset than its last gets the
//     room broadcasts after that offset replayed (the offset the client presents is where the
//     replay starts).
//
// "It is away" is a condition (its disconnect event, and its session in Redis), "received once"
// is judged after settle points (lib/cluster.mjs); nothing waits a fixed time.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { describe } from "node:test";
import { createClient } from "redis";
import {
  assertCounts,
  settle,
  STREAMS_ARGS as STREAMS,
  streamsReady,
  unique,
  useCluster,
  waitAllGot,
  waitUntil,
} from "./lib/cluster.mjs";
import { clusterKinds } from "./lib/nodes.mjs";
import { operationSuite } from "./lib/suite.mjs";
import { isBinary, norm } from "./lib/util.mjs";

const kinds = clusterKinds();
const RECOVERY_MS = 60_000;
const SESSION_PREFIX = "sio:session:"; // the adapter's default sessionKeyPrefix
const OFFSET = /^[0-9]+-[0-9]+$/; // a stream entry ID

/**
 * A TCP server of the test's own on 127.0.0.1 that closes every connection it accepts. A
 * Manager whose `uri` points at it fails each reconnection attempt at once and tries again after
 * its backoff, until the test points it elsewhere. `refused` counts the connections it closed.
 */
class RefusingGate {
  constructor() {
    this.refused = 0;
    this.server = net.createServer((sock) => {
      this.refused++;
      sock.destroy();
    });
  }

  async start() {
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", resolve);
    });
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }

  close() {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** The options of a client that reconnects by itself, quickly (100 ms, then up to 500 ms). */
const RECONNECTING = {
  io: { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500, randomizationFactor: 0 },
};

/** Splits the trailing offset off a received event's arguments; it must be a stream entry ID. */
function withOffset(client, e) {
  const offset = e.args[e.args.length - 1];
  assert.ok(
    typeof offset === "string" && OFFSET.test(offset),
    `${client.label}: "${e.event}" ${JSON.stringify(e.args[0])} must end with an offset, got ${JSON.stringify(norm(offset))}`,
  );
  return { args: e.args.slice(0, -1), offset };
}

// (a) ---------------------------------------------------------------------------------------

operationSuite({ title: "streams cluster", tag: "st", nodeArgs: STREAMS, setup: streamsReady });

// (b), (c), (d) -----------------------------------------------------------------------------

describe(`connection state recovery across a streams cluster of ${kinds.join(", ")}`, () => {
  const gate = new RefusingGate();
  /** The test's own node-redis client, to see the session keys the nodes keep. */
  let redis = null;
  const { cluster, test } = useCluster({
    kinds,
    tag: "sr",
    nodeArgs: [...STREAMS, "--recovery-ms", String(RECOVERY_MS)],
    setup: async (c) => {
      await streamsReady(c);
      await gate.start();
      redis = createClient({ url: c.redis.url });
      redis.on("error", () => {});
      await redis.connect();
    },
    teardown: async () => {
      await gate.close();
      if (redis) await redis.quit().catch(() => {});
    },
  });

  const sessionKept = (client, pid) =>
    waitUntil(
      async () => (await redis.exists(`${SESSION_PREFIX}${pid}`)) === 1,
      `the session of ${client.label} (key ${SESSION_PREFIX}${pid}) to be kept in Redis by ${client.node.label}`,
      { timeout: 10_000, interval: 20 },
    );

  const pairs = [];
  for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) if (a !== b) pairs.push([a, b, 3 - a - b]);

  for (const [a, b, c] of pairs) {
    test(
      `a WebSocket client away from node ${a} (${kinds[a]}) recovers on node ${b} (${kinds[b]}) ` +
        `with what node ${c} (${kinds[c]}) and node ${a} broadcast meanwhile`,
      async (t, cs) => {
        const [A, B] = [cluster.nodes[a], cluster.nodes[b]];
        const [room, other] = [unique("rec-room"), unique("rec-other")];
        // a witness on every node, in both rooms: it receives every broadcast of this test live
        const witnesses = await Promise.all(cluster.nodes.map((n) => cs.connect(n, `${n.name}/w`)));
        await Promise.all(witnesses.map((w) => w.ok("join", { rooms: [room, other] })));
        const [wA, wB, wC] = [witnesses[a], witnesses[b], witnesses[c]];

        const tr = await cs.connect(A, `${A.name}/traveller`, "websocket", RECONNECTING);
        const id = tr.id;
        const pid = tr.socket._pid;
        assert.equal(typeof pid, "string", `${A.label} must send a pid in its CONNECT reply (recovery is on)`);
        assert.deepStrictEqual(tr.connects, [{ id, recovered: false }]);
        await tr.ok("join", { rooms: [room] });
        const data = { label: tr.label, nested: { n: 1, list: [true, null, "x"], f: 0.5 }, text: "héllo ✓" };
        await tr.ok("set-data", { data });

        // an offset to present: a room broadcast from the third node, received on A
        const before = unique("before");
        await wC.ok("broadcast", { rooms: [room], event: "before", args: [before] });
        await waitAllGot([tr, ...witnesses], "before", before);
        const held = withOffset(tr, tr.got("before", before)[0]).offset;
        assert.equal(tr.socket._lastOffset, held, "socket.io-client keeps the last offset it received");

        // away: the Manager is pointed at the refusing gate, then the transport closes
        tr.socket.io.uri = gate.url;
        const refusedBefore = gate.refused;
        tr.socket.io.engine.close();
        await waitUntil(() => tr.disconnects.length === 1 && !tr.connected, `${tr.label} to see its disconnect`);
        await sessionKept(tr, pid);

        // missed: room broadcasts from the third node and from A (one with a Buffer each), one
        // to all; and two it must not get: to another room, and to the room except its id
        const sent = []; // {token, sender, args} in the order each sender sent them
        const send = async (w, sender, k, extra = [], target = { rooms: [room] }) => {
          const token = unique(`missed-${sender}`);
          const args = [token, sender, k, ...extra];
          await w.ok("broadcast", { ...target, event: "missed", args });
          sent.push({ token, sender, args });
        };
        await send(wC, "C", 0);
        await send(wC, "C", 1, [randomBytes(16), "after-binary"]);
        await send(wA, "A", 0);
        await send(wC, "C", 2, [{ deep: { list: [1, "two", null] } }]);
        await send(wA, "A", 1, [{ nested: { buf: Buffer.from([0, 1, 2, 253, 254, 255]) } }]);
        await send(wC, "C", 3, [], {}); // to all
        await send(wA, "A", 2);
        const notForIt = [unique("not-other-room"), unique("not-except")];
        await wC.ok("broadcast", { rooms: [other], event: "not-for-it", args: [notForIt[0]] });
        await wA.ok("broadcast", { rooms: [room], except: [id], event: "not-for-it", args: [notForIt[1]] });
        // every one of them is in the stream once the witnesses got it
        for (const s of sent) await waitAllGot(witnesses, "missed", s.token);
        for (const token of notForIt) await waitAllGot(witnesses, "not-for-it", token);
        assert.ok(!tr.connected && tr.connects.length === 1, `${tr.label} must still be away`);

        // back: the Manager is pointed at B; its next reconnection attempt goes there
        tr.socket.io.uri = B.url;
        await waitUntil(() => tr.connects.length === 2, `${tr.label} to reconnect to ${B.label}`, {
          timeout: 20_000,
        });
        t.diagnostic(`reconnection attempts refused by the gate meanwhile: ${gate.refused - refusedBefore}`);
        assert.deepStrictEqual(
          tr.connects[1],
          { id, recovered: true },
          `${tr.label}: socket.recovered and socket.id after reconnecting to ${B.label}`,
        );
        assert.equal(tr.socket.recovered, true);
        assert.equal(tr.socket.id, id);
        assert.deepStrictEqual((await tr.ctl("whoami")).name, B.name, `${tr.label} must now be on ${B.label}`);

        // a live broadcast arrives; then settle points from both senders
        const live = unique("live");
        await wC.ok("broadcast", { rooms: [room], event: "live", args: [live] });
        await waitAllGot([tr], "live", live);
        await settle(wC, [tr, ...witnesses]);
        await settle(wA, [tr, ...witnesses]);

        // every missed message exactly once, in order per sender, with its arguments (binary
        // ones as binary) and the offset of its stream entry (the one the witness on B holds)
        assertCounts([tr], "before", before, () => 1);
        for (const s of sent) assertCounts([tr], "missed", s.token, () => 1);
        for (const token of notForIt) assertCounts([tr], "not-for-it", token, () => 0);
        assertCounts([tr], "live", live, () => 1);
        for (const sender of ["C", "A"]) {
          const want = sent.filter((s) => s.sender === sender).map((s) => s.token);
          const got = tr
            .got("missed")
            .map((e) => e.args[0])
            .filter((tok) => want.includes(tok));
          assert.deepStrictEqual(got, want, `${tr.label}: the missed broadcasts of ${sender} in their order`);
        }
        for (const s of sent) {
          const got = withOffset(tr, tr.got("missed", s.token)[0]);
          assert.deepStrictEqual(norm(got.args), norm(s.args), `${tr.label}: arguments of ${s.token}`);
          const bin = s.args.findIndex((x) => isBinary(x));
          if (bin >= 0) assert.ok(isBinary(got.args[bin]), `${tr.label}: argument ${bin} of ${s.token} as binary`);
          if (s.args[3] && s.args[3].nested) {
            assert.ok(isBinary(got.args[3].nested.buf), `${tr.label}: nested.buf of ${s.token} as binary`);
          }
          const witnessed = withOffset(wB, wB.got("missed", s.token)[0]).offset;
          assert.equal(got.offset, witnessed, `${tr.label}: offset of ${s.token} (${wB.label} got it live)`);
        }
        withOffset(tr, tr.got("live", live)[0]);

        // every node lists it once, on B, with its rooms and data
        for (const w of witnesses) {
          const answer = await w.ctl("fetch-sockets", { rooms: [room] });
          assert.ok(!answer.error, `fetch-sockets from ${w.node.label}: ${JSON.stringify(answer)}`);
          const mine = answer.sockets.filter((s) => s.id === id);
          assert.deepStrictEqual(
            mine,
            [{ id, rooms: [id, room].sort(), data }],
            `fetch-sockets from ${w.node.label}: ${tr.label} once, with its rooms and data`,
          );
          assert.equal(answer.sockets.length, witnesses.length + 1, `fetch-sockets from ${w.node.label}: the room`);
        }

        // the session was used up: the same pid and offset presented again connect afresh
        const again = await cs.connect(cluster.nodes[c], `${cluster.nodes[c].name}/same-session`, "websocket", {
          beforeConnect: (socket) => {
            socket._pid = pid;
            socket._lastOffset = held;
          },
        });
        assert.equal(again.socket.recovered, false, `${again.label}: a session restored once is not restored again`);
        assert.notEqual(again.id, id);
      },
    );
  }

  for (const [i, kind] of kinds.entries()) {
    test(`node ${i} (${kind}): a client whose session cannot be recovered connects afresh`, async (t, cs) => {
      const N = cluster.nodes[i];
      // an offset that is in the stream: a broadcast to a socket of this test
      const w = await cs.connect(N, `${N.name}/w`);
      const token = unique("offset");
      await w.ok("broadcast", { rooms: [w.id], event: "offset", args: [token] });
      await waitAllGot([w], "offset", token);
      const inStream = withOffset(w, w.got("offset", token)[0]).offset;

      // a session that the node kept (its client's transport closed), presented with an offset
      // that is not in the stream
      const gone = await cs.connect(N, `${N.name}/gone`);
      const goneRoom = unique("gone-room");
      await gone.ok("join", { rooms: [goneRoom] });
      await gone.ok("set-data", { data: { gone: true } });
      const keptPid = gone.socket._pid;
      gone.socket.io.engine.close(); // no reconnection: a closed client
      await waitUntil(() => gone.disconnects.length === 1, `${gone.label} to see its disconnect`);
      await sessionKept(gone, keptPid);

      const madeUp = randomBytes(15).toString("base64url"); // 20 characters, like a real pid
      const cases = [
        { what: "an unknown pid with an offset that is in the stream", pid: madeUp, offset: inStream },
        { what: "an unknown pid with a malformed offset", pid: madeUp, offset: "not-an-offset" },
      ];
      // A deliberate difference: an offset older than the start of the session it is presented
      // with (1-0 is older than any) cannot name a packet of that session, so a Switchyard node
      // replays from the session's start (kept with the session as `startOffset`), where Node
      // refuses because the entry 1-0 is not in the stream. Checked below for Switchyard.
      if (kind === "node") {
        cases.push({ what: "a kept session with an offset that is not in the stream", pid: keptPid, offset: "1-0" });
      }
      for (const [k, x] of cases.entries()) {
        const cl = await cs.connect(N, `${N.name}/fresh-${k}`, "websocket", {
          beforeConnect: (socket) => {
            socket._pid = x.pid;
            socket._lastOffset = x.offset;
          },
        });
        assert.equal(cl.socket.recovered, false, `${x.what}: socket.recovered`);
        assert.equal(typeof cl.socket._pid, "string", `${x.what}: a pid in the CONNECT reply`);
        assert.notEqual(cl.socket._pid, x.pid, `${x.what}: a new pid`);
        assert.ok(typeof cl.id === "string" && cl.id.length > 0 && cl.id !== gone.id, `${x.what}: a new id`);
        // a fresh socket: its own room only, data {}, and it works
        const answer = await cl.ctl("fetch-sockets", { rooms: [cl.id] });
        assert.deepStrictEqual(answer, { sockets: [{ id: cl.id, rooms: [cl.id], data: {} }] }, x.what);
        const hello = unique("fresh");
        await w.ok("broadcast", { rooms: [cl.id], event: "fresh", args: [hello] });
        await waitAllGot([cl], "fresh", hello);
        withOffset(cl, cl.got("fresh", hello)[0]);
        assert.deepStrictEqual(
          cl.events.filter((e) => e.event !== "fresh").map((e) => e.event),
          [],
          `${x.what}: no replayed events`,
        );
      }
    });
  }

  for (const [i, kind] of kinds.entries()) {
    if (kind !== "switchyard") continue;
    test(`node ${i} (${kind}): an offset older than the session's start resumes from that start`, async (t, cs) => {
      const N = cluster.nodes[i];
      const sender = await cs.connect(N, `${N.name}/sender`);
      const gone = await cs.connect(N, `${N.name}/old-offset`);
      const room = unique("old-offset-room");
      await gone.ok("join", { rooms: [room] });
      await gone.ok("set-data", { data: { old: true } });
      const pid = gone.socket._pid;
      gone.socket.io.engine.close(); // no reconnection: a closed client
      await waitUntil(() => gone.disconnects.length === 1, `${gone.label} to see its disconnect`);
      await sessionKept(gone, pid);
      // one broadcast to its room while it is away: the only packet of its session
      const token = unique("while-away");
      await sender.ok("broadcast", { rooms: [room], event: "away", args: [token] });
      // read by the node: its markers come after the broadcast in the stream
      await settle(sender, [sender]);
      const back = await cs.connect(N, `${N.name}/old-offset-back`, "websocket", {
        beforeConnect: (socket) => {
          socket._pid = pid;
          socket._lastOffset = "1-0";
        },
      });
      assert.deepStrictEqual({ recovered: back.socket.recovered, id: back.id }, { recovered: true, id: gone.id });
      await settle(sender, [back, sender]);
      assert.deepStrictEqual(
        back.got("away").map((e) => withOffset(back, e).args),
        [[token]],
        `${back.label}: what its session missed, once, and nothing from before it`,
      );
      const answer = await back.ctl("fetch-sockets", { rooms: [back.id] });
      assert.deepStrictEqual(answer, { sockets: [{ id: back.id, rooms: [back.id, room].sort(), data: { old: true } }] });
    });
  }

  for (const [i, kind] of kinds.entries()) {
    test(`node ${i} (${kind}): the replay starts after the offset the client presents`, async (t, cs) => {
      const N = cluster.nodes[i];
      const sender = await cs.connect(cluster.nodes[(i + 1) % 3], `${cluster.nodes[(i + 1) % 3].name}/sender`);
      const first = await cs.connect(N, `${N.name}/first`);
      const room = unique("replay-room");
      await first.ok("join", { rooms: [room] });
      await first.ok("set-data", { data: { first: true } });
      // three room broadcasts, all received (offsets o0 < o1 < o2)
      const tokens = [];
      for (let k = 0; k < 3; k++) {
        const token = unique("seq");
        tokens.push(token);
        await sender.ok("broadcast", { rooms: [room], event: "seq", args: [token, k] });
        await waitAllGot([first], "seq", token);
      }
      const offsets = tokens.map((token) => withOffset(first, first.got("seq", token)[0]).offset);
      const pid = first.socket._pid;
      first.socket.io.engine.close(); // no reconnection: a closed client
      await waitUntil(() => first.disconnects.length === 1, `${first.label} to see its disconnect`);
      await sessionKept(first, pid);

      // the same session, presented with the offset of the first of them
      const back = await cs.connect(N, `${N.name}/back`, "websocket", {
        beforeConnect: (socket) => {
          socket._pid = pid;
          socket._lastOffset = offsets[0];
        },
      });
      assert.deepStrictEqual(
        { recovered: back.socket.recovered, id: back.id },
        { recovered: true, id: first.id },
        "a kept session presented with an offset that is in the stream",
      );
      await settle(sender, [back, sender]);
      assert.deepStrictEqual(
        back.got("seq").map((e) => withOffset(back, e)),
        [
          { args: [tokens[1], 1], offset: offsets[1] },
          { args: [tokens[2], 2], offset: offsets[2] },
        ],
        `${back.label}: the broadcasts after ${offsets[0]}, once each, in order, with their offsets`,
      );
    });
  }
});
