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
    /// Whether a recovering client skips the connect middlewares (default false).
    ///
    /// By default the middlewares run first, on a fresh socket, before the kept session is
    /// touched: a client must authenticate again (its token may have expired or lost rooms)
    /// before the private id takes over a session, and what the middlewares store (claims,
    /// session data, rooms) moves to the recovered socket. With `true`, as on the reference
    /// server, the private id alone re-admits the client.
    pub skip_middlewares: bool,
    /// Most packets kept per namespace for replay; the oldest go first (default 10,000).
    pub max_packets: usize,
    /// Most bytes of packets kept per namespace for replay; the oldest go first (default 32 MiB).
    pub max_bytes: usize,
    /// The namespaces recovery is on in; `None` (the default): every namespace. Elsewhere a
    /// namespace works as without recovery: no offsets, no session kept, a client's `pid`
    /// ignored.
    pub namespaces: Option<Vec<String>>,
}

impl RecoveryConfig {
    /// Whether recovery is on in namespace `nsp`.
    pub fn covers(&self, nsp: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|names| names.iter().any(|name| name == nsp))
    }
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: false,
            max_packets: 10_000,
            max_bytes: 32 * 1024 * 1024,
            namespaces: None,
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
    /// The offset of the last recoverable packet handed out before the socket joined: the
    /// empty string if none had been, `None` if unknown (an adapter that does not track it).
    /// A client that drops before it saw any packet reports no offset, and its replay starts
    /// here; one that reports an offset from an earlier session never gets packets from
    /// before this one ([`crate::adapter::Adapter::attach_socket`]).
    #[serde(default)]
    pub start_offset: Option<String>,
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
            .field("start_offset", &self.start_offset)
            .finish()
    }
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

    /// Drops the sessions kept for longer than `max_disconnection_duration`, and the packets
    /// no session can still need. Called on a timer by the in-memory adapter, so that expired
    /// sessions go even when nothing else happens in the namespace.
    pub fn prune(&mut self, now: Instant) {
        self.last_session_prune = None;
        self.prune_sessions(now);
        self.prune_packets(now);
    }

    /// How many disconnected sessions are kept.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The [`SessionState::start_offset`] of a socket that joins now: the offset of the last
    /// packet appended, or the empty string before the first.
    pub fn start_offset(&self) -> String {
        self.next_offset
            .checked_sub(1)
            .map(|last| last.to_string())
            .unwrap_or_default()
    }

    /// Keeps the session of a socket that ended uncleanly.
    pub fn persist(&mut self, now: Instant, state: SessionState) {
        self.prune_sessions(now);
        self.sessions
            .insert(state.pid.clone(), KeptSession { state, at: now });
    }

    /// Gives back session `pid` with the packets meant for it after `offset` and after the
    /// session's [`SessionState::start_offset`] (the later of the two; a client may still
    /// report an offset from an earlier session), or nothing if the session expired, is
    /// unknown, where to start is unknown, or any packet it missed is no longer held.
    ///
    /// `attach` gets the session first and answers the rooms the socket is back in (the kept
    /// rooms it is still entitled to): only packets for those rooms, or for the socket itself,
    /// are replayed. Call under the lock that orders broadcasts, so that nothing is delivered
    /// between the cut and the socket's return.
    pub fn restore(
        &mut self,
        now: Instant,
        pid: &str,
        offset: Option<&str>,
        attach: impl FnOnce(SessionState) -> Vec<Room>,
    ) -> Option<Vec<EncodedPacket>> {
        self.prune_packets(now);
        let kept = self.sessions.remove(pid)?;
        if now.saturating_duration_since(kept.at) > self.config.max_disconnection_duration {
            return None;
        }
        // The first offset the client may have missed.
        let after = |offset: &str| offset.parse::<u64>().ok()?.checked_add(1);
        let from_client = match offset {
            Some(offset) => Some(after(offset)?),
            None => None,
        };
        let from_start = match kept.state.start_offset.as_deref() {
            Some("") => Some(0),
            Some(start) => Some(after(start)?),
            None => None,
        };
        let first_missed = match (from_client, from_start) {
            (Some(client), Some(start)) => client.max(start),
            (Some(first), None) | (None, Some(first)) => first,
            (None, None) => return None,
        };
        if first_missed > self.next_offset {
            return None;
        }
        // Every offset was stored; if the first still held is past the first missed one, a
        // packet the client may have missed was evicted.
        if first_missed < self.next_offset {
            match self.packets.front() {
                Some(front) if front.offset <= first_missed => {}
                _ => return None,
            }
        }
        let sid = kept.state.sid.clone();
        let mut member_of = attach(kept.state);
        member_of.push(sid);
        let start = self.packets.partition_point(|p| p.offset < first_missed);
        let missed = self
            .packets
            .range(start..)
            .filter(|p| p.options.targets(&member_of))
            .map(|p| p.packet.clone())
            .collect();
        Some(missed)
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
            skip_middlewares: false,
            max_packets: 3,
            max_bytes: 1_000,
            namespaces: None,
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
            start_offset: None,
            extensions: None,
        }
    }

    /// `store.restore` with the kept rooms given back whole: the socket id and the replay.
    fn restore(
        store: &mut RecoveryStore,
        now: Instant,
        pid: &str,
        offset: Option<&str>,
    ) -> Option<(Sid, Vec<EncodedPacket>)> {
        let mut sid = None;
        let missed = store.restore(now, pid, offset, |state| {
            sid = Some(state.sid.clone());
            state.rooms
        })?;
        Some((sid?, missed))
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
        let (sid, missed) = restore(&mut store, t0, "p1", Some(&seen.to_string())).unwrap();
        assert_eq!(&*sid, "s1");
        assert_eq!(missed, vec![packet(1), packet(3)]);
        // A session is given back once.
        assert!(restore(&mut store, t0, "p1", Some(&seen.to_string())).is_none());
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
        let (_, missed) = restore(&mut store, t0, "p1", Some(&seen.to_string())).unwrap();
        assert!(missed.is_empty());
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
        assert!(restore(&mut store, t0, "p1", Some(&seen.to_string())).is_none());
    }

    #[test]
    fn the_latest_offset_recovers_with_nothing_missed() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        for _ in 0..5 {
            store_n(&mut store, t0, &to(&[]));
        }
        store.persist(t0, session("s1", "p1", &[]));
        let (_, missed) = restore(&mut store, t0, "p1", Some("4")).unwrap();
        assert!(missed.is_empty());
    }

    #[test]
    fn expired_sessions_and_unknown_offsets_are_not_recovered() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &[]));
        assert!(restore(&mut store, t0 + Duration::from_secs(11), "p1", Some("0")).is_none());
        store.persist(t0, session("s2", "p2", &[]));
        assert!(restore(&mut store, t0, "p2", Some("99")).is_none());
        store.persist(t0, session("s3", "p3", &[]));
        assert!(restore(&mut store, t0, "p3", Some("not-a-number")).is_none());
        assert!(restore(&mut store, t0, "unknown", Some("0")).is_none());
    }

    #[test]
    fn recovery_covers_every_namespace_unless_it_names_some() {
        assert!(config().covers("/anything"));
        let some = RecoveryConfig {
            namespaces: Some(vec!["/chat".into()]),
            ..config()
        };
        assert!(some.covers("/chat"));
        assert!(!some.covers("/admin") && !some.covers("/"));
        let none = RecoveryConfig {
            namespaces: Some(Vec::new()),
            ..config()
        };
        assert!(!none.covers("/chat"));
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

    /// socket.io-client reconnects with its `pid` but no `offset` when it dropped before it
    /// saw its first packet: the replay starts where the socket joined, not nowhere.
    #[test]
    fn a_session_without_an_offset_resumes_from_where_it_joined() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(RecoveryConfig {
            max_packets: 100,
            ..config()
        });
        assert_eq!(store.start_offset(), "");
        store_n(&mut store, t0, &to(&[]));
        let joined_at = Some(store.start_offset());
        assert_eq!(joined_at.as_deref(), Some("0"));
        store_n(&mut store, t0, &to(&[]));
        store_n(&mut store, t0, &to(&["a"]));
        store.persist(
            t0,
            SessionState {
                start_offset: joined_at,
                ..session("s1", "p1", &[])
            },
        );
        let (_, missed) = restore(&mut store, t0, "p1", None).unwrap();
        assert_eq!(missed, vec![packet(1)], "from the join on, for its rooms");
        // Joined before any packet: everything is replayed.
        store.persist(
            t0,
            SessionState {
                start_offset: Some(String::new()),
                ..session("s2", "p2", &["a"])
            },
        );
        let (_, missed) = restore(&mut store, t0, "p2", None).unwrap();
        assert_eq!(missed, vec![packet(0), packet(1), packet(2)]);
        // Where it joined unknown, and no offset: nothing to start from.
        store.persist(t0, session("s3", "p3", &[]));
        assert!(restore(&mut store, t0, "p3", None).is_none());
    }

    /// A client keeps its last offset across sessions: one from before this session joined
    /// never replays what was sent before it.
    #[test]
    fn an_offset_from_an_earlier_session_replays_nothing_from_before_the_join() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(RecoveryConfig {
            max_packets: 100,
            ..config()
        });
        for _ in 0..3 {
            store_n(&mut store, t0, &to(&[]));
        }
        let joined_at = Some(store.start_offset());
        store_n(&mut store, t0, &to(&[]));
        store.persist(
            t0,
            SessionState {
                start_offset: joined_at,
                ..session("s1", "p1", &[])
            },
        );
        let (_, missed) = restore(&mut store, t0, "p1", Some("0")).unwrap();
        assert_eq!(missed, vec![packet(3)]);
    }

    /// Rooms the socket is no longer entitled to (its new token lost them) are not rejoined,
    /// and what was sent to them while it was away is not replayed.
    #[test]
    fn only_the_rooms_attach_keeps_are_replayed() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        let seen = store_n(&mut store, t0, &to(&[]));
        store.persist(t0, session("s1", "p1", &["a", "secret"]));
        store_n(&mut store, t0, &to(&["secret"]));
        store_n(&mut store, t0, &to(&["a"]));
        let missed = store
            .restore(t0, "p1", Some(&seen.to_string()), |state| {
                state
                    .rooms
                    .into_iter()
                    .filter(|room| &**room != "secret")
                    .collect()
            })
            .unwrap();
        assert_eq!(missed, vec![packet(2)]);
    }

    #[test]
    fn pruning_drops_expired_sessions_without_other_activity() {
        let t0 = Instant::now();
        let mut store = RecoveryStore::new(config());
        store.persist(t0, session("s1", "p1", &[]));
        store.persist(t0 + Duration::from_secs(5), session("s2", "p2", &[]));
        store.prune(t0 + Duration::from_secs(11));
        assert_eq!(store.session_count(), 1);
        store.prune(t0 + Duration::from_secs(16));
        assert_eq!(store.session_count(), 0);
    }
}
