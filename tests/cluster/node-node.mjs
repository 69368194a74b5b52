// The Node reference cluster node: socket.io 4.8.1 with, by default, the classic Redis adapter
// (`createAdapter` of @socket.io/redis-adapter 8.3.0, two node-redis 4 clients), or with
// `--adapter streams` the Redis streams adapter (`createAdapter` of
// @socket.io/redis-streams-adapter 0.3.1, one node-redis 4 client, default options: stream
// `socket.io`, maxLen 10000, session keys `sio:session:<pid>`), or with `--adapter sharded` the
// sharded pub/sub adapter (`createShardedAdapter` of @socket.io/redis-adapter 8.3.0 on a Redis
// Cluster: two node-redis 4 cluster clients, `createCluster({rootNodes: [{url}]})` and its
// duplicate, default options: channel prefix `socket.io`, subscription mode `dynamic`; `--redis-url`
// is any node of the cluster), listening on 127.0.0.1 only.
// `--recovery-ms N` turns on connection state recovery (`maxDisconnectionDuration: N`,
// `skipMiddlewares: true`). It implements the control protocol of README.md; the Rust
// `cluster_node` fixture implements the same protocol and takes the same options.
//
// Usage: node node-node.mjs --port P --redis-url redis://127.0.0.1:RP --name NAME
//                           [--requests-timeout-ms 3000] [--adapter classic|streams|sharded]
//                           [--recovery-ms N]

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createAdapter as createStreamsAdapter } from "@socket.io/redis-streams-adapter";
import { createClient, createCluster } from "redis";
import { Server } from "socket.io";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string" },
    "redis-url": { type: "string" },
    name: { type: "string" },
    "requests-timeout-ms": { type: "string", default: "3000" },
    adapter: { type: "string", default: "classic" },
    "recovery-ms": { type: "string" },
  },
});
for (const key of ["port", "redis-url", "name"]) {
  if (!opts[key]) {
    console.error(`missing --${key}`);
    process.exit(2);
  }
}
const name = opts.name;
const port = Number(opts.port);
const requestsTimeout = Number(opts["requests-timeout-ms"]);
const adapterKind = opts.adapter;
if (adapterKind !== "classic" && adapterKind !== "streams" && adapterKind !== "sharded") {
  console.error(`--adapter must be classic, streams or sharded, got ${JSON.stringify(adapterKind)}`);
  process.exit(2);
}
const recoveryMs = opts["recovery-ms"] === undefined ? null : Number(opts["recovery-ms"]);
if (recoveryMs !== null && !(Number.isInteger(recoveryMs) && recoveryMs > 0)) {
  console.error(`--recovery-ms must be a positive whole number of milliseconds, got ${opts["recovery-ms"]}`);
  process.exit(2);
}

const log = (...args) => console.log(new Date().toISOString(), `[${name}]`, ...args);

// The adapter publishes without awaiting (a PUBLISH that fails when Redis goes away would be an
// unhandled rejection, which ends a Node process by default): log it and carry on, as a real
// deployment must.
process.on("unhandledRejection", (err) => log("unhandled rejection:", err && err.message ? err.message : err));

// classic: a publishing and a subscribing client; sharded: the same, as Redis Cluster clients
// (they discover the other nodes from the one of --redis-url); streams: one client, which the
// adapter duplicates by itself (a subscriber and a stream reader, which ignore their errors)
const mainClient =
  adapterKind === "sharded"
    ? createCluster({ rootNodes: [{ url: opts["redis-url"] }] })
    : createClient({ url: opts["redis-url"] });
const clients =
  adapterKind === "streams"
    ? [["streams", mainClient]]
    : [
        ["pub", mainClient],
        ["sub", mainClient.duplicate()],
      ];
// node-redis reconnects by itself (and resubscribes); without an "error" listener an error
// event would end the process. Logged: the first occurrence of each distinct error message of an
// outage, the first retry, and "ready" (a cluster client emits "error" only; it has no
// "reconnecting" nor "ready" events, so its distinct messages are logged once for the process).
for (const [label, client] of clients) {
  let up = false;
  let errors = 0;
  const seen = new Set();
  client.on("error", (err) => {
    errors++;
    const message = err && err.message;
    if (seen.has(message)) return;
    seen.add(message);
    log(`${label} redis error: ${message} (further errors with this message not logged until ready)`);
  });
  client.on("reconnecting", () => {
    if (up) log(`${label} redis reconnecting`);
    up = false;
  });
  client.on("ready", () => {
    log(`${label} redis ready${errors > 0 ? ` after ${errors} errors` : ""}`);
    up = true;
    errors = 0;
    seen.clear();
  });
}
await Promise.all(clients.map(([, client]) => client.connect()));
if (adapterKind === "sharded") log(`redis cluster clients connected (${mainClient.masters.length} masters)`);

