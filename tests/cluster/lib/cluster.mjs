// A cluster for one test file or describe block: a private redis-server (or a private Redis
// Cluster of three, for the sharded adapter) plus three nodes (kinds from CLUSTER_KINDS), and
// official socket.io-client clients connected to them.

import assert from "node:assert/strict";
import { after, before, test as nodeTest } from "node:test";
import { io } from "socket.io-client";
import { RedisClusterOfThree, RedisServer } from "./redis.mjs";
import { ClusterNode, clusterKinds } from "./nodes.mjs";
import { logDirectory, sleep, waitUntil, withTimeout } from "./util.mjs";

export const CONTROL_TIMEOUT_MS = 10_000;

export class Cluster {
  /**
   * `nodeArgs`: extra arguments for every node (both kinds), e.g. ["--adapter", "streams"];
   * `redisCluster`: true to run the nodes on a Redis Cluster of three (RedisClusterOfThree,
   * the nodes get the URL of its first node) instead of one redis-server.
   */
  constructor(kinds = clusterKinds(), { tag = "c", nodeArgs = [], redisCluster = false } = {}) {
    this.kinds = kinds;
    this.tag = tag;
    this.nodeArgs = nodeArgs;
    this.redis = redisCluster ? new RedisClusterOfThree(`${tag}-redis`) : new RedisServer(`${tag}-redis`);
    this.nodes = [];
  }

  async start() {
    await this.redis.start();
    this.nodes = this.kinds.map(
      (kind, i) =>
        new ClusterNode({
          kind,
          name: `${this.tag}-n${i}-${kind}`,
          redisUrl: this.redis.url,
          extraArgs: this.nodeArgs,
        }),
    );
    // one after the other: a node subscribes while starting, and a failure names one node
    for (const node of this.nodes) await node.start();
  }

  async stop() {
    for (const node of this.nodes) await node.stop();
    await this.redis.close();
  }

  logs() {
    return [...this.nodes.map((n) => n.logTail()), this.redis.logTail(800)].join("\n");
  }

  assertAlive() {
    for (const node of this.nodes) node.assertAlive();
  }
}

/**
 * Call inside a `describe` block. Starts a cluster in a `before` hook and stops it (every process by its PID) in an `after`
 * hook. Returns it and a `test` like node:test's, whose failures carry the tails of every
 * process's log, which closes the clients a test opened, and which checks that no node died.
 * Options: `kinds`, `tag`, `nodeArgs` and `redisCluster` (as for `Cluster`), `setup(cluster)` and
 * `teardown(cluster)`.
 */
export function useCluster(options = {}) {
  const cluster = new Cluster(options.kinds, options);
  // one hook each way (Node 20 may run several root-level `before` hooks at once): the
  // optional setup(cluster) runs once the cluster is up, teardown(cluster) before it stops
  before(
    async () => {
      await cluster.start();
      if (options.setup) await options.setup(cluster);
    },
    { timeout: 120_000 },
  );
  after(
    async () => {
      try {
        if (options.teardown) await options.teardown(cluster);
      } finally {
        await cluster.stop();
      }
    },
    { timeout: 30_000 },
  );
  const test = (name, opts, fn) => {
    if (typeof opts === "function") {
      fn = opts;
      opts = {};
    }
    return nodeTest(name, { timeout: 60_000, ...opts }, async (t) => {
      const clients = new ClientSet();
      try {
        await fn(t, clients);
        cluster.assertAlive();
      } catch (err) {
        if (err && typeof err === "object") {
          try {
            err.message = `${err.message}\n(logs in ${logDirectory()})\n${cluster.logs()}`;
          } catch {}
        }
        throw err;
      } finally {
        clients.closeAll();
      }
    });
  };
  return { cluster, test };
}

