//! Token verification: the header read without trusting it, the key chosen by `kid`, the
//! algorithm checked against the key's own list, then signature and claims by `jsonwebtoken`.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use crate::error::{AuthError, Reason};
use crate::keys::KeySet;

/// What a verifier checks besides the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// Accepted issuers (`iss`); empty: not checked. When set, a token without `iss` is
    /// refused.
    pub issuers: Vec<String>,
    /// Accepted audiences (`aud`); empty: not checked. When set, a token without `aud` is
    /// refused.
    pub audiences: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf` (default 30 s); whole seconds are used.
    pub leeway: Duration,
    /// Whether a token must have `exp` (default true).
    pub require_exp: bool,
}

impl Default for ClaimRules {
    fn default() -> Self {
        ClaimRules {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(30),
            require_exp: true,
        }
    }
}

/// The part of a JWS header read before the signature is checked.
struct UntrustedHeader {
    alg: String,
    kid: Option<String>,
}

fn malformed(detail: impl Into<String>) -> AuthError {
    AuthError::new(Reason::Malformed, detail)
}

/// Reads `alg` and `kid` from a compact JWS, checking only its shape.
fn untrusted_header(token: &str) -> Result<UntrustedHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three dot-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("header is not base64url"))?;
    let header: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("header is not JSON"))?;
    let Some(alg) = header.get("alg").and_then(Value::as_str) else {
        return Err(malformed("header has no alg"));
    };
    let kid = match header.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    Ok(UntrustedHeader {
        alg: alg.to_owned(),
        kid,
    })
}

/// Verifies `token` against `keys` and `rules`; the claims as JSON.
pub(crate) fn verify(token: &str, keys: &KeySet, rules: &ClaimRules) -> Result<Value, AuthError> {
    let header = untrusted_header(token)?;
    let candidates = keys.candidates(header.kid.as_deref());
    if candidates.is_empty() {
        return Err(AuthError::new(
            Reason::UnknownKey,
            format!("no key with kid {:?}", header.kid),
        ));
    }
    // `none`, and any name jsonwebtoken does not know, is no algorithm a key allows.
    let Ok(alg) = header.alg.parse::<Algorithm>() else {
        return Err(AuthError::new(
            Reason::InvalidSignature,
            format!("algorithm {:?} is not accepted", header.alg),
        ));
    };
    let mut checked = 0;
    for key in candidates
        .iter()
        .filter(|key| key.algorithms().contains(&alg))
    {
        checked += 1;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = rules.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required: Vec<&str> = Vec::new();
        if rules.require_exp {
            required.push("exp");
        }
        if !rules.issuers.is_empty() {
            validation.set_issuer(&rules.issuers);
            required.push("iss");
        }
        if !rules.audiences.is_empty() {
            validation.set_audience(&rules.audiences);
            required.push("aud");
        } else {
            validation.validate_aud = false;
        }
        validation.set_required_spec_claims(&required);
        match jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation) {
            Ok(data) => return Ok(data.claims),
            // Another key with the same id (or none) may have signed it.
            Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => continue,
            Err(error) => return Err(classify(error.kind())),
        }
    }
    if checked == 0 {
        return Err(AuthError::new(
            Reason::InvalidSignature,
            format!("algorithm {alg:?} is not allowed for the key"),
        ));
    }
    Err(AuthError::new(
        Reason::InvalidSignature,
        "signature does not verify",
    ))
}

fn classify(kind: &ErrorKind) -> AuthError {
    let reason = match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidIssuer => Reason::WrongIssuer,
        ErrorKind::InvalidAudience => Reason::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => Reason::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => Reason::WrongAudience,
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => Reason::InvalidSignature,
        _ => Reason::Malformed,
    };
    AuthError::new(reason, format!("{kind:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_read_without_trust() {
        let header = untrusted_header("eyJhbGciOiJub25lIiwia2lkIjoiayJ9.e30.")
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            (header.alg.as_str(), header.kid.as_deref()),
            ("none", Some("k"))
        );
        for token in ["", "a.b", "a.b.c.d", "!!!.e30.x", "e30.e30.x"] {
            assert_eq!(
                untrusted_header(token).err().map(|error| error.reason),
                Some(Reason::Malformed),
                "{token}"
            );
        }
    }
}
