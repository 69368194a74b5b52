//! Webhooks to the app's backend: it decides who connects (and with which data and rooms),
//! hears of disconnections, and answers the client events forwarded to it.
//!
//! Every call is an HTTP `POST` of a JSON object to the namespace's `--webhook-url`, with:
//!
//! | header | value |
//! | --- | --- |
//! | `X-Switchyard-Event` | `connect`, `disconnect` or `event` (also the body's `type`) |
//! | `X-Switchyard-Delivery` | a random id, the same on every retry of one call |
//! | `X-Switchyard-Signature` | `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`, keyed with `--webhook-secret` |
//!
//! | call | body | the backend answers (2xx, JSON) |
//! | --- | --- | --- |
//! | `connect` | `{ type, namespace, socket, user, auth, address, time }` | `{ allow: true, data?, rooms? }` or `{ allow: false, message?, data? }` |
//! | `disconnect` | `{ type, namespace, socket, user, reason, data, time }` | anything (ignored) |
//! | `event` | `{ type, namespace, socket, user, data, event, args, time }` | the event's ack, as is |
//!
//! `data` is the socket's session data (what the connect answer attached); a binary argument
//! of a forwarded event is `{ "$binary": "<base64>" }`. A refused connection gets a
//! `connect_error` with the backend's `message` (default `refused by the backend`) and `data`;
//! when the backend cannot answer (down, too slow, busy, a bad answer) the connection gets
//! `connect_error` `backend unavailable` and a forwarded event the ack `{ error: "backend
//! unavailable" }`: nothing waits longer than `--webhook-timeout-ms`. A 4xx answer to an event
//! is the ack `{ error }`, with the backend's `error` (or `message`) field when it gives one.
//!
//! Only disconnect calls are retried (`--webhook-retries`, backing off from 200 ms): the
//! delivery id makes them idempotent for the backend. A connect or event call that fails is
//! answered to the client at once, which may try again itself.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use aws_lc_rs::hmac;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchyard::{Args, ConnectError, DisconnectReason, Namespace, Socket};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tracing::warn;

use crate::config::{WebhookHooks, WebhookSettings};
use crate::identity;
use crate::input::{self, ack, InputError};
use crate::rooms::RoomRules;

/// The header naming the call.
pub(crate) const EVENT_HEADER: &str = "x-switchyard-event";
/// The header with the call's id.
pub(crate) const DELIVERY_HEADER: &str = "x-switchyard-delivery";
/// The header with the call's signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-switchyard-signature";

/// The first pause before retrying a disconnect call; it doubles at each retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// What a client sees when the backend cannot answer.
const UNAVAILABLE: &str = "backend unavailable";

/// The kinds of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // Label values, as Prometheus shows them.
pub(crate) enum Kind {
    /// Whether a socket may connect.
    connect,
    /// A socket disconnected.
    disconnect,
    /// A client event forwarded.
    event,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::connect => "connect",
            Kind::disconnect => "disconnect",
            Kind::event => "event",
        }
    }
}

/// Why a call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WebhookError {
    /// Every call slot stayed taken for the whole timeout.
    #[error("no free webhook slot (--webhook-concurrency)")]
    Busy,
    /// The call did not complete in time.
    #[error("timed out")]
    Timeout,
    /// The backend could not be reached or the exchange broke.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The backend answered with an error status; its `error` or `message` field, if any.
    #[error("status {0}")]
    Status(StatusCode, Option<String>),
    /// The answer was longer than `--webhook-max-response-bytes`.
    #[error("answer too large")]
    TooLarge,
    /// The answer was not what the call expects.
    #[error("invalid answer: {0}")]
    Invalid(String),
}