/** One official client, recording every event it receives. */
export class Client {
  /**
   * `options.io`: more socket.io-client options (e.g. `reconnection: true`), over the defaults
   * of `connect()`; `options.beforeConnect(socket)`: called before the socket connects (e.g. to
   * set the session id and offset it presents, `socket._pid` and `socket._lastOffset`).
   */
  constructor(node, label, transport, { io: ioOptions = {}, beforeConnect = null } = {}) {
    this.node = node;
    this.label = label;
    this.transport = transport;
    this.ioOptions = ioOptions;
    this.beforeConnect = beforeConnect;
    this.events = []; // {event, args} in arrival order
    this.disconnects = []; // reasons
    this.connects = []; // {id, recovered} of every "connect" (reconnections included)
    this.socket = null;
    this.sid = undefined; // kept after a disconnect (socket.id is then undefined)
  }

  get id() {
    return this.sid;
  }

  get connected() {
    return !!this.socket && this.socket.connected;
  }

  async connect() {
    const socket = io(this.node.url, {
      forceNew: true,
      reconnection: false,
      transports: [this.transport],
      upgrade: false,
      timeout: 10_000,
      ...this.ioOptions,
      autoConnect: false,
    });
    this.socket = socket;
    socket.onAny((event, ...args) => {
      if (typeof args[args.length - 1] === "function") args.pop();
      this.events.push({ event, args, at: Date.now() });
    });
    // broadcast-with-ack events: every client answers with its own label
    socket.on("ask", (...args) => {
      const cb = args[args.length - 1];
      if (typeof cb === "function") cb(this.label);
    });
    socket.on("disconnect", (reason) => this.disconnects.push(reason));
    socket.on("connect", () => {
      this.sid = socket.id;
      this.connects.push({ id: socket.id, recovered: socket.recovered });
    });
    if (this.beforeConnect) this.beforeConnect(socket);
    socket.connect();
    const failed = new Promise((_, reject) =>
      socket.once("connect_error", (e) => reject(new Error(`${this.label}: connect_error ${e.message}`))),
    );
    failed.catch(() => {});
    await withTimeout(
      Promise.race([new Promise((r) => socket.once("connect", r)), failed]),
      15_000,
      `${this.label} to connect to ${this.node.label}`,
    );
    this.sid = socket.id;
    return this;
  }

  /** A control request: emitWithAck with a time limit; answers the single ack argument. */
  async ctl(event, arg, timeout = CONTROL_TIMEOUT_MS) {
    const s = this.socket.timeout(timeout);
    let res;
    try {
      res = arg === undefined ? await s.emitWithAck(event) : await s.emitWithAck(event, arg);
    } catch (err) {
      throw new Error(
        `control ${event} ${JSON.stringify(arg)} from ${this.label} on ${this.node.label}: ${err.message}`,
      );
    }
    assert.ok(
      res && typeof res === "object",
      `control ${event}: the ack must be one object, got ${JSON.stringify(res)}`,
    );
    return res;
  }

  /** Like ctl, but the answer must be {ok: true}. */
  async ok(event, arg) {
    const res = await this.ctl(event, arg);
    assert.deepStrictEqual(res, { ok: true }, `control ${event} from ${this.label}`);
    return res;
  }

  /** Received events named `event` whose first argument is `token` (or all, without a token). */
  got(event, token) {
    return this.events.filter((e) => e.event === event && (token === undefined || e.args[0] === token));
  }

  count(event, token) {
    return this.got(event, token).length;
  }

  close() {
    try {
      if (this.socket) this.socket.disconnect();
    } catch {}
  }
}

/** The clients of one test, all closed at its end. */
export class ClientSet {
  constructor() {
    this.all = [];
  }

  /** `options`: as for `new Client`. */
  async connect(node, label, transport = "websocket", options = {}) {
    const c = new Client(node, label, transport, options);
    this.all.push(c);
    await c.connect();
    return c;
  }

  /**
   * Per node: `a` and `b` on WebSocket, `p` on HTTP long-polling. Answers
   * {all, byNode: [{a, b, p, list}], labels}.
   */
  async group(nodes, prefix = "") {
    const byNode = [];
    for (const node of nodes) {
      const [a, b, p] = await Promise.all([
        this.connect(node, `${prefix}${node.name}/a`, "websocket"),
        this.connect(node, `${prefix}${node.name}/b`, "websocket"),
        this.connect(node, `${prefix}${node.name}/p`, "polling"),
      ]);
      byNode.push({ a, b, p, list: [a, b, p] });
    }
    return { all: byNode.flatMap((n) => n.list), byNode };
  }

