#!/usr/bin/env node
// The full delivery benchmark: `node bench/delivery.mjs [clients] [seconds] [rate] [dropEveryMs]`
// (defaults 1000 clients, 180 s, 10 messages/s, a drop about every 15 s per client). Starts the
// `testbed` example with connection state recovery and the reference server's heartbeat
// (pingInterval 25 s, pingTimeout 20 s: the testbed's quick test heartbeat would cut off
// clients whose one Node process stalls for half a second) (TESTBED_BIN, else target/release), runs
// tests/interop/lib/delivery.mjs against it, and prints one JSON line. Needs
// `npm ci` in tests/interop first (bench/run does it).

import { runDelivery } from "../tests/interop/lib/delivery.mjs";
import { Testbed } from "../tests/interop/lib/testbed.mjs";

const [clients = 1000, seconds = 180, rate = 10, dropEveryMs = 15_000] = process.argv
  .slice(2)
  .map(Number);
const server = new Testbed([
  "--recovery-ms",
  "120000",
  "--ping-interval-ms",
  "25000",
  "--ping-timeout-ms",
  "20000",
]);
await server.start();
try {
  const result = await runDelivery({
    url: server.url,
    clients,
    seconds,
    rate,
    dropEveryMs,
    log: (line) => console.error(line),
  });
  console.log(JSON.stringify(result));
} finally {
  await server.stop();
}
