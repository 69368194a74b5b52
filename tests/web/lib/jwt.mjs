// JSON Web Tokens minted with node:crypto only: HMAC for HS256/384/512, crypto.sign for
// RS256, ES256 and EdDSA (Ed25519), and the unsigned `alg: none` kind, for the server's JWT
// tests. Keys are made fresh by each test run.

import crypto from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const b64url = (data) => Buffer.from(data).toString("base64url");

/** Seconds since the epoch. */
export const nowS = () => Math.floor(Date.now() / 1000);

/**
 * Signs `claims` with `alg` and `key` (a secret string or Buffer for HS*, a private KeyObject
 * otherwise; ignored for `none`). `header` adds fields to the JOSE header (`kid`, say).
 */
export function sign(alg, claims, key, header = {}) {
  const input = `${b64url(JSON.stringify({ alg, typ: "JWT", ...header }))}.${b64url(JSON.stringify(claims))}`;
  let signature;
  switch (alg) {
    case "HS256":
    case "HS384":
    case "HS512":
      signature = crypto.createHmac(`sha${alg.slice(2)}`, key).update(input).digest();
      break;
    case "RS256":
      signature = crypto.sign("sha256", Buffer.from(input), key);
      break;
    case "ES256":
      signature = crypto.sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
      break;
    case "EdDSA":
      signature = crypto.sign(null, Buffer.from(input), key);
      break;
    case "none":
      signature = Buffer.alloc(0);
      break;
    default:
      throw new Error(`unsupported alg ${alg}`);
  }
  return `${input}.${b64url(signature)}`;
}

/**
 * Fresh RSA, EC P-256 and Ed25519 key pairs written to a temporary directory: the RSA public
 * key as PEM (`rsaPem`), the EC and Ed25519 ones in a JWKS (`jwks`, kids `ec-1` and `ed-1`).
 * `cleanup()` removes the directory.
 */
export function makeKeys() {
  const dir = mkdtempSync(path.join(os.tmpdir(), "switchyard-jwt-"));
  const rsa = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  const ec = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const ed = crypto.generateKeyPairSync("ed25519");
  const rsaPublicPem = rsa.publicKey.export({ type: "spki", format: "pem" });
  const rsaPem = path.join(dir, "rsa-public.pem");
  writeFileSync(rsaPem, rsaPublicPem);
  const jwk = (key, kid, alg) => ({ ...key.export({ format: "jwk" }), kid, alg, use: "sig" });
  const jwks = path.join(dir, "jwks.json");
  writeFileSync(jwks, JSON.stringify({ keys: [jwk(ec.publicKey, "ec-1", "ES256"), jwk(ed.publicKey, "ed-1", "EdDSA")] }));
  return {
    dir,
    rsa,
    ec,
    ed,
    rsaPublicPem,
    rsaPem,
    jwks,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
