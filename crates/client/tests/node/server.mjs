// Node's reference Socket.IO server (socket.io 4.8.1) for the switchyard-client tests.
//
// `node server.mjs` listens on 127.0.0.1 at port $PORT (default 0: the system picks a free
// one), path /socket.io/, with connection state recovery on, and prints `listening <port>`
// with the port it got once ready. Events (acked when the client asks):
// - on connection: emits `hello` [socket.id, socket.recovered] (with an offset appended by
//   the recovery machinery, which the client strips);
// - `echo` ...args → acks the same args (binary kept);
// - `server-ask` data → asks the client `ask` data (2 s timeout); acks its answer, or
//   {"error":"timeout"};
// - `whoami` → acks {id, recovered, auth} (the auth as the server received it);
// - `record` value → appends value to a list kept by the process; `records` → acks it;
// - `kill-transport` → closes the socket's Engine.IO connection (an unclean end: the
//   session is kept for recovery);
// - `kill-and-broadcast` n → same, then 50 ms later broadcasts `missed` 1..n to everyone.
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT ?? 0);
const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 500,
  pingTimeout: 1000,
  connectionStateRecovery: {
    maxDisconnectionDuration: 30_000,
    skipMiddlewares: true,
  },
});

const records = [];

io.on("connection", (socket) => {
  socket.emit("hello", socket.id, socket.recovered);

  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });

  socket.on("server-ask", (data, ack) => {
    socket.timeout(2000).emit("ask", data, (err, answer) => {
      if (typeof ack === "function") ack(err ? { error: "timeout" } : answer);
    });
  });

  socket.on("whoami", (ack) => {
    ack({ id: socket.id, recovered: socket.recovered, auth: socket.handshake.auth });
  });

  socket.on("record", (value) => {
    records.push(value);
  });

  socket.on("records", (ack) => {
    ack(records);
  });

  socket.on("kill-transport", () => {
    socket.conn.close();
  });

  socket.on("kill-and-broadcast", (n) => {
    socket.conn.close();
    setTimeout(() => {
      for (let i = 1; i <= n; i++) io.emit("missed", i);
    }, 50);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening ${httpServer.address().port}`);
});
