// Faults in a mixed cluster (kinds from CLUSTER_KINDS), each block on a cluster of its own, run
// on a classic cluster, on a streams cluster (every node started with `--adapter streams`, set up
// as in streams.test.mjs: every node reads the stream) and on a sharded cluster (every node
// started with `--adapter sharded` on a Redis Cluster of three, set up as in sharded.test.mjs):
//
// (a) Redis stopped while the nodes broadcast (the redis-server; on a sharded cluster all three
//     redis-server processes of the Redis Cluster at once): every node keeps serving its own
//     clients (no node exits); after a restart on the same port(s) (sharded: the same bus ports
//     and nodes-PORT.conf files, so the cluster re-forms with the same slots; awaited until
//     cluster_state:ok on all three), cross-node broadcasts flow again by themselves (sharded:
//     to all and to a room every client joined before the outage). The time that took is printed
//     as a test diagnostic (sharded: with PUBSUB SHARDNUMSUB of every channel, per Redis node,
//     before the outage and after the recovery).
// (b) one node SIGKILLed: the others keep serving; fetch-sockets from a remaining node answers
//     (sockets or an error) within 15 s and eventually lists only the remaining nodes' sockets
//     (sharded: the server count is PUBSUB SHARDNUMSUB socket.io#/#, which drops as soon as the
//     killed node's connection closes).
//
// On a streams cluster the stream is gone after the restart (no persistence); each node reads on
// from the last entry ID it read, and the new entries have later IDs.
//
// Per-kind expectations forced by the Node reference (see localWhileDown and resubscribes): a
// Node streams or sharded node delivers its own outage broadcasts only after the restart, and a
// Node sharded node may never follow some of its channels again after a full Redis Cluster
// restart (node-redis re-sends them in one multi-slot SSUBSCRIBE, refused with CROSSSLOT), so its
// reception is not asserted there.

import assert from "node:assert/strict";
import { describe } from "node:test";
import {
  assertCounts,
  ids,
  joinAll,
  pollFetch,
  quiesce,
  roomFollowed,
  sameList,
  settle,
  sleep,
  sortedIds,
  SHARDED_ARGS,
  SHARDED_MAIN_CHANNEL,
  shardedReady,
  STREAMS_ARGS,
  streamsReady,
  unique,
  useCluster,
  waitAllGot,
  waitUntil,
} from "./lib/cluster.mjs";
import { clusterKinds, REQUESTS_TIMEOUT_MS } from "./lib/nodes.mjs";

const kinds = clusterKinds();

/**
 * Defines both fault blocks (each a `describe` named `${adapter} cluster: …`) on clusters of the
 * CLUSTER_KINDS nodes started with `nodeArgs` (extra arguments for every node), with an optional
 * `setup(cluster)` run once each cluster is up, on one redis-server or (`redisCluster`) on a
 * Redis Cluster of three. `adapter` ("classic", "streams" or "sharded") names the protocol the
 * arguments select; it only decides where the Node reference is expected to behave differently
 * (see `localWhileDown` and `resubscribes`).
 */