impl WebhookError {
    /// What the client is told of the failure (no backend details).
    fn outcome_text(&self) -> &'static str {
        match self {
            WebhookError::Busy => "busy",
            WebhookError::Timeout => "timeout",
            WebhookError::Unreachable(_) => "unreachable",
            WebhookError::Status(..) => "backend error",
            WebhookError::TooLarge | WebhookError::Invalid(_) => "invalid answer",
        }
    }

    /// The metric label of the failure.
    fn outcome(&self) -> Outcome {
        match self {
            WebhookError::Busy => Outcome::busy,
            WebhookError::Timeout => Outcome::timeout,
            WebhookError::Unreachable(_) => Outcome::unreachable,
            WebhookError::Status(status, _) if status.is_client_error() => Outcome::refused,
            WebhookError::Status(..) => Outcome::error,
            WebhookError::TooLarge | WebhookError::Invalid(_) => Outcome::invalid,
        }
    }
}

/// How calls ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // Label values, as Prometheus shows them.
enum Outcome {
    ok,
    refused,
    error,
    timeout,
    unreachable,
    busy,
    invalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    kind: Kind,
    outcome: Outcome,
}

/// The webhook metrics, registered with the `/metrics` registry.
#[derive(Debug, Clone)]
pub(crate) struct WebhookMetrics {
    latency: Family<CallLabels, Histogram>,
    calls: Family<OutcomeLabels, Counter>,
}

impl WebhookMetrics {
    fn new() -> WebhookMetrics {
        WebhookMetrics {
            latency: Family::new_with_constructor(|| {
                // 1 ms to about 16 s.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    0.001, 2.0, 15,
                ))
            }),
            calls: Family::default(),
        }
    }

    /// Adds the webhook metrics to `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "switchyard_webhook_duration",
            "Time of each webhook attempt, by call",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "switchyard_webhook_calls",
            "Webhook attempts by call and outcome (ok, refused: 4xx, error: 5xx, timeout, unreachable, busy, invalid answer)",
            self.calls.clone(),
        );
    }
}

