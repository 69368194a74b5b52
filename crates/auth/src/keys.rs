//! Verification keys: an HMAC secret, public keys in PEM, and JWKS files with rotation.
//!
//! Each key carries the algorithms its type allows, fixed when it is loaded: an HMAC secret
//! allows HS256/384/512, an RSA key RS256/384/512 and PS256/384/512, an EC key ES256 (P-256)
//! or ES384 (P-384), an Ed25519 key EdDSA. A token's header never widens that list, so
//! `alg: none` and an HMAC token checked against a public key are refused.
//!
//! A JWKS file is re-read when it changes: at most once per check interval (default 1 s) a
//! verification looks at the file's modification time and size, and reloads it when either
//! moved. [`crate::JwtAuth::reload_keys`] reloads at once. A file that no longer parses keeps the
//! previous keys (and logs a warning).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{info, warn};

use crate::error::KeyError;

const HMAC: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const RSA: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// One verification key and the algorithms its type allows.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC shared secret (HS256, HS384, HS512).
    pub fn hmac_secret(secret: &[u8]) -> Result<Key, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Key {
            kid: None,
            algorithms: HMAC.to_vec(),
            key: DecodingKey::from_secret(secret),
        })
    }

    /// A public key in PEM (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`): RSA, EC P-256 or
    /// P-384, or Ed25519; the type is read from the key.
    pub fn public_pem(pem: &[u8]) -> Option<Key> {
        let (key, algorithms) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (key, RSA.to_vec())
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            // The uncompressed point: 65 bytes on P-256, 97 on P-384.
            let algorithm = match key.as_bytes().len() {
                65 => Algorithm::ES256,
                97 => Algorithm::ES384,
                _ => return None,
            };
            (key, vec![algorithm])
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (key, vec![Algorithm::EdDSA])
        } else {
            return None;
        };
        Some(Key {
            kid: None,
            algorithms,
            key,
        })
    }

    /// A public key file in PEM (see [`Key::public_pem`]).
    pub fn public_pem_file(path: impl AsRef<Path>) -> Result<Key, KeyError> {
        let path = path.as_ref();
        let pem = read(path)?;
        Key::public_pem(&pem).ok_or_else(|| KeyError::UnsupportedPem {
            path: path.to_owned(),
        })
    }

    /// A key of a JSON Web Key Set. Its `alg`, when given, narrows the algorithms further; a
    /// key marked for encryption (`use: enc`) or of an unsupported curve is refused.
    pub fn from_jwk(jwk: &Jwk) -> Result<Key, String> {
        if let Some(jsonwebtoken::jwk::PublicKeyUse::Encryption) = jwk.common.public_key_use {
            return Err("a key for encryption (use: enc)".to_owned());
        }
        let by_type: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => RSA.to_vec(),
            AlgorithmParameters::EllipticCurve(params) => match params.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                ref other => return Err(format!("unsupported EC curve {other:?}")),
            },
            AlgorithmParameters::OctetKeyPair(params) => match params.curve {
                EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
                ref other => return Err(format!("unsupported OKP curve {other:?}")),
            },
            AlgorithmParameters::OctetKey(_) => HMAC.to_vec(),
        };
        let algorithms = match jwk.common.key_algorithm {
            None => by_type,
            Some(declared) => {
                let declared = jwk_algorithm(declared)
                    .ok_or_else(|| format!("unsupported alg {declared:?}"))?;
                if !by_type.contains(&declared) {
                    return Err(format!("alg {declared:?} does not fit the key type"));
                }
                vec![declared]
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|error| error.to_string())?;
        Ok(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }

    /// Sets the key id tokens name in their header's `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Key {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any. A key without one verifies tokens whatever their `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key verifies.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

fn jwk_algorithm(algorithm: KeyAlgorithm) -> Option<Algorithm> {
    Some(match algorithm {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Parses a JWKS document; every key must be usable.
fn parse_jwks(path: &Path, bytes: &[u8]) -> Result<Vec<Arc<Key>>, KeyError> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|source| KeyError::Jwks {
        path: path.to_owned(),
        source,
    })?;
    set.keys
        .iter()
        .enumerate()
        .map(|(index, jwk)| {
            Key::from_jwk(jwk)
                .map(Arc::new)
                .map_err(|message| KeyError::Jwk {
                    path: path.to_owned(),
                    index,
                    kid: jwk.common.key_id.clone(),
                    message,
                })
        })
        .collect()
}

/// What identifies a version of a file cheaply.
type Stamp = (Option<SystemTime>, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok(), metadata.len()))
}

