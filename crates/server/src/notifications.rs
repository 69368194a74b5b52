//! The `/notifications` namespace: each client is a user and sits in the room `user:<user>`,
//! so every tab of a user gets that user's notifications. The user is the token's `sub` with
//! JWT on, else the handshake's `auth.user` (see [`identity`]).
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `notify` | `{ to, text }` | `{ delivered }`: how many of `to`'s sockets on this server were reached; they get `notification` `{ from, text, time }` |
//! | `join`, `leave`, relayed events (`RELAY_EVENTS`, none by default) | see [`crate::rooms`] | |
//!
//! Bad input is answered with the ack `{ error: message }`.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::{Room, Socket, SocketIo};

use crate::config::NamespaceSettings;
use crate::history::History;
use crate::identity;
use crate::input::{self, ack, InputError};
use crate::rooms::{self, RoomRules};
use crate::webhooks::NamespaceHooks;

/// Registers the namespace's middleware and handlers on `io`. `verifier`: how a client's
/// identity is found (a token required, optional in dev mode, or a name taken on trust).
/// `hooks`: the namespace's webhooks, if any; `history`: where room history is kept.
pub(crate) fn register(
    io: &SocketIo,
    verifier: identity::Verifier,
    settings: &NamespaceSettings,
    hooks: Option<NamespaceHooks>,
    history: Option<History>,
) {
    let notifications = io.of("/notifications");
    let with_token = verifier.requires_token();
    identity::install(&notifications, verifier, "user");
    if let Some(hooks) = &hooks {
        hooks.install(&notifications);
    }
    // Apart from the personal rooms `user:<user>`, which no client can join.
    let rules = Arc::new(RoomRules::new("room:", with_token, settings, history));
    rooms::guard_recovery(&notifications, &rules);
    let relay: Arc<[String]> = settings.relay.iter().cloned().collect();
    // Rooms are joined once connected (a refused socket must leave nothing behind); this runs
    // before the client learns it is connected, so no notification can be missed.
    notifications.on_connection(move |socket: Socket| {
        let rules = rules.clone();
        let relay = relay.clone();
        let hooks = hooks.clone();
        async move {
            if let Some(user) = identity::of(&socket) {
                socket.join(user_room(&user));
            }
            if let Some(hooks) = &hooks {
                hooks.attach(&socket, &rules);
            }
            socket.on("notify", |socket: Socket, data: Value| async move {
                Ok::<_, Infallible>(ack(notify(&socket, &data)))
            });
            rooms::register(&socket, &rules, &relay);
        }
    });
}

/// The prefix of the personal rooms.
pub(crate) const USER_ROOM_PREFIX: &str = "user:";

/// The user a socket in `rooms` belongs to: the one of its personal room.
pub(crate) fn user_of(rooms: &[Room]) -> Option<&str> {
    rooms
        .iter()
        .find_map(|room| room.strip_prefix(USER_ROOM_PREFIX))
}

/// The room every socket of `user` is in.
pub(crate) fn user_room(user: &str) -> Room {
    Room::from(format!("{USER_ROOM_PREFIX}{user}"))
}

/// A parsed `notify` event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NotifyInput<'a> {
    /// The user to notify (trimmed).
    pub to: String,
    /// The text.
    pub text: &'a str,
}

impl<'a> NotifyInput<'a> {
    /// Reads and validates `{ to, text }`.
    pub(crate) fn parse(data: &'a Value) -> Result<NotifyInput<'a>, InputError> {
        let object = input::object(data, "{ to, text }")?;
        let to = match input::name(object.get("to")) {
            Ok(Some(to)) => to,
            Ok(None) => return Err(InputError::new("to must be a user id")),
            Err(error) => return Err(InputError::new(format!("to: {error}"))),
        };
        let text = input::text(object.get("text").unwrap_or(&Value::Null))?;
        Ok(NotifyInput { to, text })
    }
}

fn notify(socket: &Socket, data: &Value) -> Result<Value, InputError> {
    let NotifyInput { to, text } = NotifyInput::parse(data)?;
    let from = identity::of(socket).ok_or_else(|| InputError::new("not connected"))?;
    let room = user_room(&to);
    let namespace = socket.namespace();
    let mut delivered = 0usize;
    namespace
        .adapter()
        .for_each_in_room(&room, &mut |_| delivered += 1);
    let notification = json!({ "from": &*from, "text": text, "time": input::now_millis() });
    namespace
        .to(room)
        .emit("notification", notification)
        .map_err(|error| {
            tracing::warn!(%error, "notification not sent");
            InputError::new("notification not sent")
        })?;
    Ok(json!({ "delivered": delivered }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error<T: std::fmt::Debug>(result: Result<T, InputError>) -> String {
        match result {
            Err(error) => error.0,
            Ok(value) => panic!("expected an error, got {value:?}"),
        }
    }

    #[test]
    fn user_rooms_are_prefixed() {
        assert_eq!(&*user_room("bob"), "user:bob");
    }

    #[test]
    fn notify_reads_a_trimmed_recipient_and_the_text() {
        let data = json!({ "to": " bob ", "text": "ping" });
        assert_eq!(
            NotifyInput::parse(&data),
            Ok(NotifyInput {
                to: "bob".to_owned(),
                text: "ping"
            })
        );
    }

    #[test]
    fn bad_notifications_say_what_is_wrong() {
        assert_eq!(
            error(NotifyInput::parse(&json!([]))),
            "expected an object { to, text }"
        );
        assert_eq!(
            error(NotifyInput::parse(&json!({ "to": "", "text": "t" }))),
            "to must be a user id"
        );
        assert_eq!(
            error(NotifyInput::parse(&json!({ "to": 5, "text": "t" }))),
            "to must be a user id"
        );
        assert_eq!(
            error(NotifyInput::parse(
                &json!({ "to": "u".repeat(65), "text": "t" })
            )),
            "to: at most 64 characters"
        );
        assert_eq!(
            error(NotifyInput::parse(&json!({ "to": "bob", "text": " " }))),
            "text must not be blank"
        );
        assert_eq!(
            error(NotifyInput::parse(
                &json!({ "to": "bob", "text": "x".repeat(2001) })
            )),
            "text must be 1 to 2000 characters"
        );
    }
}
