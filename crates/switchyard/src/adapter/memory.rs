//! The in-memory adapter: one server, rooms in memory.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use switchyard_core::{Args, EncodedPacket};
use switchyard_socketio_proto::Packet;

use super::{
    AckReply, Adapter, AdapterContext, AdapterError, AdapterFactory, AttachSession, LocalNamespace,
};
use crate::recovery::{RecoveryConfig, RecoveryStore, SessionState};
use crate::types::{BoxFuture, BroadcastOptions, Room, Sid, SocketInfo};

/// The index of one server's rooms: which local sockets are in which room, both ways.
///
/// Locked inside, so an adapter can share it between its own calls and the requests it
/// serves for other servers. Cluster adapters embed one for their local rooms.
#[derive(Debug, Default)]
pub struct RoomIndex {
    index: RwLock<Rooms>,
}

#[derive(Debug, Default)]
struct Rooms {
    rooms: HashMap<Room, SmallSet<Sid>>,
    sids: HashMap<Sid, SmallSet<Room>>,
}

/// A set of at least one member that holds a lone member inline.
///
/// Most rooms hold one socket (its user's room) and most sockets are in one room or two, so
/// the common set costs no allocation: a `HashSet` of one member takes a table of four. An
/// empty set is never kept: the index removes it instead.
#[derive(Debug)]
enum SmallSet<T> {
    One(T),
    Many(HashSet<T>),
}

impl<T: std::hash::Hash + Eq + Clone> SmallSet<T> {
    fn insert(&mut self, member: T) {
        match self {
            SmallSet::One(only) if *only == member => {}
            SmallSet::One(only) => {
                *self = SmallSet::Many(HashSet::from([only.clone(), member]));
            }
            SmallSet::Many(members) => {
                members.insert(member);
            }
        }
    }