  closeAll() {
    for (const c of this.all.splice(0)) c.close();
  }
}

let seq = 0;
/** A unique token / room name for this test process. */
export function unique(what = "t") {
  return `${what}-${process.pid}-${++seq}`;
}

/**
 * Waits until every client in `clients` has received `event` with first argument `token`.
 * The message names the clients still missing it.
 */
export async function waitAllGot(clients, event, token, timeout = 10_000) {
  await waitUntil(
    () => clients.every((c) => c.count(event, token) > 0),
    () => {
      const missing = clients.filter((c) => c.count(event, token) === 0).map((c) => c.label);
      return `"${event}" ${token} at ${missing.join(", ")}`;
    },
    { timeout },
  );
}

/** Joins each client to `rooms` through the control protocol. */
export async function joinAll(clients, rooms) {
  await Promise.all(clients.map((c) => c.ok("join", { rooms })));
}

/** Waits until every client in `clients` has been disconnected (10 s at most). */
export function waitGone(clients) {
  return waitUntil(
    () => clients.every((c) => !c.connected && c.disconnects.length > 0),
    () =>
      `disconnects of ${clients
        .filter((c) => c.connected)
        .map((c) => c.label)
        .join(", ")}`,
    { timeout: 10_000 },
  );
}

/**
 * A settle point after a broadcast from `from` (a client on the initiating node): a marker
 * broadcast to all, received by every connected client of `clients`; then a round trip through
 * Redis from that node (fetch-sockets waits for the answers of the other nodes, which come after
 * anything that node published earlier, its own echoes included); then a second marker. Any
 * duplicate or late copy of an earlier broadcast has arrived by then. (On a streams cluster every
 * broadcast is an entry of one stream, which every node reads in order: a marker received on a
 * node follows every earlier entry there.)
 */
export async function settle(from, clients) {
  const live = clients.filter((c) => c.connected);
  for (let round = 0; round < 2; round++) {
    const token = unique("marker");
    await from.ok("broadcast", { event: "marker", args: [token] });
    await waitAllGot(live, "marker", token);
    if (round === 0) await from.ctl("fetch-sockets", {});
  }
}

/** Asserts that each client got `event` with `token` exactly `expected(c)` (0 or 1) times. */
export function assertCounts(clients, event, token, expected) {
  const wrong = clients
    .map((c) => ({ label: c.label, got: c.count(event, token), want: expected(c) }))
    .filter((x) => x.got !== x.want);
  assert.deepStrictEqual(wrong, [], `"${event}" ${token}: clients with a wrong count (got/want)`);
}

/** Polls fetch-sockets from `from` until `accept(answer)`; answers the last answer. */
export async function pollFetch(from, arg, accept, what, timeout = 15_000) {
  let last = null;
  await waitUntil(
    async () => {
      last = await from.ctl("fetch-sockets", arg);
      return !last.error && accept(last);
    },
    () => `${what}; last fetch-sockets answer: ${JSON.stringify(last)}`,
    { timeout, interval: 50 },
  );
  return last;
}

export const ids = (clients) => clients.map((c) => c.id).sort();
export const sortedIds = (answer) => answer.sockets.map((s) => s.id);
export { sleep, waitUntil };

const sameList = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
export { sameList };

/**
 * Waits until fetch-sockets (all sockets) from `from` answers exactly the ids of `clients`:
 * sockets of earlier tests, closed by their clients, are gone from every node.
 */
export function quiesce(from, clients) {
  const want = ids(clients);
  return pollFetch(
    from,
    {},
    (a) => sameList(sortedIds(a), want),
    `fetch-sockets to list exactly the ${want.length} sockets of this test`,
  );
}

/** The node arguments of a streams cluster (both kinds). */
export const STREAMS_ARGS = ["--adapter", "streams"];

/**
 * Setup of a streams cluster (`useCluster({setup: streamsReady})`): waits until every node reads
 * the stream. A node answers HTTP before its stream reader has made its first XREAD (Node's
 * adapter connects the reader asynchronously and reads from `$`, the entries added after that
 * read), and an entry added before then never reaches the node. So each node in turn broadcasts
 * to all until a client on every node has received one of its broadcasts (each attempt waits 2 s
 * for it; 30 s at most): then every other node has read an entry, and reads on from its ID.
 */