/// The TLS settings of https:// webhooks: the system's roots, and those of `ca_file` (PEM).
pub(crate) fn tls_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        warn!(%error, "a system certificate authority could not be read");
    }
    let (added, _ignored) = roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("cannot read the webhook CA file {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("invalid PEM in {}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!("no certificate in {}", path.display());
        }
        for cert in certs {
            roots
                .add(cert)
                .with_context(|| format!("an unusable certificate in {}", path.display()))?;
        }
    } else if added == 0 {
        warn!("no system certificate authority found: https webhooks will fail (see --webhook-ca-file)");
    }
    Ok(ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTP client of the webhooks, shared by every namespace.
#[derive(Debug, Clone)]
pub(crate) struct Webhooks(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    key: hmac::Key,
    timeout: Duration,
    /// Call slots per kind (connect, disconnect, event), so that a flood of one kind of
    /// call cannot starve the others.
    slots: [Semaphore; 3],
    /// Disconnect calls still running (their retries included), for the drain.
    reports: tokio::sync::watch::Sender<usize>,
    retries: u32,
    max_response_bytes: usize,
    max_pending: usize,
    metrics: WebhookMetrics,
}

impl Webhooks {
    /// The client for `settings`, signing with `secret`; fails when the CA file of
    /// `--webhook-ca-file` cannot be read.
    pub(crate) fn new(settings: &WebhookSettings, secret: &str) -> anyhow::Result<Webhooks> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.timeout));
        connector.set_nodelay(true);
        // https:// URLs go through rustls; http:// ones stay plain.
        connector.enforce_http(false);
        let tls = tls_config(settings.ca_file.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Webhooks(Arc::new(Inner {
            client,
            key: hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
            timeout: settings.timeout,
            slots: [(); 3].map(|()| Semaphore::new(settings.concurrency)),
            reports: tokio::sync::watch::Sender::new(0),
            retries: settings.retries,
            max_response_bytes: settings.max_response_bytes,
            max_pending: settings.max_pending,
            metrics: WebhookMetrics::new(),
        })))
    }

    /// Waits, `timeout` at most, for the disconnect calls still running (a drain makes many):
    /// how many were left.
    pub(crate) async fn settle(&self, timeout: Duration) -> usize {
        let mut running = self.0.reports.subscribe();
        let _ = tokio::time::timeout(timeout, running.wait_for(|running| *running == 0)).await;
        let left = *running.borrow();
        left
    }

    /// The metrics of the calls.
    pub(crate) fn metrics(&self) -> &WebhookMetrics {
        &self.0.metrics
    }

    /// The hooks of one namespace, `None` when it has none.
    pub(crate) fn for_namespace(&self, hooks: &WebhookHooks) -> Option<NamespaceHooks> {
        let url: Uri = hooks.url.as_deref()?.parse().ok()?;
        hooks.any().then(|| NamespaceHooks {
            webhooks: self.clone(),
            url,
            connect: hooks.connect,
            disconnect: hooks.disconnect,
            events: hooks.events.iter().cloned().collect(),
        })
    }

    /// Posts `body` as a `kind` call to `url`, retried as the kind allows.
    async fn call(&self, url: &Uri, kind: Kind, body: &Value) -> Result<Value, WebhookError> {
        let body = Bytes::from(body.to_string());
        let delivery = delivery_id();
        let retries = if kind == Kind::disconnect {
            self.0.retries
        } else {
            0
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            let result = self.attempt(url, kind, &delivery, body.clone()).await;
            let retry = match &result {
                Ok(_) => false,
                // The backend read the call and refused it: the same call gets the same answer.
                Err(WebhookError::Status(status, _)) => !status.is_client_error(),
                Err(_) => true,
            };
            if !retry || attempt >= retries {
                return result;
            }
            attempt += 1;
            tracing::debug!(kind = kind.as_str(), attempt, "retrying a webhook call");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    /// One attempt, within the timeout, counted in the metrics.
    async fn attempt(
        &self,
        url: &Uri,
        kind: Kind,
        delivery: &str,
        body: Bytes,
    ) -> Result<Value, WebhookError> {
        let started = Instant::now();
        let deadline = started + self.0.timeout;
        let result = self.send(url, kind, delivery, body, deadline).await;
        let outcome = match &result {
            Ok(_) => Outcome::ok,
            Err(error) => error.outcome(),
        };
        let metrics = &self.0.metrics;
        metrics
            .latency
            .get_or_create(&CallLabels { kind })
            .observe(started.elapsed().as_secs_f64());
        metrics
            .calls
            .get_or_create(&OutcomeLabels { kind, outcome })
            .inc();
        result
    }

    async fn send(
        &self,
        url: &Uri,
        kind: Kind,
        delivery: &str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Value, WebhookError> {
        let _slot = tokio::time::timeout_at(deadline, self.0.slots[kind as usize].acquire())
            .await
            .map_err(|_| WebhookError::Busy)?
            .map_err(|_| WebhookError::Busy)?;
        let signature = sign(&self.0.key, unix_seconds(), &body);
        let request = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("switchyard/", env!("CARGO_PKG_VERSION")),
            )
            .header(EVENT_HEADER, kind.as_str())
            .header(DELIVERY_HEADER, delivery)
            .header(SIGNATURE_HEADER, signature)
            .body(Full::new(body))
            .map_err(|error| WebhookError::Unreachable(error.to_string()))?;
        let exchange = async {
            let response = self
                .0
                .client
                .request(request)
                .await
                .map_err(|error| WebhookError::Unreachable(error_chain(&error)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), self.0.max_response_bytes)
                .collect()
                .await
                .map_err(|error| {
                    if error.is::<http_body_util::LengthLimitError>() {
                        WebhookError::TooLarge
                    } else {
                        WebhookError::Unreachable(error.to_string())
                    }
                })?
                .to_bytes();
            Ok::<_, WebhookError>((status, body))
        };
        let (status, body) = tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| WebhookError::Timeout)??;
        let blank = body.iter().all(u8::is_ascii_whitespace);
        let value: Option<Value> = if blank {
            None
        } else {
            serde_json::from_slice(&body).ok()
        };
        if !status.is_success() {
            let message = value.as_ref().and_then(|value| {
                ["error", "message"]
                    .iter()
                    .find_map(|field| value.get(field).and_then(Value::as_str))
                    .map(|text| text.chars().take(input::MAX_TEXT_CHARS).collect())
            });
            return Err(WebhookError::Status(status, message));
        }
        match value {
            Some(value) => Ok(value),
            None if blank => Ok(Value::Null),
            None => Err(WebhookError::Invalid("not JSON".to_owned())),
        }
    }
}

