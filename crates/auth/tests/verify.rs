//! Tokens minted here with jsonwebtoken and the committed test keys (tests/keys, made with
//! openssl), checked by the verifier: every refusal reason, `alg: none`, algorithm confusion,
//! and key rotation through a JWKS file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard_auth::{
    AuthError, ClaimRules, Claims, JwtAuth, JwtConfig, Key, KeyError, KeySet, Reason,
};

const SECRET: &[u8] = b"test-secret-with-enough-entropy-0123456789";

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn key_file(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ok<T, E: std::fmt::Display>(result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| panic!("{error}"))
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    ok(encode(&header, claims, key))
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn rsa_private() -> EncodingKey {
    ok(EncodingKey::from_rsa_pem(&key_file("rsa-private.pem")))
}

fn rsa2_private() -> EncodingKey {
    ok(EncodingKey::from_rsa_pem(&key_file("rsa2-private.pem")))
}

fn ec_private() -> EncodingKey {
    ok(EncodingKey::from_ec_pem(&key_file("ec-private.pem")))
}

fn ed_private() -> EncodingKey {
    ok(EncodingKey::from_ed_pem(&key_file("ed25519-private.pem")))
}

fn valid_claims() -> Value {
    json!({ "sub": "alice", "exp": now() + 600, "iat": now(), "rooms": ["team-*"] })
}

fn rules() -> ClaimRules {
    ClaimRules {
        leeway: Duration::from_secs(5),
        ..ClaimRules::default()
    }
}

fn auth_with(keys: KeySet, rules: ClaimRules) -> JwtAuth {
    ok(JwtAuth::new(
        keys,
        JwtConfig {
            rules,
            ..JwtConfig::default()
        },
    ))
}

fn hmac_auth() -> JwtAuth {
    auth_with(
        KeySet::new().with_key(ok(Key::hmac_secret(SECRET))),
        rules(),
    )
}

fn rsa_auth() -> JwtAuth {
    let key = ok(Key::public_pem_file(keys_dir().join("rsa-public.pem")));
    auth_with(KeySet::new().with_key(key), rules())
}

fn reason(result: Result<Claims, AuthError>) -> Reason {
    match result {
        Ok(claims) => panic!("expected a refusal, got {claims:?}"),
        Err(error) => error.reason,
    }
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn a_valid_hs256_token_gives_its_claims() {
    let claims = ok(hmac_auth().verify(&hs256(&valid_claims())));
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.rooms, Some(vec!["team-*".to_owned()]));
    assert_eq!(claims.exp, valid_claims()["exp"].as_u64());
    assert_eq!(claims.other.get("iat"), valid_claims().get("iat"));
    assert_eq!(claims.other.len(), 1);
}

#[test]
fn every_hmac_size_and_every_public_key_type_verifies() {
    let claims = valid_claims();
    let hmac = hmac_auth();
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, None, &claims, &EncodingKey::from_secret(SECRET));
        assert_eq!(ok(hmac.verify(&token)).sub, "alice", "{alg:?}");
    }
    for (public, alg, private) in [
        ("rsa-public.pem", Algorithm::RS256, rsa_private()),
        ("rsa-public.pem", Algorithm::PS256, rsa_private()),
        ("ec-public.pem", Algorithm::ES256, ec_private()),
        ("ed25519-public.pem", Algorithm::EdDSA, ed_private()),
    ] {
        let key = ok(Key::public_pem_file(keys_dir().join(public)));
        let auth = auth_with(KeySet::new().with_key(key), rules());
        let token = sign(alg, None, &claims, &private);
        assert_eq!(ok(auth.verify(&token)).sub, "alice", "{alg:?}");
    }
}