function faultSuite({ adapter, tag, nodeArgs = [], setup, redisCluster = false }) {
  const sharded = adapter === "sharded";
  /** What the outage stops: one redis-server, or the three of the Redis Cluster. */
  const redisWhat = redisCluster ? "the Redis Cluster (all 3 redis-server processes)" : "redis-server";
  const redisState = (cluster) =>
    redisCluster
      ? `pids ${cluster.redis.pids.join(", ")}: ${JSON.stringify(cluster.redis.exits)}`
      : `pid ${cluster.redis.pid}: ${JSON.stringify(cluster.redis.exit)}`;
  /** Sharded only: PUBSUB SHARDNUMSUB of every `socket.io#/#*` channel, per Redis node (a diagnostic). */
  const shardSubs = async (cluster) =>
    (await cluster.redis.shardSubscriptions(`${SHARDED_MAIN_CHANNEL}*`))
      .map(({ port, channels }) => `${port} ${JSON.stringify(channels)}`)
      .join("; ");

  /**
   * Whether node i delivers its own broadcasts to its own clients while Redis is down.
   *
   * A per-kind expectation forced by the Node reference: its streams adapter and its sharded
   * adapter (both built on socket.io-adapter 2.5.9's `ClusterAdapter`, whose `broadcast` awaits
   * the publication, XADD or SPUBLISH, before delivering to its own clients) cannot, because
   * node-redis keeps that command in its offline queue until the connection is back (observed on
   * the sharded adapter too: nothing reaches the node's own clients while the Redis Cluster is
   * down). So a Node streams or sharded node's broadcasts reach its own clients only after the
   * restart (checked then: each exactly once). Every other node (Node on the classic protocol,
   * which publishes without waiting; Switchyard with any adapter) delivers them at once.
   */
  const localWhileDown = (i) => !((adapter === "streams" || sharded) && kinds[i] === "node");

  /**
   * Whether node i is held to receiving the other nodes' broadcasts again after the restart.
   *
   * A per-kind expectation forced by the Node reference on a sharded cluster: node-redis 4.7
   * (@redis/client 1.6.1) keeps one sharded pub/sub connection per Redis node, and on reconnection
   * re-sends all of that connection's channels in ONE `SSUBSCRIBE ch1 ch2 …`. When a Node node
   * follows two channels of different slots on the same Redis node (e.g. the main channel
   * `socket.io#/#` and its response channel `socket.io#/#<uid>#`, which happens when the random
   * uid hashes to the main channel's Redis node), Redis answers `CROSSSLOT Keys in request don't
   * hash to the same slot`, node-redis drops the connection and retries forever with the same
   * command: that node never follows those channels again (SHARDNUMSUB socket.io#/# stays 2 after
   * the restart; its log shows the CROSSSLOT error). Whether that happens depends on where its
   * random uid hashes, so a Node node's recovery is neither required nor forbidden here (each
   * broadcast reaches it at most once; the diagnostics say which Node nodes got the broadcasts
   * after the restart). Its publishing does recover (SPUBLISH names one channel): a Node node's
   * broadcasts must reach the Switchyard nodes again. Switchyard re-sends every subscription
   * once Redis answers, and is held to it; so is every node on a classic or streams cluster.
   */
  const resubscribes = (i) => !(sharded && kinds[i] === "node");

  describe(`${adapter} cluster: ${redisCluster ? "the whole Redis Cluster" : "redis-server"} stopped mid-traffic, then restarted (${kinds.join(", ")})`, () => {
    const { cluster, test } = useCluster({ kinds, tag: `${tag}r`, nodeArgs, setup, redisCluster });

    test(
      "nodes serve their own clients while Redis is down, and reach each other again after a restart",
      { timeout: 120_000 },
      async (t, cs) => {
        const g = await cs.group(cluster.nodes);
        const others = (i) => g.byNode.filter((_, j) => j !== i).flatMap((n) => n.list);
        // the clients held to receiving node i's broadcasts again after the restart
        const receivers = (i) => g.byNode.filter((_, j) => j !== i && resubscribes(j)).flatMap((n) => n.list);
        const downTokens = g.byNode.map(() => []);
        // sharded only: every client is a member of one room, followed by every node (its
        // channel is one more subscription to recover)
        const room = sharded ? unique("fault-room") : null;
        if (sharded) {
          await joinAll(g.all, [room]);
          await roomFollowed(cluster, room, 3);
        }

        // steady traffic: every node's first client asks its node for a broadcast every 50 ms
        let running = true;
        const trafficErrors = [];
        const loops = g.byNode.map(async (n, i) => {
          let k = 0;
          while (running) {
            try {
              await n.a.ctl("broadcast", { event: "traffic", args: [`${i}`, k++] }, 15_000);
            } catch (err) {
              trafficErrors.push(`${cluster.nodes[i].label}: ${err.message}`);
            }
            await sleep(50);
          }
        });
        try {
          // traffic crosses the nodes before the fault
          const origins = (c) => new Set(c.got("traffic").map((e) => e.args[0])).size;
          await waitUntil(
            () => g.all.every((c) => origins(c) === 3),
            () =>
              `traffic from all 3 nodes at ${g.all
                .filter((c) => origins(c) < 3)
                .map((c) => c.label)
                .join(", ")}`,
          );

          if (sharded) t.diagnostic(`SHARDNUMSUB per Redis node before the outage: ${await shardSubs(cluster)}`);
          await cluster.redis.stop();
          const downAt = Date.now();
          t.diagnostic(`${redisWhat} stopped (${redisState(cluster)})`);

          // while Redis is down, a broadcast initiated on each node reaches that node's own
          // clients (a Node streams or sharded node's: after the restart, see localWhileDown)
          const downBroadcast = async (i, what) => {
            const n = g.byNode[i];
            const token = unique(`${what}-${i}`);
            downTokens[i].push(token);
            await n.a.ok("broadcast", { event: "news", args: [token] });
            if (localWhileDown(i)) await waitAllGot(n.list, "news", token);
          };
          for (let i = 0; i < 3; i++) await downBroadcast(i, "down");
          // stay down long enough for the nodes to notice and retry, then check that none exited
          await sleep(Math.max(0, 1500 - (Date.now() - downAt)));
          for (let i = 0; i < 3; i++) await downBroadcast(i, "still-down");
          cluster.assertAlive();
          for (const c of g.all) assert.ok(c.connected, `${c.label} lost its connection while Redis was down`);
          t.diagnostic(`Redis was down for ${Date.now() - downAt} ms`);

          const restartTook = await cluster.redis.restart();
          const upAt = Date.now();
          if (redisCluster) {
            t.diagnostic(`the restarted Redis Cluster said cluster_state:ok on all 3 nodes ${restartTook} ms after its restart began`);
          }

          // every 500 ms each node broadcasts a fresh token (sharded: and one to the room, which
          // travels on the room's channel), until one of its tokens (of each kind) has reached
          // every client of the other nodes held to recovering (all of them, but on a sharded
          // cluster Node nodes: see resubscribes)
          const sent = g.byNode.map(() => []);
          const sentToRoom = g.byNode.map(() => []);
          const recoveredAfter = g.byNode.map((_, i) => (receivers(i).length === 0 ? "not checked" : null));
          const reached = (tokens, clients) => tokens.some((token) => clients.every((c) => c.count("news", token) > 0));
          const reachedOthers = (i) =>
            reached(sent[i], receivers(i)) && (!sharded || reached(sentToRoom[i], receivers(i)));
          let lastSend = 0;
          while (recoveredAfter.some((x) => x === null)) {
            const elapsed = Date.now() - upAt;
            if (elapsed > 30_000) {
              if (sharded) t.diagnostic(`SHARDNUMSUB per Redis node 30 s after the restart: ${await shardSubs(cluster)}`);
              const missing = recoveredAfter.flatMap((x, i) => (x === null ? [cluster.nodes[i].label] : []));
              assert.fail(
                `30 s after the restart, broadcasts from ${missing.join(", ")} still do not reach the other nodes`,
              );
            }
            if (Date.now() - lastSend >= 500) {
              lastSend = Date.now();
              await Promise.all(
                g.byNode.map(async (n, i) => {
                  if (recoveredAfter[i] !== null) return;
                  const token = unique(`up-${i}`);
                  sent[i].push(token);
                  await n.a.ok("broadcast", { event: "news", args: [token] });
                  if (sharded) {
                    const roomToken = unique(`up-room-${i}`);
                    sentToRoom[i].push(roomToken);
                    await n.a.ok("broadcast", { rooms: [room], event: "news", args: [roomToken] });
                  }
                }),
              );
            }
            for (let i = 0; i < 3; i++) {
              if (recoveredAfter[i] === null && reachedOthers(i)) recoveredAfter[i] = Date.now() - upAt;
            }
            await sleep(20);
          }
          if (sharded) t.diagnostic(`SHARDNUMSUB per Redis node after the recovery: ${await shardSubs(cluster)}`);
          const summary = recoveredAfter
            .map((ms, i) => `${cluster.nodes[i].label}: ${typeof ms === "number" ? `${ms} ms` : ms}`)
            .join(", ");
          // informative only: a node may drop what it could not publish, or publish it late from
          // its client's offline queue (node-redis does)
          const gotAny = (clients, i) => clients.filter((c) => downTokens[i].some((tok) => c.count("news", tok) > 0));
          const late = g.byNode.map((_, i) => {
            const per = g.byNode.flatMap((m, j) =>
              j === i ? [] : [`${cluster.nodes[j].name} ${gotAny(m.list, i).length}/3`],
            );
            return `from ${cluster.nodes[i].label}: ${gotAny(others(i), i).length}/6 (${per.join(", ")})`;
          });
          t.diagnostic(`other-node clients that got broadcasts made during the outage, so far: ${late.join("; ")}`);
          const checked = recoveredAfter.filter((x) => typeof x === "number");
          t.diagnostic(
            `cross-node broadcasts flowed again after the restart within ${checked.length > 0 ? Math.max(...checked) : "-"} ms ` +
              `(${summary})`,
          );

          // the outage broadcasts of a node that could not deliver them at once reach its own
          // clients now
          for (let i = 0; i < 3; i++) {
            if (localWhileDown(i)) continue;
            const started = Date.now();
            for (const token of downTokens[i]) await waitAllGot(g.byNode[i].list, "news", token, 30_000);
            t.diagnostic(
              `${cluster.nodes[i].label} delivered its outage broadcasts to its own clients after the restart ` +
                `(${Date.now() - upAt} ms after it, ${Date.now() - started} ms after the cross-node check)`,
            );
          }
        } finally {
          running = false;
          await Promise.all(loops);
        }
        assert.deepStrictEqual(trafficErrors, [], "broadcast requests of the traffic loops failed");

        // after the recovery every broadcast arrives exactly once (no doubled subscriptions or
        // readers) at the node's own clients and at those held to recovering; at most once
        // elsewhere (sharded Node nodes, see resubscribes)
        // per target ("all" or "room"): labels of clients not held to it that got one of these
        const gotAfter = { all: new Set(), room: new Set() };
        for (const [i, n] of g.byNode.entries()) {
          const expected = [...n.list, ...receivers(i)];
          const rest = others(i).filter((c) => !expected.includes(c));
          for (const rooms of sharded ? [[], [room]] : [[]]) {
            const token = unique(`after-${i}`);
            await n.a.ok("broadcast", { rooms, event: "news", args: [token] });
            await waitAllGot(expected, "news", token);
            await settle(n.a, expected);
            assertCounts(expected, "news", token, () => 1);
            const twice = rest.filter((c) => c.count("news", token) > 1);
            assert.deepStrictEqual(twice.map((c) => c.label), [], `"news" ${token} received more than once`);
            for (const c of rest) if (c.count("news", token) > 0) gotAfter[rooms.length ? "room" : "all"].add(c.label);
          }
        }
        // and, after those settle points from every node, each outage broadcast reached its
        // node's own clients exactly once (delivered at once, or late, but not both), and the
        // other nodes' clients at most once (dropped, or published late)
        for (const [i, n] of g.byNode.entries()) {
          for (const token of downTokens[i]) {
            assertCounts(n.list, "news", token, () => 1);
            const twice = others(i).filter((c) => c.count("news", token) > 1);
            assert.deepStrictEqual(
              twice.map((c) => c.label),
              [],
              `"news" ${token} (from ${cluster.nodes[i].label} during the outage) received more than once`,
            );
          }
        }
        // and requests work again
        if (g.byNode.every((_, i) => resubscribes(i))) {
          await quiesce(g.byNode[0].a, g.all);
        } else {
          // sharded with Node nodes: those that did not recover their subscriptions are not
          // servers any more (SHARDNUMSUB socket.io#/# does not count them) and cannot hear a
          // request. A node held to recovering lists every socket of the nodes held to
          // recovering, and no other socket than this test's; every node answers within 15 s.
          const held = g.byNode.filter((_, j) => resubscribes(j)).flatMap((n) => n.list);
          const all = new Set(ids(g.all));
          for (const [i, n] of g.byNode.entries()) {
            if (resubscribes(i)) {
              await pollFetch(
                n.a,
                {},
                (a) => ids(held).every((id) => sortedIds(a).includes(id)) && sortedIds(a).every((id) => all.has(id)),
                `fetch-sockets from ${cluster.nodes[i].label} to list the sockets of the nodes held to recovering`,
                30_000,
              );
            }
            const started = Date.now();
            const res = await n.a.ctl("fetch-sockets", {}, 15_000);
            t.diagnostic(
              `fetch-sockets from ${cluster.nodes[i].label} after the recovery: ` +
                `${res.error ? `error "${res.error}"` : `${res.sockets.length} of ${g.all.length} sockets`} in ${Date.now() - started} ms`,
            );
          }
          const unheld = g.byNode.flatMap((m, j) => {
            if (resubscribes(j)) return [];
            const got = (set) => `${m.list.filter((c) => set.has(c.label)).length}/3`;
            return [
              `${cluster.nodes[j].label}: clients that got the other nodes' broadcasts after the recovery: ` +
                `to all ${got(gotAfter.all)}, to the room ${got(gotAfter.room)}`,
            ];
          });
          t.diagnostic(`nodes not held to recovering: ${unheld.join("; ")}`);
        }
      },
    );
  });

  describe(`${adapter} cluster: one node SIGKILLed (${kinds.join(", ")})`, () => {
    const { cluster, test } = useCluster({ kinds, tag: `${tag}k`, nodeArgs, setup, redisCluster });
    const victim = 1;
    const rest = [0, 2];

    test(
      "the remaining nodes keep serving; fetch-sockets answers in time and drops the dead node's sockets",
      { timeout: 120_000 },
      async (t, cs) => {
        const g = await cs.group(cluster.nodes);
        await quiesce(g.byNode[0].a, g.all);
        const remaining = rest.flatMap((i) => g.byNode[i].list);

        await cluster.nodes[victim].kill();
        t.diagnostic(`${cluster.nodes[victim].label} killed: ${JSON.stringify(cluster.nodes[victim].exit)}`);
        for (const c of g.byNode[victim].list) {
          await waitUntil(() => !c.connected, `${c.label} to notice that its node died`);
        }

        // the remaining nodes keep serving their clients, across nodes too
        for (const i of rest) {
          const n = g.byNode[i];
          assert.deepStrictEqual(await n.p.ctl("whoami"), { name: cluster.nodes[i].name });
          const token = unique(`after-kill-${i}`);
          await n.a.ok("broadcast", { event: "news", args: [token] });
          await waitAllGot(remaining, "news", token, 15_000);
        }

        // fetch-sockets answers (sockets, or an error) within 15 s
        for (const i of rest) {
          const started = Date.now();
          const res = await g.byNode[i].a.ctl("fetch-sockets", {}, 15_000);
          const took = Date.now() - started;
          assert.ok(took < 15_000, `fetch-sockets took ${took} ms`);
          assert.ok(
            Array.isArray(res.sockets) || typeof res.error === "string",
            `fetch-sockets must answer {sockets} or {error}: ${JSON.stringify(res)}`,
          );
          t.diagnostic(
            `first fetch-sockets from ${cluster.nodes[i].label} after the kill: ${res.error ? `error "${res.error}"` : `${res.sockets.length} sockets`} in ${took} ms (requests timeout ${REQUESTS_TIMEOUT_MS} ms)`,
          );
        }
        // and eventually lists exactly the remaining nodes' sockets
        for (const i of rest) {
          await pollFetch(
            g.byNode[i].a,
            {},
            (a) => sameList(sortedIds(a), ids(remaining)),
            `fetch-sockets from ${cluster.nodes[i].label} to list only the sockets of the remaining nodes`,
            30_000,
          );
        }

        // server-side-emit with ack and broadcast with ack complete again with the remaining node
        for (const i of rest) {
          const other = rest.find((j) => j !== i);
          const token = unique("sse-after-kill");
          let last;
          await waitUntil(
            async () => {
              last = await g.byNode[i].a.ctl(
                "server-side-emit",
                { event: "hello-servers", args: [token], ack: true },
                15_000,
              );
              return last.error === null && last.responses.length === 1;
            },
            () =>
              `server-side-emit with ack from ${cluster.nodes[i].label} to get one answer; ` +
              `last ${JSON.stringify(last)}`,
            { timeout: 30_000, interval: 200 },
          );
          assert.deepStrictEqual(last.responses, [{ name: cluster.nodes[other].name, args: [token] }]);

          const res = await g.byNode[i].a.ctl(
            "broadcast-with-ack",
            { event: "ask", args: [unique("ask")], timeout: 5000 },
            15_000,
          );
          assert.deepStrictEqual(res.error, null, JSON.stringify(res));
          assert.deepStrictEqual([...res.responses].sort(), remaining.map((c) => c.label).sort());
        }
      },
    );
  });
}

faultSuite({ adapter: "classic", tag: "f" });
faultSuite({ adapter: "streams", tag: "fs", nodeArgs: STREAMS_ARGS, setup: streamsReady });
faultSuite({ adapter: "sharded", tag: "fsh", nodeArgs: SHARDED_ARGS, setup: shardedReady, redisCluster: true });
