//! JWT handshake authentication for Switchyard: a ready connect middleware.
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard::{Socket, SocketIo, SocketIoConfig};
//! use switchyard_auth::{Claims, JwtAuth, JwtConfig, Key, KeySet, Policy};
//!
//! # fn run() -> Result<(), switchyard_auth::KeyError> {
//! let keys = KeySet::new().with_key(Key::hmac_secret(b"a long random secret")?);
//! let auth = JwtAuth::new(keys, JwtConfig::default())?;
//! let io = SocketIo::new(SocketIoConfig::default());
//! let chat = io.of("/chat");
//! auth.apply(&chat, Policy::TokenRequired);
//! chat.on_connection(|socket: Socket| async move {
//!     let user = socket.data::<Claims>().map(|claims| claims.sub);
//!     tracing::info!(?user, "connected");
//! });
//! # Ok(()) }
//! ```
//!
//! **The token** is read from the handshake's `auth.token` (socket.io-client's
//! `auth: { token }`) by default; [`TokenSource`] adds an `Authorization: Bearer` header or a
//! query parameter, in any order (the first source present wins).
//!
//! **Keys** ([`KeySet`]): an HMAC secret (HS256/384/512), RSA / EC / Ed25519 public keys in PEM,
//! a JWKS file with rotation by `kid`. The algorithms a token may use come from its key's type,
//! never from the token: `alg: none` and an HMAC token checked against a public key are
//! refused.
//!
//! **Claims** are checked (`exp` and `nbf` with a leeway, `iss`, `aud`) and kept as socket
//! data: [`Claims`] (`sub`, `exp`, `rooms`, the rest as a JSON map), and with
//! [`JwtAuth::middleware_with`] a claims type of your own as well.
//!
//! **A refusal** is a CONNECT_ERROR with `message` `unauthorized` and `data`
//! `{ "code": <number>, "reason": <reason> }`, listed in [`Reason`].
//!
//! **An optional token** ([`JwtAuth::optional_middleware`]): a client without a token passes
//! (the application names it some other way), a client with one is verified and refused as
//! above; for development setups where signing in is possible but not required.
//!
//! **Expiry while connected** (on by default, [`JwtConfig::disconnect_on_expiry`]): when
//! `exp` (plus the leeway) passes, the socket is sent the event [`EXPIRED_EVENT`]
//! (`auth_expired`) with `{ "reason": "expired" }`, then disconnected from the namespace, so
//! the client sees `io server disconnect` (and socket.io-client does not reconnect by itself).
//! Each socket has one timer task, ended when the socket disconnects.

mod claims;
mod error;
mod keys;
mod verify;

use std::future::{ready, Ready};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard::{ConnectError, Handshake, Namespace, Sid, Socket};
use tokio::sync::oneshot;
use tracing::{debug, info};

pub use claims::{pattern_matches, Claims};
pub use error::{AuthError, KeyError, Reason};
/// The JWT crate used, for minting tokens (tests, development tools) with the same version.
pub use jsonwebtoken;
pub use jsonwebtoken::Algorithm;
pub use keys::{Key, KeySet};
pub use verify::ClaimRules;

/// The CONNECT_ERROR message of every refusal.
pub const UNAUTHORIZED: &str = "unauthorized";

/// The event a socket is sent when its token expires, just before it is disconnected.
pub const EXPIRED_EVENT: &str = "auth_expired";

/// Where the middleware looks for the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A field of the handshake's auth payload (socket.io-client's `auth`), usually `token`.
    Auth(String),
    /// The `Authorization: Bearer <token>` header of the request that opened the connection
    /// (Node clients' `extraHeaders`; browsers cannot set it on a WebSocket).
    BearerHeader,
    /// A query parameter of the request that opened the connection (socket.io-client's
    /// `query`). URLs end up in logs: prefer the other two.
    Query(String),
}

impl TokenSource {
    /// The default: `auth.token`.
    pub fn auth_token() -> TokenSource {
        TokenSource::Auth("token".to_owned())
    }
}

/// What a namespace asks of its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Anyone may connect; no token is read.
    Public,
    /// A valid token is required.
    TokenRequired,
}

/// Options of [`JwtAuth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// The claim checks.
    pub rules: ClaimRules,
    /// Where the token is looked for, in order (default: `auth.token` only).
    pub sources: Vec<TokenSource>,
    /// Whether a socket is disconnected when its token expires (default true).
    pub disconnect_on_expiry: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            rules: ClaimRules::default(),
            sources: vec![TokenSource::auth_token()],
            disconnect_on_expiry: true,
        }
    }
}

struct Inner {
    keys: KeySet,
    config: JwtConfig,
}

/// A JWT verifier and the connect middleware built on it. Cheap to clone.
#[derive(Clone)]
pub struct JwtAuth(Arc<Inner>);

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.0.keys)
            .field("config", &self.0.config)
            .finish()
    }
}