#[test]
fn key_types_fix_the_algorithms() {
    let algs = |name: &str| {
        ok(Key::public_pem_file(keys_dir().join(name)))
            .algorithms()
            .to_vec()
    };
    assert_eq!(algs("ec-public.pem"), [Algorithm::ES256]);
    assert_eq!(algs("ed25519-public.pem"), [Algorithm::EdDSA]);
    assert_eq!(
        algs("rsa-public.pem"),
        [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512
        ]
    );
    assert_eq!(
        ok(Key::hmac_secret(b"s")).algorithms(),
        [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
    );
    assert!(matches!(Key::hmac_secret(b""), Err(KeyError::EmptySecret)));
    // A private key is not a public key.
    assert!(matches!(
        Key::public_pem_file(keys_dir().join("ec-private.pem")),
        Err(KeyError::UnsupportedPem { .. })
    ));
    assert!(matches!(
        JwtAuth::new(KeySet::new(), JwtConfig::default()),
        Err(KeyError::NoKeys)
    ));
}

#[test]
fn missing_and_malformed_tokens() {
    let auth = hmac_auth();
    for token in [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "%%%.e30.sig",
        // A header that is not JSON, or has no alg.
        "bm90IGpzb24.e30.sig",
        "e30.e30.sig",
    ] {
        assert_eq!(reason(auth.verify(token)), Reason::Malformed, "{token:?}");
    }
    // Well signed, but without `sub`, without `exp`, or with `exp` of the wrong type.
    for claims in [
        json!({ "exp": now() + 60 }),
        json!({ "sub": "a" }),
        json!({ "sub": "a", "exp": "tomorrow" }),
        json!({ "sub": 7, "exp": now() + 60 }),
        json!({ "sub": "a", "exp": now() + 60, "rooms": "team-*" }),
    ] {
        assert_eq!(
            reason(auth.verify(&hs256(&claims))),
            Reason::Malformed,
            "{claims}"
        );
    }
}

#[test]
fn expiry_and_not_before_respect_the_leeway() {
    let auth = hmac_auth(); // leeway 5 s
    let t = now();
    let claims = |exp: u64, nbf: Option<u64>| {
        let mut c = json!({ "sub": "alice", "exp": exp });
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        c
    };
    assert_eq!(
        reason(auth.verify(&hs256(&claims(t - 60, None)))),
        Reason::Expired
    );
    assert_eq!(ok(auth.verify(&hs256(&claims(t - 2, None)))).sub, "alice");
    assert_eq!(
        reason(auth.verify(&hs256(&claims(t + 600, Some(t + 60))))),
        Reason::NotYetValid
    );
    assert_eq!(
        ok(auth.verify(&hs256(&claims(t + 600, Some(t + 2))))).sub,
        "alice"
    );
    // Without leeway, 2 s late is expired.
    let strict = auth_with(
        KeySet::new().with_key(ok(Key::hmac_secret(SECRET))),
        ClaimRules {
            leeway: Duration::ZERO,
            ..ClaimRules::default()
        },
    );
    assert_eq!(
        reason(strict.verify(&hs256(&claims(t - 2, None)))),
        Reason::Expired
    );
}

#[test]
fn issuer_and_audience_are_checked_when_configured() {
    let auth = auth_with(
        KeySet::new().with_key(ok(Key::hmac_secret(SECRET))),
        ClaimRules {
            issuers: vec!["https://issuer.test".into()],
            audiences: vec!["switchyard".into()],
            ..rules()
        },
    );
    let mut claims = valid_claims();
    claims["iss"] = json!("https://issuer.test");
    claims["aud"] = json!(["other", "switchyard"]);
    assert_eq!(ok(auth.verify(&hs256(&claims))).sub, "alice");

    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    assert_eq!(reason(auth.verify(&hs256(&wrong_iss))), Reason::WrongIssuer);
    let mut no_iss = claims.clone();
    no_iss.as_object_mut().map(|c| c.remove("iss"));
    assert_eq!(reason(auth.verify(&hs256(&no_iss))), Reason::WrongIssuer);

    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("other");
    assert_eq!(
        reason(auth.verify(&hs256(&wrong_aud))),
        Reason::WrongAudience
    );
    let mut no_aud = claims.clone();
    no_aud.as_object_mut().map(|c| c.remove("aud"));
    assert_eq!(reason(auth.verify(&hs256(&no_aud))), Reason::WrongAudience);
}

#[test]
fn a_bad_signature_is_refused() {
    let token = hs256(&valid_claims());
    let other = auth_with(
        KeySet::new().with_key(ok(Key::hmac_secret(b"another secret"))),
        rules(),
    );
    assert_eq!(reason(other.verify(&token)), Reason::InvalidSignature);
    // A token changed after signing.
    let (head, rest) = token.split_once('.').unwrap_or_default();
    let signature = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or_default();
    let mut forged_claims = valid_claims();
    forged_claims["sub"] = json!("admin");
    let forged = format!("{head}.{}.{signature}", b64(&forged_claims));
    assert_eq!(
        reason(hmac_auth().verify(&forged)),
        Reason::InvalidSignature
    );
    // RS256 signed by another RSA key.
    let token = sign(Algorithm::RS256, None, &valid_claims(), &rsa2_private());
    assert_eq!(reason(rsa_auth().verify(&token)), Reason::InvalidSignature);
}

#[test]
fn alg_none_is_always_refused() {
    let unsigned = |alg: &str| {
        format!(
            "{}.{}.",
            b64(&json!({ "alg": alg, "typ": "JWT" })),
            b64(&valid_claims())
        )
    };
    for auth in [hmac_auth(), rsa_auth()] {
        for alg in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(
                reason(auth.verify(&unsigned(alg))),
                Reason::InvalidSignature,
                "{alg}"
            );
        }
    }
}

