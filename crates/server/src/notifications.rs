//! The `/notifications` namespace: each client is a user and sits in the room `user:<user>`,
//! so every tab of a user gets that user's notifications. The user is the token's `sub` with
//! JWT on, else the handshake's `auth.user` (see [`identity`]).
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `notify` | `{ to, text }` | `{ id, delivered }`: the notification's id, and how many of `to`'s sockets on this server were reached; they get `notification` (`kind: "direct"`) |
//! | `inbox` | none | `{ notifications: [...] }`: the user's last 50 notifications, oldest first (the newest that fit in 256 KiB) |
//! | `join`, `leave`, relayed events (`RELAY_EVENTS`, none by default) | see [`crate::rooms`] | |
//!
//! | event (server → client) | data |
//! | --- | --- |
//! | `notification` | `{ id, from, text, time, kind }`; `kind`: `direct` (`notify`), `mention` (a chat message naming the user as `@name`, with `room`), `backend` (`POST /api/v1/notify`) |
//!
//! Every notification is also kept in its user's inbox, the last [`INBOX_SIZE`]: in memory on
//! a lone server, in Redis when clustered (the room history's store, [`History`], under the
//! personal room `user:<user>`), so a client that reconnects reads with `inbox` what it missed
//! and merges by `id`. Bad input is answered with the ack `{ error: message }`.
//!
//! The inboxes have a store of their own ([`History::inboxes`]): in memory bounded by
//! `--inbox-max-bytes` over all users (the least recently written forgotten first), apart from
//! the rooms' history, so notifications to made-up names cost other inboxes, never a room's
//! history. And each socket may cause `--notify-rate` notifications (30), refilled at as
//! many a minute ([`NotifyBudget`]: `notify` and the chat's mentions, each
//! mention counting one): past it `notify` answers
//! `{ error: "too many notifications; try again later" }` and a chat message's mentions are
//! skipped (the message itself is still delivered).
//!
//! With JWT on and `/notifications` public (`--public-namespaces /notifications`), its users
//! are names taken on trust: `inbox` answers `{ error: "the inbox needs a signed-in user" }`,
//! nothing is kept in the inboxes, and a token-protected `/chat` sends no mentions there
//! (`notify` and the backend's notifications are still delivered live).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use switchyard::{Namespace, Room, Socket, SocketIo};

use crate::config::NamespaceSettings;
use crate::history::{History, HistoryError};
use crate::identity;
use crate::input::{self, ack, InputError};
use crate::rooms::{self, RoomRules};
use crate::webhooks::NamespaceHooks;

