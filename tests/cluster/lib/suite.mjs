// The operation matrix of the mixed-cluster tests, defined once for every adapter protocol:
// three nodes (kinds from CLUSTER_KINDS, default switchyard,switchyard,node) sharing one
// redis-server (or a Redis Cluster of three), official socket.io-client clients (two on
// WebSocket, one on HTTP long-polling) connected to every node; every operation is initiated once
// from the first node of each kind present (nodes 0 and 1 when all nodes are of one kind) and
// checked on the clients of all three nodes. cluster.test.mjs runs it with the classic protocol,
// streams.test.mjs with the streams protocol, sharded.test.mjs with the sharded pub/sub protocol
// (with the `roomsFollowed` hook: see operationSuite).
//
// Nothing here waits a fixed time for something not to happen: "received exactly once / not at
// all" is judged after a settle point (marker broadcasts that arrive after the broadcast under
// test, plus a round trip through Redis from the initiating node; see cluster.mjs).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe } from "node:test";
import {
  assertCounts,
  ids,
  joinAll,
  pollFetch,
  quiesce,
  sameList,
  settle,
  sortedIds,
  unique,
  useCluster,
  waitAllGot,
  waitGone,
  waitUntil,
} from "./cluster.mjs";
import { clusterKinds, initiatorIndexes } from "./nodes.mjs";
import { isBinary, norm } from "./util.mjs";

const labels = (clients) => clients.map((c) => c.label).sort();

/**
 * Defines the operation matrix (a `describe` block named `${title} of KINDS`) on a cluster of
 * the CLUSTER_KINDS nodes started with `nodeArgs` (extra arguments for every node), with an
 * optional `setup(cluster)` run once the cluster is up. `redisCluster`: run on a Redis Cluster
 * of three (see `Cluster`). `roomsFollowed(cluster, room, nodeCount)`: an optional hook awaited
 * after clients joined `room` (by the join control event or a remote sockets-join) and before a
 * broadcast to that room alone, `nodeCount` being the number of nodes that hold a member of it
 * (the sharded adapter waits there until that many servers subscribe to the room's channel);
 * none for the classic and streams protocols, whose servers receive every broadcast.
 */