#[test]
fn algorithm_confusion_is_refused() {
    // An HS256 token "signed" with the RSA public key as the HMAC secret.
    let public = key_file("rsa-public.pem");
    let confused = sign(
        Algorithm::HS256,
        None,
        &valid_claims(),
        &EncodingKey::from_secret(&public),
    );
    assert_eq!(
        reason(rsa_auth().verify(&confused)),
        Reason::InvalidSignature
    );
    // Even when the verifier also has an HMAC key: the RSA key never checks HS tokens, and
    // the HMAC key has another secret.
    let both = auth_with(
        KeySet::new()
            .with_key(ok(Key::public_pem_file(keys_dir().join("rsa-public.pem"))))
            .with_key(ok(Key::hmac_secret(SECRET))),
        rules(),
    );
    assert_eq!(reason(both.verify(&confused)), Reason::InvalidSignature);
    // An RS256 token against an HMAC-only verifier.
    let rs = sign(Algorithm::RS256, None, &valid_claims(), &rsa_private());
    assert_eq!(reason(hmac_auth().verify(&rs)), Reason::InvalidSignature);
    // An ES256 token against an RSA key.
    let es = sign(Algorithm::ES256, None, &valid_claims(), &ec_private());
    assert_eq!(reason(rsa_auth().verify(&es)), Reason::InvalidSignature);
}

fn jwks_auth(path: &Path, check_interval: Duration) -> JwtAuth {
    auth_with(
        ok(KeySet::new().with_jwks_file(path, check_interval)),
        rules(),
    )
}

fn temp_jwks(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-auth-{}-{name}", std::process::id()));
    ok(std::fs::create_dir_all(&dir));
    let path = dir.join("jwks.json");
    ok(std::fs::write(&path, contents));
    path
}

#[test]
fn jwks_keys_are_chosen_by_kid() {
    let auth = jwks_auth(&keys_dir().join("jwks.json"), Duration::from_secs(60));
    let claims = valid_claims();
    for (kid, alg, key) in [
        ("rsa-1", Algorithm::RS256, rsa_private()),
        ("ec-1", Algorithm::ES256, ec_private()),
        ("ed-1", Algorithm::EdDSA, ed_private()),
    ] {
        assert_eq!(
            ok(auth.verify(&sign(alg, Some(kid), &claims, &key))).sub,
            "alice"
        );
    }
    // A kid that is not in the set.
    let token = sign(Algorithm::RS256, Some("rsa-9"), &claims, &rsa_private());
    assert_eq!(reason(auth.verify(&token)), Reason::UnknownKey);
    // The right kid with the wrong key, or an algorithm the JWK's `alg` does not allow.
    let token = sign(Algorithm::RS256, Some("rsa-1"), &claims, &rsa2_private());
    assert_eq!(reason(auth.verify(&token)), Reason::InvalidSignature);
    let token = sign(Algorithm::PS256, Some("rsa-1"), &claims, &rsa_private());
    assert_eq!(reason(auth.verify(&token)), Reason::InvalidSignature);
    // No kid: every key is tried.
    let token = sign(Algorithm::ES256, None, &claims, &ec_private());
    assert_eq!(ok(auth.verify(&token)).sub, "alice");
}

