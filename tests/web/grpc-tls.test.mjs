// The gRPC API over TLS: with TLS_CERT and TLS_KEY the gRPC port speaks TLS with the main
// port's certificate (a self-signed one made by openssl here), and a client that trusts it
// calls the API; a plaintext client gets nothing.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, before, describe } from "node:test";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { SwitchyardServer, WEB_DIR, selfSignedCert, withTimeout, wrapTest } from "./lib/server.mjs";

const KEY = "grpc-backend-key-0123456789";
const PROTO = path.resolve(WEB_DIR, "../../crates/server/proto/switchyard.proto");
const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const { SwitchyardApi } = grpc.loadPackageDefinition(definition).switchyard.api.v1;

const dir = mkdtempSync(path.join(os.tmpdir(), "switchyard-grpc-tls-"));
const { cert, key } = selfSignedCert(dir);

const server = new SwitchyardServer();
const test = wrapTest(server);
let grpcAddress;
const clients = [];

before(async () => {
  server.env = { API_KEYS: KEY, GRPC_PORT: "0", TLS_CERT: cert, TLS_KEY: key };
  await server.start();
  grpcAddress = await server.grpcAddress();
});

after(async () => {
  for (const client of clients) client.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** `Info` through a client with `credentials`: resolves with the reply or rejects. */
function info(credentials) {
  const client = new SwitchyardApi(grpcAddress, credentials);
  clients.push(client);
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${KEY}`);
  return withTimeout(
    new Promise((resolve, reject) =>
      client.Info({}, metadata, { deadline: Date.now() + 5_000 }, (err, reply) => (err ? reject(err) : resolve(reply))),
    ),
    8_000,
    "gRPC Info",
  );
}

describe("the gRPC API over TLS", () => {
  test("a client that trusts the certificate calls it; a plaintext one does not", async () => {
    assert.equal(server.scheme, "https", "the main port is on TLS too");
    const reply = await info(grpc.credentials.createSsl(readFileSync(cert)));
    assert.ok(Array.isArray(reply.namespaces) && reply.namespaces.length >= 2, JSON.stringify(reply));
    await assert.rejects(info(grpc.credentials.createInsecure()), (err) => {
      assert.ok([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, grpc.status.INTERNAL].includes(err.code), `${err.code} ${err.details}`);
      return true;
    });
    // An untrusted certificate is refused by the client.
    await assert.rejects(info(grpc.credentials.createSsl()), (err) => err.code === grpc.status.UNAVAILABLE);
  });
});
