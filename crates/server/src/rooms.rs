//! Rooms clients join themselves, shared by both namespaces: who may join what, and the
//! events relayed to a room.
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `join` | room name | `{ room, members }`, with presence `users`, `online` (the same distinct users) and `userCount`, with history `history`; refused: `{ error }` (not allowed, too many rooms) |
//! | `leave` | room name | `{ room, members }` (members left) |
//! | a relayed event `E` | `{ room, ... }` | `{ ok: true }`; the room, sender included, gets `E` with the data plus `sender` and `time` |
//!
//! Which rooms a user may join: with JWT on and the namespace not public, the policy of the
//! namespace ([`RoomPolicy`]): the token's `rooms` claim (`*` wildcards) or any room; in dev
//! mode or on a public namespace, any room.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::{DisconnectReason, Namespace, Room, Socket};

use crate::config::{NamespaceSettings, RoomPolicy};
use crate::history::History;
use crate::identity;
use crate::input::{self, ack, InputError};
use crate::presence;

/// How a namespace treats rooms.
pub(crate) struct RoomRules {
    /// The prefix of the adapter rooms behind client rooms (`chat:`), which keeps them apart
    /// from socket-id rooms (no `:`) and from personal rooms (`user:`).
    pub prefix: &'static str,
    /// Which rooms a user may join; `None`: any (dev mode, public namespace).
    pub policy: Option<RoomPolicy>,
    /// Whether rooms announce their users ([`presence`]).
    pub presence: bool,
    /// The rooms' history, when they keep one.
    pub history: Option<RoomHistory>,
}

/// Where a namespace's rooms keep their last messages, and how many.
#[derive(Debug, Clone)]
pub(crate) struct RoomHistory {
    /// The store.
    pub store: History,
    /// Messages kept per room (more than 0).
    pub keep: usize,
}

