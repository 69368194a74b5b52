// Node socket.io peer of the Switchyard benchmarks (bench/run).
//
// With REDIS_URL set, it is a node of a Redis cluster (the classic @socket.io/redis-adapter).
// Listens on 127.0.0.1, port $PORT (default 3000), path /socket.io/, default options
// (pingInterval 25 s, pingTimeout 20 s, polling and WebSocket, no compression). The main
// namespace has exactly the events of crates/server/examples/bench_server.rs:
// - `echo` ...args -> acks with the same arguments;
// - `broadcast` ...args -> emits `tick` with the same arguments to every other socket of the
//   namespace, then acks with no arguments;
// - `join` room -> joins the room named by its argument, then acks with no arguments.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 3000);

const httpServer = createServer();
const io = new Server(httpServer, { path: "/socket.io/" });

// REDIS_URL (for bench/cluster): a node of a cluster with @socket.io/redis-adapter's classic
// adapter, with REDIS_ADAPTER=streams @socket.io/redis-streams-adapter's, or with
// REDIS_ADAPTER=sharded its sharded adapter on a Redis Cluster, as Switchyard's bench_server is
// with its own.
if (process.env.REDIS_URL && process.env.REDIS_ADAPTER === "sharded") {
  // A Redis Cluster (REDIS_URL: one of its nodes) with createShardedAdapter.
  const { createCluster } = await import("redis");
  const { createShardedAdapter } = await import("@socket.io/redis-adapter");
  const pubClient = createCluster({ rootNodes: [{ url: process.env.REDIS_URL }] });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) client.on("error", (e) => console.error("redis:", e.message));
  await Promise.all([pubClient.connect(), subClient.connect()]);
  io.adapter(createShardedAdapter(pubClient, subClient));
} else if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const pubClient = createClient({ url: process.env.REDIS_URL });
  pubClient.on("error", (e) => console.error("redis:", e.message));
  if (process.env.REDIS_ADAPTER === "streams") {
    const { createAdapter } = await import("@socket.io/redis-streams-adapter");
    await pubClient.connect();
    io.adapter(createAdapter(pubClient));
  } else {
    const { createAdapter } = await import("@socket.io/redis-adapter");
    const subClient = pubClient.duplicate();
    subClient.on("error", (e) => console.error("redis:", e.message));
    await Promise.all([pubClient.connect(), subClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
  }
}

// Splits a handler's arguments into the data and the ack callback (if the client asked).
function split(args) {
  const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
  return [args, ack];
}

io.on("connection", (socket) => {
  socket.on("echo", (...raw) => {
    const [args, ack] = split(raw);
    if (ack) ack(...args);
  });
  socket.on("broadcast", (...raw) => {
    const [args, ack] = split(raw);
    socket.broadcast.emit("tick", ...args);
    if (ack) ack();
  });
  socket.on("join", (...raw) => {
    const [args, ack] = split(raw);
    socket.join(String(args[0]));
    if (ack) ack();
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.error(`node socket.io ${process.version} listening on http://127.0.0.1:${port}/socket.io/`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