export async function streamsReady(cluster) {
  const cs = new ClientSet();
  try {
    const clients = [];
    for (const node of cluster.nodes) clients.push(await cs.connect(node, `${node.name}/warm-up`));
    for (const from of clients) {
      let lastError = null;
      await waitUntil(
        async () => {
          const token = unique("warm-up");
          await from.ok("broadcast", { event: "warm-up", args: [token] });
          try {
            await waitAllGot(clients, "warm-up", token, 2000);
            return true;
          } catch (err) {
            lastError = err;
            return false;
          }
        },
        () => `a broadcast from ${from.node.label} to reach every node: ${lastError && lastError.message}`,
        { timeout: 30_000, interval: 0 },
      );
    }
  } finally {
    cs.closeAll();
  }
}

/** The node arguments of a sharded pub/sub cluster (both kinds; with `redisCluster: true`). */
export const SHARDED_ARGS = ["--adapter", "sharded"];

/** The main channel of the sharded adapter for namespace `/`, and the channel of a public room. */
export const SHARDED_MAIN_CHANNEL = "socket.io#/#";
export const shardedRoomChannel = (room) => `${SHARDED_MAIN_CHANNEL}${room}#`;

/**
 * Setup of a sharded pub/sub cluster (`useCluster({redisCluster: true, setup: shardedReady})`):
 * waits until every node has subscribed (SSUBSCRIBE, confirmed by Redis) to the main channel
 * `socket.io#/#` (`PUBSUB SHARDNUMSUB` summed over the Redis nodes equals the number of cluster
 * nodes: the adapter's server count, which fetch-sockets and server-side-emit with ack wait for)
 * and each to its response channel `socket.io#/#<uid>#` (the only other channels before any
 * client joins a room: as many as nodes, each with one subscriber). A node may answer HTTP
 * before its subscriptions are confirmed (Node's adapter sends them without awaiting them).
 */
export async function shardedReady(cluster) {
  const want = cluster.nodes.length;
  let last = null;
  await waitUntil(
    async () => {
      const main = await cluster.redis.shardNumSub(SHARDED_MAIN_CHANNEL);
      const others = (await cluster.redis.shardChannels(`${SHARDED_MAIN_CHANNEL}*`)).filter(
        (c) => c !== SHARDED_MAIN_CHANNEL,
      );
      const counts = await Promise.all(others.map((c) => cluster.redis.shardNumSub(c)));
      last = { main, responseChannels: Object.fromEntries(others.map((c, i) => [c, counts[i]])) };
      return main === want && others.length === want && counts.every((n) => n === 1);
    },
    () =>
      `every node to subscribe to ${SHARDED_MAIN_CHANNEL} and to its response channel ` +
      `(${want} each); last seen: ${JSON.stringify(last)}`,
    { timeout: 30_000, interval: 50 },
  );
}

/**
 * Waits until `nodeCount` servers follow `room` on a sharded pub/sub cluster:
 * `PUBSUB SHARDNUMSUB socket.io#/#<room>#` summed over the Redis nodes equals `nodeCount`. In
 * the adapter's dynamic subscription mode a server SSUBSCRIBEs to a public room's channel when
 * the room gains its first local socket (and SUNSUBSCRIBEs when it empties), and a broadcast to
 * exactly one room (no ack) is SPUBLISHed on that channel only: one published before a server's
 * subscription is confirmed by Redis never reaches that server (Node's adapter has the same
 * race). So after a join, and before a broadcast to that room, a test waits for this.
 */
export async function roomFollowed(cluster, room, nodeCount, timeout = 15_000) {
  const channel = shardedRoomChannel(room);
  let last = null;
  await waitUntil(
    async () => {
      last = await cluster.redis.shardNumSub(channel);
      return last === nodeCount;
    },
    () => `PUBSUB SHARDNUMSUB ${channel} to be ${nodeCount} (the servers holding a member); last: ${last}`,
    { timeout, interval: 20 },
  );
}
