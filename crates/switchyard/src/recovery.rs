//! Connection state recovery: a client that lost its connection comes back with the same
//! socket id, rooms and data, and receives the packets it missed, exactly once and in order.
//!
//! Every recoverable packet (an event without ack id, not volatile) gets an offset, appended as
//! its last argument; the client remembers the last one it saw. When a socket ends uncleanly,
//! its session is kept for `max_disconnection_duration`. A client reconnecting with its private
//! id (`pid`) and last offset gets the session back, with the packets after that offset that
//! were meant for it — or, if any of them is no longer held, no recovery at all: never a
//! partial replay.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::{EncodedPacket, Parser};
use switchyard_socketio_proto::Packet;

use crate::extensions::Extensions;
use crate::types::{BroadcastOptions, Room, Sid};

/// Options of connection state recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a disconnected session is kept (default 2 minutes).
    pub max_disconnection_duration: Duration,
    /// Whether a recovered socket skips the connect middlewares (default true).
    pub skip_middlewares: bool,
    /// Most packets kept per namespace for replay; the oldest go first (default 10,000).
    pub max_packets: usize,
    /// Most bytes of packets kept per namespace for replay; the oldest go first (default 32 MiB).
    pub max_bytes: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_packets: 10_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What is kept of a socket that ended uncleanly.
///
/// Serializable, so that a cluster adapter can keep it where every server finds it (Redis) and
/// another server can restore it: what survives a move between servers is the id, the rooms
/// and the socket's session data ([`crate::Socket::set_session_data`], a JSON value, Node's
/// `socket.data`). The socket's typed extensions ([`crate::Socket::insert_data`]: guards,
/// handles, anything not serializable) come back only when the same server restores the
/// session.
#[derive(Serialize, Deserialize)]
pub struct SessionState {
    /// The socket id, given back on recovery.
    pub sid: Sid,
    /// The private session id the client presents.
    pub pid: Sid,
    /// The rooms it was in (not its own id room).
    pub rooms: Vec<Room>,
    /// The socket's session data; `null` when none was set.
    pub data: Value,
    /// The socket's typed extensions, while the session stays on this server.
    #[serde(skip)]
    pub(crate) extensions: Option<Extensions>,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("sid", &self.sid)
            .field("pid", &self.pid)
            .field("rooms", &self.rooms)
            .field("data", &self.data)
            .finish()
    }
}

/// A session given back to a reconnecting client, with what it missed.
#[derive(Debug)]
pub struct RestoredSession {
    /// The session as it was kept.
    pub state: SessionState,
    /// The packets it missed, in order, offsets included.
    pub missed: Vec<EncodedPacket>,
}

struct StoredPacket {
    offset: u64,
    at: Instant,
    options: BroadcastOptions,
    packet: EncodedPacket,
}

struct KeptSession {
    state: SessionState,
    at: Instant,
}

/// The in-memory store of recoverable packets and disconnected sessions of one namespace,
/// within the bounds of its [`RecoveryConfig`]. Offsets are decimal counters.
pub struct RecoveryStore {
    config: RecoveryConfig,
    next_offset: u64,
    packets: VecDeque<StoredPacket>,
    bytes: usize,
    sessions: HashMap<Sid, KeptSession>,
    last_session_prune: Option<Instant>,
}

impl RecoveryStore {
    /// An empty store.
    pub fn new(config: RecoveryConfig) -> RecoveryStore {
        RecoveryStore {
            config,
            next_offset: 0,
            packets: VecDeque::new(),
            bytes: 0,
            sessions: HashMap::new(),
            last_session_prune: None,
        }
    }

