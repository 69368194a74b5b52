//! What the application's backend may do, whatever it speaks: the operations behind the HTTP
//! API ([`crate::api`]) and the gRPC one ([`crate::grpc`]), and the check of their API keys.
//! Each transport reads its requests into these types and writes the results its own way, so
//! both do exactly the same thing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, Digest, SHA256};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;
use switchyard::engineio::LogBudget;
use switchyard::proto::RESERVED_EVENTS;
use switchyard::{Args, Binary, BroadcastOperator, Namespace, Room, SocketIo};
use tracing::warn;

use crate::history::History;
use crate::input;
use crate::notifications::{user_of, user_room, Kind, Notifier};
use crate::presence;

/// The most messages one history call returns.
pub(crate) const MAX_HISTORY_LIMIT: usize = 1000;

/// How many messages a history call returns when it does not say.
const DEFAULT_HISTORY_LIMIT: usize = 50;

/// Refused keys logged per second at most; the rest are counted in the next line.
const REFUSAL_LOG_LINES_PER_SECOND: u32 = 5;

/// Why a call was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The request does not fit the call.
    #[error("{0}")]
    Invalid(String),
    /// It names what does not exist (a namespace).
    #[error("{0}")]
    NotFound(String),
    /// The cluster did not answer.
    #[error("the cluster did not answer: {0}")]
    Cluster(String),
    /// The history store did not answer.
    #[error("the history store did not answer")]
    Store,
}

/// The API keys, kept as SHA-256 digests.
pub(crate) struct ApiKeys {
    digests: Vec<Digest>,
    /// Lines about refused keys: a caller without a key decides how often it is refused.
    refusals: LogBudget,
}

impl ApiKeys {
    /// The holders of `keys` may call.
    pub(crate) fn new(keys: &[String]) -> ApiKeys {
        ApiKeys {
            digests: keys
                .iter()
                .map(|key| digest(&SHA256, key.as_bytes()))
                .collect(),
            refusals: LogBudget::new(REFUSAL_LOG_LINES_PER_SECOND, Duration::from_secs(1)),
        }
    }

    /// Whether `authorization` (an `Authorization` header's or gRPC metadata's value) holds
    /// `Bearer <key>` with one of the keys; a refusal is logged, a few lines a second at most.
    /// Digests of equal length are compared, every key's, each in constant time: the time
    /// taken tells neither which key matched nor any key's length.
    pub(crate) fn check(&self, authorization: Option<&[u8]>, call: &str) -> bool {
        // The scheme is case-insensitive (RFC 9110); the key is not.
        let given = authorization
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| digest(&SHA256, key.trim().as_bytes()));
        let matched = given.is_some_and(|given| {
            self.digests.iter().fold(false, |matched, key| {
                matched | bool::from(key.as_ref().ct_eq(given.as_ref()))
            })
        });
        if !matched {
            if let Some(held_back) = self.refusals.allow(Instant::now()) {
                warn!(
                    call,
                    held_back, "API call refused: missing or unknown API key"
                );
            }
        }
        matched
    }
}

/// Which sockets a call is about, in one namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Target {
    /// The namespace.
    pub namespace: String,
    /// Sockets in any of these rooms.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Sockets of any of these users (their room `user:<id>`).
    #[serde(default)]
    pub users: Vec<String>,
    /// Sockets with these ids.
    #[serde(default)]
    pub sockets: Vec<String>,
    /// Minus the sockets in these rooms.
    #[serde(default)]
    pub except: Vec<String>,
}

impl Target {
    fn names_sockets(&self) -> bool {
        !(self.rooms.is_empty() && self.users.is_empty() && self.sockets.is_empty())
    }
}

/// An event to publish.
#[derive(Debug, Default)]
pub(crate) struct Publish {
    /// To whom.
    pub target: Target,
    /// The event's name.
    pub event: String,
    /// Its arguments (JSON).
    pub values: Vec<Value>,
    /// A binary argument after them.
    pub binary: Option<Bytes>,
    /// Dropped for the recipients that cannot take it at once.
    pub volatile: bool,
}

/// A socket, as the API describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketSummary {
    /// Its id.
    pub id: String,
    /// Its user (from its personal room), if any.
    pub user: Option<String>,
    /// Its rooms.
    pub rooms: Vec<String>,
}

