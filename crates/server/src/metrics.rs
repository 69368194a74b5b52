//! `/metrics`: the server's counts in the Prometheus text format, read from
//! [`SocketIo::metrics`] at each scrape (prometheus-client's const metrics, so nothing is
//! recorded twice and the hot paths keep their plain atomic counters).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use switchyard::{SocketIo, LATENCY_BUCKETS_MICROS};

use crate::webhooks::WebhookMetrics;

/// The `Content-Type` of what [`Exporter::render`] returns.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How long a rendering is served again: a scrape walks every session and socket, so
/// anyone hammering `/metrics` gets the same text rather than that work each time.
const RENDER_TTL: Duration = Duration::from_secs(1);

/// Renders the server's metrics for a scrape.
#[derive(Debug)]
pub(crate) struct Exporter {
    registry: Registry,
    last: Mutex<Option<(Instant, Arc<str>)>>,
}

impl Exporter {
    /// The exporter of `io`'s metrics, and of the webhooks' when there are webhooks.
    pub(crate) fn new(io: SocketIo, webhooks: Option<&WebhookMetrics>) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ServerCollector { io }));
        if let Some(webhooks) = webhooks {
            webhooks.register(&mut registry);
        }
        Exporter {
            registry,
            last: Mutex::new(None),
        }
    }

    /// The metrics, in the Prometheus text format, at most [`RENDER_TTL`] old.
    pub(crate) fn render(&self) -> Arc<str> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, text)) = last.as_ref() {
            if at.elapsed() < RENDER_TTL {
                return text.clone();
            }
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        let text: Arc<str> = Arc::from(text);
        *last = Some((Instant::now(), text.clone()));
        text
    }
}

/// Reads the server's snapshot at each scrape.
struct ServerCollector {
    io: SocketIo,
}

impl std::fmt::Debug for ServerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCollector").finish_non_exhaustive()
    }
}

/// One metric family: its name, help, type and unit, and its labelled values.
struct Family<'a> {
    name: &'a str,
    help: &'a str,
    kind: MetricType,
    unit: Option<Unit>,
}

impl Family<'_> {
    /// Encodes `values`, each with its labels (none: an empty list).
    fn encode(
        &self,
        encoder: &mut DescriptorEncoder<'_>,
        values: &[(Vec<(&str, &str)>, u64)],
    ) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), self.kind)?;
        for (labels, value) in values {
            let metric = family.encode_family(labels)?;
            match self.kind {
                MetricType::Counter => ConstCounter::new(*value).encode(metric)?,
                _ => ConstGauge::new(i64::try_from(*value).unwrap_or(i64::MAX)).encode(metric)?,
            }
        }
        Ok(())
    }
}

fn counter<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family {
        name,
        help,
        kind: MetricType::Counter,
        unit: None,
    }
}

fn gauge<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family {
        name,
        help,
        kind: MetricType::Gauge,
        unit: None,
    }
}

fn bytes<'a>(name: &'a str, help: &'a str) -> Family<'a> {
    Family {
        unit: Some(Unit::Bytes),
        ..counter(name, help)
    }
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = self.io.metrics();
        let engine = &metrics.engine;
        let one = |value: u64| vec![(Vec::new(), value)];
        gauge(
            "switchyard_sessions",
            "Open Engine.IO sessions (connections), by transport.",
        )
        .encode(
            &mut encoder,
            &[
                (
                    vec![("transport", "polling")],
                    engine.sessions_polling as u64,
                ),
                (
                    vec![("transport", "websocket")],
                    engine.sessions_websocket as u64,
                ),
            ],
        )?;
        counter("switchyard_handshakes", "Engine.IO sessions opened.")
            .encode(&mut encoder, &one(engine.handshakes))?;
        let refusals: Vec<_> = engine
            .refusals
            .iter()
            .map(|(kind, count)| (vec![("limit", kind.as_str())], *count))
            .collect();
        counter(
            "switchyard_handshake_refusals",
            "Handshakes refused by a limit, by limit.",
        )
        .encode(&mut encoder, &refusals)?;
        counter(
            "switchyard_packets_received",
            "Engine.IO packets received, heartbeats included.",
        )
        .encode(&mut encoder, &one(engine.messages_in))?;
        counter(
            "switchyard_packets_sent",
            "Engine.IO packets sent, heartbeats included.",
        )
        .encode(&mut encoder, &one(engine.messages_out))?;
        bytes(
            "switchyard_received",
            "Bytes of the Engine.IO packets received (without HTTP or WebSocket framing).",
        )
        .encode(&mut encoder, &one(engine.bytes_in))?;
        bytes(
            "switchyard_sent",
            "Bytes of the Engine.IO packets sent (without HTTP or WebSocket framing).",
        )
        .encode(&mut encoder, &one(engine.bytes_out))?;
        let sockets: Vec<_> = metrics
            .sockets
            .iter()
            .map(|(namespace, count)| (vec![("namespace", namespace.as_str())], *count as u64))
            .collect();
        gauge(
            "switchyard_sockets",
            "Connected Socket.IO sockets, by namespace.",
        )
        .encode(&mut encoder, &sockets)?;
        counter(
            "switchyard_events_received",
            "Events received from clients.",
        )
        .encode(&mut encoder, &one(metrics.events_in))?;
        counter(
            "switchyard_events_sent",
            "Events queued for clients: one per emit to a socket, one per recipient of a broadcast.",
        )
        .encode(&mut encoder, &one(metrics.events_out))?;
        counter(
            "switchyard_broadcasts",
            "Broadcasts delivered to this server's sockets, from this server or another node.",
        )
        .encode(&mut encoder, &one(metrics.broadcasts))?;
        gauge(
            "switchyard_acks_pending",
            "Acknowledgements the server waits for from clients.",
        )
        .encode(&mut encoder, &one(metrics.acks_pending as u64))?;
        counter(
            "switchyard_acks_timed_out",
            "Acknowledgements from clients that did not come in time.",
        )
        .encode(&mut encoder, &one(metrics.acks_timed_out))?;
        counter(
            "switchyard_recoveries",
            "Reconnections that asked to recover their session, by result.",
        )
        .encode(
            &mut encoder,
            &[
                (vec![("result", "hit")], metrics.recovery_hits),
                (vec![("result", "miss")], metrics.recovery_misses),
            ],
        )?;
        let refusals: Vec<_> = metrics
            .refusals
            .iter()
            .map(|(kind, count)| (vec![("limit", kind.as_str())], *count))
            .collect();
        counter(
            "switchyard_limit_refusals",
            "What the Socket.IO limits refused, by limit.",
        )
        .encode(&mut encoder, &refusals)?;
        let mut latency = encoder.encode_descriptor(
            "switchyard_adapter_request_duration",
            "Time of the requests to the adapter (with a cluster, to the other servers too), by request.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (kind, timings) in &metrics.adapter_requests {
            let labels = [("request", kind.as_str())];
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_MICROS
                .iter()
                .map(|bound| *bound as f64 / 1e6)
                .chain(std::iter::once(f64::INFINITY))
                .zip(timings.buckets.iter().copied())
                .collect();
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    timings.sum_micros as f64 / 1e6,
                    timings.count,
                    &buckets,
                    None,
                )?;
        }
        let failures: Vec<_> = metrics
            .adapter_requests
            .iter()
            .map(|(kind, timings)| (vec![("request", kind.as_str())], timings.failures))
            .collect();
        counter(
            "switchyard_adapter_request_failures",
            "Requests to the adapter that failed (an error, or no answer in time), by request.",
        )
        .encode(&mut encoder, &failures)?;
        Ok(())
    }
}