/// Kept as socket data while the expiry timer runs; dropping it (the socket's data is cleared
/// when it disconnects, or dropped with a refused socket) ends the timer.
struct ExpiryGuard(#[allow(dead_code)] oneshot::Sender<()>);

impl JwtAuth {
    /// A verifier with `keys` and `config`; refuses an empty key set.
    pub fn new(keys: KeySet, config: JwtConfig) -> Result<JwtAuth, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(JwtAuth(Arc::new(Inner { keys, config })))
    }

    /// The options.
    pub fn config(&self) -> &JwtConfig {
        &self.0.config
    }

    /// Reloads the JWKS file now (it is also reloaded by itself when it changes); the number
    /// of keys it holds.
    pub fn reload_keys(&self) -> Result<usize, KeyError> {
        self.0.keys.reload()
    }

    /// Verifies `token`: signature, `exp`, `nbf`, `iss`, `aud`, and a `sub`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let raw = self.verify_raw(token)?;
        claims_from(raw)
    }

    /// Verifies `token` and reads its claims as `T`; claims that do not fit `T` are
    /// [`Reason::Malformed`].
    pub fn verify_as<T: DeserializeOwned>(&self, token: &str) -> Result<T, AuthError> {
        let raw = self.verify_raw(token)?;
        serde_json::from_value(raw)
            .map_err(|error| AuthError::new(Reason::Malformed, format!("claims: {error}")))
    }

    fn verify_raw(&self, token: &str) -> Result<Value, AuthError> {
        verify::verify(token, &self.0.keys, &self.0.config.rules)
    }

    /// The token of a handshake, from the first configured source that has one.
    pub fn token_from(&self, handshake: &Handshake) -> Result<String, AuthError> {
        token_from_sources(
            &self.0.config.sources,
            &handshake.auth,
            handshake.header("authorization"),
            |name| handshake.query(name),
        )
    }

    /// Authenticates `socket`: finds and verifies its token, keeps the [`Claims`] as socket
    /// data and, if configured, arms the expiry timer.
    pub fn authenticate(&self, socket: &Socket) -> Result<Claims, AuthError> {
        self.authenticate_raw(socket).map(|(claims, _)| claims)
    }

    /// The token of a handshake like [`JwtAuth::token_from`], `None` when no configured source
    /// has one (a source present but of the wrong form is still an error).
    pub fn token_if_present(&self, handshake: &Handshake) -> Result<Option<String>, AuthError> {
        if_present(self.token_from(handshake))
    }

    /// Authenticates `socket` if its handshake carries a token: `Ok(None)` when it has none,
    /// else as [`JwtAuth::authenticate`] (a token present must verify).
    pub fn authenticate_if_present(&self, socket: &Socket) -> Result<Option<Claims>, AuthError> {
        match self.token_if_present(socket.handshake())? {
            None => Ok(None),
            Some(token) => self
                .authenticate_token(socket, &token)
                .map(|(claims, _)| Some(claims)),
        }
    }

    fn authenticate_raw(&self, socket: &Socket) -> Result<(Claims, Value), AuthError> {
        let token = self.token_from(socket.handshake())?;
        self.authenticate_token(socket, &token)
    }

    fn authenticate_token(
        &self,
        socket: &Socket,
        token: &str,
    ) -> Result<(Claims, Value), AuthError> {
        let raw = self.verify_raw(token)?;
        let claims = claims_from(raw.clone())?;
        if self.0.config.disconnect_on_expiry {
            if let Some(exp) = claims.exp {
                let deadline = exp.saturating_add(self.0.config.rules.leeway.as_secs());
                arm_expiry(socket, deadline);
            }
        }
        socket.insert_data(claims.clone());
        Ok((claims, raw))
    }

    /// The connect middleware: `namespace.use_middleware(auth.middleware())`. Refuses with
    /// CONNECT_ERROR `unauthorized` and `{code, reason}`.
    pub fn middleware(
        &self,
    ) -> impl Fn(Socket) -> Ready<Result<(), ConnectError>> + Send + Sync + 'static {
        let auth = self.clone();
        move |socket: Socket| {
            ready(
                auth.authenticate(&socket)
                    .map(|_| ())
                    .map_err(|error| refuse(&socket, &error)),
            )
        }
    }

    /// The connect middleware of an optional token: a client without one passes untouched (no
    /// [`Claims`] kept, so the application decides who it is); a client with one is verified
    /// as by [`JwtAuth::middleware`], refused the same way, and its expiry enforced.
    pub fn optional_middleware(
        &self,
    ) -> impl Fn(Socket) -> Ready<Result<(), ConnectError>> + Send + Sync + 'static {
        let auth = self.clone();
        move |socket: Socket| {
            ready(
                auth.authenticate_if_present(&socket)
                    .map(|_| ())
                    .map_err(|error| refuse(&socket, &error)),
            )
        }
    }

    /// Like [`JwtAuth::middleware`], and also keeps the claims as `T`, your own type:
    /// `socket.data::<T>()`. Claims that do not fit `T` are refused as `malformed`.
    pub fn middleware_with<T>(
        &self,
    ) -> impl Fn(Socket) -> Ready<Result<(), ConnectError>> + Send + Sync + 'static
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        let auth = self.clone();
        move |socket: Socket| {
            let result = auth.authenticate_raw(&socket).and_then(|(_, raw)| {
                serde_json::from_value::<T>(raw)
                    .map_err(|error| AuthError::new(Reason::Malformed, format!("claims: {error}")))
            });
            ready(match result {
                Ok(custom) => {
                    socket.insert_data(custom);
                    Ok(())
                }
                Err(error) => {
                    // Nothing of a refused socket may keep running.
                    drop(socket.remove_data::<ExpiryGuard>());
                    Err(refuse(&socket, &error))
                }
            })
        }
    }

    /// Applies `policy` to `namespace`: for [`Policy::TokenRequired`], adds
    /// [`JwtAuth::middleware`]; for [`Policy::Public`], nothing.
    pub fn apply(&self, namespace: &Namespace, policy: Policy) {
        match policy {
            Policy::Public => {}
            Policy::TokenRequired => {
                namespace.use_middleware(self.middleware());
            }
        }
    }
}

