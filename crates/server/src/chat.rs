//! The `/chat` namespace: named clients, rooms, messages and typing indicators.
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `join` | room name | `{ room, members }`, with presence on (the default) `users`, `userCount` and `online` (the users with a socket in the room, each once), with history `history`; a refused join: `{ error }` |
//! | `leave` | room name | `{ room, members }` (members left) |
//! | `message` | `{ room, text }` | `{ ok: true }`; the room gets `message` `{ id, room, sender, text, time }` (`id` unique, the same in history) |
//! | `typing` | `{ room }` | `{ ok: true }`; the rest of the room gets `typing` `{ room, sender }` (volatile) |
//! | other relayed events (`RELAY_EVENTS`) | `{ room, ... }` | `{ ok: true }`; see [`crate::rooms`] |
//!
//! The sender is the token's `sub` with JWT on, else the handshake's `auth.name`. With JWT on,
//! each socket is also in its personal room `user:<sub>`. `message` and `typing` are handled
//! only when listed in the namespace's relayed events (the default). Bad input is answered with
//! the ack `{ error: message }`.
//!
//! A message that names users as `@name` ([`mentions`]: at most 5 distinct, not the sender)
//! sends each a `notification` on `/notifications`, `kind: "mention"`, with `room`, `from` (the
//! sender) and `text` (the message), kept in their inboxes. Not when this namespace needs a
//! token and `/notifications` is public (its users are names taken on trust). Each mention
//! spends one of the socket's notifications ([`NotifyBudget`]): past the budget a message's
//! mentions are skipped, the message itself still delivered. They are sent after the ack, on a
//! task of their own.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use switchyard::{Socket, SocketIo};

use crate::config::NamespaceSettings;
use crate::history::History;
use crate::identity;
use crate::input::{self, ack, InputError};
use crate::notifications::{user_room, Kind, Notifier, NotifyBudget};
use crate::rooms::{self, RoomRules};
use crate::webhooks::NamespaceHooks;

/// Registers the namespace's middleware and handlers on `io`. `verifier`: how a client's
/// identity is found (a token required, optional in dev mode, or a name taken on trust).
/// `hooks`: the namespace's webhooks, if any; `history`: where room history is kept.
/// `notifier`: where mentions go (none: mentions are not notified).
pub(crate) fn register(
    io: &SocketIo,
    verifier: identity::Verifier,
    settings: &NamespaceSettings,
    hooks: Option<NamespaceHooks>,
    history: Option<History>,
    notifier: Option<Notifier>,
) {
    let chat = io.of("/chat");
    let with_token = verifier.requires_token();
    identity::install(&chat, verifier, "name");
    if let Some(hooks) = &hooks {
        hooks.install(&chat);
    }
    // The prefix keeps chat rooms apart from the rooms named by socket ids (which never contain
    // `:`) and from personal rooms (`user:`), so no one can join another's private room.
    let rules = Arc::new(RoomRules::new(CHAT_PREFIX, with_token, settings, history));
    rooms::guard_recovery(&chat, &rules);
    // A token-protected chat does not hand its messages to users who merely claim a name.
    let notifier = notifier.filter(|notifier| !with_token || notifier.verifies_users());
    let relay: Arc<[String]> = settings.relay.iter().cloned().collect();
    chat.on_connection(move |socket: Socket| {
        let rules = rules.clone();
        let relay = relay.clone();
        let hooks = hooks.clone();
        let notifier = notifier.clone();
        let budget = Arc::new(
            notifier
                .as_ref()
                .map_or(NotifyBudget::new(0), Notifier::budget),
        );
        async move {
            // The personal room tells who the socket is to the adapter, and so to presence
            // and the API, on every server.
            if let Some(user) = identity::of(&socket) {
                socket.join(user_room(&user));
            }
            if let Some(hooks) = &hooks {
                hooks.attach(&socket, &rules);
            }
            let others: Vec<String> = relay
                .iter()
                .filter(|event| !matches!(event.as_str(), "message" | "typing"))
                .cloned()
                .collect();
            rooms::register(&socket, &rules, &others);
            if relay.iter().any(|event| event == "message") {
                let rules = rules.clone();
                socket.on("message", move |socket: Socket, data: Value| {
                    let rules = rules.clone();
                    let notifier = notifier.clone();
                    let budget = budget.clone();
                    async move {
                        Ok::<_, Infallible>(ack(message(
                            &socket,
                            &rules,
                            notifier.as_ref(),
                            &budget,
                            &data,
                        )
                        .await))
                    }
                });
            }
            if relay.iter().any(|event| event == "typing") {
                let rules = rules.clone();
                socket.on("typing", move |socket: Socket, data: Value| {
                    let rules = rules.clone();
                    async move { Ok::<_, Infallible>(ack(typing(&socket, &rules, &data))) }
                });
            }
        }
    });
}

/// The prefix of the adapter rooms behind chat rooms.
pub(crate) const CHAT_PREFIX: &str = "chat:";

/// A parsed `message` event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct MessageInput<'a> {
    /// The room.
    pub room: &'a str,
    /// The text.
    pub text: &'a str,
}

