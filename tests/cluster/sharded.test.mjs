// Clusters of three nodes (kinds from CLUSTER_KINDS, default switchyard,switchyard,node) on a
// private Redis Cluster of three masters (RedisClusterOfThree of lib/redis.mjs), every node
// started with `--adapter sharded`: the protocol of `createShardedAdapter` of
// @socket.io/redis-adapter 8.3.0 (SSUBSCRIBE / SPUBLISH; channel prefix `socket.io`, dynamic
// subscription mode):
//
// (a) the operation matrix of lib/suite.mjs, as in cluster.test.mjs; after a join, and before a
//     broadcast to that room alone, it waits until every node holding a member of the room has
//     subscribed to the room's channel (`roomFollowed` of lib/cluster.mjs: a broadcast to one
//     room travels on that room's channel only, and one published before a node's subscription
//     is confirmed never reaches that node, with Node's adapter too);
// (b) the room channels themselves, seen by a Redis Cluster client of the test's own: a
//     broadcast to one public room (no ack) is SPUBLISHed on `socket.io#/#<room>#` as the JSON
//     message {type: 3, data: {packet, opts}, uid, nsp: "/"} and not on the main channel,
//     from every initiating node kind; a broadcast with ack to one room and a broadcast to two
//     rooms go on the main channel; a node follows a public room while it holds a member of it
//     (a join, a remote sockets-join), and stops (SUNSUBSCRIBE: SHARDNUMSUB goes down) when the
//     room empties there (a leave, a disconnect, a remote sockets-leave), not before; private
//     rooms (socket ids) get no channel.
//
// Nothing waits a fixed time: every "subscribed / unsubscribed" is PUBSUB SHARDNUMSUB polled
// until it has the expected value, every "not received" is judged after a settle point.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { createCluster } from "redis";
import {
  assertCounts,
  joinAll,
  pollFetch,
  roomFollowed,
  settle,
  SHARDED_ARGS as SHARDED,
  SHARDED_MAIN_CHANNEL as MAIN,
  shardedReady,
  shardedRoomChannel,
  unique,
  useCluster,
  waitAllGot,
  waitUntil,
} from "./lib/cluster.mjs";
import { clusterKinds, initiatorIndexes } from "./lib/nodes.mjs";
import { operationSuite } from "./lib/suite.mjs";

const kinds = clusterKinds();

// (a) ---------------------------------------------------------------------------------------

operationSuite({
  title: "sharded pub/sub cluster",
  tag: "sh",
  nodeArgs: SHARDED,
  redisCluster: true,
  setup: shardedReady,
  roomsFollowed: roomFollowed,
});

// (b) ---------------------------------------------------------------------------------------

/**
 * A Redis Cluster client of the test's own, SSUBSCRIBEd to some channels, recording every
 * message: {channel, text, json} (json: the parsed message, or null when it is not JSON).
 */
class ShardObserver {
  constructor(url) {
    this.client = createCluster({ rootNodes: [{ url }] });
    this.client.on("error", () => {});
    this.messages = [];
  }

  async start(channels) {
    await this.client.connect();
    for (const channel of channels) {
      // resolves once Redis has confirmed the subscription
      await this.client.sSubscribe(channel, (text, ch) => {
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {}
        this.messages.push({ channel: ch, text, json });
      });
    }
  }

  /** The messages on `channel` that carry a broadcast whose first event argument is `token`. */
  broadcasts(channel, token) {
    return this.messages.filter(
      (m) =>
        m.channel === channel &&
        m.json &&
        m.json.type === 3 &&
        m.json.data &&
        m.json.data.packet &&
        Array.isArray(m.json.data.packet.data) &&
        m.json.data.packet.data[1] === token,
    );
  }

  /** Every message on `channel` that mentions `token` anywhere (JSON or MessagePack). */
  mentions(channel, token) {
    return this.messages.filter((m) => m.channel === channel && m.text.includes(token));
  }

  async stop() {
    await this.client.disconnect().catch(() => {});
  }
}