/// Registers the namespace's middleware and handlers on `io`. `verifier`: how a client's
/// identity is found (a token required, optional in dev mode, or a name taken on trust).
/// `hooks`: the namespace's webhooks, if any; `history`: where room history is kept;
/// `notifier`: what sends notifications and keeps the inboxes.
pub(crate) fn register(
    io: &SocketIo,
    verifier: identity::Verifier,
    settings: &NamespaceSettings,
    hooks: Option<NamespaceHooks>,
    history: Option<History>,
    notifier: &Notifier,
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
    let notifier = notifier.clone();
    notifications.on_connection(move |socket: Socket| {
        let rules = rules.clone();
        let relay = relay.clone();
        let hooks = hooks.clone();
        let notifier = notifier.clone();
        async move {
            if let Some(user) = identity::of(&socket) {
                socket.join(user_room(&user));
            }
            if let Some(hooks) = &hooks {
                hooks.attach(&socket, &rules);
            }
            let notify_with = notifier.clone();
            let budget = Arc::new(notifier.budget());
            socket.on("notify", move |socket: Socket, data: Value| {
                let notifier = notify_with.clone();
                let budget = budget.clone();
                async move {
                    Ok::<_, Infallible>(ack(notify(&socket, &notifier, &budget, &data).await))
                }
            });
            // Any data, or none: the user's inbox.
            socket.on("inbox", move |socket: Socket, _: switchyard::Args| {
                let notifier = notifier.clone();
                async move { Ok::<_, Infallible>(ack(inbox(&socket, &notifier).await)) }
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

/// How many notifications a user's inbox keeps.
pub(crate) const INBOX_SIZE: usize = 50;

/// The default of `--notify-rate`: notifications a socket may cause a minute (`notify`,
/// mentions), and at once.
pub(crate) const DEFAULT_NOTIFY_RATE: u32 = 30;

/// The notifications one socket may cause: a token bucket of `per_minute` notifications,
/// refilled at `per_minute` a minute (`--notify-rate`).
#[derive(Debug)]
pub(crate) struct NotifyBudget {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

impl NotifyBudget {
    /// A full budget of `per_minute`.
    pub(crate) fn new(per_minute: u32) -> NotifyBudget {
        NotifyBudget {
            per_minute,
            state: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    /// Spends one notification now: whether there was one left.
    pub(crate) fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (tokens, last) = &mut *state;
        let elapsed = now.saturating_duration_since(*last);
        let refill = elapsed.as_secs_f64() * f64::from(self.per_minute)
            / Duration::from_secs(60).as_secs_f64();
        *tokens = (*tokens + refill).min(f64::from(self.per_minute));
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A user's `notify`.
    Direct,
    /// A chat message that names the user.
    Mention,
    /// The backend's `POST /api/v1/notify`.
    Backend,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::Mention => "mention",
            Kind::Backend => "backend",
        }
    }
}

/// Why a notification could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("notification not sent: {0}")]
pub(crate) struct NotifyError(String);

/// Sends notifications on `/notifications` and keeps them in the users' inboxes; shared by the
/// namespace, the chat (mentions) and the backend API.
#[derive(Clone)]
pub(crate) struct Notifier {
    namespace: Namespace,
    inbox: History,
    /// Whether `/notifications` takes its users' names on trust while JWT is on (a public
    /// namespace): then nobody's inbox can be read there, nothing is kept in the inboxes, and
    /// mentions from a token-protected `/chat` are not sent there.
    unverified: bool,
    /// Notifications one socket may cause a minute (`--notify-rate`).
    per_minute: u32,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("inbox", &self.inbox)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// The notifier of `io`'s `/notifications`, its inboxes in `history`'s store of inboxes
    /// ([`History::inboxes`]), never with the rooms' history.
    pub(crate) fn new(io: &SocketIo, history: History) -> Notifier {
        Notifier {
            namespace: io.of("/notifications"),
            inbox: history.inboxes(),
            unverified: false,
            per_minute: DEFAULT_NOTIFY_RATE,
        }
    }

    /// This notifier, each socket allowed `per_minute` notifications a minute.
    pub(crate) fn with_rate(mut self, per_minute: u32) -> Notifier {
        self.per_minute = per_minute;
        self
    }

    /// A full budget for a new socket.
    pub(crate) fn budget(&self) -> NotifyBudget {
        NotifyBudget::new(self.per_minute)
    }

    /// This notifier, for a `/notifications` that takes names on trust while JWT is on
    /// (`unverified`): see [`Notifier::verifies_users`].
    pub(crate) fn with_unverified_users(mut self, unverified: bool) -> Notifier {
        self.unverified = unverified;
        self
    }

    /// Whether a `/notifications` user is who it says it is (a verified token, or dev mode,
    /// where nothing is verified anywhere). When not: the `inbox` event is refused, nothing is
    /// kept in the inboxes, and a token-protected namespace sends no mentions.
    pub(crate) fn verifies_users(&self) -> bool {
        !self.unverified
    }

    /// The namespace the notifications go to.
    pub(crate) fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Sends `to` (every socket of the user, on every server) a `notification` of `kind` from
    /// `from` with `text` and the fields of `extra`, and keeps it in the user's inbox: the
    /// notification's id. A store that fails costs the inbox, not the notification.
    pub(crate) async fn send(
        &self,
        to: &str,
        from: &str,
        text: &str,
        kind: Kind,
        extra: Map<String, Value>,
    ) -> Result<String, NotifyError> {
        let id = input::random_id();
        let mut notification = extra;
        notification.insert("id".to_owned(), Value::from(id.as_str()));
        notification.insert("from".to_owned(), Value::from(from));
        notification.insert("text".to_owned(), Value::from(text));
        notification.insert("time".to_owned(), Value::from(input::now_millis()));
        notification.insert("kind".to_owned(), Value::from(kind.as_str()));
        let notification = Value::Object(notification);
        let room = user_room(to);
        // Kept first: a client reading its inbox as it reconnects finds it there or gets it live.
        // Not kept when nobody's inbox can be read (names taken on trust).
        if self.verifies_users() {
            if let Err(error) = self
                .inbox
                .append(self.namespace.name(), &room, INBOX_SIZE, &notification)
                .await
            {
                tracing::warn!(%error, "notification not kept in the inbox");
            }
        }
        self.namespace
            .to(room)
            .emit("notification", notification)
            .map_err(|error| {
                tracing::warn!(%error, "notification not sent");
                NotifyError(error.to_string())
            })?;
        Ok(id)
    }

    /// The last [`INBOX_SIZE`] notifications of `user`, oldest first.
    pub(crate) async fn inbox(&self, user: &str) -> Result<Vec<Value>, HistoryError> {
        self.inbox
            .recent(self.namespace.name(), &user_room(user), INBOX_SIZE)
            .await
    }
}

async fn notify(
    socket: &Socket,
    notifier: &Notifier,
    budget: &NotifyBudget,
    data: &Value,
) -> Result<Value, InputError> {
    let NotifyInput { to, text } = NotifyInput::parse(data)?;
    let from = identity::of(socket).ok_or_else(|| InputError::new("not connected"))?;
    if !budget.take() {
        return Err(InputError::new("too many notifications; try again later"));
    }
    let delivered = rooms::member_count(&socket.namespace(), &user_room(&to));
    let id = notifier
        .send(&to, &from, text, Kind::Direct, Map::new())
        .await
        .map_err(|_| InputError::new("notification not sent"))?;
    Ok(json!({ "id": id, "delivered": delivered }))
}

async fn inbox(socket: &Socket, notifier: &Notifier) -> Result<Value, InputError> {
    let user = identity::of(socket).ok_or_else(|| InputError::new("not connected"))?;
    // With JWT on and `/notifications` public, anyone can say they are anyone.
    if !notifier.verifies_users() {
        return Err(InputError::new("the inbox needs a signed-in user"));
    }
    let notifications = notifier.inbox(&user).await.map_err(|error| {
        tracing::warn!(%error, "inbox not read");
        InputError::new("inbox not available")
    })?;
    // The newest that fit in one answer (one over the outgoing buffer would close the
    // connection).
    Ok(json!({ "notifications": rooms::fitting(notifications) }))
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
    fn a_socket_causes_a_burst_of_notifications_then_one_every_two_seconds() {
        let budget = NotifyBudget::new(DEFAULT_NOTIFY_RATE);
        let start = Instant::now();
        for _ in 0..DEFAULT_NOTIFY_RATE {
            assert!(budget.take_at(start));
        }
        assert!(!budget.take_at(start), "past the burst");
        assert!(!budget.take_at(start + Duration::from_millis(1500)));
        assert!(budget.take_at(start + Duration::from_secs(2)), "one back");
        assert!(!budget.take_at(start + Duration::from_secs(2)));
        // Never more than the burst, however long it rested.
        let later = start + Duration::from_secs(3600);
        for _ in 0..DEFAULT_NOTIFY_RATE {
            assert!(budget.take_at(later));
        }
        assert!(!budget.take_at(later));
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