/// A namespace, as `info` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Its sockets on this node.
    pub sockets: usize,
    /// The servers of the cluster that have it, when they answered.
    pub servers: Option<usize>,
}

/// This node and its namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Info {
    /// Engine.IO sessions on this node.
    pub sessions: usize,
    /// This node's clock, in milliseconds since the epoch.
    pub time: u64,
    /// The namespaces.
    pub namespaces: Vec<NamespaceInfo>,
}

/// `POST /api/v1/notify`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Notify {
    /// The user.
    pub to: String,
    /// The text.
    pub text: String,
    /// Who it is from (default `backend`).
    pub from: Option<String>,
}

/// The operations, on one server (and through its adapters, on the whole cluster).
pub(crate) struct Operations {
    io: SocketIo,
    history: History,
}

impl Operations {
    /// The operations on `io`; rooms keep their history in `history`.
    pub(crate) fn new(io: SocketIo, history: History) -> Operations {
        Operations { io, history }
    }

    /// An existing namespace; the API never creates one.
    fn namespace(&self, name: &str) -> Result<Namespace, ApiError> {
        self.io
            .namespaces()
            .into_iter()
            .find(|namespace| namespace.name() == name)
            .ok_or_else(|| ApiError::NotFound(format!("no namespace {name}")))
    }

    /// The operator for `target`: its rooms and users, or everyone, minus `except`.
    fn operator(&self, target: &Target) -> Result<BroadcastOperator, ApiError> {
        let namespace = self.namespace(&target.namespace)?;
        let mut rooms: Vec<Room> = target
            .rooms
            .iter()
            .map(|room| Room::from(room.as_str()))
            .collect();
        rooms.extend(target.users.iter().map(|user| user_room(user)));
        rooms.extend(target.sockets.iter().map(|sid| Room::from(sid.as_str())));
        let mut operator = namespace.broadcast();
        if !rooms.is_empty() {
            operator = operator.to(rooms);
        }
        if !target.except.is_empty() {
            let except: Vec<Room> = target
                .except
                .iter()
                .map(|room| Room::from(room.as_str()))
                .collect();
            operator = operator.except(except);
        }
        Ok(operator)
    }

    /// Emits the event to its target, on every node.
    pub(crate) fn publish(&self, request: Publish) -> Result<(), ApiError> {
        if RESERVED_EVENTS.contains(&request.event.as_str()) {
            return Err(ApiError::Invalid(format!(
                "`{}` is reserved by Socket.IO",
                request.event
            )));
        }
        let mut operator = self.operator(&request.target)?;
        if request.volatile {
            operator = operator.volatile();
        }
        let mut args = Args {
            values: request.values,
            attachments: Vec::new(),
        };
        if let Some(bytes) = request.binary {
            args = args
                .push(&Binary::from(bytes))
                .map_err(|failure| ApiError::Invalid(failure.to_string()))?;
        }
        operator
            .emit(&request.event, args)
            .map_err(|failure| ApiError::Invalid(failure.to_string()))
    }

    /// The target's sockets, on every node.
    pub(crate) async fn sockets(&self, target: &Target) -> Result<Vec<SocketSummary>, ApiError> {
        let sockets = self
            .operator(target)?
            .fetch_sockets()
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        Ok(sockets
            .iter()
            .map(|socket| SocketSummary {
                id: (**socket.id()).to_owned(),
                user: user_of(socket.rooms()).map(str::to_owned),
                rooms: socket
                    .rooms()
                    .iter()
                    .map(|room| (**room).to_owned())
                    .collect(),
            })
            .collect())
    }

    /// Makes the target's sockets join (or leave) `rooms`, on every node.
    pub(crate) async fn join_or_leave(
        &self,
        target: &Target,
        rooms: &[String],
        join: bool,
    ) -> Result<(), ApiError> {
        if !target.names_sockets() {
            return Err(ApiError::Invalid(
                "name the sockets to move: `sockets`, `users` or `rooms`".to_owned(),
            ));
        }
        let operator = self.operator(target)?;
        let rooms: Vec<Room> = rooms.iter().map(|room| Room::from(room.as_str())).collect();
        let moved = if join {
            operator.sockets_join(rooms).await
        } else {
            operator.sockets_leave(rooms).await
        };
        moved.map_err(|failure| ApiError::Cluster(failure.to_string()))
    }

