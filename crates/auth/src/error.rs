//! Why a token was refused, and why keys could not be loaded.

use std::fmt;
use std::path::PathBuf;

/// Why a handshake's token was refused. The client sees [`Reason::as_str`] and
/// [`Reason::code`] in the CONNECT_ERROR's `data`; both are stable.
///
/// | reason | code | when |
/// | --- | --- | --- |
/// | `missing` | 4001 | no token in any configured source |
/// | `malformed` | 4002 | not a JWT (three base64url parts, JSON header and claims), a claim of the wrong type, no `exp` (when required) or no `sub` |
/// | `expired` | 4003 | `exp` is past (leeway included) |
/// | `not_yet_valid` | 4004 | `nbf` is ahead (leeway included) |
/// | `invalid_signature` | 4005 | the signature does not verify, or the header's `alg` is not one the key allows (`none`, an HMAC token against a public key, …) |
/// | `wrong_issuer` | 4006 | `iss` missing or not the configured issuer |
/// | `wrong_audience` | 4007 | `aud` missing or not the configured audience |
/// | `unknown_key` | 4008 | the header's `kid` names no configured key |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No token in any configured source.
    Missing,
    /// Not a well-formed JWT, or its claims do not have the expected shape.
    Malformed,
    /// Past `exp`.
    Expired,
    /// Before `nbf`.
    NotYetValid,
    /// Bad signature, or an algorithm the key does not allow.
    InvalidSignature,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` is not the configured audience.
    WrongAudience,
    /// `kid` names no configured key.
    UnknownKey,
}

impl Reason {
    /// Every reason, in code order.
    pub const ALL: [Reason; 8] = [
        Reason::Missing,
        Reason::Malformed,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::InvalidSignature,
        Reason::WrongIssuer,
        Reason::WrongAudience,
        Reason::UnknownKey,
    ];

    /// The reason as sent to the client.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Malformed => "malformed",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::InvalidSignature => "invalid_signature",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::UnknownKey => "unknown_key",
        }
    }

    /// The stable numeric code sent to the client.
    pub const fn code(self) -> u16 {
        match self {
            Reason::Missing => 4001,
            Reason::Malformed => 4002,
            Reason::Expired => 4003,
            Reason::NotYetValid => 4004,
            Reason::InvalidSignature => 4005,
            Reason::WrongIssuer => 4006,
            Reason::WrongAudience => 4007,
            Reason::UnknownKey => 4008,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused token: the [`Reason`] the client is told, and a detail for the server's log only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct AuthError {
    /// What the client is told.
    pub reason: Reason,
    /// What went wrong, for logs; never sent to the client.
    pub detail: String,
}

impl AuthError {
    /// A refusal for `reason`, with a log `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> AuthError {
        AuthError {
            reason,
            detail: detail.into(),
        }
    }

    /// The CONNECT_ERROR data: `{"code": <code>, "reason": "<reason>"}`.
    pub fn client_data(&self) -> serde_json::Value {
        serde_json::json!({ "code": self.reason.code(), "reason": self.reason.as_str() })
    }
}

/// Keys that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file holds no RSA, EC (P-256, P-384) or Ed25519 public key.
    #[error("{path}: not an RSA, EC (P-256/P-384) or Ed25519 public key in PEM")]
    UnsupportedPem {
        /// The file.
        path: PathBuf,
    },
    /// A JWKS file is not a JSON Web Key Set.
    #[error("{path}: not a JSON Web Key Set")]
    Jwks {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A JWK of a JWKS file cannot be used.
    #[error("{path}: key {index} (kid {kid:?}): {message}")]
    Jwk {
        /// The file.
        path: PathBuf,
        /// The key's position in `keys`.
        index: usize,
        /// The key's `kid`.
        kid: Option<String>,
        /// What is wrong with it.
        message: String,
    },
    /// An HMAC secret is empty.
    #[error("the HMAC secret is empty")]
    EmptySecret,
    /// No key was configured.
    #[error("no key configured")]
    NoKeys,
}