/// A disconnect call running, counted until dropped.
struct Report(Webhooks);

impl Report {
    fn start(webhooks: &Webhooks) -> Report {
        webhooks.0.reports.send_modify(|running| *running += 1);
        Report(webhooks.clone())
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.0
             .0
            .reports
            .send_modify(|running| *running = running.saturating_sub(1));
    }
}

/// The webhooks of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct NamespaceHooks {
    webhooks: Webhooks,
    url: Uri,
    connect: bool,
    disconnect: bool,
    events: Arc<[String]>,
}

/// The backend's answer to a connect call.
#[derive(Debug, Deserialize)]
struct ConnectAnswer {
    allow: bool,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// The rooms the backend put a socket in, joined once it is connected.
#[derive(Debug, Clone)]
struct BackendRooms(Arc<[String]>);

/// Forwarded events of one socket still waiting for the backend.
#[derive(Debug, Clone, Default)]
struct Pending(Arc<AtomicUsize>);

/// Gives back a [`Pending`] count when dropped, on every path.
struct PendingSlot(Arc<AtomicUsize>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl NamespaceHooks {
    /// Puts the connect call on `namespace` as a middleware, after the identity one.
    pub(crate) fn install(&self, namespace: &Namespace) {
        if !self.connect {
            return;
        }
        let hooks = self.clone();
        namespace.use_middleware(move |socket: Socket| {
            let hooks = hooks.clone();
            async move { hooks.connect(&socket).await }
        });
    }

    async fn connect(&self, socket: &Socket) -> Result<(), ConnectError> {
        let handshake = socket.handshake();
        let body = json!({
            "type": "connect",
            "namespace": socket.namespace().name(),
            "socket": &**socket.id(),
            "user": identity::of(socket).as_deref(),
            "auth": handshake.auth,
            "address": handshake.address().map(|address| address.ip().to_string()),
            "time": input::now_millis(),
        });
        let answer = match self.webhooks.call(&self.url, Kind::connect, &body).await {
            Ok(answer) => answer,
            // The backend read the call and said no, as `{ allow: false }` would.
            Err(WebhookError::Status(status, message)) if status.is_client_error() => {
                return Err(ConnectError::new(
                    message.unwrap_or_else(|| "refused by the backend".to_owned()),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, namespace = socket.namespace().name(), "connect webhook failed: connection refused");
                return Err(ConnectError::new(UNAVAILABLE)
                    .with_data(json!({ "reason": error.outcome_text() })));
            }
        };
        let answer: ConnectAnswer = serde_json::from_value(answer).map_err(|error| {
            tracing::warn!(%error, "connect webhook: invalid answer, expected {{ allow, message?, data?, rooms? }}");
            ConnectError::new(UNAVAILABLE).with_data(json!({ "reason": "invalid answer" }))
        })?;
        if !answer.allow {
            let message = answer
                .message
                .filter(|message| !message.trim().is_empty())
                .map_or_else(
                    || "refused by the backend".to_owned(),
                    |message| message.chars().take(input::MAX_TEXT_CHARS).collect(),
                );
            let mut refusal = ConnectError::new(message);
            if let Some(data) = answer.data {
                refusal = refusal.with_data(data);
            }
            return Err(refusal);
        }
        let rooms = answer.rooms.unwrap_or_default();
        if let Some(room) = rooms
            .iter()
            .find_map(|room| input::room(&json!(room)).err())
        {
            tracing::warn!(error = %room, "connect webhook: invalid room in the answer");
            return Err(
                ConnectError::new(UNAVAILABLE).with_data(json!({ "reason": "invalid answer" }))
            );
        }
        if let Some(data) = answer.data {
            if let Err(error) = socket.set_session_data(&data) {
                tracing::warn!(%error, "connect webhook: data not kept");
            }
        }
        socket.insert_data(BackendRooms(rooms.into()));
        Ok(())
    }

    /// Once `socket` is connected: joins the rooms the backend gave it, forwards its events
    /// and reports its disconnection, as configured.
    pub(crate) fn attach(&self, socket: &Socket, rules: &RoomRules) {
        if let Some(BackendRooms(rooms)) = socket.data::<BackendRooms>() {
            for room in rooms.iter() {
                if let Err(error) = socket.try_join(rules.key(room)) {
                    tracing::info!(%error, room, "room from the connect webhook not joined");
                }
            }
        }
        if !self.events.is_empty() {
            socket.insert_data(Pending::default());
        }
        for event in self.events.iter() {
            let hooks = self.clone();
            let name = event.clone();
            socket.on(event.clone(), move |socket: Socket, args: Args| {
                let hooks = hooks.clone();
                let name = name.clone();
                async move { Ok::<_, Infallible>(ack(hooks.forward(&socket, &name, &args).await)) }
            });
        }
        if self.disconnect {
            let hooks = self.clone();
            // Taken now: a closed socket's extensions are gone by the time it disconnects.
            let user = identity::of(socket);
            socket.on_disconnect(move |socket: Socket, reason: DisconnectReason| {
                let (hooks, user) = (hooks.clone(), user.clone());
                // Its own task, so that retries never hold the socket's teardown.
                let report = Report::start(&hooks.webhooks);
                tokio::spawn(async move {
                    hooks.disconnected(&socket, user, reason).await;
                    drop(report);
                });
                std::future::ready(())
            });
        }
    }

    async fn forward(
        &self,
        socket: &Socket,
        event: &str,
        args: &Args,
    ) -> Result<Value, InputError> {
        // Put there by `attach`; gone once the socket is closed.
        let pending = socket
            .data::<Pending>()
            .ok_or_else(|| InputError::new("not connected"))?;
        if pending.0.fetch_add(1, Ordering::AcqRel) >= self.webhooks.0.max_pending {
            pending.0.fetch_sub(1, Ordering::AcqRel);
            return Err(InputError::new("too many pending webhook calls"));
        }
        let _slot = PendingSlot(pending.0);
        let body = json!({
            "type": "event",
            "namespace": socket.namespace().name(),
            "socket": &**socket.id(),
            "user": identity::of(socket).as_deref(),
            "data": socket.session_data_value(),
            "event": event,
            "args": args_json(args),
            "time": input::now_millis(),
        });
        match self.webhooks.call(&self.url, Kind::event, &body).await {
            Ok(answer) => Ok(answer),
            Err(WebhookError::Status(status, message)) if status.is_client_error() => Err(
                InputError::new(message.unwrap_or_else(|| "refused by the backend".to_owned())),
            ),
            Err(error) => {
                tracing::warn!(%error, event, "event webhook failed");
                Err(InputError::new(UNAVAILABLE))
            }
        }
    }

    async fn disconnected(
        &self,
        socket: &Socket,
        user: Option<Arc<str>>,
        reason: DisconnectReason,
    ) {
        let body = json!({
            "type": "disconnect",
            "namespace": socket.namespace().name(),
            "socket": &**socket.id(),
            "user": user.as_deref(),
            "reason": reason.as_str(),
            "data": socket.session_data_value(),
            "time": input::now_millis(),
        });
        if let Err(error) = self.webhooks.call(&self.url, Kind::disconnect, &body).await {
            tracing::warn!(%error, socket = &**socket.id(), "disconnect webhook failed after its retries");
        }
    }
}

/// The arguments as JSON, each binary attachment as `{ "$binary": base64 }`.
fn args_json(args: &Args) -> Value {
    fn inline(value: &Value, args: &Args) -> Value {
        if let Some(bytes) = args.binary(value) {
            return json!({ "$binary": base64::engine::general_purpose::STANDARD.encode(bytes) });
        }
        match value {
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| inline(item, args)).collect())
            }
            Value::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(name, item)| (name.clone(), inline(item, args)))
                    .collect::<Map<String, Value>>(),
            ),
            other => other.clone(),
        }
    }
    Value::Array(
        args.values
            .iter()
            .map(|value| inline(value, args))
            .collect(),
    )
}

