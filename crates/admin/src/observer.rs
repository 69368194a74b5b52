//! The server's observer: turns what happens into notes for the forwarder, cheaply, and only
//! while an admin is there to read them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::SystemTime;

use serde_json::Value;
use switchyard::adapter::EncodedPacket;
use switchyard::engineio::{CloseReason, Socket as EngineSocket};
use switchyard::{Args, DisconnectReason, Namespace, Observer, Room, Sid, Socket};
use tokio::sync::mpsc;

use crate::{AdminMode, AdminUiConfig};

/// Something that happened, waiting to be told to the admins, and the bytes it holds.
pub(crate) struct Note {
    pub(crate) what: Noted,
    /// Counted against the queue's byte budget until the note is taken.
    pub(crate) bytes: usize,
}

/// What happened.
pub(crate) enum Noted {
    /// A socket connected (described when the note goes out).
    Connected { socket: Socket, at: SystemTime },
    /// A socket disconnected.
    Disconnected {
        nsp: Namespace,
        id: Sid,
        reason: &'static str,
        at: SystemTime,
    },
    /// A socket joined (`joined`) or left a room.
    Room {
        joined: bool,
        nsp: Namespace,
        room: Room,
        id: Sid,
        at: SystemTime,
    },
    /// A socket received an event.
    Received {
        nsp: Namespace,
        id: Sid,
        event: String,
        args: Args,
        at: SystemTime,
    },
    /// A packet was queued for a socket (decoded, and kept if an event, when it goes out).
    Sent {
        nsp: Namespace,
        id: Sid,
        packet: EncodedPacket,
        at: SystemTime,
    },
}

/// The reasons an Engine.IO connection closes, in the order of [`AdminObserver::closed`].
pub(crate) const CLOSE_REASONS: [CloseReason; 6] = [
    CloseReason::TransportClose,
    CloseReason::TransportError,
    CloseReason::PingTimeout,
    CloseReason::ParseError,
    CloseReason::ForcedClose,
    CloseReason::ServerShutdown,
];

/// The admin namespace's [`Observer`].
pub(crate) struct AdminObserver {
    notes: mpsc::Sender<Note>,
    /// Whether the live events are wanted at all (development mode).
    verbose: bool,
    /// Admin sockets connected to this server; nothing is noted while there is none.
    admins: AtomicUsize,
    /// Whether an admin socket is connected to any server of the cluster (this one
    /// included), as last counted; they are all sent this server's events.
    admins_anywhere: AtomicBool,
    /// Set when the admin namespace is taken down.
    stopped: AtomicBool,
    /// Notes dropped because the queue was full, or past the rate of live events.
    dropped: AtomicU64,
    /// Bytes the queued notes hold (event arguments, packets).
    queued_bytes: AtomicUsize,
    /// The most bytes queued notes may hold.
    max_queued_bytes: usize,
    /// The admin namespace, whose own events are not reported (as the reference).
    namespace: String,
    /// Engine.IO connections opened, for the dashboard's `rawConnection`.
    pub(crate) opened: AtomicU64,
    /// Engine.IO connections closed, by reason ([`CLOSE_REASONS`]).
    pub(crate) closed: [AtomicU64; CLOSE_REASONS.len()],
}

impl AdminObserver {
    /// The observer and the receiving end of its notes.
    pub(crate) fn new(config: &AdminUiConfig) -> (AdminObserver, mpsc::Receiver<Note>) {
        let (notes, receiver) = mpsc::channel(config.queue_capacity);
        let observer = AdminObserver {
            notes,
            verbose: config.mode == AdminMode::Development,
            admins: AtomicUsize::new(0),
            admins_anywhere: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes: config.queue_max_bytes,
            namespace: config.namespace.clone(),
            opened: AtomicU64::new(0),
            closed: Default::default(),
        };
        (observer, receiver)
    }

    /// An admin socket connected to this server.
    pub(crate) fn admin_joined(&self) {
        self.admins.fetch_add(1, Ordering::AcqRel);
    }

    /// An admin socket of this server left.
    pub(crate) fn admin_left(&self) {
        let _ = self
            .admins
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Whether an admin socket is connected to this server.
    pub(crate) fn has_admins(&self) -> bool {
        self.local_admins() > 0
    }

    /// The admin sockets connected to this server.
    pub(crate) fn local_admins(&self) -> usize {
        self.admins.load(Ordering::Acquire)
    }

    /// Notes whether admin sockets are connected to any server of the cluster.
    pub(crate) fn set_admins_anywhere(&self, any: bool) {
        self.admins_anywhere.store(any, Ordering::Release);
    }

    /// Whether the admin namespace was taken down.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// A note of `bytes` left the queue.
    pub(crate) fn release(&self, bytes: usize) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// One more live event dropped.
    pub(crate) fn count_dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops noting anything.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }

    /// Notes dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Whether live events are noted now.
    pub(crate) fn watching(&self) -> bool {
        self.verbose
            && (self.has_admins() || self.admins_anywhere.load(Ordering::Acquire))
            && !self.stopped.load(Ordering::Acquire)
    }

    /// Whether the socket's events are reported: not those of the admin namespace, whose
    /// own traffic would feed itself.
    fn reported(&self, socket: &Socket) -> bool {
        self.watching() && socket.namespace().name() != self.namespace
    }

    /// Queues `what`, which holds `bytes`, unless the queue is full by count or by bytes.
    fn note(&self, what: Noted, bytes: usize) {
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.max_queued_bytes {
            self.release(bytes);
            self.count_dropped();
            return;
        }
        if let Err(refused) = self.notes.try_send(Note { what, bytes }) {
            let note = match refused {
                mpsc::error::TrySendError::Full(note) | mpsc::error::TrySendError::Closed(note) => {
                    note
                }
            };
            self.release(note.bytes);
            self.count_dropped();
        }
    }

    fn room(&self, joined: bool, socket: &Socket, room: &Room) {
        if self.watching() {
            let what = Noted::Room {
                joined,
                nsp: socket.namespace(),
                room: room.clone(),
                id: socket.id().clone(),
                at: SystemTime::now(),
            };
            self.note(what, room.len());
        }
    }
}

/// About how many bytes `value` holds: its JSON text's length, without writing it.
fn json_bytes(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 16,
        Value::String(text) => text.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|item| json_bytes(item) + 1).sum::<usize>(),
        Value::Object(fields) => {
            2 + fields
                .iter()
                .map(|(key, value)| key.len() + 4 + json_bytes(value))
                .sum::<usize>()
        }
    }
}

impl Observer for AdminObserver {
    fn active(&self) -> bool {
        self.watching()
    }

    fn connection_opened(&self, _connection: &EngineSocket) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    fn connection_closed(&self, _connection: &EngineSocket, reason: CloseReason) {
        if let Some(index) = CLOSE_REASONS.iter().position(|known| *known == reason) {
            self.closed[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn socket_connected(&self, socket: &Socket) {
        if self.watching() {
            // The socket's own room first, as the reference's adapter reports it.
            self.room(true, socket, socket.id());
            let what = Noted::Connected {
                socket: socket.clone(),
                at: SystemTime::now(),
            };
            self.note(what, 0);
        }
    }

    fn socket_disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        if self.watching() {
            let what = Noted::Disconnected {
                nsp: socket.namespace(),
                id: socket.id().clone(),
                reason: reason.as_str(),
                at: SystemTime::now(),
            };
            self.note(what, 0);
            self.room(false, socket, socket.id());
        }
    }

    fn room_joined(&self, socket: &Socket, room: &Room) {
        self.room(true, socket, room);
    }

    fn room_left(&self, socket: &Socket, room: &Room) {
        self.room(false, socket, room);
    }

    fn event_received(&self, socket: &Socket, event: &str, args: &Args) {
        if self.reported(socket) {
            // Counted before the copy is made: an event past the budget is not copied.
            let bytes = event.len() + args.values.iter().map(json_bytes).sum::<usize>();
            if self.queued_bytes.load(Ordering::Acquire) + bytes > self.max_queued_bytes {
                self.count_dropped();
                return;
            }
            let what = Noted::Received {
                nsp: socket.namespace(),
                id: socket.id().clone(),
                event: event.to_owned(),
                args: args.clone(),
                at: SystemTime::now(),
            };
            self.note(what, bytes);
        }
    }

    fn packet_sent(&self, socket: &Socket, packet: &EncodedPacket) {
        if self.reported(socket) {
            // The packet's frames are shared with its other recipients; the budget counts
            // them for each note all the same, since each keeps them alive.
            let what = Noted::Sent {
                nsp: socket.namespace(),
                id: socket.id().clone(),
                packet: packet.clone(),
                at: SystemTime::now(),
            };
            self.note(what, packet.len());
        }
    }
}
