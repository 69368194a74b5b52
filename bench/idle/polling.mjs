// The idle cost of long-polling sessions (bench/idle/README.md): opens N Engine.IO sessions
// with the official engine.io-client on the polling transport only, waits until every one is
// open and the server has settled, holds them past one heartbeat, and reads the server's RSS
// (VmRSS of --pid) before, at connect and after the hold. Prints one JSON line.
//
// usage: node bench/idle/polling.mjs --url http://127.0.0.1:PORT --pid PID [--clients N]
//        [--hold SECONDS]        (needs engine.io-client: NODE_PATH=tests/interop/node_modules)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const { Socket } = require("engine.io-client");

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    pid: { type: "string" },
    clients: { type: "string", default: "1000" },
    hold: { type: "string", default: "30" },
  },
});
const clients = Number(values.clients);
const holdSeconds = Number(values.hold);

function rssKiB() {
  const status = readFileSync(`/proc/${values.pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const before = rssKiB();
const sockets = [];
// Every wait below ends by this deadline, whatever the server does.
const deadline = Date.now() + 120_000;
let open = 0;
let closed = 0;
for (let index = 0; index < clients; index++) {
  const socket = new Socket(values.url, {
    path: "/socket.io/",
    transports: ["polling"],
    upgrade: false,
  });
  socket.on("open", () => open++);
  socket.on("close", () => closed++);
  sockets.push(socket);
  // A few hundred handshakes in flight at most.
  if (index % 200 === 199) {
    while (open + closed < index - 100 && Date.now() < deadline) await sleep(10);
  }
}
while (open + closed < clients && Date.now() < deadline) await sleep(50);
await sleep(2000);
const connected = rssKiB();
await sleep(holdSeconds * 1000);
const end = rssKiB();
const perConnection = (kib) => Math.round(((kib - before) * 1024) / Math.max(open, 1));
console.log(
  JSON.stringify({
    case: "idle-polling",
    clients,
    open,
    closed,
    hold_s: holdSeconds,
    rss_before_kib: before,
    rss_connected_kib: connected,
    rss_end_kib: end,
    rss_per_conn_connected_bytes: perConnection(connected),
    rss_per_conn_bytes: perConnection(end),
  }),
);
for (const socket of sockets) socket.close();
await sleep(500);
process.exit(0);
