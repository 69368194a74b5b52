// Emitters reaching the clients of every node of a mixed cluster (kinds from CLUSTER_KINDS):
//
// (a) the Node emitter, @socket.io/redis-emitter 5.1.0 (default prefix, namespace "/");
// (b) the Rust emitter binary in EMIT_BIN, run as
//     EMIT_BIN --redis-url URL [--nsp /] [--to ROOM]... [--except ROOM]... --event NAME --args JSON_ARRAY
//     (publishes once and exits 0). Skipped when EMIT_BIN is unset.
//
// "Exactly once / not at all" is judged after marker broadcasts published by the Node emitter
// after the message under test (Redis delivers one connection's publishes in order).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { describe } from "node:test";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import {
  assertCounts,
  ids,
  joinAll,
  pollFetch,
  quiesce,
  sameList,
  sortedIds,
  unique,
  useCluster,
  waitAllGot,
  waitGone,
  waitUntil,
} from "./lib/cluster.mjs";
import { CLUSTER_DIR, clusterKinds } from "./lib/nodes.mjs";
import { isBinary, norm, withTimeout } from "./lib/util.mjs";

let redisClient = null;
let emitter = null;

/** Two marker broadcasts from the Node emitter, each received by every connected client. */
async function settleEmitter(clients) {
  const live = clients.filter((c) => c.connected);
  for (let i = 0; i < 2; i++) {
    const token = unique("marker");
    emitter.emit("marker", token);
    await waitAllGot(live, "marker", token);
  }
}