#[test]
fn jwks_rotation_by_explicit_reload() {
    let path = temp_jwks("explicit", &key_file("jwks.json"));
    // A long check interval: only the explicit reload sees the change.
    let auth = jwks_auth(&path, Duration::from_secs(3600));
    let old = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &valid_claims(),
        &rsa_private(),
    );
    let new = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &valid_claims(),
        &rsa2_private(),
    );
    assert_eq!(ok(auth.verify(&old)).sub, "alice");
    assert_eq!(reason(auth.verify(&new)), Reason::UnknownKey);

    ok(std::fs::write(&path, key_file("jwks-rotated.json")));
    assert_eq!(reason(auth.verify(&new)), Reason::UnknownKey);
    assert_eq!(ok(auth.reload_keys()), 2);
    assert_eq!(ok(auth.verify(&new)).sub, "alice");
    assert_eq!(reason(auth.verify(&old)), Reason::UnknownKey);

    // A broken file is refused and the keys stay.
    ok(std::fs::write(&path, b"{ not json"));
    assert!(matches!(auth.reload_keys(), Err(KeyError::Jwks { .. })));
    assert_eq!(ok(auth.verify(&new)).sub, "alice");
    let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
}

#[test]
fn jwks_rotation_when_the_file_changes() {
    let path = temp_jwks("auto", &key_file("jwks.json"));
    let auth = jwks_auth(&path, Duration::ZERO);
    let new = sign(
        Algorithm::RS256,
        Some("rsa-2"),
        &valid_claims(),
        &rsa2_private(),
    );
    assert_eq!(reason(auth.verify(&new)), Reason::UnknownKey);
    ok(std::fs::write(&path, key_file("jwks-rotated.json")));
    // Make sure the stamp moves even on a coarse clock.
    let file = ok(std::fs::File::options().write(true).open(&path));
    ok(file.set_modified(SystemTime::now() + Duration::from_secs(5)));
    drop(file);
    assert_eq!(ok(auth.verify(&new)).sub, "alice");
    let old = sign(
        Algorithm::EdDSA,
        Some("ed-1"),
        &valid_claims(),
        &ed_private(),
    );
    assert_eq!(reason(auth.verify(&old)), Reason::UnknownKey);
    let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
}

#[test]
fn jwks_files_with_unusable_keys_are_refused() {
    let cases: [(&str, Value); 3] = [
        (
            "enc",
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0", "use": "enc", "kid": "x" }] }),
        ),
        (
            "mismatch",
            json!({ "keys": [{ "kty": "oct", "k": "c2VjcmV0", "alg": "RS256", "kid": "x" }] }),
        ),
        ("shape", json!({ "keys": [{ "kty": "nope" }] })),
    ];
    for (name, jwks) in cases {
        let path = temp_jwks(name, jwks.to_string().as_bytes());
        let result = KeySet::new().with_jwks_file(&path, Duration::ZERO);
        assert!(
            matches!(result, Err(KeyError::Jwk { .. } | KeyError::Jwks { .. })),
            "{name}: {result:?}"
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or(&path));
    }
}

#[test]
fn claims_of_your_own_type() {
    #[derive(Debug, Deserialize, PartialEq)]
    struct Mine {
        sub: String,
        tenant: String,
    }
    let mut claims = valid_claims();
    claims["tenant"] = json!("acme");
    let mine: Mine = ok(hmac_auth().verify_as(&hs256(&claims)));
    assert_eq!(
        mine,
        Mine {
            sub: "alice".into(),
            tenant: "acme".into()
        }
    );
    let refused = hmac_auth().verify_as::<Mine>(&hs256(&valid_claims()));
    assert_eq!(refused.map_err(|e| e.reason).err(), Some(Reason::Malformed));
}

#[test]
fn keys_without_an_id_serve_tokens_naming_an_unknown_kid() {
    // A fixed key has no id: a token's kid does not matter to it.
    let token = sign(
        Algorithm::HS256,
        Some("any"),
        &valid_claims(),
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(ok(hmac_auth().verify(&token)).sub, "alice");
    // With a JWKS as well, a kid of the JWKS picks that key only.
    let both = auth_with(
        ok(KeySet::new()
            .with_key(ok(Key::hmac_secret(SECRET)))
            .with_jwks_file(keys_dir().join("jwks.json"), Duration::from_secs(60))),
        rules(),
    );
    let named = sign(
        Algorithm::HS256,
        Some("rsa-1"),
        &valid_claims(),
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(reason(both.verify(&named)), Reason::InvalidSignature);
    assert_eq!(ok(both.verify(&token)).sub, "alice");
}
