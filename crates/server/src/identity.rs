//! Who a client is. The namespaces call these functions from their connect middleware, and
//! nothing else reads the handshake for identity.
//!
//! With JWT on (and the namespace not public), the identity is the verified token's `sub`
//! ([`from_claims`]), put there by `switchyard-auth`'s middleware. Without it (dev mode, or a
//! public namespace), it is the name the client gives in its auth payload, taken on trust.

use std::sync::Arc;

use serde_json::Value;
use switchyard::{ConnectError, Handshake, Socket};
use switchyard_auth::{AuthError, Reason, UNAUTHORIZED};

use crate::input;

/// The display name of a `/chat` client, kept as socket data by the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatName(pub Arc<str>);

/// The user id of a `/notifications` client, kept as socket data by the middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(pub Arc<str>);

/// The `/chat` display name: the handshake's `auth.name`, trimmed. A missing or blank name
/// is refused with `name required`.
pub fn chat_name(handshake: &Handshake) -> Result<ChatName, ConnectError> {
    auth_field(&handshake.auth, "name").map(ChatName)
}

/// The `/notifications` user: the handshake's `auth.user`, trimmed, taken on trust (the demo
/// has no accounts). A missing or blank user is refused with `user required`.
pub fn notification_user(handshake: &Handshake) -> Result<UserId, ConnectError> {
    auth_field(&handshake.auth, "user").map(UserId)
}

/// The verified token's `sub`, as kept by the JWT middleware (which runs first). A `sub` that
/// is not a valid name (see [`input::name`]) is refused as `unauthorized`, reason `malformed`.
pub fn from_claims(socket: &Socket) -> Result<Arc<str>, ConnectError> {
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
