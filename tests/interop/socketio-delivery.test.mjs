// A small run of the delivery benchmark (tests/interop/lib/delivery.mjs) in CI: subscribers
// whose transports drop at random while a publisher sends at a steady rate must receive every
// message exactly once, thanks to connection state recovery.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { runDelivery } from "./lib/delivery.mjs";
import { Testbed } from "./lib/testbed.mjs";

const server = new Testbed(["--recovery-ms", "60000"]);
before(() => server.start(), { timeout: 20_000 });
after(() => server.stop(), { timeout: 10_000 });

test("every message arrives exactly once across random transport drops", { timeout: 90_000 }, async () => {
  const result = await runDelivery({
    url: server.url,
    clients: 100,
    rate: 20,
    seconds: 15,
    dropEveryMs: 3000,
  });
  console.log(JSON.stringify(result));
  assert.ok(result.transport_drops >= 100, `only ${result.transport_drops} drops`);
  assert.equal(result.not_recovered, 0);
  assert.equal(result.duplicates, 0);
  assert.equal(result.received, result.expected);
  assert.equal(result.delivery_ratio, 1);
});
