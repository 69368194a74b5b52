// The delivery benchmark: many official socket.io-client sockets in one room, a publisher
// sending at a steady rate through the server, and every subscriber's transport dropped at
// random intervals. With connection state recovery on the server, every message must arrive
// exactly once. Reports the delivery ratio (unique received / expected), duplicates, and the
// latency of live and of replayed messages; a replayed message's latency is counted from when
// it was published (the client's time away included) and from when the new transport opened
// (what the server adds: the CONNECT exchange and the replay).
//
// Used by tests/interop/socketio-delivery.test.mjs (a small run in CI) and by
// bench/delivery.mjs (the full run recorded in BENCHMARKS.md).

import { io } from "socket.io-client";
import { sleep } from "./raw.mjs";

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, index)];
}

/**
 * Runs the scenario against a server at `url` whose `ns-to-room` relays [room, data] to the
 * room (the `testbed` example started with `--recovery-ms`): subscribers and publisher in this
 * process.
 */
export async function runDelivery({
  url,
  clients = 1000,
  rate = 10,
  seconds = 180,
  dropEveryMs = 15_000,
  room = "delivery",
  log = () => {},
}) {
  const group = await subscribe({ url, clients, dropEveryMs, room });
  log(`${clients} subscribers in room ${room}`);
  const sent = await publish({ url, rate, seconds, room });
  const report = await group.finish(sent);
  return summarize({ clients, rate, seconds, dropEveryMs, sent, reports: [report] });
}

/**
 * Connects `clients` subscribers to `room` and starts dropping their transports at random,
 * about every `dropEveryMs`. Resolves once all are in the room, with `finish(sent)`: stops the
 * drops, waits (15 s at most) for the `sent` messages to arrive, closes the subscribers and
 * answers what they saw (a report for `summarize`).
 */
export async function subscribe({ url, clients, dropEveryMs, room = "delivery" }) {
  const subscribers = [];
  let recovered = 0;
  let notRecovered = 0;
  let drops = 0;
  // Why subscribers lost their connection: our drops show as "forced close".
  const reasons = {};
  for (let i = 0; i < clients; i++) {
    const socket = io(url, {
      forceNew: true,
      transports: ["websocket"],
      reconnectionDelay: 100,
      reconnectionDelayMax: 1000,
    });
    const state = { socket, seen: new Map(), duplicates: 0, away: null, opened: null, gaps: [] };
    // The manager's transport is open again: the CONNECT (with pid and offset) goes out now.
    socket.io.on("open", () => {
      state.opened = Date.now();
    });
    socket.on("room-msg", (message) => {
      if (!state.seen.has(message.seq)) {
        state.seen.set(message.seq, { t: message.t, received: Date.now() });
      } else {
        state.duplicates++;
      }
    });
    socket.on("connect", () => {
      if (state.away !== null) {
        if (socket.recovered) recovered++;
        else notRecovered++;
        state.gaps.push([state.away, Date.now(), state.opened]);
        state.away = null;
      }
    });
    socket.on("disconnect", (reason) => {
      state.away = Date.now();
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    });
    subscribers.push(state);
    // Connecting a thousand sockets at once is its own benchmark; pace it.
    if (i % 50 === 49) await sleep(20);
  }
  const deadline = Date.now() + 60_000;
  while (subscribers.some((s) => !s.socket.connected)) {
    if (Date.now() > deadline) throw new Error("subscribers did not all connect");
    await sleep(20);
  }
  for (const s of subscribers) {
    // A server that never answers fails the run instead of hanging it.
    await s.socket.timeout(10_000).emitWithAck("join", room);
  }

  // Each subscriber drops its transport at random, about every dropEveryMs.
  const timers = [];
  let running = true;
  for (const s of subscribers) {
    const schedule = () => {
      if (!running) return;
      const wait = dropEveryMs * (0.5 + Math.random());
      timers.push(
        setTimeout(() => {
          if (!running) return;
          if (s.socket.connected) {
            drops++;
            s.socket.io.engine.close();
          }
          schedule();
        }, wait),
      );
    };
    schedule();
  }

  async function finish(sent) {
    running = false;
    for (const timer of timers) clearTimeout(timer);
    // Let the last reconnections recover and drain.
    const settle = Date.now() + 15_000;
    while (Date.now() < settle) {
      const missing = subscribers.some((s) => !s.socket.connected || s.seen.size < sent);
      if (!missing) break;
      await sleep(100);
    }
    let received = 0;
    let duplicates = 0;
    const live = [];
    const replayed = [];
    const afterReconnect = [];
    for (const s of subscribers) {
      received += s.seen.size;
      duplicates += s.duplicates;
      for (const { t, received: at } of s.seen.values()) {
        // Replayed: published while this subscriber was away, so it came with the recovery.
        const gap = s.gaps.find(([from, to]) => t >= from && t <= to);
        if (gap) {
          replayed.push(at - t);
          if (gap[2] !== null && at >= gap[2]) afterReconnect.push(at - gap[2]);
        } else {
          live.push(at - t);
        }
      }
    }
    for (const s of subscribers) s.socket.close();
    return { received, duplicates, drops, recovered, notRecovered, reasons, live, replayed, afterReconnect };
  }

  return { finish };
}

/** Publishes `rate` messages a second to `room` for `seconds`; answers how many it sent. */
export async function publish({ url, rate, seconds, room = "delivery" }) {
  const publisher = io(url, { forceNew: true, transports: ["websocket"] });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the publisher did not connect in 10 s")), 10_000);
    publisher.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const interval = 1000 / rate;
  const start = Date.now();
  let seq = 0;
  while (Date.now() - start < seconds * 1000) {
    publisher.emit("ns-to-room", room, { seq, t: Date.now() });
    seq++;
    const next = start + seq * interval;
    await sleep(Math.max(0, next - Date.now()));
  }
  publisher.close();
  return seq;
}

/** The result line: the reports of every subscriber group merged. */
export function summarize({ clients, rate, seconds, dropEveryMs, sent, reports }) {
  const merged = (key) => reports.flatMap((report) => report[key]).sort((a, b) => a - b);
  const sum = (key) => reports.reduce((total, report) => total + report[key], 0);
  const reasons = {};
  for (const report of reports) {
    for (const [reason, count] of Object.entries(report.reasons)) {
      reasons[reason] = (reasons[reason] ?? 0) + count;
    }
  }
  const latency = (values) => ({
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    count: values.length,
  });
  const received = sum("received");
  const expected = sent * clients;
  return {
    scenario: "delivery",
    clients,
    rate,
    seconds,
    drop_every_ms: dropEveryMs,
    sent,
    expected,
    received,
    delivery_ratio: received / expected,
    duplicates: sum("duplicates"),
    transport_drops: sum("drops"),
    disconnect_reasons: reasons,
    recovered: sum("recovered"),
    not_recovered: sum("notRecovered"),
    live_latency_ms: latency(merged("live")),
    replay_latency_ms: latency(merged("replayed")),
    replay_after_reconnect_ms: latency(merged("afterReconnect")),
  };
}
