//! The adapter: where rooms live and how broadcasts reach other servers.
//!
//! Every room operation and broadcast of a namespace goes through its [`Adapter`]. The
//! namespace itself delivers to the sockets connected to this server; the adapter keeps the
//! room index and, for a distributed adapter (Redis), forwards broadcasts and namespace-wide
//! operations to the other servers. [`InMemoryAdapter`] is the single-server default.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use switchyard_socketio_proto::Packet;

use crate::handler::BoxFuture;
use crate::recovery::{RecoveryConfig, RecoveryStore, RestoredSession, SessionState};
use crate::socket::Sid;
use crate::Room;
use switchyard_core::EncodedPacket;

/// Which sockets a broadcast or namespace-wide operation targets, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Only sockets in at least one of these rooms; every socket when empty.
    pub rooms: Vec<Room>,
    /// Never sockets in any of these rooms.
    pub except: Vec<Room>,
    /// May be dropped for a client that is not ready to receive it.
    pub volatile: bool,
    /// Only this server's sockets, not the other servers' (distributed adapters).
    pub local: bool,
    /// Ask for compression (accepted for API compatibility; frames are not compressed).
    pub compress: bool,
}

/// What another server reports of one of its sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSocketData {
    /// The socket id.
    pub id: Sid,
    /// The rooms it is in.
    pub rooms: Vec<Room>,
}

/// Why an adapter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The backend (a Redis server, say) failed.
    #[error("adapter backend error: {0}")]
    Backend(String),
    /// The other servers did not answer in time.
    #[error("adapter request timed out")]
    Timeout,
}

/// A namespace's room index and its link to other servers.
///
/// Room methods are synchronous and local. The `remote_*` methods reach the other servers of a
/// cluster; their defaults do nothing, which is right for a single server.
pub trait Adapter: Send + Sync + 'static {
    /// Socket `sid` joins `rooms`.
    fn add_all(&self, sid: &Sid, rooms: &[Room]);

    /// Socket `sid` leaves `room`.
    fn del(&self, sid: &Sid, room: &Room);

    /// Socket `sid` leaves every room.
    fn del_all(&self, sid: &Sid);

    /// The rooms socket `sid` is in (its own id room is not listed).
    fn socket_rooms(&self, sid: &Sid) -> Vec<Room>;

    /// Calls `visit` with every local socket in `room`.
    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid));

    /// Every room that has at least one local socket.
    fn rooms(&self) -> Vec<Room>;

    /// Forwards a broadcast to the other servers (the namespace has delivered it locally).
    fn remote_broadcast(
        &self,
        _packet: &Packet,
        _options: &BroadcastOptions,
    ) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Makes the other servers' matching sockets join (`join == true`) or leave `rooms`.
    fn remote_rooms(
        &self,
        _options: &BroadcastOptions,
        _rooms: &[Room],
        _join: bool,
    ) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Disconnects the other servers' matching sockets.
    fn remote_disconnect(
        &self,
        _options: &BroadcastOptions,
        _close: bool,
    ) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Ids and rooms of the other servers' matching sockets.
    fn remote_fetch_sockets(
        &self,
        _options: &BroadcastOptions,
    ) -> BoxFuture<Result<Vec<RemoteSocketData>, AdapterError>> {
        Box::pin(std::future::ready(Ok(Vec::new())))
    }

    /// Sends an event to the other servers' namespace handlers.
    fn remote_server_side_emit(
        &self,
        _event: &str,
        _args: &serde_json::Value,
    ) -> Result<(), AdapterError> {
        Ok(())
    }

    /// The offset of the next recoverable packet, or `None` if this adapter keeps no packets
    /// (connection state recovery off).
    fn next_offset(&self) -> Option<String> {
        None
    }

    /// Keeps a recoverable packet, already carrying `offset`, for sessions that come back.
    fn store_packet(&self, _offset: &str, _packet: &EncodedPacket, _options: &BroadcastOptions) {}

    /// Keeps the session of a socket that ended uncleanly.
    fn persist_session(&self, _session: SessionState) {}

    /// Gives back session `pid` with the packets it missed after `offset`; `None` if it cannot
    /// be recovered whole.
    fn restore_session(&self, _pid: &str, _offset: &str) -> BoxFuture<Option<RestoredSession>> {
        Box::pin(std::future::ready(None))
    }
}

/// What an adapter factory knows of the namespace it builds an adapter for.
#[derive(Debug, Clone, Copy)]
pub struct AdapterContext<'a> {
    /// The namespace's name.
    pub namespace: &'a str,
    /// Connection state recovery options, when recovery is on.
    pub recovery: Option<&'a RecoveryConfig>,
}

/// Builds the adapter of each namespace.
pub type AdapterFactory = Arc<dyn Fn(AdapterContext<'_>) -> Arc<dyn Adapter> + Send + Sync>;

/// The default adapter: rooms in memory, one server; with recovery on, it also keeps recent
/// packets and disconnected sessions, within the configured bounds.
#[derive(Default)]
pub struct InMemoryAdapter {
    index: RwLock<RoomIndex>,
    recovery: Option<Mutex<RecoveryStore>>,
}

impl std::fmt::Debug for InMemoryAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryAdapter")
            .field("recovery", &self.recovery.is_some())
            .finish()
    }
}