/// The verified claims of `socket`, if its namespace requires a token.
pub fn claims(socket: &Socket) -> Option<Claims> {
    socket.data::<Claims>()
}

fn claims_from(raw: Value) -> Result<Claims, AuthError> {
    serde_json::from_value(raw)
        .map_err(|error| AuthError::new(Reason::Malformed, format!("claims: {error}")))
}

fn refuse(socket: &Socket, error: &AuthError) -> ConnectError {
    info!(
        nsp = socket.namespace().name(),
        address = ?socket.handshake().address(),
        reason = error.reason.as_str(),
        detail = %error.detail,
        "token refused"
    );
    ConnectError::new(UNAUTHORIZED).with_data(error.client_data())
}

/// `found`, with "no token" ([`Reason::Missing`]) as `None`.
fn if_present(found: Result<String, AuthError>) -> Result<Option<String>, AuthError> {
    match found {
        Ok(token) => Ok(Some(token)),
        Err(error) if error.reason == Reason::Missing => Ok(None),
        Err(error) => Err(error),
    }
}

/// Finds the token in `sources`, in order: the first source present decides. `authorization`
/// is the value of the handshake's `Authorization` header, if it had one.
pub fn token_from_sources(
    sources: &[TokenSource],
    auth: &Value,
    authorization: Option<&[u8]>,
    query: impl Fn(&str) -> Option<String>,
) -> Result<String, AuthError> {
    for source in sources {
        let found = match source {
            TokenSource::Auth(field) => match auth.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(token)) => Some(token.clone()),
                Some(_) => {
                    return Err(AuthError::new(
                        Reason::Malformed,
                        format!("auth.{field} is not a string"),
                    ))
                }
            },
            TokenSource::BearerHeader => match authorization {
                None => None,
                Some(value) => {
                    // As `HeaderValue::to_str`: visible ASCII and tabs only, so no Unicode
                    // space is trimmed into an accepted token.
                    let visible = value
                        .iter()
                        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
                    let value = std::str::from_utf8(value)
                        .ok()
                        .filter(|_| visible)
                        .unwrap_or_default()
                        .trim();
                    let token = value
                        .split_once(' ')
                        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                        .map(|(_, token)| token.trim().to_owned());
                    match token {
                        Some(token) => Some(token),
                        None => {
                            return Err(AuthError::new(
                                Reason::Malformed,
                                "Authorization is not `Bearer <token>`",
                            ))
                        }
                    }
                }
            },
            TokenSource::Query(name) => query(name),
        };
        if let Some(token) = found.filter(|token| !token.trim().is_empty()) {
            return Ok(token.trim().to_owned());
        }
    }
    Err(AuthError::new(Reason::Missing, "no token in the handshake"))
}

