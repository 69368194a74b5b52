//! Rooms clients join themselves, shared by both namespaces: who may join what, and the
//! events relayed to a room.
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `join` | room name | `{ room, members }`; refused: `{ error }` (not allowed, too many rooms) |
//! | `leave` | room name | `{ room, members }` (members left) |
//! | a relayed event `E` | `{ room, ... }` | `{ ok: true }`; the room, sender included, gets `E` with the data plus `sender` and `time` |
//!
//! Which rooms a user may join: with JWT on and the namespace not public, the policy of the
//! namespace ([`RoomPolicy`]): the token's `rooms` claim (`*` wildcards) or any room; in dev
//! mode or on a public namespace, any room.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::{Namespace, Room, Socket};

use crate::config::RoomPolicy;
use crate::identity;
use crate::input::{self, ack, InputError};

/// How a namespace treats rooms.
pub(crate) struct RoomRules {
    /// The prefix of the adapter rooms behind client rooms (`chat:`), which keeps them apart
    /// from socket-id rooms (no `:`) and from personal rooms (`user:`).
    pub prefix: &'static str,
    /// Which rooms a user may join; `None`: any (dev mode, public namespace).
    pub policy: Option<RoomPolicy>,
}

impl RoomRules {
    /// The adapter room of client room `room`.
    pub(crate) fn key(&self, room: &str) -> Room {
        Room::from(format!("{}{room}", self.prefix))
    }

    /// Whether `socket` may join `room`.
    fn may_join(&self, socket: &Socket, room: &str) -> Result<(), InputError> {
        match self.policy {
            None | Some(RoomPolicy::Open) => Ok(()),
            Some(RoomPolicy::Claim) => {
                let allowed =
                    switchyard_auth::claims(socket).is_some_and(|claims| claims.may_join(room));
                if allowed {
                    Ok(())
                } else {
                    Err(InputError::new(format!("not allowed to join room {room}")))
                }
            }
        }
    }

    /// Whether a recovered `socket` gets back the kept room `key`: a client room its token
    /// still allows, or its own personal room; a resuming client that authenticated as someone
    /// else gets neither the other's rooms nor what was sent to them.
    pub(crate) fn may_keep(&self, socket: &Socket, key: &Room) -> bool {
        if let Some(room) = key.strip_prefix(self.prefix) {
            return self.may_join(socket, room).is_ok();
        }
        identity::of(socket).is_some_and(|user| **key == *crate::notifications::user_room(&user))
    }

    /// The sender of `socket`'s events.
    pub(crate) fn sender(&self, socket: &Socket) -> Result<Arc<str>, InputError> {
        // The middleware stored it; it is gone only once the socket is closed.
        identity::of(socket).ok_or_else(|| InputError::new("not connected"))
    }
}

/// Makes recovered sockets of `namespace` keep only the rooms `rules` still allow them.
pub(crate) fn guard_recovery(namespace: &Namespace, rules: &Arc<RoomRules>) {
    let rules = rules.clone();
    namespace
        .filter_recovered_rooms(move |socket: &Socket, key: &Room| rules.may_keep(socket, key));
}

/// Registers `join`, `leave` and the relayed events on a connected socket. `message` and
/// `typing` are not handled here (the chat has its own).
pub(crate) fn register(socket: &Socket, rules: &Arc<RoomRules>, relay: &[String]) {
    let join_rules = rules.clone();
    socket.on("join", move |socket: Socket, data: Value| {
        let rules = join_rules.clone();
        async move { Ok::<_, Infallible>(ack(join(&socket, &rules, &data))) }
    });
    let leave_rules = rules.clone();
    socket.on("leave", move |socket: Socket, data: Value| {
        let rules = leave_rules.clone();
        async move { Ok::<_, Infallible>(ack(leave(&socket, &rules, &data))) }
    });
    for event in relay {
        let rules = rules.clone();
        let name = event.clone();
        socket.on(event.as_str(), move |socket: Socket, data: Value| {
            let rules = rules.clone();
            let name = name.clone();
            async move { Ok::<_, Infallible>(ack(relay_event(&socket, &rules, &name, &data))) }
        });
    }
}

/// Whether `socket` is in adapter room `key`.
pub(crate) fn is_member(socket: &Socket, key: &Room) -> bool {
    socket.rooms().iter().any(|room| room == key)
}

/// How many of this server's sockets are in `key`.
pub(crate) fn member_count(namespace: &Namespace, key: &Room) -> usize {
    let mut count = 0;
    namespace
        .adapter()
        .for_each_in_room(key, &mut |_| count += 1);
    count
}

/// The room of a relayed event's `{ room, ... }`, which the socket must be in.
pub(crate) fn member_room<'a>(
    socket: &Socket,
    rules: &RoomRules,
    data: &'a Value,
    shape: &str,
) -> Result<(&'a str, Room), InputError> {
    let object = input::object(data, shape)?;
    let room = input::room(object.get("room").unwrap_or(&Value::Null))?;
    let key = rules.key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    Ok((room, key))
}

fn join(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = rules.key(room);
    if !is_member(socket, &key) {
        rules.may_join(socket, room)?;
        socket
            .try_join(key.clone())
            .map_err(|error| InputError::new(error.to_string()))?;
    }
    let members = member_count(&socket.namespace(), &key);
    Ok(json!({ "room": room, "members": members }))
}

fn leave(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = rules.key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    socket.leave(key.clone());
    let members = member_count(&socket.namespace(), &key);
    Ok(json!({ "room": room, "members": members }))
}

/// Relays `event` to the room named in the data, with `sender` and `time` set by the server.
fn relay_event(
    socket: &Socket,
    rules: &RoomRules,
    event: &str,
    data: &Value,
) -> Result<Value, InputError> {
    let (_, key) = member_room(socket, rules, data, "{ room, ... }")?;
    let sender = rules.sender(socket)?;
    let mut out = data.as_object().cloned().unwrap_or_default();
    out.insert("sender".to_owned(), Value::from(&*sender));
    out.insert("time".to_owned(), Value::from(input::now_millis()));
    socket
        .namespace()
        .to(key)
        .emit(event, Value::Object(out))
        .map_err(|error| {
            tracing::warn!(%error, event, "relayed event not sent");
            InputError::new(format!("{event} not sent"))
        })?;
    Ok(json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keys_are_prefixed() {
        let rules = RoomRules {
            prefix: "chat:",
            policy: None,
        };
        assert_eq!(&*rules.key("general"), "chat:general");
    }
}
