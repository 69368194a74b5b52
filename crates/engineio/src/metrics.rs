//! What an engine counts, for monitoring: read with [`crate::Engine::metrics`].
//!
//! Counters are relaxed atomics, added to once per WebSocket batch, polling response or
//! received message, never per recipient: monitoring must not cost the hot path a lock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::limits::Refusal;

/// The engine's running counts.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    handshakes: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
    refusals: [AtomicU64; Refusal::ALL.len()],
}

impl Counters {
    pub(crate) fn handshake(&self) {
        self.handshakes.fetch_add(1, Ordering::Relaxed);
    }

    /// `messages` Engine.IO packets of `bytes` in all came in.
    pub(crate) fn received(&self, messages: u64, bytes: usize) {
        self.messages_in.fetch_add(messages, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `messages` Engine.IO packets of `bytes` in all went out.
    pub(crate) fn sent(&self, messages: u64, bytes: usize) {
        self.messages_out.fetch_add(messages, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, refusal: Refusal) {
        if let Some(index) = Refusal::ALL.iter().position(|kind| *kind == refusal) {
            self.refusals[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(
        &self,
        sessions_polling: usize,
        sessions_websocket: usize,
    ) -> EngineMetrics {
        EngineMetrics {
            sessions_polling,
            sessions_websocket,
            handshakes: self.handshakes.load(Ordering::Relaxed),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            refusals: Refusal::ALL
                .iter()
                .zip(&self.refusals)
                .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// A snapshot of an engine's counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Open sessions on HTTP long-polling (those upgrading included).
    pub sessions_polling: usize,
    /// Open sessions on WebSocket.
    pub sessions_websocket: usize,
    /// Sessions opened since the engine started.
    pub handshakes: u64,
    /// Engine.IO packets received (heartbeats included).
    pub messages_in: u64,
    /// Their bytes, as encoded on the wire (without WebSocket or HTTP framing).
    pub bytes_in: u64,
    /// Engine.IO packets sent (heartbeats included).
    pub messages_out: u64,
    /// Their bytes, as encoded on the wire (without WebSocket or HTTP framing).
    pub bytes_out: u64,
    /// Handshakes refused by a limit, by kind; every kind is listed.
    pub refusals: Vec<(Refusal, u64)>,
}
