//! Who a client is: one connect middleware, shared by both namespaces, and nothing else
//! reads the handshake for identity.
//!
//! With JWT on (and the namespace not public), the identity is the verified token's `sub`
//! ([`from_claims`]), put there by `switchyard-auth`'s middleware. In dev mode (no key), a
//! client may still give a token (`auth.token`, from `POST /auth/dev-token`): it must verify
//! against the development secret, and its `sub` is the identity, with its expiry enforced.
//! Without a token (dev mode, or a public namespace), the identity is the name the client
//! gives in its auth payload (`auth.name` on `/chat`, `auth.user` on `/notifications`), taken
//! on trust.

use std::future::ready;
use std::sync::Arc;

use serde_json::Value;
use switchyard::{ConnectError, Namespace, Socket};
use switchyard_auth::{AuthError, JwtAuth, Reason, UNAUTHORIZED};

use crate::input;

/// Who a socket is on its namespace (the chat's display name, the notifications' user id),
/// kept as socket data by the middleware of [`install`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity(pub Arc<str>);

/// How a namespace learns who a client is.
#[derive(Debug, Clone)]
pub(crate) enum Verifier {
    /// JWT on and the namespace not public: a valid token is required.
    Required(JwtAuth),
    /// Dev mode: a token, if the client gives one, verified by this (the development secret);
    /// else the name the client gives.
    Optional(JwtAuth),
    /// A public namespace: the name the client gives, no token read.
    Trust,
}

impl Verifier {
    /// Whether every client of the namespace has verified claims (so room claims apply).
    pub(crate) fn requires_token(&self) -> bool {
        matches!(self, Verifier::Required(_))
    }
}

/// Puts the identity middleware on `namespace`. With a required token, the token is verified
/// and its `sub` is the identity; with an optional one, the same when the client gives a
/// token; without a token, the handshake's `auth.<dev_field>`, trimmed (a missing or blank one
/// is refused with `<dev_field> required`).
pub(crate) fn install(namespace: &Namespace, verifier: Verifier, dev_field: &'static str) {
    match verifier {
        Verifier::Required(jwt) => {
            namespace.use_middleware(jwt.middleware());
            namespace.use_middleware(|socket: Socket| {
                ready(from_claims(&socket).map(|sub| socket.insert_data(Identity(sub))))
            });
        }
        Verifier::Optional(jwt) => {
            namespace.use_middleware(jwt.optional_middleware());
            namespace.use_middleware(move |socket: Socket| {
                let identity = if switchyard_auth::claims(&socket).is_some() {
                    from_claims(&socket)
                } else {
                    auth_field(&socket.handshake().auth, dev_field)
                };
                ready(identity.map(|name| socket.insert_data(Identity(name))))
            });
        }
        Verifier::Trust => {
            namespace.use_middleware(move |socket: Socket| {
                let name = auth_field(&socket.handshake().auth, dev_field);
                ready(name.map(|name| socket.insert_data(Identity(name))))
            });
        }
    }
}

/// The identity the middleware kept; `None` once the socket is closed.
pub(crate) fn of(socket: &Socket) -> Option<Arc<str>> {
    socket.data::<Identity>().map(|Identity(name)| name)
}

/// The verified token's `sub`, as kept by the JWT middleware (which runs first). A `sub` that
/// is not a valid name (see [`input::name`]) is refused as `unauthorized`, reason `malformed`.
fn from_claims(socket: &Socket) -> Result<Arc<str>, ConnectError> {
    let sub = switchyard_auth::claims(socket).map(|claims| Value::String(claims.sub));
    match input::name(sub.as_ref()) {
        Ok(Some(sub)) => Ok(Arc::from(sub)),
        Ok(None) => Err(malformed_sub("empty sub")),
        Err(error) => Err(malformed_sub(&format!("sub: {error}"))),
    }
}

fn malformed_sub(detail: &str) -> ConnectError {
    tracing::info!(detail, "token refused: unusable sub");
    ConnectError::new(UNAUTHORIZED)
        .with_data(AuthError::new(Reason::Malformed, detail).client_data())
}

/// Field `field` of the auth object as a name (see [`input::name`]).
fn auth_field(auth: &Value, field: &str) -> Result<Arc<str>, ConnectError> {
    match input::name(auth.get(field)) {
        Ok(Some(name)) => Ok(Arc::from(name)),
        Ok(None) => Err(ConnectError::new(format!("{field} required"))),
        Err(error) => Err(ConnectError::new(format!("invalid {field}: {error}"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_field_is_read_and_trimmed() {
        assert_eq!(
            auth_field(&json!({ "name": " alice " }), "name"),
            Ok(Arc::from("alice"))
        );
        assert_eq!(
            auth_field(&json!({ "user": "u-1", "name": "x" }), "user"),
            Ok(Arc::from("u-1"))
        );
    }

    #[test]
    fn missing_blank_or_wrong_type_is_required() {
        for auth in [
            json!({}),
            json!({ "name": "" }),
            json!({ "name": "   " }),
            json!({ "name": 12 }),
            json!(null),
            json!("alice"),
        ] {
            assert_eq!(
                auth_field(&auth, "name"),
                Err(ConnectError::new("name required")),
                "auth {auth}"
            );
        }
        assert_eq!(
            auth_field(&json!({ "name": "alice" }), "user"),
            Err(ConnectError::new("user required"))
        );
    }

    #[test]
    fn overlong_names_are_invalid() {
        assert_eq!(
            auth_field(&json!({ "user": "u".repeat(65) }), "user"),
            Err(ConnectError::new("invalid user: at most 64 characters"))
        );
    }
}
