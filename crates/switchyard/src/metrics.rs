//! What a server counts, for monitoring: read with [`crate::SocketIo::metrics`].
//!
//! Relaxed atomic counters shared by the server's namespaces, added to once per packet
//! received, per emit, and per broadcast (its recipients at once), never per recipient.

use std::sync::atomic::{AtomicU64, Ordering};

use switchyard_engineio::EngineMetrics;

/// A limit of the Socket.IO layer that refused something a client sent or asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitRefusal {
    /// An event or CONNECT over the client's rate (`event_rate`), dropped.
    EventRate,
    /// A join past `max_rooms_per_socket`.
    RoomsPerSocket,
    /// An emit with ack past `max_pending_acks`.
    PendingAcks,
    /// A CONNECT past `max_namespaces_per_connection`.
    NamespacesPerConnection,
    /// A CONNECT whose `auth` is over `max_auth_bytes`.
    AuthBytes,
}

impl LimitRefusal {
    /// Every kind.
    pub const ALL: [LimitRefusal; 5] = [
        LimitRefusal::EventRate,
        LimitRefusal::RoomsPerSocket,
        LimitRefusal::PendingAcks,
        LimitRefusal::NamespacesPerConnection,
        LimitRefusal::AuthBytes,
    ];

    /// A short name for the kind, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitRefusal::EventRate => "event_rate",
            LimitRefusal::RoomsPerSocket => "max_rooms_per_socket",
            LimitRefusal::PendingAcks => "max_pending_acks",
            LimitRefusal::NamespacesPerConnection => "max_namespaces_per_connection",
            LimitRefusal::AuthBytes => "max_auth_bytes",
        }
    }
}

/// The server's running counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    events_in: AtomicU64,
    events_out: AtomicU64,
    broadcasts: AtomicU64,
    acks_timed_out: AtomicU64,
    recovery_hits: AtomicU64,
    recovery_misses: AtomicU64,
    refusals: [AtomicU64; LimitRefusal::ALL.len()],
}

impl Counters {
    /// A client's EVENT (or BINARY_EVENT) came in.
    pub(crate) fn event_in(&self) {
        self.events_in.fetch_add(1, Ordering::Relaxed);
    }

    /// `count` EVENT packets were queued for sockets.
    pub(crate) fn events_out(&self, count: usize) {
        self.events_out.fetch_add(count as u64, Ordering::Relaxed);
    }

    /// A broadcast was delivered to `recipients` local sockets.
    pub(crate) fn broadcast(&self, recipients: usize) {
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        self.events_out(recipients);
    }

    pub(crate) fn ack_timed_out(&self) {
        self.acks_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// A client asked to recover its session; `hit` says whether it did.
    pub(crate) fn recovery(&self, hit: bool) {
        let counter = if hit {
            &self.recovery_hits
        } else {
            &self.recovery_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, refusal: LimitRefusal) {
        if let Some(index) = LimitRefusal::ALL.iter().position(|kind| *kind == refusal) {
            self.refusals[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A snapshot of a server's counts, with its engine's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// The Engine.IO layer: sessions by transport, packets and bytes, handshake refusals.
    pub engine: EngineMetrics,
    /// Connected sockets per namespace.
    pub sockets: Vec<(String, usize)>,
    /// Events (EVENT and BINARY_EVENT packets) received from clients.
    pub events_in: u64,
    /// Events queued for clients: one per emit to a socket, one per recipient of a broadcast.
    pub events_out: u64,
    /// Broadcasts delivered to this server's sockets (from this server or another node), with
    /// acks or without; one that reaches no local socket counts too. With connection state
    /// recovery on, an emit to one socket goes through its namespace and counts as one.
    pub broadcasts: u64,
    /// Acknowledgements this server waits for from clients now.
    pub acks_pending: usize,
    /// Acknowledgements from clients that did not come in time.
    pub acks_timed_out: u64,
    /// Reconnections that recovered their session (connection state recovery).
    pub recovery_hits: u64,
    /// Reconnections that asked to recover a session that could not be found.
    pub recovery_misses: u64,
    /// What the Socket.IO layer's limits refused, by kind; every kind is listed.
    pub refusals: Vec<(LimitRefusal, u64)>,
}

impl Counters {
    pub(crate) fn snapshot(
        &self,
        engine: EngineMetrics,
        sockets: Vec<(String, usize)>,
        acks_pending: usize,
    ) -> Metrics {
        Metrics {
            engine,
            sockets,
            events_in: self.events_in.load(Ordering::Relaxed),
            events_out: self.events_out.load(Ordering::Relaxed),
            broadcasts: self.broadcasts.load(Ordering::Relaxed),
            acks_pending,
            acks_timed_out: self.acks_timed_out.load(Ordering::Relaxed),
            recovery_hits: self.recovery_hits.load(Ordering::Relaxed),
            recovery_misses: self.recovery_misses.load(Ordering::Relaxed),
            refusals: LimitRefusal::ALL
                .iter()
                .zip(&self.refusals)
                .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}