describe(`emitters on a cluster of ${clusterKinds().join(", ")}`, () => {
  const { cluster, test } = useCluster({
    tag: "em",
    async setup(c) {
      redisClient = createClient({ url: c.redis.url });
      redisClient.on("error", (err) => console.error("emitter redis client:", err.message));
      await redisClient.connect();
      emitter = new Emitter(redisClient);
    },
    async teardown() {
      if (redisClient) {
        try {
          await redisClient.disconnect();
        } catch {}
      }
    },
  });

  describe("(a) @socket.io/redis-emitter 5.1.0", () => {
    test("emit to all, to a room, to several rooms, except a room", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const token = unique("em-all");
      emitter.emit("news", token, { n: 1, list: [null, "x"] });
      await waitAllGot(g.all, "news", token);
      await settleEmitter(g.all);
      assertCounts(g.all, "news", token, () => 1);
      for (const c of g.all)
        assert.deepStrictEqual(c.got("news", token)[0].args, [token, { n: 1, list: [null, "x"] }], c.label);

      const [r, r2, x] = [unique("em-r"), unique("em-r2"), unique("em-x")];
      const inR = [g.byNode[0].b, g.byNode[1].p, g.byNode[2].a, g.byNode[2].p];
      const inR2 = [g.byNode[2].a, g.byNode[0].a];
      const inX = [g.byNode[1].p, g.byNode[2].b, g.byNode[0].a];
      await joinAll(inR, [r]);
      await joinAll([g.byNode[0].a], [r2]);
      await joinAll(inX, [x]);
      await g.byNode[2].a.ok("join", { rooms: [r2] }); // in r and r2

      const t1 = unique("em-room");
      emitter.to(r).emit("news", t1);
      await waitAllGot(inR, "news", t1);
      const t2 = unique("em-rooms");
      emitter.to(r).to(r2).emit("news", t2);
      const inEither = [...new Set([...inR, ...inR2])];
      await waitAllGot(inEither, "news", t2);
      const t3 = unique("em-except");
      emitter.except(x).emit("news", t3);
      const notX = g.all.filter((c) => !inX.includes(c));
      await waitAllGot(notX, "news", t3);
      const t4 = unique("em-room-except");
      emitter.to(r).except(x).emit("news", t4);
      const rNotX = inR.filter((c) => !inX.includes(c));
      await waitAllGot(rNotX, "news", t4);

      await settleEmitter(g.all);
      assertCounts(g.all, "news", t1, (c) => (inR.includes(c) ? 1 : 0));
      assertCounts(g.all, "news", t2, (c) => (inEither.includes(c) ? 1 : 0));
      assertCounts(g.all, "news", t3, (c) => (notX.includes(c) ? 1 : 0));
      assertCounts(g.all, "news", t4, (c) => (rNotX.includes(c) ? 1 : 0));
    });

    test("binary arguments arrive as binary on every node", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const token = unique("em-bin");
      const args = [token, Buffer.from([0, 1, 2, 254, 255]), { nested: { buf: Buffer.alloc(1500, 7), s: "✓" } }, 3];
      emitter.emit("bin", ...args);
      await waitAllGot(g.all, "bin", token);
      await settleEmitter(g.all);
      assertCounts(g.all, "bin", token, () => 1);
      for (const c of g.all) {
        const got = c.got("bin", token)[0].args;
        assert.ok(isBinary(got[1]), `${c.label}: argument 1 arrived as ${JSON.stringify(got[1])}`);
        assert.ok(isBinary(got[2].nested.buf), `${c.label}: nested.buf is not binary`);
        assert.deepStrictEqual(norm(got), norm(args), c.label);
      }
    });

    test("socketsJoin and socketsLeave reach the sockets of every node", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const ctl = g.byNode[0].a;
      const [j, k] = [unique("em-j"), unique("em-k")];
      const members = [g.byNode[0].p, g.byNode[1].a, g.byNode[2].b];
      await joinAll(members, [j]);
      emitter.in(j).socketsJoin(k);
      for (const n of g.byNode) {
        await pollFetch(
          n.a,
          { rooms: [k] },
          (a) => sameList(sortedIds(a), ids(members)),
          `room ${k} seen from ${n.a.node.label}`,
        );
      }
      const token = unique("em-joined");
      emitter.to(k).emit("news", token);
      await waitAllGot(members, "news", token);
      await settleEmitter(g.all);
      assertCounts(g.all, "news", token, (c) => (members.includes(c) ? 1 : 0));

      emitter.in(k).except(g.byNode[1].a.id).socketsLeave(k);
      await pollFetch(
        ctl,
        { rooms: [k] },
        (a) => sameList(sortedIds(a), ids([g.byNode[1].a])),
        `room ${k} to keep only ${g.byNode[1].a.label}`,
      );

      // every socket
      await quiesce(ctl, g.all);
      const ka = unique("em-all");
      emitter.socketsJoin(ka);
      await pollFetch(
        ctl,
        { rooms: [ka] },
        (a) => sameList(sortedIds(a), ids(g.all)),
        `room ${ka} to hold every socket`,
      );
    });

    test("disconnectSockets (close false and true) reaches the sockets of every node", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const [d, d2] = [unique("em-d"), unique("em-d2")];
      const first = [g.byNode[0].b, g.byNode[1].p, g.byNode[2].a];
      const second = [g.byNode[0].p, g.byNode[1].a, g.byNode[2].p];
      await joinAll(first, [d]);
      await joinAll(second, [d2]);
      emitter.in(d).disconnectSockets();
      await waitGone(first);
      for (const c of first) assert.deepStrictEqual(c.disconnects, ["io server disconnect"], c.label);
      emitter.in(d2).disconnectSockets(true);
      await waitGone(second);
      const remaining = g.all.filter((c) => !first.includes(c) && !second.includes(c));
      await settleEmitter(remaining);
      for (const c of remaining) assert.ok(c.connected, `${c.label} must stay connected`);
      await quiesce(remaining[0], remaining);
    });

    test("serverSideEmit is recorded by every node", async (t, cs) => {
      const g = await cs.group(cluster.nodes);
      const token = unique("em-sse");
      const args = [token, { n: 2, list: ["x", null] }];
      emitter.serverSideEmit("hello-servers", ...args);
      for (const [i, n] of g.byNode.entries()) {
        let last;
        await waitUntil(
          async () => {
            last = await n.a.ctl("server-events");
            return last.events.some((e) => e.args[0] === token);
          },
          () => `${cluster.nodes[i].label} to record ${token}; it has ${JSON.stringify(last)}`,
          { interval: 50 },
        );
        assert.deepStrictEqual(
          last.events.filter((e) => e.args[0] === token),
          [{ event: "hello-servers", args }],
          cluster.nodes[i].label,
        );
      }
    });
  });

  // ---------------------------------------------------------------------------------------
  // (b) the Rust emitter
  // ---------------------------------------------------------------------------------------

  const EMIT_BIN =
    process.env.EMIT_BIN && process.env.EMIT_BIN.length > 0 ? path.resolve(CLUSTER_DIR, process.env.EMIT_BIN) : null;
  const SKIP_RUST = "EMIT_BIN is not set: the Rust emitter tests need the emitter binary (EMIT_BIN=path/to/emitter)";

  /** Runs the Rust emitter once; it must exit 0 within 15 s. */
  async function rustEmit({ to = [], except = [], event, args, nsp }) {
    const argv = ["--redis-url", cluster.redis.url];
    if (nsp) argv.push("--nsp", nsp);
    for (const r of to) argv.push("--to", r);
    for (const r of except) argv.push("--except", r);
    argv.push("--event", event, "--args", JSON.stringify(args));
    const child = spawn(EMIT_BIN, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    const done = new Promise((resolve, reject) => {
      child.once("error", (err) => reject(new Error(`cannot run ${EMIT_BIN}: ${err.message}`)));
      child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    let result;
    try {
      result = await withTimeout(done, 15_000, `${EMIT_BIN} ${argv.join(" ")} to exit`);
    } catch (err) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {}
      throw new Error(`${err.message}\n--- emitter output ---\n${output}`);
    }
    assert.deepStrictEqual(
      result,
      { code: 0, signal: null },
      `${EMIT_BIN} ${argv.join(" ")}\n--- emitter output ---\n${output}`,
    );
  }

  describe("(b) the Rust emitter (EMIT_BIN)", () => {
    test("to all, to a room, with except: reaches the clients of every node", async (t, cs) => {
      if (!EMIT_BIN) {
        t.skip(SKIP_RUST);
        return;
      }
      const g = await cs.group(cluster.nodes);
      const token = unique("rs-all");
      const payload = { n: 1, list: [true, null, "✓"], nested: { f: 2.5 } };
      await rustEmit({ event: "news", args: [token, payload] });
      await waitAllGot(g.all, "news", token);

      const [r, x] = [unique("rs-r"), unique("rs-x")];
      const inR = [g.byNode[0].a, g.byNode[1].b, g.byNode[2].p, g.byNode[2].a];
      const inX = [g.byNode[2].a, g.byNode[1].p];
      await joinAll(inR, [r]);
      await joinAll(inX, [x]);
      const t1 = unique("rs-room");
      await rustEmit({ to: [r], event: "news", args: [t1] });
      await waitAllGot(inR, "news", t1);
      const t2 = unique("rs-except");
      await rustEmit({ except: [x], event: "news", args: [t2], nsp: "/" });
      const notX = g.all.filter((c) => !inX.includes(c));
      await waitAllGot(notX, "news", t2);
      const t3 = unique("rs-room-except");
      await rustEmit({ to: [r], except: [x], event: "news", args: [t3] });
      const rNotX = inR.filter((c) => !inX.includes(c));
      await waitAllGot(rNotX, "news", t3);

      await settleEmitter(g.all);
      assertCounts(g.all, "news", token, () => 1);
      for (const c of g.all) assert.deepStrictEqual(c.got("news", token)[0].args, [token, payload], c.label);
      assertCounts(g.all, "news", t1, (c) => (inR.includes(c) ? 1 : 0));
      assertCounts(g.all, "news", t2, (c) => (notX.includes(c) ? 1 : 0));
      assertCounts(g.all, "news", t3, (c) => (rNotX.includes(c) ? 1 : 0));
    });
  });
});