/// A JWKS file and the keys last loaded from it.
#[derive(Debug)]
struct JwksFile {
    path: PathBuf,
    keys: RwLock<Vec<Arc<Key>>>,
    /// The file's stamp when last loaded, and when it was last looked at.
    checked: Mutex<(Option<Stamp>, Instant)>,
    check_interval: Duration,
}

impl JwksFile {
    fn load(path: PathBuf, check_interval: Duration) -> Result<JwksFile, KeyError> {
        let stamp = stamp(&path);
        let keys = parse_jwks(&path, &read(&path)?)?;
        Ok(JwksFile {
            path,
            keys: RwLock::new(keys),
            checked: Mutex::new((stamp, Instant::now())),
            check_interval,
        })
    }

    /// Reads the file again; on error the previous keys stay.
    fn reload(&self) -> Result<usize, KeyError> {
        let stamp = stamp(&self.path);
        let keys = parse_jwks(&self.path, &read(&self.path)?)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = (stamp, Instant::now());
        info!(path = %self.path.display(), keys = count, "JWKS loaded");
        Ok(count)
    }

    /// Reloads the file if the check interval has passed and the file changed.
    fn refresh_if_changed(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            if now.saturating_duration_since(checked.1) < self.check_interval {
                return;
            }
            checked.1 = now;
            if stamp(&self.path) == checked.0 {
                return;
            }
        }
        if let Err(error) = self.reload() {
            warn!(%error, "JWKS file changed but cannot be loaded; keeping the previous keys");
        }
    }

    fn keys(&self) -> Vec<Arc<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The keys a verifier accepts: fixed keys plus, optionally, a JWKS file.
#[derive(Debug, Default)]
pub struct KeySet {
    fixed: Vec<Arc<Key>>,
    jwks: Option<JwksFile>,
}

impl KeySet {
    /// An empty set: add keys with [`KeySet::with_key`] and [`KeySet::with_jwks_file`].
    pub fn new() -> KeySet {
        KeySet::default()
    }

    /// Adds a fixed key.
    pub fn with_key(mut self, key: Key) -> KeySet {
        self.fixed.push(Arc::new(key));
        self
    }

    /// Loads a JWKS file, re-read when it changes (looked at once per `check_interval` at
    /// most; `Duration::ZERO` looks at every verification). One JWKS file per set.
    pub fn with_jwks_file(
        mut self,
        path: impl Into<PathBuf>,
        check_interval: Duration,
    ) -> Result<KeySet, KeyError> {
        self.jwks = Some(JwksFile::load(path.into(), check_interval)?);
        Ok(self)
    }

    /// Whether the set has no key.
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.jwks.as_ref().is_none_or(|jwks| jwks.keys().is_empty())
    }

    /// Reloads the JWKS file now; the number of keys it holds (0 without a JWKS file).
    pub fn reload(&self) -> Result<usize, KeyError> {
        match &self.jwks {
            Some(jwks) => jwks.reload(),
            None => Ok(0),
        }
    }

    /// The keys that may have signed a token whose header names `kid`: the keys with that id
    /// or, when none has it, the keys without an id; a token without `kid` may be checked
    /// against every key. A JWKS file that changed is reloaded first.
    pub(crate) fn candidates(&self, kid: Option<&str>) -> Vec<Arc<Key>> {
        if let Some(jwks) = &self.jwks {
            jwks.refresh_if_changed();
        }
        let jwks = self.jwks.as_ref().map(JwksFile::keys).unwrap_or_default();
        let all = self.fixed.iter().chain(jwks.iter());
        let Some(kid) = kid else {
            return all.cloned().collect();
        };
        let named: Vec<Arc<Key>> = all
            .clone()
            .filter(|key| key.kid() == Some(kid))
            .cloned()
            .collect();
        if !named.is_empty() {
            return named;
        }
        all.filter(|key| key.kid().is_none()).cloned().collect()
    }
}