/// The signature header of `body` sent at `timestamp`: `t=<timestamp>,v1=<hex HMAC-SHA256 of
/// "<timestamp>." followed by the body>`. The timestamp inside the signed text lets the
/// backend refuse replays of old calls.
pub(crate) fn sign(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    let tag = context.sign();
    let mut signature = format!("t={timestamp},v1=");
    for byte in tag.as_ref() {
        let _ = write!(signature, "{byte:02x}");
    }
    signature
}

/// A random id for a call: 16 bytes, hex.
fn delivery_id() -> String {
    let mut bytes = [0u8; 16];
    // The system's random source does not fail on the platforms the server runs on; should it,
    // the id is still unique enough with the time mixed in.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        bytes = nanos.to_le_bytes();
    }
    let mut id = String::with_capacity(32);
    for byte in bytes {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// An error and its causes, `: `-separated (hyper's top error says little on its own).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_timestamp_and_the_body() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"webhook-secret-0123", b"1700000000.{\"type\":\"connect\"}",
        // hashlib.sha256).hexdigest())'
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"webhook-secret-0123");
        assert_eq!(
            sign(&key, 1_700_000_000, br#"{"type":"connect"}"#),
            "t=1700000000,v1=8ca884b6fcbacb88bfc1a7ba1bd9485e84c9a9cfdb36a75f9d1ea0534270afb4"
        );
    }

    #[test]
    fn binary_arguments_are_inlined_as_base64() {
        let args = Args::one(&json!({ "n": 1 }))
            .and_then(|args| args.push(&switchyard::Binary::from(vec![1u8, 2, 3])))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(args_json(&args), json!([{ "n": 1 }, { "$binary": "AQID" }]));
    }

    #[test]
    fn delivery_ids_are_random_hex() {
        let (first, second) = (delivery_id(), delivery_id());
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|byte| byte.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn a_call_that_finds_no_free_slot_fails_as_busy_within_its_timeout() {
        let settings = WebhookSettings {
            secret: None,
            timeout: Duration::from_millis(50),
            concurrency: 1,
            max_pending: 1,
            retries: 0,
            ca_file: None,
            max_response_bytes: 1024,
        };
        let webhooks =
            Webhooks::new(&settings, "webhook-secret-0123").unwrap_or_else(|e| panic!("{e}"));
        let _taken = webhooks.0.slots[Kind::connect as usize]
            .try_acquire()
            .unwrap_or_else(|e| panic!("{e}"));
        let url: Uri = "http://127.0.0.1:9/hooks"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let result = webhooks.call(&url, Kind::connect, &json!({})).await;
        assert_eq!(result, Err(WebhookError::Busy));
    }

    #[test]
    fn only_client_errors_count_as_refusals() {
        assert_eq!(
            WebhookError::Status(StatusCode::FORBIDDEN, None).outcome(),
            Outcome::refused
        );
        assert_eq!(
            WebhookError::Status(StatusCode::BAD_GATEWAY, None).outcome(),
            Outcome::error
        );
    }
}