export function operationSuite({ title, tag, nodeArgs = [], setup, redisCluster = false, roomsFollowed = null }) {
  const kinds = clusterKinds();
  describe(`${title} of ${kinds.join(", ")}`, () => {
    const { cluster, test } = useCluster({ kinds, tag, nodeArgs, setup, redisCluster });
    /** After `members` joined `room`: the optional hook, with the number of nodes holding them. */
    const followed = async (room, members) => {
      if (roomsFollowed) await roomsFollowed(cluster, room, new Set(members.map((c) => c.node)).size);
    };

    test("every node answers whoami with its name (with and without an argument)", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      for (const [i, n] of g.byNode.entries()) {
        assert.deepStrictEqual(await n.a.ctl("whoami"), { name: cluster.nodes[i].name });
        assert.deepStrictEqual(await n.p.ctl("whoami", {}), { name: cluster.nodes[i].name });
      }
    });

    for (const ini of initiatorIndexes(kinds)) {
      describe(`initiated on node ${ini} (${kinds[ini]})`, () => {
        test("broadcast to all: every client of every node receives it exactly once", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const token = unique("all");
          await ctl.ok("broadcast", { event: "news", args: [token, "second", 3] });
          await waitAllGot(g.all, "news", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token, () => 1);
          for (const c of g.all) assert.deepStrictEqual(c.got("news", token)[0].args, [token, "second", 3], c.label);
          // the same with rooms: [] and except: [] spelled out
          const token2 = unique("all-empty");
          await ctl.ok("broadcast", { rooms: [], except: [], event: "news", args: [token2] });
          await waitAllGot(g.all, "news", token2);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token2, () => 1);
        });

        test("broadcast to one room, and to one socket id", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const room = unique("room");
          const members = [g.byNode[0].b, g.byNode[1].p, g.byNode[2].a, g.byNode[2].b];
          await joinAll(members, [room]);
          await followed(room, members);
          const token = unique("one-room");
          await ctl.ok("broadcast", { rooms: [room], event: "news", args: [token] });
          await waitAllGot(members, "news", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token, (c) => (members.includes(c) ? 1 : 0));

          // a socket id is a room: reaches exactly that socket, on whichever node it is
          for (const target of [g.byNode[(ini + 1) % 3].p, g.byNode[(ini + 2) % 3].b]) {
            const tok = unique("sid");
            await ctl.ok("broadcast", { rooms: [target.id], event: "news", args: [tok] });
            await waitAllGot([target], "news", tok);
            await settle(ctl, g.all);
            assertCounts(g.all, "news", tok, (c) => (c === target ? 1 : 0));
          }
        });

        test("broadcast to several rooms: a client in two of them gets it once", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const [r1, r2, empty] = [unique("r1"), unique("r2"), unique("nobody")];
          const both = g.byNode[1].b;
          const in1 = [g.byNode[0].a, both, g.byNode[2].p];
          const in2 = [both, g.byNode[2].a, g.byNode[0].p, g.byNode[1].p];
          await joinAll(
            in1.filter((c) => c !== both),
            [r1],
          );
          await joinAll(
            in2.filter((c) => c !== both),
            [r2],
          );
          await both.ok("join", { rooms: [r1, r2] });
          const members = [...new Set([...in1, ...in2])];
          const token = unique("rooms");
          await ctl.ok("broadcast", { rooms: [r1, r2, empty], event: "news", args: [token] });
          await waitAllGot(members, "news", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token, (c) => (members.includes(c) ? 1 : 0));
        });

        test("broadcast with except: a room, a socket id, and rooms with except", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const [x, r] = [unique("except"), unique("r")];
          const excluded = [g.byNode[0].b, g.byNode[1].p, g.byNode[2].a].filter((c) => c !== ctl);
          await joinAll(excluded, [x]);

          const token = unique("except-all");
          await ctl.ok("broadcast", { except: [x], event: "news", args: [token] });
          const targeted = g.all.filter((c) => !excluded.includes(c));
          await waitAllGot(targeted, "news", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token, (c) => (excluded.includes(c) ? 0 : 1));

          // except a socket id (of a client on another node)
          const lone = g.byNode[(ini + 1) % 3].a;
          const token2 = unique("except-sid");
          await ctl.ok("broadcast", { except: [lone.id], event: "news", args: [token2] });
          await waitAllGot(
            g.all.filter((c) => c !== lone),
            "news",
            token2,
          );
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token2, (c) => (c === lone ? 0 : 1));

          // rooms and except together: members of r not in x
          const inR = [g.byNode[0].a, g.byNode[0].b, g.byNode[1].p, g.byNode[1].b, g.byNode[2].a, g.byNode[2].p];
          await joinAll(inR, [r]);
          await followed(r, inR);
          const token3 = unique("room-except");
          await ctl.ok("broadcast", { rooms: [r], except: [x], event: "news", args: [token3] });
          const want = inR.filter((c) => !excluded.includes(c));
          await waitAllGot(want, "news", token3);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token3, (c) => (want.includes(c) ? 1 : 0));
        });

        test("binary arguments stay binary and nested JSON arrives unchanged on every node", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const token = unique("bin");
          const small = Buffer.from([0, 1, 2, 127, 128, 253, 254, 255]);
          const big = randomBytes(4096);
          const args = [
            token,
            small,
            { nested: { buf: big, list: [1, "x", null, { deep: true, f: -2.5 }] }, text: "héllo ✓ 日本 🎉" },
            "plain",
            42,
            [1, [2, [3, []]], { empty: {} }],
            true,
            null,
          ];
          await ctl.ok("broadcast", { event: "bin", args });
          await waitAllGot(g.all, "bin", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "bin", token, () => 1);
          for (const c of g.all) {
            const got = c.got("bin", token)[0].args;
            assert.ok(isBinary(got[1]), `${c.label}: argument 1 arrived as ${JSON.stringify(got[1])}, not as binary`);
            assert.ok(
              isBinary(got[2].nested.buf),
              `${c.label}: nested.buf arrived as ${JSON.stringify(got[2].nested.buf)?.slice(0, 80)}, not as binary`,
            );
            assert.deepStrictEqual(norm(got), norm(args), c.label);
          }
          // a room broadcast of JSON values only
          const room = unique("json");
          const members = [g.byNode[0].p, g.byNode[1].a, g.byNode[2].b];
          await joinAll(members, [room]);
          await followed(room, members);
          const token2 = unique("json");
          const json = [token2, { a: { b: [1, 2, { c: null }] }, s: 'x"y\\z\n' }, [1, "two", false], -17, 0.125, ""];
          await ctl.ok("broadcast", { rooms: [room], event: "json", args: json });
          await waitAllGot(members, "json", token2);
          await settle(ctl, g.all);
          assertCounts(g.all, "json", token2, (c) => (members.includes(c) ? 1 : 0));
          for (const c of members) assert.deepStrictEqual(c.got("json", token2)[0].args, json, c.label);
        });

        test("fetch-sockets: all, by room, with except; sockets of all 3 nodes with rooms and data", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          // one client per node keeps the initial data, which is {} (as socket.data in Node)
          const untouched = g.byNode.map((n) => n.b);
          const dataOf = (c) =>
            untouched.includes(c) ? {} : { label: c.label, nested: { n: 1, list: [true, null, "x"], f: 0.5 } };
          await Promise.all(
            g.all.filter((c) => !untouched.includes(c)).map((c) => c.ok("set-data", { data: dataOf(c) })),
          );
          const [f1, f2, x] = [unique("f1"), unique("f2"), unique("fx")];
          const roomsOf = new Map(g.all.map((c) => [c, [c.id]]));
          const joinRecorded = async (clients, rooms) => {
            await joinAll(clients, rooms);
            for (const c of clients) roomsOf.get(c).push(...rooms);
          };
          await joinRecorded([g.byNode[0].a, g.byNode[1].b, g.byNode[2].p], [f1]);
          await joinRecorded([g.byNode[1].b, g.byNode[2].a, g.byNode[0].p], [f2]);
          await joinRecorded([g.byNode[2].p, g.byNode[0].p], [x]);

          const byId = new Map(g.all.map((c) => [c.id, c]));
          const check = (answer, want, what) => {
            assert.ok(!answer.error, `${what}: error answer ${JSON.stringify(answer)}`);
            const got = sortedIds(answer);
            assert.deepStrictEqual(got, [...got].sort(), `${what}: sockets must be sorted by id`);
            assert.deepStrictEqual(got, ids(want), `${what}: socket ids`);
            for (const s of answer.sockets) {
              const c = byId.get(s.id);
              assert.deepStrictEqual(Object.keys(s).sort(), ["data", "id", "rooms"], `${what}: keys of ${c.label}`);
              assert.deepStrictEqual(s.rooms, [...roomsOf.get(c)].sort(), `${what}: rooms of ${c.label}`);
              assert.deepStrictEqual(s.data, dataOf(c), `${what}: data of ${c.label}`);
            }
          };

          // all (sockets of earlier tests may still be on their way out: poll until exactly ours)
          const all = await quiesce(ctl, g.all);
          check(all, g.all, "fetch-sockets {}");
          check(
            await ctl.ctl("fetch-sockets", { rooms: [f1] }),
            [g.byNode[0].a, g.byNode[1].b, g.byNode[2].p],
            "rooms [f1]",
          );
          check(
            await ctl.ctl("fetch-sockets", { rooms: [f1, f2] }),
            [g.byNode[0].a, g.byNode[1].b, g.byNode[2].p, g.byNode[2].a, g.byNode[0].p],
            "rooms [f1, f2]",
          );
          check(
            await ctl.ctl("fetch-sockets", { rooms: [f1, f2], except: [x] }),
            [g.byNode[0].a, g.byNode[1].b, g.byNode[2].a],
            "rooms [f1, f2] except [x]",
          );
          check(
            await ctl.ctl("fetch-sockets", { except: [x] }),
            g.all.filter((c) => !roomsOf.get(c).includes(x)),
            "except [x]",
          );
          check(await ctl.ctl("fetch-sockets", { rooms: [unique("nobody")] }), [], "an empty room");

          // leave is seen by the next fetch
          await g.byNode[1].b.ok("leave", { room: f1 });
          roomsOf.set(
            g.byNode[1].b,
            roomsOf.get(g.byNode[1].b).filter((r) => r !== f1),
          );
          check(
            await ctl.ctl("fetch-sockets", { rooms: [f1] }),
            [g.byNode[0].a, g.byNode[2].p],
            "rooms [f1] after a leave",
          );
        });

        test("sockets-join and sockets-leave act on the sockets of every node", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const [j, k, k2, k3, ka] = [unique("j"), unique("k"), unique("k2"), unique("k3"), unique("ka")];
          // One member per node, plus the initiator's own (a Set: the initiator may be node 2).
          const members = [...new Set([g.byNode[0].b, g.byNode[1].a, g.byNode[2].p, g.byNode[ini].p])];
          await joinAll(members, [j]);

          await ctl.ok("sockets-join", { rooms: [j], join: [k, k2] });
          for (const room of [k, k2]) {
            await pollFetch(
              ctl,
              { rooms: [room] },
              (a) => sameList(sortedIds(a), ids(members)),
              `room ${room} to hold the members of ${j}`,
            );
          }
          // a later room broadcast reaches them (and only them), once
          await followed(k, members);
          const token = unique("joined");
          await ctl.ok("broadcast", { rooms: [k], event: "news", args: [token] });
          await waitAllGot(members, "news", token);
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token, (c) => (members.includes(c) ? 1 : 0));

          // with except (a socket id)
          const skipped = members.find((c) => c.node !== cluster.nodes[ini]);
          await ctl.ok("sockets-join", { rooms: [j], except: [skipped.id], join: [k3] });
          const inK3 = members.filter((c) => c !== skipped);
          await pollFetch(
            ctl,
            { rooms: [k3] },
            (a) => sameList(sortedIds(a), ids(inK3)),
            `room ${k3} to hold ${j} but ${skipped.label}`,
          );

          // every socket (no rooms)
          await quiesce(ctl, g.all);
          await ctl.ok("sockets-join", { join: [ka] });
          await pollFetch(
            ctl,
            { rooms: [ka] },
            (a) => sameList(sortedIds(a), ids(g.all)),
            `room ${ka} to hold every socket`,
          );

          // sockets-leave
          await ctl.ok("sockets-leave", { rooms: [k], leave: [k] });
          await pollFetch(ctl, { rooms: [k] }, (a) => a.sockets.length === 0, `room ${k} to be empty`);
          const token2 = unique("left");
          await ctl.ok("broadcast", { rooms: [k], event: "news", args: [token2] });
          await settle(ctl, g.all);
          assertCounts(g.all, "news", token2, () => 0);
          // the other room is untouched
          const k2Now = await ctl.ctl("fetch-sockets", { rooms: [k2] });
          assert.deepStrictEqual(sortedIds(k2Now), ids(members), `room ${k2} after leaving ${k}`);
          // sockets-leave with except
          await ctl.ok("sockets-leave", { rooms: [ka], except: [j], leave: [ka] });
          await pollFetch(
            ctl,
            { rooms: [ka] },
            (a) => sameList(sortedIds(a), ids(members)),
            `room ${ka} to keep only the members of ${j}`,
          );
        });

        test("disconnect-sockets disconnects the targeted clients of every node (close false and true)", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const [d, d2, keep] = [unique("d"), unique("d2"), unique("keep")];
          const first = [g.byNode[0].b, g.byNode[1].b, g.byNode[2].b, g.byNode[(ini + 1) % 3].p];
          await joinAll(first, [d]);
          const second = g.all.filter((c) => c.transport === "polling" && !first.includes(c));
          await joinAll(second, [d2]);
          await ctl.ok("join", { rooms: [keep] });

          await ctl.ok("disconnect-sockets", { rooms: [d], close: false });
          await waitGone(first);
          for (const c of first) assert.deepStrictEqual(c.disconnects, ["io server disconnect"], c.label);
          let remaining = g.all.filter((c) => !first.includes(c));
          await settle(ctl, remaining);
          for (const c of remaining) assert.ok(c.connected, `${c.label} must stay connected`);
          await quiesce(ctl, remaining);

          await ctl.ok("disconnect-sockets", { rooms: [d2], close: true });
          await waitGone(second);
          for (const c of second) {
            assert.equal(c.disconnects.length, 1, `${c.label}: ${JSON.stringify(c.disconnects)}`);
            assert.ok(
              ["io server disconnect", "transport close", "transport error"].includes(c.disconnects[0]),
              `${c.label}: disconnect reason ${c.disconnects[0]}`,
            );
          }
          t.diagnostic(
            `disconnect reasons with close: true: ${second.map((c) => `${c.label} ${c.disconnects[0]}`).join(", ")}`,
          );
          remaining = remaining.filter((c) => !second.includes(c));
          await settle(ctl, remaining);
          for (const c of remaining) assert.ok(c.connected, `${c.label} must stay connected`);
          await quiesce(ctl, remaining);

          // everyone but the room `keep` (the initiating client)
          const rest = remaining.filter((c) => c !== ctl);
          assert.ok(rest.length > 0);
          await ctl.ok("disconnect-sockets", { except: [keep], close: false });
          await waitGone(rest);
          assert.ok(ctl.connected, "the initiating client is in the except room and must stay connected");
          await quiesce(ctl, [ctl]);
        });

        test("server-side-emit without ack: recorded by the other nodes, not by the sender", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const token = unique("sse");
          const args = [token, { n: 1, list: ["a", null, true], s: "✓" }, 7];
          await ctl.ok("server-side-emit", { event: "hello-servers", args, ack: false });
          const others = [0, 1, 2].filter((i) => i !== ini);
          for (const i of others) {
            const asker = g.byNode[i].b;
            let last;
            await waitUntil(
              async () => {
                last = await asker.ctl("server-events");
                return last.events.some((e) => e.args[0] === token);
              },
              () => `${cluster.nodes[i].label} to record ${token}; it has ${JSON.stringify(last)}`,
              { timeout: 10_000, interval: 50 },
            );
            const mine = last.events.filter((e) => e.args[0] === token);
            assert.deepStrictEqual(mine, [{ event: "hello-servers", args }], cluster.nodes[i].label);
          }
          // a round trip through Redis from the sender, then its own list must not hold it
          await ctl.ctl("fetch-sockets", {});
          const own = await ctl.ctl("server-events", {});
          assert.ok(Array.isArray(own.events));
          assert.deepStrictEqual(
            own.events.filter((e) => e.args[0] === token),
            [],
            "the sender must not receive its own server-side event",
          );
        });

        test("server-side-emit with ack: one {name, args} response from every other node", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          const token = unique("sse-ack");
          const args = [token, { deep: { list: [1, 2, 3] } }];
          const started = Date.now();
          const res = await ctl.ctl("server-side-emit", { event: "hello-servers", args, ack: true });
          const took = Date.now() - started;
          assert.deepStrictEqual(Object.keys(res).sort(), ["error", "responses"], JSON.stringify(res));
          assert.equal(res.error, null, `error answer ${JSON.stringify(res)}`);
          const others = [0, 1, 2].filter((i) => i !== ini).map((i) => cluster.nodes[i].name);
          const responses = [...res.responses].sort((a, b) => (a.name < b.name ? -1 : 1));
          assert.deepStrictEqual(
            responses,
            others.sort().map((name) => ({ name, args })),
          );
          t.diagnostic(`server-side-emit with ack answered in ${took} ms`);
          // the others recorded it (without the callback), the sender did not
          for (const [i, n] of g.byNode.entries()) {
            const ev = (await n.b.ctl("server-events")).events.filter((e) => e.args[0] === token);
            assert.deepStrictEqual(ev, i === ini ? [] : [{ event: "hello-servers", args }], cluster.nodes[i].label);
          }
        });

        test("broadcast with ack: one response per targeted client across all nodes", async (t, cs) => {
          const g = await cs.group(cluster.nodes);
          const ctl = g.byNode[ini].a;
          await quiesce(ctl, g.all);
          const token = unique("ask-all");
          const res = await ctl.ctl("broadcast-with-ack", { event: "ask", args: [token], timeout: 5000 });
          assert.deepStrictEqual(Object.keys(res).sort(), ["error", "responses"], JSON.stringify(res));
          assert.equal(res.error, null, `error answer ${JSON.stringify(res)}`);
          assert.deepStrictEqual([...res.responses].sort(), labels(g.all));
          for (const c of g.all)
            assert.deepStrictEqual(
              c.got("ask", token).map((e) => e.args),
              [[token]],
              c.label,
            );

          // a room, with except
          const [r, x] = [unique("ask-room"), unique("ask-x")];
          const inR = [g.byNode[0].a, g.byNode[0].p, g.byNode[1].b, g.byNode[2].a, g.byNode[2].p];
          await joinAll(inR, [r]);
          await joinAll([g.byNode[2].p], [x]);
          const want = inR.filter((c) => c !== g.byNode[2].p);
          const token2 = unique("ask-room");
          const res2 = await ctl.ctl("broadcast-with-ack", {
            rooms: [r],
            except: [x],
            event: "ask",
            args: [token2, { n: 1 }],
            timeout: 5000,
          });
          assert.equal(res2.error, null, `error answer ${JSON.stringify(res2)}`);
          assert.deepStrictEqual([...res2.responses].sort(), labels(want));

          // nobody targeted: an empty answer, without waiting for the timeout
          const started = Date.now();
          const res3 = await ctl.ctl("broadcast-with-ack", {
            rooms: [unique("nobody")],
            event: "ask",
            args: [unique("none")],
            timeout: 8000,
          });
          assert.deepStrictEqual(res3, { error: null, responses: [] });
          assert.ok(Date.now() - started < 7000, "an ack broadcast to nobody must not wait for its timeout");
        });
      });
    }
  });
}