    /// Gives `packet` (an EVENT) the next offset as its last argument, encodes it with
    /// `parser`, keeps it for the sessions `options` targets, and returns it encoded. Offsets
    /// are handed out and stored in one step, so the store is always in offset order.
    pub fn append(
        &mut self,
        packet: Packet,
        options: &BroadcastOptions,
        parser: Parser,
        now: Instant,
    ) -> EncodedPacket {
        let offset = self.next_offset;
        self.next_offset += 1;
        let encoded = EncodedPacket::new(parser, &with_offset(packet, &offset.to_string()));
        self.store(now, offset, encoded.clone(), options);
        encoded
    }

    /// Keeps a packet, evicting the oldest beyond the bounds.
    fn store(
        &mut self,
        now: Instant,
        offset: u64,
        packet: EncodedPacket,
        options: &BroadcastOptions,
    ) {
        self.bytes += packet.len();
        self.packets.push_back(StoredPacket {
            offset,
            at: now,
            options: options.clone(),
            packet,
        });
        self.prune_packets(now);
    }

    fn prune_packets(&mut self, now: Instant) {
        let max_age = self.config.max_disconnection_duration;
        while let Some(front) = self.packets.front() {
            let too_many = self.packets.len() > self.config.max_packets;
            let too_big = self.bytes > self.config.max_bytes;
            let too_old = now.saturating_duration_since(front.at) > max_age;
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= front.packet.len();
            self.packets.pop_front();
        }
    }

    fn prune_sessions(&mut self, now: Instant) {
        // A scan of every kept session; at most once a second.
        if self
            .last_session_prune
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1))
        {
            return;
        }
        self.last_session_prune = Some(now);
        let max_age = self.config.max_disconnection_duration;
        self.sessions
            .retain(|_, kept| now.saturating_duration_since(kept.at) <= max_age);
    }

    /// Keeps the session of a socket that ended uncleanly.
    pub fn persist(&mut self, now: Instant, state: SessionState) {
        self.prune_sessions(now);
        self.sessions
            .insert(state.pid.clone(), KeptSession { state, at: now });
    }

    /// Gives back session `pid` with the packets after `offset` meant for it, or nothing if the
    /// session expired, is unknown, or any packet it missed is no longer held.
    pub fn restore(
        &mut self,
        now: Instant,
        pid: &str,
        offset: Option<&str>,
    ) -> Option<RestoredSession> {
        self.prune_packets(now);
        let kept = self.sessions.remove(pid)?;
        if now.saturating_duration_since(kept.at) > self.config.max_disconnection_duration {
            return None;
        }
        let offset: u64 = offset?.parse().ok()?;
        if offset >= self.next_offset {
            return None;
        }
        // Every offset was stored; if the first still held is past the one after the client's,
        // a packet it may have missed was evicted.
        let first_missed = offset + 1;
        if first_missed < self.next_offset {
            match self.packets.front() {
                Some(front) if front.offset <= first_missed => {}
                _ => return None,
            }
        }
        let mut member_of: Vec<Room> = kept.state.rooms.clone();
        member_of.push(kept.state.sid.clone());
        let start = self.packets.partition_point(|p| p.offset <= offset);
        let missed = self
            .packets
            .range(start..)
            .filter(|p| p.options.targets(&member_of))
            .map(|p| p.packet.clone())
            .collect();
        Some(RestoredSession {
            state: kept.state,
            missed,
        })
    }

    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.packets.len(), self.bytes)
    }
}