    /// Disconnects the target's sockets, on every node.
    pub(crate) async fn disconnect(&self, target: &Target) -> Result<(), ApiError> {
        if !target.names_sockets() {
            return Err(ApiError::Invalid(
                "name the sockets to disconnect: `sockets`, `users` or `rooms`".to_owned(),
            ));
        }
        self.operator(target)?
            .disconnect_sockets(true)
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))
    }

    /// The users in adapter room `room` and their number of sockets there, on every node.
    pub(crate) async fn presence(
        &self,
        namespace: &str,
        room: &str,
    ) -> Result<BTreeMap<String, usize>, ApiError> {
        let namespace = self.namespace(namespace)?;
        presence::occupants(&namespace, &Room::from(room), None)
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))
    }

    /// The last `limit` (default 50) messages of adapter room `room`, oldest first.
    pub(crate) async fn history(
        &self,
        namespace: &str,
        room: &str,
        limit: Option<usize>,
    ) -> Result<Vec<Value>, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
        if limit > MAX_HISTORY_LIMIT {
            return Err(ApiError::Invalid(format!(
                "`limit` is at most {MAX_HISTORY_LIMIT}"
            )));
        }
        let namespace = self.namespace(namespace)?;
        self.history
            .recent(namespace.name(), room, limit)
            .await
            .map_err(|failure| {
                warn!(%failure, "history not read for the API");
                ApiError::Store
            })
    }

    /// Sends `to` a notification (`kind: "backend"`) from `from` (default `backend`) with
    /// `text`, kept in the user's inbox: its id, and how many of the user's sockets (on every
    /// node) it went to.
    pub(crate) async fn notify(&self, request: &Notify) -> Result<(String, usize), ApiError> {
        let field = |name: &str, value: Option<&str>| {
            let value = value.map(Value::from);
            input::name(value.as_ref())
                .map_err(|failure| ApiError::Invalid(format!("`{name}`: {failure}")))
        };
        let to = field("to", Some(&request.to))?
            .ok_or_else(|| ApiError::Invalid("`to` must be a user id".to_owned()))?;
        let from = field("from", request.from.as_deref())?.unwrap_or_else(|| "backend".to_owned());
        let text = Value::from(request.text.as_str());
        let text = input::text(&text)
            .map_err(|failure| ApiError::Invalid(format!("`text`: {failure}")))?;
        let notifier = Notifier::new(&self.io, self.history.clone());
        let delivered = notifier
            .namespace()
            .to(user_room(&to))
            .fetch_sockets()
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?
            .len();
        let id = notifier
            .send(&to, &from, text, Kind::Backend, serde_json::Map::new())
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        Ok((id, delivered))
    }

    /// This node's sessions, and per namespace its sockets here and the servers in the
    /// cluster.
    pub(crate) async fn info(&self) -> Info {
        let metrics = self.io.metrics();
        let all = self.io.namespaces();
        // Asked of every namespace's adapter at once: each answer is bounded by its timeout.
        let counts =
            futures_util::future::join_all(all.iter().map(|namespace| namespace.server_count()))
                .await;
        let namespaces = all
            .iter()
            .zip(counts)
            .map(|(namespace, servers)| NamespaceInfo {
                name: namespace.name().to_owned(),
                sockets: metrics
                    .sockets
                    .iter()
                    .find(|(name, _)| name == namespace.name())
                    .map_or(0, |(_, count)| *count),
                servers: servers.ok(),
            })
            .collect();
        Info {
            sessions: metrics.engine.sessions_polling + metrics.engine.sessions_websocket,
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |time| {
                    u64::try_from(time.as_millis()).unwrap_or(u64::MAX)
                }),
            namespaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_compared_whole() {
        let keys = ApiKeys::new(&[
            "first-key-0123456789".to_owned(),
            "second-key-0123456789".to_owned(),
        ]);
        let check = |value: &str| keys.check(Some(value.as_bytes()), "test");
        assert!(check("Bearer second-key-0123456789"));
        assert!(check("Bearer first-key-0123456789"));
        assert!(check("bearer first-key-0123456789"));
        assert!(!check("Bearer FIRST-key-0123456789"));
        assert!(!check("Basic first-key-0123456789"));
        assert!(!check("Bearer first-key-012345678"));
        assert!(!check("Bearer first-key-0123456789x"));
        assert!(!check("first-key-0123456789"));
        assert!(!keys.check(None, "test"));
    }
}
