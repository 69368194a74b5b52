// Child process holding one engine.io-client session, used to show that the server drops a
// session whose client stops answering pings.
// Usage: node eio-child.mjs <http url> <transport: polling|websocket>
// Prints "OPEN <sid> <transport>" once open, "CLOSE <reason>" when closed. Ends by itself
// after 20 s at the latest.

import { Socket } from "engine.io-client";

const [url, transport] = process.argv.slice(2);
const socket = new Socket(url, { path: "/engine.io/", transports: [transport], upgrade: false });
socket.on("open", () => {
  process.stdout.write(`OPEN ${socket.id} ${socket.transport.name}\n`);
});
socket.on("close", (reason) => {
  process.stdout.write(`CLOSE ${reason}\n`);
  process.exit(0);
});
setTimeout(() => process.exit(3), 20_000).unref();
// keep the event loop alive until the timer above or a close
const keepAlive = setInterval(() => {}, 1000);
socket.on("close", () => clearInterval(keepAlive));