/// Appends `offset` to an EVENT's arguments.
fn with_offset(packet: Packet, offset: &str) -> Packet {
    match packet {
        Packet::Event {
            nsp,
            id,
            data: Value::Array(mut values),
            attachments,
        } => {
            values.push(Value::String(offset.to_owned()));
            Packet::Event {
                nsp,
                id,
                data: Value::Array(values),
                attachments,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn config() -> RecoveryConfig {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(10),
            skip_middlewares: true,
            max_packets: 3,
            max_bytes: 1_000,
        }
    }

    fn packet(n: u64) -> EncodedPacket {
        EncodedPacket::new(
            Parser::Json,
            &Packet::event("/", "n", vec![json!(n), json!(n.to_string())]),
        )
    }

    fn session(sid: &str, pid: &str, rooms: &[&str]) -> SessionState {
        SessionState {
            sid: Arc::from(sid),
            pid: Arc::from(pid),
            rooms: rooms.iter().map(|r| Arc::from(*r)).collect(),
            data: Value::Null,
            extensions: None,
        }
    }

    fn to(rooms: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| Arc::from(*r)).collect(),
            ..BroadcastOptions::default()
        }
    }

    fn store_n(store: &mut RecoveryStore, now: Instant, options: &BroadcastOptions) -> u64 {
        let offset = store.next_offset;
        let event = Packet::event("/", "n", vec![json!(offset)]);
        assert_eq!(
            store.append(event, options, Parser::Json, now),
            packet(offset)
        );
        offset
    }

    #[test]
    fn replays_only_packets_after_the_offset_meant_for_the_session() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        let seen = store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &["a"]));
        store_n(&mut store, t0, &to(&["a"]));
        store_n(&mut store, t0, &to(&["b"]));
        store_n(&mut store, t0, &to(&["s1"]));
        let restored = store
            .restore(t0, "p1", Some(seen.to_string().as_str()))
            .unwrap();
        assert_eq!(&*restored.state.sid, "s1");
        assert_eq!(restored.missed, vec![packet(1), packet(3)]);
        // A session is given back once.
        assert!(store
            .restore(t0, "p1", Some(seen.to_string().as_str()))
            .is_none());
    }

    #[test]
    fn except_rooms_are_honoured_on_replay() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        let seen = store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &["a"]));
        let options = BroadcastOptions {
            except: vec![Arc::from("a")],
            ..BroadcastOptions::default()
        };
        store_n(&mut store, t0, &options);
        let restored = store
            .restore(t0, "p1", Some(seen.to_string().as_str()))
            .unwrap();
        assert!(restored.missed.is_empty());
    }

    #[test]
    fn an_evicted_gap_refuses_recovery_instead_of_a_partial_replay() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        let seen = store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &[]));
        for _ in 0..4 {
            store_n(&mut store, t0, &to(&[]));
        }
        assert_eq!(store.held().0, 3);
        assert!(store
            .restore(t0, "p1", Some(seen.to_string().as_str()))
            .is_none());
    }

    #[test]
    fn the_latest_offset_recovers_with_nothing_missed() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        for _ in 0..5 {
            store_n(&mut store, t0, &to(&[]));
        }
        store.persist(t0, session("s1", "p1", &[]));
        let restored = store.restore(t0, "p1", Some("4")).unwrap();
        assert!(restored.missed.is_empty());
    }

    #[test]
    fn expired_sessions_and_unknown_offsets_are_not_recovered() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &[]));
        assert!(store
            .restore(t0 + Duration::from_secs(11), "p1", Some("0"))
            .is_none());
        store.persist(t0, session("s2", "p2", &[]));
        assert!(store.restore(t0, "p2", Some("99")).is_none());
        store.persist(t0, session("s3", "p3", &[]));
        assert!(store.restore(t0, "p3", Some("not-a-number")).is_none());
        assert!(store.restore(t0, "unknown", Some("0")).is_none());
    }

    #[test]
    fn bytes_are_bounded() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(RecoveryConfig {
            max_packets: usize::MAX,
            max_bytes: 3 * packet(0).len(),
            ..config()
        });
        for _ in 0..10 {
            store_n(&mut store, t0, &to(&[]));
        }
        let (count, bytes) = store.held();
        assert!(bytes <= 3 * packet(0).len() + 3, "{bytes}");
        assert!((2..=3).contains(&count), "{count}");
    }

    #[test]
    fn old_packets_age_out() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        store_n(&mut store, t0, &to(&[]));
        store_n(&mut store, t0 + Duration::from_secs(11), &to(&[]));
        assert_eq!(store.held().0, 1);
    }
}