impl<'a> MessageInput<'a> {
    /// Reads and validates `{ room, text }`.
    pub(crate) fn parse(data: &'a Value) -> Result<MessageInput<'a>, InputError> {
        let object = input::object(data, "{ room, text }")?;
        let room = input::room(object.get("room").unwrap_or(&Value::Null))?;
        let text = input::text(object.get("text").unwrap_or(&Value::Null))?;
        Ok(MessageInput { room, text })
    }
}

/// Reads and validates `typing`'s `{ room }`.
pub(crate) fn parse_typing(data: &Value) -> Result<&str, InputError> {
    let object = input::object(data, "{ room }")?;
    input::room(object.get("room").unwrap_or(&Value::Null))
}

/// The most distinct users one message notifies by mentioning them.
pub(crate) const MAX_MENTIONS: usize = 5;

/// The users `text` mentions as `@name` (an `@` at the start or after whitespace, the name up
/// to the next whitespace, without trailing punctuation; a valid name, see [`input::name`]),
/// distinct, in order, [`MAX_MENTIONS`] at most, `sender` left out.
pub(crate) fn mentions(text: &str, sender: &str) -> Vec<String> {
    let mut users: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let Some(name) = word.strip_prefix('@') else {
            continue;
        };
        let name =
            name.trim_end_matches(|c: char| c.is_ascii_punctuation() && c != '_' && c != '-');
        let Ok(Some(name)) = input::name(Some(&Value::from(name))) else {
            continue;
        };
        if name != sender && !users.contains(&name) {
            users.push(name);
            if users.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    users
}

async fn message(
    socket: &Socket,
    rules: &RoomRules,
    notifier: Option<&Notifier>,
    budget: &NotifyBudget,
    data: &Value,
) -> Result<Value, InputError> {
    let MessageInput { room, text } = MessageInput::parse(data)?;
    let key = rules.key(room);
    if !rooms::is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    let sender = rules.sender(socket)?;
    let message = json!({
        "id": input::random_id(),
        "room": room,
        "sender": &*sender,
        "text": text,
        "time": input::now_millis(),
    });
    // The namespace's broadcast, not the socket's: the sender gets its own message too.
    let namespace = socket.namespace();
    namespace
        .to(key.clone())
        .emit("message", &message)
        .map_err(|error| {
            tracing::warn!(%error, "chat message not sent");
            InputError::new("message not sent")
        })?;
    if let Some(history) = &rules.history {
        // Delivered already: a store that fails costs the history, not the message.
        if let Err(error) = history
            .store
            .append(namespace.name(), &key, history.keep, &message)
            .await
        {
            tracing::warn!(%error, room, "message not kept in the room's history");
        }
    }
    if let Some(notifier) = notifier {
        let named = mentions(text, &sender);
        let count = named.len();
        // Each spends one of the socket's notifications; past the budget, the rest are skipped.
        let users: Vec<String> = named.into_iter().take_while(|_| budget.take()).collect();
        if users.len() < count {
            tracing::debug!(
                room,
                skipped = count - users.len(),
                "mentions over the socket's budget skipped"
            );
        }
        if !users.is_empty() {
            // Sent without holding the ack; bounded by the budget (5 sends a task at most).
            let notifier = notifier.clone();
            let (sender, text, room) = (sender.to_string(), text.to_owned(), room.to_owned());
            tokio::spawn(async move {
                for user in users {
                    let mut extra = serde_json::Map::new();
                    extra.insert("room".to_owned(), Value::from(room.as_str()));
                    // Sent already: a mention that fails costs the notification, not the message.
                    if let Err(error) = notifier
                        .send(&user, &sender, &text, Kind::Mention, extra)
                        .await
                    {
                        tracing::warn!(%error, room, "mention not notified");
                    }
                }
            });
        }
    }
    Ok(json!({ "ok": true }))
}

fn typing(socket: &Socket, rules: &RoomRules, data: &Value) -> Result<Value, InputError> {
    let room = parse_typing(data)?;
    let key = rules.key(room);
    if !rooms::is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    let sender = rules.sender(socket)?;
    socket
        .to(key)
        .volatile()
        .emit("typing", json!({ "room": room, "sender": &*sender }))
        .map_err(|error| {
            tracing::warn!(%error, "typing indicator not sent");
            InputError::new("typing not sent")
        })?;
    Ok(json!({ "ok": true }))
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
    fn room_keys_cannot_be_socket_ids() {
        // Socket ids are base64url: never a colon.
        assert_eq!(CHAT_PREFIX, "chat:");
    }

    #[test]
    fn messages_parse_room_and_text() {
        let data = json!({ "room": "general", "text": "hello", "extra": 1 });
        assert_eq!(
            MessageInput::parse(&data),
            Ok(MessageInput {
                room: "general",
                text: "hello"
            })
        );
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        assert_eq!(
            error(MessageInput::parse(&json!("hello"))),
            "expected an object { room, text }"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "text": "hello" }))),
            "room must be a string"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "room": "r" }))),
            "text must be a string"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "room": "r", "text": "" }))),
            "text must be 1 to 2000 characters"
        );
        assert_eq!(
            error(MessageInput::parse(
                &json!({ "room": "r".repeat(65), "text": "t" })
            )),
            "room must be 1 to 64 characters"
        );
    }

    #[test]
    fn mentions_are_distinct_valid_names_five_at_most_without_the_sender() {
        assert_eq!(
            mentions("@bob, hi @carol! @bob @alice mail@example.com @ @", "alice"),
            ["bob", "carol"]
        );
        assert_eq!(
            mentions("@a @b @c @d @e @f", "z"),
            ["a", "b", "c", "d", "e"]
        );
        assert_eq!(
            mentions("@under_score @dash-ed.", "z"),
            ["under_score", "dash-ed"]
        );
        let long = format!("@{}", "n".repeat(65));
        assert!(mentions(&long, "z").is_empty());
    }

    #[test]
    fn typing_reads_the_room() {
        assert_eq!(parse_typing(&json!({ "room": "general" })), Ok("general"));
        assert_eq!(
            error(parse_typing(&json!(null))),
            "expected an object { room }"
        );
        assert_eq!(
            error(parse_typing(&json!({ "room": "" }))),
            "room must be 1 to 64 characters"
        );
    }
}
