//! JWT verification (crates/auth) against an HS256 secret, RSA, EC and Ed25519 public keys,
//! and all four in one key set with key ids.
//!
//! The first input byte picks the form of the rest:
//! * `mode % 4 == 0`: the rest is the token as is.
//! * otherwise the rest is `header JSON \0 claims JSON \0 signature bytes`, each part
//!   base64url-encoded into a token; `mode / 4 % 5` picks a signer that replaces the signature
//!   with a real one over the first two parts: none, the HMAC secret (with the header's HMAC
//!   algorithm, HS256 otherwise), the EC key (ES256), the Ed25519 key (EdDSA) or the RSA key
//!   (RS256).
//!
//! A verifier must refuse every token except one a signer of its own key signed with the very
//! algorithm the header names, whose `exp` has not passed and whose `nbf` has come (30 s of
//! leeway, the default).
#![no_main]

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_auth::jsonwebtoken::{crypto, EncodingKey};
use switchyard_auth::{Algorithm, JwtAuth, JwtConfig, Key, KeySet};

const SECRET: &[u8] = b"test-secret-with-enough-entropy-0123456789";

macro_rules! key_file {
    ($name:literal) => {
        include_bytes!(concat!("../../crates/auth/tests/keys/", $name))
    };
}

/// Which key signed a token (or which key a verifier holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hmac,
    Ec,
    Ed,
    Rsa,
}

struct Keys {
    /// One verifier per key, and the key's kind.
    single: Vec<(Kind, JwtAuth)>,
    /// All four keys, each with a key id (`hs`, `ec`, `ed`, `rsa`).
    all: JwtAuth,
    ec: EncodingKey,
    ed: EncodingKey,
    rsa: EncodingKey,
}

fn public(pem: &[u8]) -> Key {
    Key::public_pem(pem).unwrap_or_else(|| panic!("test key does not load"))
}

fn hmac() -> Key {
    Key::hmac_secret(SECRET).unwrap_or_else(|error| panic!("{error}"))
}

fn auth(keys: KeySet) -> JwtAuth {
    JwtAuth::new(keys, JwtConfig::default()).unwrap_or_else(|error| panic!("{error}"))
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let ec_public = || public(key_file!("ec-public.pem"));
    let ed_public = || public(key_file!("ed25519-public.pem"));
    let rsa_public = || public(key_file!("rsa-public.pem"));
    let private = |key: Result<EncodingKey, _>| key.unwrap_or_else(|error| panic!("{error}"));
    Keys {
        single: vec![
            (Kind::Hmac, auth(KeySet::new().with_key(hmac()))),
            (Kind::Ec, auth(KeySet::new().with_key(ec_public()))),
            (Kind::Ed, auth(KeySet::new().with_key(ed_public()))),
            (Kind::Rsa, auth(KeySet::new().with_key(rsa_public()))),
        ],
        all: auth(
            KeySet::new()
                .with_key(hmac().with_kid("hs"))
                .with_key(ec_public().with_kid("ec"))
                .with_key(ed_public().with_kid("ed"))
                .with_key(rsa_public().with_kid("rsa")),
        ),
        ec: private(EncodingKey::from_ec_pem(key_file!("ec-private.pem"))),
        ed: private(EncodingKey::from_ed_pem(key_file!("ed25519-private.pem"))),
        rsa: private(EncodingKey::from_rsa_pem(key_file!("rsa-private.pem"))),
    }
});

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The algorithm a header names, if it is one jsonwebtoken knows.
fn header_alg(header: &[u8]) -> Option<Algorithm> {
    let header: Value = serde_json::from_slice(header).ok()?;
    header.get("alg")?.as_str()?.parse().ok()
}

/// Builds the token and, when signed, the key kind and algorithm that signed it.
fn token(data: &[u8]) -> Option<(String, Option<(Kind, Algorithm)>)> {
    let (&mode, rest) = data.split_first()?;
    if mode % 4 == 0 {
        return Some((std::str::from_utf8(rest).ok()?.to_owned(), None));
    }
    let mut parts = rest.splitn(3, |&b| b == 0);
    let header = parts.next().unwrap_or_default();
    let claims = parts.next().unwrap_or_default();
    let signature = parts.next().unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let keys = &*KEYS;
    let (signer, key) = match mode / 4 % 5 {
        0 => {
            let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));
            return Some((token, None));
        }
        1 => {
            let alg = match header_alg(header) {
                Some(alg @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) => alg,
                _ => Algorithm::HS256,
            };
            ((Kind::Hmac, alg), EncodingKey::from_secret(SECRET))
        }
        2 => ((Kind::Ec, Algorithm::ES256), keys.ec.clone()),
        3 => ((Kind::Ed, Algorithm::EdDSA), keys.ed.clone()),
        _ => ((Kind::Rsa, Algorithm::RS256), keys.rsa.clone()),
    };
    let signature = crypto::sign(signing_input.as_bytes(), &key, signer.1)
        .unwrap_or_else(|error| panic!("signing: {error}"));
    Some((format!("{signing_input}.{signature}"), Some(signer)))
}

/// The checks on a token a verifier holding a key of kind `verifier` accepted.
fn check_accepted(
    token: &str,
    signer: Option<(Kind, Algorithm)>,
    verifier: Option<Kind>,
    before: u64,
) {
    let Some((kind, alg)) = signer else {
        panic!("an unsigned token verified: {token:?}");
    };
    if let Some(verifier) = verifier {
        assert_eq!(kind, verifier, "{token:?}");
    }
    let mut parts = token.split('.');
    let header = parts
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .unwrap_or_default();
    assert_eq!(header_alg(&header), Some(alg), "{token:?}");
    let claims: Value = parts
        .next()
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|c| serde_json::from_slice(&c).ok())
        .unwrap_or_default();
    // NumericDate may be fractional (RFC 7519 §2): compare as numbers, not integers.
    let exp = claims.get("exp").and_then(Value::as_f64);
    assert!(
        exp.is_some_and(|exp| exp + 30.0 >= before as f64),
        "expired or no exp: {claims}"
    );
    if let Some(nbf) = claims.get("nbf") {
        let after = now();
        assert!(
            nbf.as_f64().is_some_and(|nbf| nbf <= (after + 30) as f64),
            "not yet valid: {claims}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((token, signer)) = token(data) else {
        return;
    };
    let keys = &*KEYS;
    let before = now();
    for (kind, auth) in &keys.single {
        if auth.verify(&token).is_ok() {
            check_accepted(&token, signer, Some(*kind), before);
        }
    }
    if keys.all.verify(&token).is_ok() {
        check_accepted(&token, signer, None, before);
    }
});
