//! Small shared types: ids, rooms, broadcast targets, what one server tells another about a
//! socket. A leaf module: it depends on nothing else in the crate.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A socket id: unique per namespace connection, never the Engine.IO session id.
pub type Sid = Arc<str>;

/// A room name.
pub type Room = Arc<str>;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Which sockets a broadcast or namespace-wide operation targets, and how.
///
/// Serializable, so a cluster adapter can send it to the other servers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastOptions {
    /// Only sockets in at least one of these rooms; every socket when empty.
    pub rooms: Vec<Room>,
    /// Never sockets in any of these rooms (a socket id is a room too).
    pub except: Vec<Room>,
    /// May be dropped for a client that is not ready to receive it.
    pub volatile: bool,
    /// Only this server's sockets, not the other servers' (distributed adapters).
    pub local: bool,
    /// Ask for compression (accepted for API compatibility; frames are not compressed).
    pub compress: bool,
}

impl BroadcastOptions {
    /// Whether a socket in `rooms` (its own id room included) is a target.
    pub fn targets(&self, rooms: &[Room]) -> bool {
        let targeted = self.rooms.is_empty() || self.rooms.iter().any(|r| rooms.contains(r));
        targeted && !self.except.iter().any(|r| rooms.contains(r))
    }
}

/// What the server knows of the request that opened a socket's connection and of its CONNECT,
/// in the shape of the reference server's `socket.handshake` (so it crosses to other servers,
/// Node ones included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HandshakeInfo {
    /// Request headers, names lower-case; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// When the socket connected, as a date string.
    pub time: String,
    /// The client's address (IP only), or empty when unknown.
    pub address: String,
    /// Whether the request was cross-origin (it carried an `Origin` header).
    pub xdomain: bool,
    /// Whether the connection is encrypted.
    pub secure: bool,
    /// When the socket connected, in milliseconds since the Unix epoch.
    pub issued: u64,
    /// The request URL (path and query).
    pub url: String,
    /// The query parameters of that URL.
    pub query: BTreeMap<String, String>,
    /// The CONNECT packet's payload (`auth` on socket.io-client).
    pub auth: Value,
}

/// A socket as one server describes it to another: the answer to `fetch_sockets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    /// The socket id.
    pub id: Sid,
    /// Its handshake.
    pub handshake: HandshakeInfo,
    /// The rooms it is in, its own id room included (as on the reference server).
    pub rooms: Vec<Room>,
    /// Its session data ([`crate::Socket::session_data`]); `{}` when none was set, as on the
    /// reference server.
    pub data: Value,
    /// The connection it is on; `None` from a server that does not tell (the reference
    /// server, which ignores the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ConnectionInfo>,
}

/// The Engine.IO connection a socket is on, as far as other servers are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// A short id of the connection, shared by the sockets one client opened on it (12 hex
    /// digits, as long as the ids the Socket.IO Admin UI shows for clients). Derived from the
    /// Engine.IO session id by a keyed hash, since that id works as a credential on
    /// long-polling.
    pub id: String,
    /// The transport in use: `"polling"` or `"websocket"`.
    pub transport: String,
}