    /// Removes `member`; true if the set is now empty (and must be dropped).
    fn remove(&mut self, member: &T) -> bool {
        match self {
            SmallSet::One(only) => only == member,
            SmallSet::Many(members) => {
                members.remove(member);
                if members.len() == 1 {
                    // Back inline, giving the table's memory back.
                    let only = members.drain().next();
                    if let Some(only) = only {
                        *self = SmallSet::One(only);
                    }
                    return false;
                }
                members.is_empty()
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        let (one, many) = match self {
            SmallSet::One(only) => (Some(only), None),
            SmallSet::Many(members) => (None, Some(members.iter())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

impl RoomIndex {
    /// An empty index.
    pub fn new() -> RoomIndex {
        RoomIndex::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Rooms> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Rooms> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Socket `sid` joins `rooms`.
    pub fn add_all(&self, sid: &Sid, rooms: &[Room]) {
        self.add_all_reporting(sid, rooms, &mut |_| {});
    }

    /// Socket `sid` joins `rooms`; `created` sees, under the index's lock (so in the order
    /// they happen), each room that had no socket before. An adapter that subscribes per room
    /// (Redis sharded pub/sub) learns this way when to subscribe.
    pub fn add_all_reporting(&self, sid: &Sid, rooms: &[Room], created: &mut dyn FnMut(&Room)) {
        let mut index = self.write();
        for room in rooms {
            match index.rooms.get_mut(room) {
                Some(members) => members.insert(sid.clone()),
                None => {
                    index.rooms.insert(room.clone(), SmallSet::One(sid.clone()));
                    created(room);
                }
            }
            match index.sids.get_mut(sid) {
                Some(joined) => joined.insert(room.clone()),
                None => {
                    index.sids.insert(sid.clone(), SmallSet::One(room.clone()));
                }
            }
        }
    }

    /// Socket `sid` leaves `room`.
    pub fn del(&self, sid: &Sid, room: &Room) {
        self.del_reporting(sid, room, &mut |_| {});
    }

    /// Socket `sid` leaves `room`; `deleted` sees it, under the index's lock, if it is left
    /// without sockets.
    pub fn del_reporting(&self, sid: &Sid, room: &Room, deleted: &mut dyn FnMut(&Room)) {
        let mut index = self.write();
        if let Some(members) = index.rooms.get_mut(room) {
            if members.remove(sid) {
                index.rooms.remove(room);
                deleted(room);
            }
        }
        if let Some(rooms) = index.sids.get_mut(sid) {
            if rooms.remove(room) {
                index.sids.remove(sid);
            }
        }
    }

    /// Socket `sid` leaves every room.
    pub fn del_all(&self, sid: &Sid) {
        self.del_all_reporting(sid, &mut |_| {});
    }

    /// Socket `sid` leaves every room; `deleted` sees, under the index's lock, each room left
    /// without sockets.
    pub fn del_all_reporting(&self, sid: &Sid, deleted: &mut dyn FnMut(&Room)) {
        let mut index = self.write();
        let Some(rooms) = index.sids.remove(sid) else {
            return;
        };
        for room in rooms.iter() {
            if let Some(members) = index.rooms.get_mut(room) {
                if members.remove(sid) {
                    index.rooms.remove(room);
                    deleted(room);
                }
            }
        }
    }

    /// The rooms socket `sid` is in.
    pub fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
        self.read()
            .sids
            .get(sid)
            .map(|rooms| rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls `visit` with every socket in `room`, under the index's read lock.
    pub fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
        if let Some(members) = self.read().rooms.get(room) {
            members.iter().for_each(visit);
        }
    }

    /// Every room with at least one socket.
    pub fn rooms(&self) -> Vec<Room> {
        self.read().rooms.keys().cloned().collect()
    }
}

/// The default adapter: rooms in memory, one server. With recovery on, it also keeps recent
/// packets and disconnected sessions, within the configured bounds.
pub struct InMemoryAdapter {
    index: RoomIndex,
    local: LocalNamespace,
    recovery: Option<Arc<Mutex<RecoveryStore>>>,
}

impl std::fmt::Debug for InMemoryAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryAdapter")
            .field("namespace", &self.local.name())
            .field("recovery", &self.recovery.is_some())
            .finish()
    }
}

impl InMemoryAdapter {
    /// The adapter of the namespace `context` describes.
    pub fn new(context: AdapterContext<'_>) -> InMemoryAdapter {
        let recovery = context.recovery.map(|config: &RecoveryConfig| {
            let store = Arc::new(Mutex::new(RecoveryStore::new(config.clone())));
            prune_on_a_timer(&store, config.max_disconnection_duration);
            store
        });
        InMemoryAdapter {
            index: RoomIndex::new(),
            recovery,
            local: context.local,
        }
    }

    /// A factory giving each namespace its own in-memory adapter.
    pub fn factory() -> AdapterFactory {
        Arc::new(|context: AdapterContext<'_>| Arc::new(InMemoryAdapter::new(context)))
    }

    fn store(&self) -> Option<MutexGuard<'_, RecoveryStore>> {
        self.recovery
            .as_ref()
            .map(|store| store.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Expired sessions are dropped as they expire (within a tenth of their lifetime), not only
/// when the next session is kept. The task ends with the store.
fn prune_on_a_timer(store: &Arc<Mutex<RecoveryStore>>, lifetime: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let every = (lifetime / 10).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let store = Arc::downgrade(store);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .prune(Instant::now());
        }
    });
}

fn ready<T: Send + 'static>(value: T) -> BoxFuture<T> {
    Box::pin(std::future::ready(value))
}

impl Adapter for InMemoryAdapter {
    fn add_all(&self, sid: &Sid, rooms: &[Room]) {
        self.index.add_all(sid, rooms);
    }

    fn del(&self, sid: &Sid, room: &Room) {
        self.index.del(sid, room);
    }

    fn del_all(&self, sid: &Sid) {
        self.index.del_all(sid);
    }

    fn socket_rooms(&self, sid: &Sid) -> Vec<Room> {
        self.index.socket_rooms(sid)
    }

    fn for_each_in_room(&self, room: &Room, visit: &mut dyn FnMut(&Sid)) {
        self.index.for_each_in_room(room, visit);
    }

    fn rooms(&self) -> Vec<Room> {
        self.index.rooms()
    }

    fn broadcast(
        &self,
        packet: Packet,
        options: BroadcastOptions,
    ) -> BoxFuture<Result<(), AdapterError>> {
        let recoverable = !options.volatile && matches!(packet, Packet::Event { id: None, .. });
        match self.store().filter(|_| recoverable) {
            Some(mut store) => {
                // Offset, encoding, storage and delivery under one lock, so the store holds
                // packets in offset order and every client receives them in that order, however
                // many tasks broadcast at once. Delivery only queues frames: it never waits, and
                // never calls back into the adapter.
                let encoded = store.append(packet, &options, self.local.parser(), Instant::now());
                self.local.deliver(&encoded, &options);
                drop(store);
            }
            None => {
                self.local.broadcast(&packet, &options);
            }
        }
        ready(Ok(()))
    }

    fn broadcast_with_ack(
        &self,
        packet: Packet,
        options: BroadcastOptions,
        timeout: Duration,
    ) -> BoxFuture<Result<Vec<AckReply>, AdapterError>> {
        let acks = self.local.broadcast_with_ack(packet, &options, timeout);
        Box::pin(async move { Ok(acks.collect().await) })
    }

    fn add_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.add_sockets(&options, &rooms);
        ready(Ok(()))
    }

    fn del_sockets(
        &self,
        options: BroadcastOptions,
        rooms: Vec<Room>,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.del_sockets(&options, &rooms);
        ready(Ok(()))
    }

    fn disconnect_sockets(
        &self,
        options: BroadcastOptions,
        close: bool,
    ) -> BoxFuture<Result<(), AdapterError>> {
        self.local.disconnect_sockets(&options, close);
        ready(Ok(()))
    }

    fn fetch_sockets(
        &self,
        options: BroadcastOptions,
        _timeout: Duration,
    ) -> BoxFuture<Result<Vec<SocketInfo>, AdapterError>> {
        ready(Ok(self.local.fetch_sockets(&options)))
    }

    fn server_side_emit(
        &self,
        _event: String,
        _args: Args,
        _ack: Option<Duration>,
    ) -> BoxFuture<Result<Vec<Args>, AdapterError>> {
        // One server: there is no other server to tell, and no answer to wait for.
        ready(Ok(Vec::new()))
    }

    fn attach_socket(&self, attach: &mut dyn FnMut()) -> Option<String> {
        // Under the lock broadcasts deliver under: every packet after the answered offset
        // reaches the socket live.
        let store = self.store();
        attach();
        store.map(|store| store.start_offset())
    }

    fn persist_session(&self, session: SessionState) {
        if let Some(mut store) = self.store() {
            store.persist(Instant::now(), session);
        }
    }

    fn restore_session(
        &self,
        pid: String,
        offset: Option<String>,
        attach: AttachSession,
    ) -> BoxFuture<Result<Option<Vec<EncodedPacket>>, AdapterError>> {
        let Some(mut store) = self.store() else {
            return ready(Ok(None));
        };
        // Under the store's lock, which broadcasts hold while they deliver: the socket is back
        // before any later packet is delivered.
        let missed = store.restore(Instant::now(), &pid, offset.as_deref(), attach);
        drop(store);
        ready(Ok(missed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn sid(s: &str) -> Sid {
        Arc::from(s)
    }

    fn members(adapter: &RoomIndex, room: &str) -> Vec<String> {
        let mut out = Vec::new();
        adapter.for_each_in_room(&Arc::from(room), &mut |s| out.push(s.to_string()));
        out.sort();
        out
    }

    #[test]
    fn join_leave_and_leave_all_keep_both_indexes_in_step() {
        let adapter = RoomIndex::new();
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

    #[test]
    fn a_lone_member_is_held_inline_and_a_set_shrinks_back_to_one() {
        let index = RoomIndex::new();
        let r: Room = Arc::from("r");
        let is_inline = |index: &RoomIndex| {
            let rooms = index.read();
            (
                matches!(rooms.rooms.get(&r), Some(SmallSet::One(_))),
                matches!(rooms.sids.get(&sid("a")), Some(SmallSet::One(_))),
            )
        };
        index.add_all(&sid("a"), std::slice::from_ref(&r));
        index.add_all(&sid("a"), std::slice::from_ref(&r));
        assert_eq!(is_inline(&index), (true, true));
        index.add_all(&sid("b"), std::slice::from_ref(&r));
        index.add_all(&sid("a"), &[Arc::from("s")]);
        assert_eq!(is_inline(&index), (false, false));
        assert_eq!(members(&index, "r"), vec!["a", "b"]);
        index.del(&sid("b"), &r);
        index.del(&sid("a"), &Arc::from("s"));
        assert_eq!(is_inline(&index), (true, true));
        assert_eq!(members(&index, "r"), vec!["a"]);
        assert_eq!(index.socket_rooms(&sid("a")), vec![r.clone()]);
        index.del(&sid("a"), &r);
        assert!(index.rooms().is_empty());
        assert!(index.socket_rooms(&sid("a")).is_empty());
    }

    #[test]
    fn rooms_are_reported_when_they_gain_their_first_socket_and_lose_their_last() {
        let index = RoomIndex::new();
        let mut seen = Vec::new();
        let rooms = [Arc::from("a"), Arc::from("r")];
        index.add_all_reporting(&sid("a"), &rooms, &mut |r| seen.push(format!("+{r}")));
        index.add_all_reporting(&sid("b"), &[Arc::from("r")], &mut |r| {
            seen.push(format!("+{r}"))
        });
        // Joining a room twice creates nothing.
        index.add_all_reporting(&sid("a"), &[Arc::from("r")], &mut |r| {
            seen.push(format!("+{r}"))
        });
        assert_eq!(seen, ["+a", "+r"]);
        seen.clear();
        index.del_reporting(&sid("a"), &Arc::from("r"), &mut |r| {
            seen.push(format!("-{r}"))
        });
        assert!(seen.is_empty(), "b is still in r");
        index.del_all_reporting(&sid("b"), &mut |r| seen.push(format!("-{r}")));
        index.del_all_reporting(&sid("a"), &mut |r| seen.push(format!("-{r}")));
        // Leaving a room one is not in deletes nothing.
        index.del_reporting(&sid("a"), &Arc::from("r"), &mut |r| {
            seen.push(format!("-{r}"))
        });
        assert_eq!(seen, ["-r", "-a"]);
        assert!(index.rooms().is_empty());
    }
}