const httpServer = createServer();
const io = new Server(httpServer, {
  // the streams adapter has no requests timeout of its own: its requests wait 5 s (socket.io-adapter's default)
  adapter:
    adapterKind === "classic"
      ? createAdapter(mainClient, clients[1][1], { requestsTimeout })
      : adapterKind === "sharded"
        ? createShardedAdapter(mainClient, clients[1][1])
        : createStreamsAdapter(mainClient),
  ...(recoveryMs === null
    ? {}
    : { connectionStateRecovery: { maxDisconnectionDuration: recoveryMs, skipMiddlewares: true } }),
});
log(`adapter ${adapterKind}, connection state recovery ${recoveryMs === null ? "off" : `${recoveryMs} ms`}`);

/** Every server-side event this node received, in order: {event, args}. */
const serverEvents = [];

io.sockets.on("hello-servers", (...args) => {
  const callback = typeof args[args.length - 1] === "function" ? args.pop() : null;
  serverEvents.push({ event: "hello-servers", args });
  if (callback) callback({ name, args });
});

/** `io.to(rooms).except(except)` (empty or absent rooms: every socket). */
function target({ rooms, except } = {}) {
  let op = io.except(Array.isArray(except) ? except : []);
  if (Array.isArray(rooms) && rooms.length > 0) op = op.to(rooms);
  return op;
}

const describeSocket = (s) => ({ id: s.id, rooms: [...s.rooms].sort(), data: s.data });

io.on("connection", (socket) => {
  /** Registers a control event: the handler gets the argument object, its result is the ack. */
  const control = (event, handler) => {
    socket.on(event, async (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : () => {};
      const arg = args[0] && typeof args[0] === "object" ? args[0] : {};
      try {
        await handler(arg, ack);
      } catch (err) {
        log(`control ${event} failed:`, err);
        ack({ error: err && err.message ? err.message : String(err) });
      }
    });
  };

  control("whoami", (_, ack) => ack({ name }));
  control("join", ({ rooms }, ack) => {
    socket.join(rooms);
    ack({ ok: true });
  });
  control("leave", ({ room }, ack) => {
    socket.leave(room);
    ack({ ok: true });
  });
  control("set-data", ({ data }, ack) => {
    socket.data = data;
    ack({ ok: true });
  });
  control("broadcast", (arg, ack) => {
    target(arg).emit(arg.event, ...(arg.args || []));
    ack({ ok: true });
  });
  control("broadcast-with-ack", (arg, ack) => {
    target(arg)
      .timeout(arg.timeout)
      .emit(arg.event, ...(arg.args || []), (err, responses) => {
        ack({ error: err ? err.message : null, responses });
      });
  });
  control("sockets-join", (arg, ack) => {
    target(arg).socketsJoin(arg.join);
    ack({ ok: true });
  });
  control("sockets-leave", (arg, ack) => {
    target(arg).socketsLeave(arg.leave);
    ack({ ok: true });
  });
  control("disconnect-sockets", (arg, ack) => {
    target(arg).disconnectSockets(!!arg.close);
    ack({ ok: true });
  });
  control("fetch-sockets", async (arg, ack) => {
    let sockets;
    try {
      sockets = await target(arg).fetchSockets();
    } catch (err) {
      ack({ error: err && err.message ? err.message : String(err) });
      return;
    }
    const list = sockets.map(describeSocket).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    ack({ sockets: list });
  });
  control("server-side-emit", (arg, ack) => {
    const args = arg.args || [];
    if (arg.ack) {
      io.serverSideEmit(arg.event, ...args, (err, responses) => {
        ack({ error: err ? err.message : null, responses });
      });
    } else {
      io.serverSideEmit(arg.event, ...args);
      ack({ ok: true });
    }
  });
  control("server-events", (_, ack) => ack({ events: serverEvents }));
});

httpServer.listen(port, "127.0.0.1", () => log(`listening on 127.0.0.1:${port}`));

const shutdown = (signal) => {
  log(`${signal}: shutting down`);
  io.close();
  process.exit(0);
};
process.on("SIGTERM", () => shutdown("SIGTERM"));
// the test harness gives us a pipe as stdin: its end means that the harness is gone
if (!process.stdin.isTTY) {
  process.stdin.on("end", () => shutdown("end of stdin"));
  process.stdin.on("error", () => {});
  process.stdin.resume();
}
process.on("SIGINT", () => shutdown("SIGINT"));
