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

/// A request a namespace makes of its adapter: on a cluster, of the other servers too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdapterRequest {
    /// [`crate::BroadcastOperator::fetch_sockets`].
    FetchSockets,
    /// [`crate::BroadcastOperator::sockets_join`].
    Join,
    /// [`crate::BroadcastOperator::sockets_leave`].
    Leave,
    /// [`crate::BroadcastOperator::disconnect_sockets`].
    Disconnect,
    /// [`crate::BroadcastOperator::emit_with_ack`].
    BroadcastWithAck,
    /// [`crate::Namespace::server_side_emit`] and its `_with_ack`.
    ServerSideEmit,
    /// [`crate::Namespace::server_count`].
    ServerCount,
}

impl AdapterRequest {
    /// Every kind.
    pub const ALL: [AdapterRequest; 7] = [
        AdapterRequest::FetchSockets,
        AdapterRequest::Join,
        AdapterRequest::Leave,
        AdapterRequest::Disconnect,
        AdapterRequest::BroadcastWithAck,
        AdapterRequest::ServerSideEmit,
        AdapterRequest::ServerCount,
    ];

    /// A short name for the kind, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            AdapterRequest::FetchSockets => "fetch_sockets",
            AdapterRequest::Join => "join",
            AdapterRequest::Leave => "leave",
            AdapterRequest::Disconnect => "disconnect",
            AdapterRequest::BroadcastWithAck => "broadcast_with_ack",
            AdapterRequest::ServerSideEmit => "server_side_emit",
            AdapterRequest::ServerCount => "server_count",
        }
    }
}

/// The upper bounds of the adapter requests' latency buckets, in microseconds (1 ms to 10 s;
/// a last bucket takes the rest).
pub const LATENCY_BUCKETS_MICROS: [u64; 13] = [
    1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// How long one kind of adapter request took, as a histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLatency {
    /// Requests made.
    pub count: u64,
    /// Of which failed (an adapter error, a timeout).
    pub failures: u64,
    /// Their total time, in microseconds.
    pub sum_micros: u64,
    /// Requests per bucket (not cumulative): one entry per [`LATENCY_BUCKETS_MICROS`] bound,
    /// then the requests slower than the last bound.
    pub buckets: Vec<u64>,
}

/// The running histogram of one kind of request.
#[derive(Debug, Default)]
struct Timings {
    buckets: [AtomicU64; LATENCY_BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
    failures: AtomicU64,
}

impl Timings {
    fn record(&self, micros: u64, failed: bool) {
        let bucket = LATENCY_BUCKETS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(LATENCY_BUCKETS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> RequestLatency {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Relaxed))
            .collect();
        RequestLatency {
            count: buckets.iter().sum(),
            failures: self.failures.load(Ordering::Relaxed),
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
            buckets,
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
    requests: [Timings; AdapterRequest::ALL.len()],
}

impl Counters {
    /// Awaits `request`, a `kind` request of the adapter, and records how long it took.
    pub(crate) async fn timed<T, E>(
        &self,
        kind: AdapterRequest,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let result = request.await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(index) = AdapterRequest::ALL.iter().position(|each| *each == kind) {
            self.requests[index].record(micros, result.is_err());
        }
        result
    }

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
    /// How long the requests to the adapter took, by kind; every kind is listed.
    pub adapter_requests: Vec<(AdapterRequest, RequestLatency)>,
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
            adapter_requests: AdapterRequest::ALL
                .iter()
                .zip(&self.requests)
                .map(|(kind, timings)| (*kind, timings.snapshot()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn adapter_requests_are_timed_in_buckets_with_their_failures() {
        let counters = Counters::default();
        let ok: Result<(), ()> = counters
            .timed(AdapterRequest::FetchSockets, async { Ok(()) })
            .await;
        assert_eq!(ok, Ok(()));
        let failed: Result<(), &str> = counters
            .timed(AdapterRequest::FetchSockets, async { Err("no answer") })
            .await;
        assert_eq!(failed, Err("no answer"));
        let timings = &counters.requests[0];
        timings.record(1_500, false);
        timings.record(20_000_000, false);
        let snapshot = counters.snapshot(EngineMetrics::default(), Vec::new(), 0);
        let (kind, latency) = &snapshot.adapter_requests[0];
        assert_eq!(*kind, AdapterRequest::FetchSockets);
        assert_eq!(latency.count, 4);
        assert_eq!(latency.failures, 1);
        assert_eq!(latency.buckets.len(), LATENCY_BUCKETS_MICROS.len() + 1);
        // Two instant requests in the first bucket, 1.5 ms in the second, 20 s past the last.
        assert_eq!(latency.buckets[0], 2);
        assert_eq!(latency.buckets[1], 1);
        assert_eq!(latency.buckets[LATENCY_BUCKETS_MICROS.len()], 1);
        assert!(latency.sum_micros >= 20_001_500);
        assert_eq!(snapshot.adapter_requests.len(), AdapterRequest::ALL.len());
    }
}