describe(`room channels of a sharded pub/sub cluster of ${kinds.join(", ")}`, () => {
  const { cluster, test } = useCluster({
    kinds,
    tag: "shr",
    nodeArgs: SHARDED,
    redisCluster: true,
    setup: shardedReady,
  });
  const subscribers = (room) => cluster.redis.shardNumSub(shardedRoomChannel(room));
  /** Waits until SHARDNUMSUB of `room`'s channel is `n` (servers, plus the observer if any). */
  const waitSubscribers = async (room, n, why) => {
    let last = null;
    await waitUntil(
      async () => (last = await subscribers(room)) === n,
      () => `SHARDNUMSUB ${shardedRoomChannel(room)} to be ${n} (${why}); last: ${last}`,
      { timeout: 15_000, interval: 20 },
    );
  };

  for (const ini of initiatorIndexes(kinds)) {
    test(`node ${ini} (${kinds[ini]}): a broadcast to one room travels on that room's channel as {type: 3, data: {packet, opts}, uid, nsp}`, async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const ctl = g.byNode[ini].a;
      const room = unique("chan-room");
      const members = [g.byNode[0].b, g.byNode[1].a, g.byNode[2].p];
      await joinAll(members, [room]);
      await roomFollowed(cluster, room, 3);
      const observer = new ShardObserver(cluster.redis.url);
      t.after(() => observer.stop());
      const channel = shardedRoomChannel(room);
      await observer.start([channel, MAIN]);
      await waitSubscribers(room, 4, "3 servers and the observer");

      // 1. one room, no ack: on the room's channel
      const token = unique("on-room-channel");
      const args = [token, { nested: [1, "two", null] }, 3];
      await ctl.ok("broadcast", { rooms: [room], event: "news", args });
      await waitAllGot(members, "news", token);
      const seen = (ch, tok) => () =>
        `${tok} on ${ch}; the observer has ${JSON.stringify(observer.messages.map((m) => [m.channel, m.text.slice(0, 200)]))}`;
      await waitUntil(() => observer.broadcasts(channel, token).length > 0, seen(channel, token));

      // 2. two rooms: on the main channel. A copy of 1 on the main channel would have come
      // before it there (one publisher, one channel: Redis keeps the order)
      const both = unique("chan-other");
      await joinAll([g.byNode[1].a], [both]);
      await roomFollowed(cluster, both, 1);
      const token2 = unique("two-rooms");
      await ctl.ok("broadcast", { rooms: [room, both], event: "news", args: [token2] });
      await waitAllGot(members, "news", token2);
      await waitUntil(() => observer.mentions(MAIN, token2).length > 0, seen(MAIN, token2));
      assert.deepStrictEqual(observer.mentions(MAIN, token), [], `${token} (one room) must not be on ${MAIN}`);

      // 3. one room again: a copy of 2 on the room's channel would have come before it there
      const token4 = unique("room-again");
      await ctl.ok("broadcast", { rooms: [room], event: "news", args: [token4] });
      await waitAllGot(members, "news", token4);
      await waitUntil(() => observer.broadcasts(channel, token4).length > 0, seen(channel, token4));
      assert.deepStrictEqual(observer.mentions(channel, token2), [], `${token2} (two rooms) must not be on ${channel}`);

      // The observer leaves the main channel: a Node server counts the servers (the requests it
      // waits answers from) as PUBSUB SHARDNUMSUB of the main channel, which counts it too
      await observer.client.sUnsubscribe(MAIN);
      let mainCount = null;
      await waitUntil(
        async () => (mainCount = await cluster.redis.shardNumSub(MAIN)) === 3,
        () => `SHARDNUMSUB ${MAIN} back to 3 servers; last: ${mainCount}`,
      );
      await settle(ctl, g.all);
      for (const tok of [token, token2, token4]) assertCounts(g.all, "news", tok, (c) => (members.includes(c) ? 1 : 0));

      // 4. one room with ack: on the main channel (the ack needs every server), not the room's;
      // a copy on the room's channel would have come before the next one-room broadcast there
      const token3 = unique("room-ack");
      const res = await ctl.ctl("broadcast-with-ack", { rooms: [room], event: "ask", args: [token3], timeout: 5000 });
      assert.equal(res.error, null, `error answer ${JSON.stringify(res)}`);
      assert.deepStrictEqual([...res.responses].sort(), members.map((c) => c.label).sort());
      const token5 = unique("room-after-ack");
      await ctl.ok("broadcast", { rooms: [room], event: "news", args: [token5] });
      await waitUntil(() => observer.broadcasts(channel, token5).length > 0, seen(channel, token5));
      assert.deepStrictEqual(observer.mentions(channel, token3), [], `${token3} (with ack) must not be on ${channel}`);

      // the message of 1, once, as Node's adapter writes it
      const got = observer.broadcasts(channel, token);
      assert.equal(got.length, 1, `one message on ${channel}: ${JSON.stringify(got.map((m) => m.text))}`);
      const message = got[0].json;
      t.diagnostic(`on ${channel}: ${got[0].text}`);
      assert.deepStrictEqual(Object.keys(message).sort(), ["data", "nsp", "type", "uid"], got[0].text);
      assert.equal(message.type, 3, "type BROADCAST");
      assert.equal(message.nsp, "/");
      assert.ok(typeof message.uid === "string" && message.uid.length > 0, `uid ${JSON.stringify(message.uid)}`);
      assert.deepStrictEqual(Object.keys(message.data).sort(), ["opts", "packet"], got[0].text);
      assert.equal(message.data.packet.type, 2, "an EVENT packet");
      assert.deepStrictEqual(message.data.packet.data, ["news", ...args]);
      assert.deepStrictEqual(message.data.opts.rooms, [room]);
      assert.deepStrictEqual(message.data.opts.except, []);
      assert.ok(
        message.data.opts.flags && typeof message.data.opts.flags === "object",
        `opts.flags must be an object: ${got[0].text}`,
      );
    });
  }

  test("a node follows a public room while it holds a member, and unsubscribes when the room empties there", async (t, cs) => {
    const g = await cs.group(cluster.nodes);
    const room = unique("follow");
    // private rooms (socket ids) get no channel
    for (const c of g.all) {
      assert.equal(await subscribers(c.id), 0, `no subscription to the private room of ${c.label}`);
    }
    // node 0: two members; node 1: one; node 2: one, joined remotely (sockets-join from node 0)
    const [a0, b0, a1, p2] = [g.byNode[0].a, g.byNode[0].b, g.byNode[1].a, g.byNode[2].p];
    await joinAll([a0, b0], [room]);
    await waitSubscribers(room, 1, "node 0");
    await a1.ok("join", { rooms: [room] });
    await waitSubscribers(room, 2, "nodes 0 and 1");
    await a0.ok("sockets-join", { rooms: [p2.id], join: [room] });
    await waitSubscribers(room, 3, "nodes 0, 1 and 2 (joined remotely)");
    const members = [a0, b0, a1, p2];

    const broadcastFrom = async (from, want, what) => {
      const token = unique("follow-news");
      await from.ok("broadcast", { rooms: [room], event: "news", args: [token] });
      await waitAllGot(want, "news", token);
      await settle(from, g.all);
      assertCounts(g.all, "news", token, (c) => (want.includes(c) ? 1 : 0));
      t.diagnostic(`${what}: delivered to ${want.map((c) => c.label).join(", ")}`);
    };
    await broadcastFrom(g.byNode[1].b, members, "all members");

    // node 0 keeps following while one of its two members remains: the other still gets it
    await b0.ok("leave", { room });
    await pollFetch(a0, { rooms: [room] }, (a) => a.sockets.length === 3, `${b0.label} out of ${room}`);
    for (const from of [g.byNode[1].b, g.byNode[2].a]) await broadcastFrom(from, [a0, a1, p2], `after ${b0.label} left`);
    assert.equal(await subscribers(room), 3, "node 0 still holds a member");

    // node 1's only member leaves: node 1 unsubscribes
    await a1.ok("leave", { room });
    await waitSubscribers(room, 2, "node 1's only member left");
    await broadcastFrom(g.byNode[1].b, [a0, p2], `after ${a1.label} left`);

    // node 2's only member disconnects: node 2 unsubscribes
    p2.close();
    await waitUntil(() => p2.disconnects.length > 0, `${p2.label} to see its disconnect`);
    await waitSubscribers(room, 1, "node 2's only member disconnected");
    const live = g.all.filter((c) => c !== p2);
    const token = unique("follow-last");
    await g.byNode[2].a.ok("broadcast", { rooms: [room], event: "news", args: [token] });
    await waitAllGot([a0], "news", token);
    await settle(g.byNode[2].a, live);
    assertCounts(live, "news", token, (c) => (c === a0 ? 1 : 0));

    // node 0's last member is made to leave remotely (sockets-leave from node 2): nobody follows
    await g.byNode[2].a.ok("sockets-leave", { rooms: [room], leave: [room] });
    await waitSubscribers(room, 0, "the room emptied everywhere");
    await pollFetch(g.byNode[2].a, { rooms: [room] }, (a) => a.sockets.length === 0, `${room} to be empty`);
  });
});
