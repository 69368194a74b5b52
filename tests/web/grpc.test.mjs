// The backend API over gRPC, from another language: @grpc/grpc-js with the repository's
// .proto (crates/server/proto/switchyard.proto), against the binary with API_KEYS and
// GRPC_PORT, while official socket.io-client sockets are connected.

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe } from "node:test";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import { io } from "socket.io-client";
import { SwitchyardServer, WEB_DIR, withTimeout, wrapTest } from "./lib/server.mjs";

const KEY = "grpc-backend-key-0123456789";
const PROTO = path.resolve(WEB_DIR, "../../crates/server/proto/switchyard.proto");

const definition = protoLoader.loadSync(PROTO, { keepCase: true, longs: Number, defaults: true });
const { SwitchyardApi } = grpc.loadPackageDefinition(definition).switchyard.api.v1;

const server = new SwitchyardServer();
const test = wrapTest(server);
let client;
let open = [];

before(async () => {
  server.env = { API_KEYS: KEY, GRPC_PORT: "0" };
  await server.start();
  client = new SwitchyardApi(await server.grpcAddress(), grpc.credentials.createInsecure());
  await new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
  );
});

after(async () => {
  for (const socket of open) socket.disconnect();
  client?.close();
  await server.stop();
});

/** Calls `method` with `request`; with `key` (default: the right one) as the bearer. */
function call(method, request, key = KEY) {
  const metadata = new grpc.Metadata();
  if (key) metadata.set("authorization", `Bearer ${key}`);
  return withTimeout(
    new Promise((resolve, reject) =>
      client[method](request, metadata, { deadline: Date.now() + 10_000 }, (err, reply) =>
        err ? reject(err) : resolve(reply),
      ),
    ),
    12_000,
    `gRPC ${method}`,
  );
}

async function rejects(promise, code, message) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `${err.code} ${err.details}`);
    if (message) assert.match(err.details, message);
    return true;
  });
}

async function connect(nsp, auth) {
  const socket = io(`${server.url}${nsp}`, { forceNew: true, reconnection: false, auth });
  open.push(socket);
  await withTimeout(
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", (err) => reject(new Error(`connect_error: ${err.message}`)));
    }),
    5000,
    `connecting to ${nsp}`,
  );
  return socket;
}

function next(socket, event) {
  return withTimeout(new Promise((resolve) => socket.once(event, (...args) => resolve(args))), 5000, event);
}

describe("the gRPC API", () => {
  test("publishes to users with binary data, lists and moves sockets, answers presence and history", async () => {
    const alice = await connect("/notifications", { user: "alice" });
    const got = next(alice, "notification");
    await call("Publish", {
      target: { namespace: "/notifications", users: ["alice"] },
      event: "notification",
      data_json: JSON.stringify({ text: "shipped" }),
      binary: Buffer.from([1, 2, 3]),
    });
    const [data, bytes] = await got;
    assert.deepEqual(data, { text: "shipped" });
    assert.deepEqual([...bytes], [1, 2, 3]);

    const { sockets } = await call("Sockets", { namespace: "/notifications", users: ["alice"] });
    assert.equal(sockets.length, 1);
    assert.equal(sockets[0].id, alice.id);
    assert.equal(sockets[0].user, "alice");

    await call("Join", { target: { namespace: "/notifications", users: ["alice"] }, to: ["room:vip"] });
    const inVip = await call("Sockets", { namespace: "/notifications", rooms: ["room:vip"] });
    assert.deepEqual(inVip.sockets.map((s) => s.id), [alice.id]);
    await call("Leave", { target: { namespace: "/notifications", users: ["alice"] }, to: ["room:vip"] });
    assert.deepEqual((await call("Sockets", { namespace: "/notifications", rooms: ["room:vip"] })).sockets, []);

    // A chat room: presence and history, as the HTTP API gives them.
    const bob = await connect("/chat", { name: "bob" });
    const joined = await bob.timeout(5000).emitWithAck("join", "general");
    assert.deepEqual(joined.users, ["bob"]);
    assert.deepEqual(await bob.timeout(5000).emitWithAck("message", { room: "general", text: "hi" }), { ok: true });
    assert.deepEqual((await call("Presence", { namespace: "/chat", room: "chat:general" })).users, [
      { user: "bob", sockets: 1 },
    ]);
    const { messages_json } = await call("History", { namespace: "/chat", room: "chat:general" });
    assert.equal(messages_json.length, 1);
    assert.equal(JSON.parse(messages_json[0]).text, "hi");

    const info = await call("Info", {});
    assert.ok(info.sessions >= 2, JSON.stringify(info));
    const chat = info.namespaces.find((n) => n.name === "/chat");
    assert.equal(chat.sockets, 1);

    const gone = next(alice, "disconnect");
    await call("Disconnect", { namespace: "/notifications", users: ["alice"] });
    const [reason] = await gone;
    // As the HTTP API: the whole connection is closed.
    assert.equal(reason, "transport close");
  });

  test("refuses bad calls with a status and a message", async () => {
    await rejects(call("Info", {}, null), grpc.status.UNAUTHENTICATED, /missing or unknown API key/);
    await rejects(call("Info", {}, "wrong-key-0123456789"), grpc.status.UNAUTHENTICATED);
    await rejects(
      call("Publish", { target: { namespace: "/nowhere" }, event: "x" }),
      grpc.status.NOT_FOUND,
      /no namespace \/nowhere/,
    );
    await rejects(
      call("Publish", { target: { namespace: "/chat" }, event: "x", data_json: "{not json" }),
      grpc.status.INVALID_ARGUMENT,
      /data_json/,
    );
    await rejects(
      call("Publish", { target: { namespace: "/chat" }, event: "connect" }),
      grpc.status.INVALID_ARGUMENT,
      /reserved/,
    );
    await rejects(call("Publish", { event: "x" }), grpc.status.INVALID_ARGUMENT, /target/);
    await rejects(call("Disconnect", { namespace: "/chat" }), grpc.status.INVALID_ARGUMENT, /name the sockets/);
    await rejects(
      call("History", { namespace: "/chat", room: "chat:general", limit: 5000 }),
      grpc.status.INVALID_ARGUMENT,
      /at most 1000/,
    );
    // Over 1 MiB: refused before it is decoded.
    await rejects(
      call("Publish", { target: { namespace: "/chat" }, event: "x", binary: Buffer.alloc(2 << 20) }),
      grpc.status.OUT_OF_RANGE,
    );
    // The server still answers.
    assert.ok((await call("Info", {})).namespaces.length >= 2);
  });
});
