#!/usr/bin/env node
// The full delivery benchmark:
//   node bench/delivery.mjs [clients] [seconds] [rate] [dropEveryMs] [workers] [probes]
// (defaults 1000 clients, 180 s, 10 messages/s, a drop about every 15 s per client, 1 worker,
// no probes).
// Starts the `testbed` example with connection state recovery and the reference server's
// heartbeat (pingInterval 25 s, pingTimeout 20 s: the testbed's quick test heartbeat would cut
// off clients whose Node process stalls for half a second) on a two-worker runtime, as the
// binary runs on this two-core machine (TESTBED_BIN, else
// target/release), runs the scenario of tests/interop/lib/delivery.mjs against it, and prints
// one JSON line. With several workers, the subscribers are spread over that many Node
// processes (this file run as a worker), so that one process's event loop does not set the
// latencies; the publisher stays in this process.
//
// Probes measure what the server adds to a replay while the clients load it: `probes` more
// subscribers in the same room, in a Node process of their own that carries nothing else,
// each dropping its transport about every 2 s. The clients' own figures include their event
// loops' queueing (250 sockets a process, all woken by each broadcast); the probes' figures
// are the server's CONNECT exchange and replay, plus the scheduling of a busy machine. They
// are reported apart (`probe`), and their losses and duplicates count like any other.
// Needs `npm ci` in tests/interop first (bench/run does it).

import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { publish, subscribe, summarize } from "../tests/interop/lib/delivery.mjs";
import { Testbed } from "../tests/interop/lib/testbed.mjs";

/** How often, about, a probe drops its transport. */
const PROBE_DROP_EVERY_MS = 2_000;

if (process.argv[2] === "--worker") {
  // A worker: subscribers only, driven by its parent over IPC.
  const [url, clients, dropEveryMs] = process.argv.slice(3);
  const group = await subscribe({ url, clients: Number(clients), dropEveryMs: Number(dropEveryMs) });
  process.send({ ready: true });
  process.once("message", async ({ sent }) => {
    const report = await group.finish(sent);
    process.send({ report }, () => process.exit(0));
  });
} else {
  const [clients = 1000, seconds = 180, rate = 10, dropEveryMs = 15_000, workers = 1, probes = 0] =
    process.argv.slice(2).map(Number);
  const server = new Testbed([
    "--recovery-ms",
    "120000",
    "--ping-interval-ms",
    "25000",
    "--ping-timeout-ms",
    "20000",
    // As the switchyard binary runs: a worker per core.
    "--worker-threads",
    "2",
  ]);
  await server.start();
  const children = [];
  let probe = null;
  try {
    const share = (i) => Math.floor(clients / workers) + (i < clients % workers ? 1 : 0);
    for (let i = 0; i < workers; i++) {
      const child = fork(fileURLToPath(import.meta.url), ["--worker", server.url, share(i), dropEveryMs], {
        serialization: "advanced",
      });
      children.push(child);
    }
    probe =
      probes > 0
        ? fork(fileURLToPath(import.meta.url), ["--worker", server.url, probes, PROBE_DROP_EVERY_MS], {
            serialization: "advanced",
          })
        : null;
    const everyone = probe ? [...children, probe] : children;
    const message = (child) =>
      new Promise((resolve, reject) => {
        child.once("message", resolve);
        child.once("exit", (code) => reject(new Error(`a worker exited with code ${code}`)));
      });
    await Promise.all(everyone.map(message));
    console.error(`${clients} subscribers in ${workers} process(es), ${probes} probe(s)`);
    const sent = await publish({ url: server.url, rate, seconds });
    const reports = children.map(message);
    const probeReport = probe ? message(probe) : null;
    for (const child of everyone) child.send({ sent });
    const result = summarize({
      clients,
      rate,
      seconds,
      dropEveryMs,
      sent,
      reports: (await Promise.all(reports)).map(({ report }) => report),
    });
    const probed = probe
      ? summarize({
          clients: probes,
          rate,
          seconds,
          dropEveryMs: PROBE_DROP_EVERY_MS,
          sent,
          reports: [(await probeReport).report],
        })
      : null;
    console.log(JSON.stringify({ ...result, workers, probe: probed }));
  } finally {
    for (const child of [...children, probe]) if (child && child.exitCode === null) child.kill();
    await server.stop();
  }
}