impl RoomRules {
    /// The rules of a namespace whose client rooms are under `prefix`, with `settings`;
    /// `with_token`: JWT is on there (else any room may be joined); `history`: the store, used
    /// when the namespace keeps history.
    pub(crate) fn new(
        prefix: &'static str,
        with_token: bool,
        settings: &NamespaceSettings,
        history: Option<History>,
    ) -> RoomRules {
        RoomRules {
            prefix,
            policy: with_token.then_some(settings.rooms),
            presence: settings.presence,
            history: history
                .filter(|_| settings.history > 0)
                .map(|store| RoomHistory {
                    store,
                    keep: settings.history,
                }),
        }
    }

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

/// Registers `join`, `leave`, `presence`, `history` and the relayed events on a connected
/// socket, and its departure from the rooms' presence. `message` and `typing` are not handled
/// here (the chat has its own).
pub(crate) fn register(socket: &Socket, rules: &Arc<RoomRules>, relay: &[String]) {
    socket.insert_data(Lookups::default());
    let join_rules = rules.clone();
    socket.on("join", move |socket: Socket, data: Value| {
        let rules = join_rules.clone();
        async move { Ok::<_, Infallible>(ack(join(&socket, &rules, &data).await)) }
    });
    let leave_rules = rules.clone();
    socket.on("leave", move |socket: Socket, data: Value| {
        let rules = leave_rules.clone();
        async move { Ok::<_, Infallible>(ack(leave(&socket, &rules, &data).await)) }
    });
    if rules.presence {
        let presence_rules = rules.clone();
        socket.on("presence", move |socket: Socket, data: Value| {
            let rules = presence_rules.clone();
            async move { Ok::<_, Infallible>(ack(who(&socket, &rules, &data).await)) }
        });
        let departure_rules = rules.clone();
        socket.on_disconnect(move |socket: Socket, reason: DisconnectReason| {
            // A broken connection that may come back with its rooms (recovery) is not a
            // departure: its user is not announced gone, nor back when it recovers.
            let leaving = !(reason.is_recoverable() && socket.namespace().recovery());
            // Read now: the socket leaves its rooms as soon as the disconnect handlers ran.
            let user = identity::of(&socket).filter(|_| leaving);
            let rooms: Vec<Room> = socket
                .rooms()
                .into_iter()
                .filter(|key| key.starts_with(departure_rules.prefix))
                .collect();
            let rules = departure_rules.clone();
            async move {
                if let Some(user) = user {
                    for key in rooms {
                        announce_if_gone(&socket, &rules, &key, &user).await;
                    }
                }
            }
        });
    }
    if let Some(history) = rules.history.clone() {
        let history_rules = rules.clone();
        socket.on("history", move |socket: Socket, data: Value| {
            let (rules, history) = (history_rules.clone(), history.clone());
            async move { Ok::<_, Infallible>(ack(read_history(&socket, &rules, &history, &data).await)) }
        });
    }
    for event in relay {
        let rules = rules.clone();
        let name = event.clone();
        socket.on(event.clone(), move |socket: Socket, data: Value| {
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

/// Room lookups (the users of a room, its history) one socket may have in flight; past it,
/// `join`, `presence` and `history` answer `{ error }` at once.
pub(crate) const MAX_LOOKUPS_IN_FLIGHT: usize = 4;

/// The most bytes of history a join or `history` answer carries: the newest messages that fit
/// (an answer over the outgoing buffer would close the connection).
pub(crate) const MAX_HISTORY_ANSWER_BYTES: usize = 256 * 1024;

/// A socket's room lookups in flight.
#[derive(Debug, Clone, Default)]
struct Lookups(Arc<AtomicUsize>);

/// One lookup in flight, given back when dropped, on every path.
struct Lookup(Arc<AtomicUsize>);

impl Drop for Lookup {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one of `socket`'s lookups, or says it has too many in flight.
fn lookup(socket: &Socket) -> Result<Option<Lookup>, InputError> {
    let Some(Lookups(count)) = socket.data::<Lookups>() else {
        // Only on a closed socket: nothing to bound.
        return Ok(None);
    };
    take(count).map(Some)
}

fn take(count: Arc<AtomicUsize>) -> Result<Lookup, InputError> {
    if count.fetch_add(1, Ordering::AcqRel) >= MAX_LOOKUPS_IN_FLIGHT {
        count.fetch_sub(1, Ordering::AcqRel);
        return Err(InputError::new("too many room requests in flight"));
    }
    Ok(Lookup(count))
}

/// The newest of `messages` that fit in [`MAX_HISTORY_ANSWER_BYTES`], oldest first.
pub(crate) fn fitting(mut messages: Vec<Value>) -> Vec<Value> {
    let mut bytes = 0;
    let mut keep = 0;
    for message in messages.iter().rev() {
        bytes += message.to_string().len();
        if bytes > MAX_HISTORY_ANSWER_BYTES {
            break;
        }
        keep += 1;
    }
    messages.split_off(messages.len() - keep)
}

async fn join(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = rules.key(room);
    let _lookup = if rules.presence || rules.history.is_some() {
        lookup(socket)?
    } else {
        None
    };
    let arrived = !is_member(socket, &key);
    if arrived {
        rules.may_join(socket, room)?;
        socket
            .try_join(key.clone())
            .map_err(|error| InputError::new(error.to_string()))?;
    }
    let namespace = socket.namespace();
    let members = member_count(&namespace, &key);
    let mut answer = json!({ "room": room, "members": members });
    if rules.presence {
        // Announced once per user: when this is its only socket in the room.
        if let Some(user) = identity::of(socket).filter(|_| arrived) {
            match presence::sockets_of_user_in(&namespace, &user, &key, None).await {
                Ok(1) => presence::announce(&namespace, &key, room, &user, true),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, room, "presence of the user not read"),
            }
        }
        match presence::occupants(&namespace, &key, None).await {
            Ok(occupants) => {
                let names = presence::names(&occupants);
                // `online`: the app's name for the same list (distinct users, sorted).
                answer["online"] = names.clone();
                answer["users"] = names;
                answer["userCount"] = Value::from(occupants.len());
            }
            Err(error) => tracing::warn!(%error, room, "presence of the room not read"),
        }
    }
    if let Some(history) = &rules.history {
        match history
            .store
            .recent(namespace.name(), &key, history.keep)
            .await
        {
            Ok(messages) => answer["history"] = Value::Array(fitting(messages)),
            Err(error) => tracing::warn!(%error, room, "history of the room not read"),
        }
    }
    Ok(answer)
}

async fn leave(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = rules.key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    socket.leave(key.clone());
    let members = member_count(&socket.namespace(), &key);
    if rules.presence {
        if let Some(user) = identity::of(socket) {
            announce_if_gone(socket, rules, &key, &user).await;
        }
    }
    Ok(json!({ "room": room, "members": members }))
}

/// Tells room `key` that `user` left, unless another of its sockets is still there. `socket`,
/// the one leaving, is not counted even if the adapter still has it in the room.
async fn announce_if_gone(socket: &Socket, rules: &RoomRules, key: &Room, user: &str) {
    let namespace = socket.namespace();
    let room = key.strip_prefix(rules.prefix).unwrap_or(key);
    match presence::sockets_of_user_in(&namespace, user, key, Some(&**socket.id())).await {
        Ok(0) => presence::announce(&namespace, key, room, user, false),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, room, "presence of the user not read"),
    }
}

/// The room named by `data` (a room name), which the socket must be in.
fn joined_room<'a>(
    socket: &Socket,
    rules: &RoomRules,
    data: &'a Value,
) -> Result<(&'a str, Room), InputError> {
    let room = input::room(data)?;
    let key = rules.key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    Ok((room, key))
}

/// `presence`: the users of a room the socket is in.
async fn who(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let (room, key) = joined_room(socket, rules, data)?;
    let _lookup = lookup(socket)?;
    let occupants = presence::occupants(&socket.namespace(), &key, None)
        .await
        .map_err(|error| {
            tracing::warn!(%error, room, "presence of the room not read");
            InputError::new("presence not available")
        })?;
    Ok(json!({
        "room": room,
        "users": presence::names(&occupants),
        "userCount": occupants.len(),
    }))
}

/// `history`: the last messages of a room the socket is in.
async fn read_history(
    socket: &Socket,
    rules: &RoomRules,
    history: &RoomHistory,
    data: &Value,
) -> Result<Value, InputError> {
    let (room, key) = joined_room(socket, rules, data)?;
    let _lookup = lookup(socket)?;
    let messages = history
        .store
        .recent(socket.namespace().name(), &key, history.keep)
        .await
        .map_err(|error| {
            tracing::warn!(%error, room, "history of the room not read");
            InputError::new("history not available")
        })?;
    Ok(json!({ "room": room, "messages": fitting(messages) }))
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
    fn lookups_in_flight_are_bounded_and_given_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let taken: Vec<Lookup> = (0..MAX_LOOKUPS_IN_FLIGHT)
            .map(|_| take(count.clone()).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(
            take(count.clone()).err(),
            Some(InputError::new("too many room requests in flight"))
        );
        assert_eq!(count.load(Ordering::Acquire), MAX_LOOKUPS_IN_FLIGHT);
        drop(taken);
        assert_eq!(count.load(Ordering::Acquire), 0);
        assert!(take(count).is_ok());
    }

    #[test]
    fn history_answers_keep_the_newest_messages_that_fit() {
        let message = |n: usize| json!({ "n": n, "text": "x".repeat(10_000) });
        let messages: Vec<Value> = (0..100).map(message).collect();
        let kept = fitting(messages);
        let bytes: usize = kept.iter().map(|m| m.to_string().len()).sum();
        assert!(bytes <= MAX_HISTORY_ANSWER_BYTES);
        assert_eq!(
            kept.len(),
            MAX_HISTORY_ANSWER_BYTES / message(0).to_string().len()
        );
        assert_eq!(kept.last(), Some(&message(99)), "the newest is kept");
        assert!(kept
            .windows(2)
            .all(|pair| pair[0]["n"].as_u64() < pair[1]["n"].as_u64()));
        let few: Vec<Value> = (0..3).map(|n| json!(n)).collect();
        assert_eq!(fitting(few.clone()), few);
    }

    #[test]
    fn room_keys_are_prefixed() {
        let rules = RoomRules {
            prefix: "chat:",
            policy: None,
            presence: false,
            history: None,
        };
        assert_eq!(&*rules.key("general"), "chat:general");
    }
}