/// Starts the timer that disconnects `socket` when `deadline` (seconds since the Unix epoch)
/// passes, once the socket has joined its namespace: with connection state recovery the socket
/// a middleware sees is not the one that connects, so the timer is keyed on the one that does.
fn arm_expiry(socket: &Socket, deadline: u64) {
    socket.when_connected(move |socket| {
        let (guard, cancelled) = oneshot::channel();
        socket.insert_data(ExpiryGuard(guard));
        let wait = Duration::from_secs(deadline).saturating_sub(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        // The task holds the namespace and the socket id, not the socket: a socket that ends
        // drops the guard with its data, which ends the task.
        tokio::spawn(expire_after(
            socket.namespace(),
            socket.id().clone(),
            wait,
            cancelled,
        ));
    });
}

async fn expire_after(
    namespace: Namespace,
    sid: Sid,
    wait: Duration,
    mut cancelled: oneshot::Receiver<()>,
) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = &mut cancelled => return,
    }
    if let Some(socket) = namespace.get_socket(&sid) {
        debug!(
            sid = &*sid,
            nsp = namespace.name(),
            "token expired; disconnecting"
        );
        let _ = socket.emit(EXPIRED_EVENT, serde_json::json!({ "reason": "expired" }));
        socket.disconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn find(
        sources: &[TokenSource],
        auth: Value,
        header: Option<&str>,
        query: Option<&str>,
    ) -> Result<String, (Reason, String)> {
        token_from_sources(sources, &auth, header.map(str::as_bytes), |name| {
            (name == "access_token")
                .then(|| query.map(str::to_owned))
                .flatten()
        })
        .map_err(|error| (error.reason, error.detail))
    }

    #[test]
    fn the_default_source_is_auth_token() {
        let sources = JwtConfig::default().sources;
        assert_eq!(
            find(&sources, json!({ "token": " t1 " }), None, None),
            Ok("t1".into())
        );
        assert_eq!(
            find(&sources, json!({}), Some("Bearer t2"), Some("t3")),
            Err((Reason::Missing, "no token in the handshake".into()))
        );
        assert_eq!(
            find(&sources, json!({ "token": 5 }), None, None),
            Err((Reason::Malformed, "auth.token is not a string".into()))
        );
        assert_eq!(
            find(&sources, json!({ "token": "" }), None, None).map_err(|e| e.0),
            Err(Reason::Missing)
        );
    }

    #[test]
    fn sources_are_tried_in_order() {
        let sources = vec![
            TokenSource::BearerHeader,
            TokenSource::Query("access_token".into()),
            TokenSource::auth_token(),
        ];
        assert_eq!(
            find(
                &sources,
                json!({ "token": "a" }),
                Some("bearer h"),
                Some("q")
            ),
            Ok("h".into())
        );
        assert_eq!(
            find(&sources, json!({ "token": "a" }), None, Some("q")),
            Ok("q".into())
        );
        assert_eq!(
            find(&sources, json!({ "token": "a" }), None, None),
            Ok("a".into())
        );
        assert_eq!(
            find(&sources, json!({ "token": "a" }), Some("Basic abc"), None),
            Err((
                Reason::Malformed,
                "Authorization is not `Bearer <token>`".into()
            ))
        );
        // Only visible ASCII counts, as in an HTTP header value: a Unicode space around the
        // token is not trimmed into an accepted one.
        for header in ["Bearer h\u{3000}", "\u{a0}Bearer h", "Bearer h\u{e9}"] {
            assert_eq!(
                find(&sources, json!({ "token": "a" }), Some(header), None),
                Err((
                    Reason::Malformed,
                    "Authorization is not `Bearer <token>`".into()
                )),
                "{header:?}"
            );
        }
    }

    #[test]
    fn an_optional_token_is_none_only_when_no_source_has_one() {
        let sources = JwtConfig::default().sources;
        let optional = |auth: Value, header: Option<&str>| {
            if_present(token_from_sources(
                &sources,
                &auth,
                header.map(str::as_bytes),
                |_| None,
            ))
            .map_err(|error| error.reason)
        };
        assert_eq!(optional(json!({ "name": "alice" }), None), Ok(None));
        assert_eq!(optional(json!({ "token": "  " }), None), Ok(None));
        assert_eq!(optional(json!({ "token": null }), None), Ok(None));
        // Only the configured sources count.
        assert_eq!(optional(json!({}), Some("Bearer t")), Ok(None));
        assert_eq!(
            optional(json!({ "token": "t" }), None),
            Ok(Some("t".into()))
        );
        assert_eq!(
            optional(json!({ "token": ["t"] }), None),
            Err(Reason::Malformed)
        );
    }

    #[test]
    fn refusals_carry_code_and_reason() {
        let error = AuthError::new(Reason::Expired, "exp 1");
        assert_eq!(
            error.client_data(),
            json!({ "code": 4003, "reason": "expired" })
        );
        let codes: Vec<(u16, &str)> = Reason::ALL
            .iter()
            .map(|reason| (reason.code(), reason.as_str()))
            .collect();
        assert_eq!(
            codes,
            [
                (4001, "missing"),
                (4002, "malformed"),
                (4003, "expired"),
                (4004, "not_yet_valid"),
                (4005, "invalid_signature"),
                (4006, "wrong_issuer"),
                (4007, "wrong_audience"),
                (4008, "unknown_key"),
            ]
        );
    }
}
