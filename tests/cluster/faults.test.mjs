// Faults in a mixed cluster (kinds from CLUSTER_KINDS), each block on a cluster of its own, run
// once on a classic cluster and once on a streams cluster (every node started with
// `--adapter streams`, set up as in streams.test.mjs: every node reads the stream):
//
// (a) redis-server stopped while the nodes broadcast: every node keeps serving its own clients
//     (no node exits); after a restart on the same port, cross-node broadcasts flow again. The
//     time that took is printed as a test diagnostic.
// (b) one node SIGKILLed: the others keep serving; fetch-sockets from a remaining node answers
//     (sockets or an error) within 15 s and eventually lists only the remaining nodes' sockets.
//
// On a streams cluster the stream is gone after the restart (no persistence); each node reads on
// from the last entry ID it read, and the new entries have later IDs.

import assert from "node:assert/strict";
import { describe } from "node:test";
import {
  assertCounts,
  ids,
  pollFetch,
  quiesce,
  sameList,
  settle,
  sleep,
  sortedIds,
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
 * `setup(cluster)` run once each cluster is up. `adapter` ("classic" or "streams") names the
 * protocol the arguments select; it only decides where the Node reference is expected to behave
 * differently (see `localWhileDown`).
 */
function faultSuite({ adapter, tag, nodeArgs = [], setup }) {
  /**
   * Whether node i delivers its own broadcasts to its own clients while Redis is down.
   *
   * A per-kind expectation forced by the Node reference: its streams adapter (socket.io-adapter
   * 2.5.9 `ClusterAdapter.broadcast`) awaits the XADD of a broadcast before delivering it to its
   * own clients, and node-redis keeps that XADD in its offline queue until the connection is
   * back. So a Node streams node's broadcasts reach its own clients only after the restart
   * (checked then: each exactly once). Every other node (Node on the classic protocol, which
   * publishes without waiting; Switchyard with either adapter) delivers them at once.
   */
  const localWhileDown = (i) => !(adapter === "streams" && kinds[i] === "node");

  describe(`${adapter} cluster: redis-server stopped mid-traffic, then restarted (${kinds.join(", ")})`, () => {
    const { cluster, test } = useCluster({ kinds, tag: `${tag}r`, nodeArgs, setup });

    test(
      "nodes serve their own clients while Redis is down, and reach each other again after a restart",
      { timeout: 120_000 },
      async (t, cs) => {
        const g = await cs.group(cluster.nodes);
        const others = (i) => g.byNode.filter((_, j) => j !== i).flatMap((n) => n.list);
        const downTokens = g.byNode.map(() => []);

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

          await cluster.redis.stop();
          const downAt = Date.now();
          t.diagnostic(`redis-server (pid ${cluster.redis.pid}) stopped: ${JSON.stringify(cluster.redis.exit)}`);

          // while Redis is down, a broadcast initiated on each node reaches that node's own
          // clients (a Node streams node's: after the restart, see localWhileDown)
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

          await cluster.redis.restart();
          const upAt = Date.now();

          // every 500 ms each node broadcasts a fresh token, until one of its tokens has reached
          // every client of the other two nodes
          const sent = g.byNode.map(() => []);
          const recoveredAfter = g.byNode.map(() => null);
          const reachedOthers = (i) => sent[i].some((token) => others(i).every((c) => c.count("news", token) > 0));
          let lastSend = 0;
          while (recoveredAfter.some((x) => x === null)) {
            const elapsed = Date.now() - upAt;
            if (elapsed > 30_000) {
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
                }),
              );
            }
            for (let i = 0; i < 3; i++) {
              if (recoveredAfter[i] === null && reachedOthers(i)) recoveredAfter[i] = Date.now() - upAt;
            }
            await sleep(20);
          }
          const summary = recoveredAfter.map((ms, i) => `${cluster.nodes[i].label}: ${ms} ms`).join(", ");
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
          t.diagnostic(
            `cross-node broadcasts flowed again after the restart within ${Math.max(...recoveredAfter)} ms ` +
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
        // readers)
        for (const [i, n] of g.byNode.entries()) {
          const token = unique(`after-${i}`);
          await n.a.ok("broadcast", { event: "news", args: [token] });
          await waitAllGot(g.all, "news", token);
          await settle(n.a, g.all);
          assertCounts(g.all, "news", token, () => 1);
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
        await quiesce(g.byNode[0].a, g.all);
      },
    );
  });

  describe(`${adapter} cluster: one node SIGKILLed (${kinds.join(", ")})`, () => {
    const { cluster, test } = useCluster({ kinds, tag: `${tag}k`, nodeArgs, setup });
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
