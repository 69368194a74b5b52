//! `switchyard mint-token`: an HS256 development token, signed with the configured secret (or
//! the development secret with `--dev`), with the configured issuer and audience. The same
//! claims and signing serve `POST /auth/dev-token` ([`crate::signin`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::{json, Value};
use switchyard_auth::jsonwebtoken::{encode, EncodingKey, Header};

use crate::config::{Config, JwtSettings, MintOptions, DEV_SECRET};

/// The claims of the token `options` asks for, issued at `now` (seconds since the epoch).
pub(crate) fn claims(config: &Config, options: &MintOptions, now: u64) -> Value {
    token_claims(
        &config.jwt,
        &options.sub,
        options.rooms.as_deref(),
        options.ttl,
        now,
    )
}

/// The claims of a token for `sub`, allowed `rooms` (if any), living `ttl` from `now`
/// (seconds since the epoch), with the issuer and audience of `jwt` when they are set.
pub(crate) fn token_claims(
    jwt: &JwtSettings,
    sub: &str,
    rooms: Option<&[String]>,
    ttl: Duration,
    now: u64,
) -> Value {
    let mut claims = json!({
        "sub": sub,
        "iat": now,
        "exp": now.saturating_add(ttl.as_secs()),
    });
    if let Some(rooms) = rooms {
        claims["rooms"] = json!(rooms);
    }
    if let Some(issuer) = &jwt.issuer {
        claims["iss"] = json!(issuer);
    }
    if let Some(audience) = &jwt.audience {
        claims["aud"] = json!(audience);
    }
    claims
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// `claims` signed with HS256 and `secret`.
pub(crate) fn sign(
    secret: &str,
    claims: &Value,
) -> Result<String, switchyard_auth::jsonwebtoken::errors::Error> {
    encode(
        &Header::default(),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// The signed token.
pub(crate) fn mint(config: &Config, options: &MintOptions) -> anyhow::Result<String> {
    let secret = if options.dev {
        DEV_SECRET
    } else {
        config.jwt.secret.as_deref().context(
            "mint-token signs with JWT_SECRET (or --jwt-secret); pass --dev to use the \
             development secret (which the server accepts with --jwt-dev-secret)",
        )?
    };
    let token = sign(secret, &claims(config, options, now())).context("cannot sign the token")?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchyard_auth::{JwtAuth, JwtConfig, Key, KeySet};

    use super::*;
    use crate::config::defaults;

    #[test]
    fn claims_carry_sub_rooms_lifetime_issuer_and_audience() {
        let (mut config, default_options) = defaults();
        config.jwt.issuer = Some("https://issuer.test".into());
        config.jwt.audience = Some("switchyard".into());
        let options = MintOptions {
            sub: "alice".into(),
            rooms: Some(vec!["team-*".into()]),
            ttl: Duration::from_secs(3600),
            dev: true,
        };
        assert_eq!(
            claims(&config, &options, 1_000),
            json!({
                "sub": "alice", "iat": 1_000, "exp": 4_600, "rooms": ["team-*"],
                "iss": "https://issuer.test", "aud": "switchyard"
            })
        );
        assert_eq!(
            claims(&defaults().0, &default_options, 10),
            json!({ "sub": "dev", "iat": 10, "exp": 3_610 })
        );
    }

    #[test]
    fn a_dev_token_verifies_against_the_dev_secret_only() {
        let (config, options) = defaults();
        let options = MintOptions {
            dev: true,
            ..options
        };
        let token = mint(&config, &options).unwrap_or_else(|e| panic!("{e}"));
        let verifier = |secret: &str| {
            let key = Key::hmac_secret(secret.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
            JwtAuth::new(KeySet::new().with_key(key), JwtConfig::default())
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let claims = verifier(DEV_SECRET)
            .verify(&token)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.sub, "dev");
        assert!(verifier("another secret of enough length")
            .verify(&token)
            .is_err());
    }

    #[test]
    fn without_a_secret_or_dev_nothing_is_minted() {
        let (config, options) = defaults();
        let error = mint(&config, &options).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "mint-token signs with JWT_SECRET (or --jwt-secret); pass --dev to use the \
                 development secret (which the server accepts with --jwt-dev-secret)"
            )
        );
    }
}