#[derive(Debug, Default)]
struct RoomIndex {
    rooms: HashMap<Room, HashSet<Sid>>,
    sids: HashMap<Sid, HashSet<Room>>,
}

impl InMemoryAdapter {
    /// An empty adapter.
    pub fn new() -> InMemoryAdapter {
        InMemoryAdapter::default()
    }

    /// An adapter that keeps packets and sessions for connection state recovery.
    pub fn with_recovery(config: RecoveryConfig) -> InMemoryAdapter {
        InMemoryAdapter {
            index: RwLock::default(),
            recovery: Some(Mutex::new(RecoveryStore::new(config))),
        }
    }

    /// A factory giving each namespace its own in-memory adapter.
    pub fn factory() -> AdapterFactory {
        Arc::new(|context: AdapterContext<'_>| match context.recovery {
            Some(config) => Arc::new(InMemoryAdapter::with_recovery(config.clone())),
            None => Arc::new(InMemoryAdapter::new()),
        })
    }

    fn store(&self) -> Option<std::sync::MutexGuard<'_, RecoveryStore>> {
        self.recovery
            .as_ref()
            .map(|store| store.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RoomIndex> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RoomIndex> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl Adapter for InMemoryAdapter {
    fn add_all(&self, sid: &Sid, rooms: &[Room]) {
        let mut index = self.write();
        for room in rooms {
            index
                .rooms
                .entry(room.clone())
                .or_default()
                .insert(sid.clone());
            index
                .sids
                .entry(sid.clone())
                .or_default()
                .insert(room.clone());
        }
    }

    fn del(&self, sid: &Sid, room: &Room) {
        let mut index = self.write();
        if let Some(members) = index.rooms.get_mut(room) {
            members.remove(sid);
            if members.is_empty() {
                index.rooms.remove(room);
            }
        }
        if let Some(rooms) = index.sids.get_mut(sid) {
            rooms.remove(room);
            if rooms.is_empty() {
                index.sids.remove(sid);
            }
        }
    }

    fn del_all(&self, sid: &Sid) {
        let mut index = self.write();
        let Some(rooms) = index.sids.remove(sid) else {
            return;
        };
        for room in rooms {
            if let Some(members) = index.rooms.get_mut(&room) {
                members.remove(sid);
                if members.is_empty() {
                    index.rooms.remove(&room);
                }
            }
        }
    }

    fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
        self.read()
            .sids
            .get(sid)
            .map(|rooms| rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
        if let Some(members) = self.read().rooms.get(room) {
            members.iter().for_each(visit);
        }
    }

    fn rooms(&self) -> Vec<Room> {
        self.read().rooms.keys().cloned().collect()
    }

    fn next_offset(&self) -> Option<String> {
        self.store()
            .map(|mut store| store.next_offset().to_string())
    }

    fn store_packet(&self, offset: &str, packet: &EncodedPacket, options: &BroadcastOptions) {
        if let (Some(mut store), Ok(offset)) = (self.store(), offset.parse()) {
            store.store(Instant::now(), offset, packet.clone(), options);
        }
    }

    fn persist_session(&self, session: SessionState) {
        if let Some(mut store) = self.store() {
            store.persist(Instant::now(), session);
        }
    }

    fn restore_session(&self, pid: &str, offset: &str) -> BoxFuture<Option<RestoredSession>> {
        let restored = self
            .store()
            .and_then(|mut store| store.restore(Instant::now(), pid, offset));
        Box::pin(std::future::ready(restored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> Sid {
        Arc::from(s)
    }

    fn members(adapter: &InMemoryAdapter, room: &str) -> Vec<String> {
        let mut out = Vec::new();
        adapter.for_each_in_room(&Arc::from(room), &mut |s| out.push(s.to_string()));
        out.sort();
        out
    }

    #[test]
    fn join_leave_and_leave_all_keep_both_indexes_in_step() {
        let adapter = InMemoryAdapter::new();
        adapter.add_all(&sid("a"), &[Arc::from("r1"), Arc::from("r2")]);
        adapter.add_all(&sid("b"), &[Arc::from("r1")]);
        assert_eq!(members(&adapter, "r1"), vec!["a", "b"]);
        let mut rooms: Vec<String> = adapter
            .socket_rooms(&sid("a"))
            .iter()
            .map(|r| r.to_string())
            .collect();
        rooms.sort();
        assert_eq!(rooms, vec!["r1", "r2"]);
        adapter.del(&sid("a"), &Arc::from("r1"));
        assert_eq!(members(&adapter, "r1"), vec!["b"]);
        adapter.del_all(&sid("a"));
        assert_eq!(members(&adapter, "r2"), Vec::<String>::new());
        assert!(adapter.socket_rooms(&sid("a")).is_empty());
        let mut all: Vec<String> = adapter.rooms().iter().map(|r| r.to_string()).collect();
        all.sort();
        assert_eq!(all, vec!["r1"]);
        adapter.del_all(&sid("b"));
        assert!(adapter.rooms().is_empty());
    }
}
