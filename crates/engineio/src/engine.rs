//! The engine: routes requests to sessions, opens and closes them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use switchyard_engineio_proto::{
    CloseReason, ErrorCode, Event, Message, Session, SessionConfig, TransportKind,
};
use tracing::{debug, warn};

use crate::config::EngineConfig;
use crate::limits::{self, address_key, Admission, AdmissionStats, Refusal, Slot};
use crate::log::LogBudget;
use crate::metrics::{Counters, EngineMetrics};
use crate::query::EngineQuery;
use crate::socket::{RequestInfo, Socket};
use crate::{polling, ws};

/// Boxed error type of request bodies.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// What the application does with sessions. Callbacks run on the connection's own task, in
/// order; they must not block.
pub trait EngineHandler: Send + Sync + 'static {
    /// Per-session state the handler keeps, created when the session opens.
    type Connection: Send + Sync + 'static;

    /// A session opened; the returned state is passed to the other callbacks.
    fn on_open(&self, socket: Arc<Socket>) -> Self::Connection;

    /// The client sent a message.
    fn on_message(&self, connection: &Self::Connection, message: Message);

    /// The session closed; called exactly once, after which no callback names this session.
    fn on_close(&self, connection: &Self::Connection, reason: CloseReason);
}

/// The peer's address, as a request extension set by [`crate::serve`]. A server of your own
/// may insert it too, so handshakes see the remote address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// An Engine.IO v4 server: cheap to clone, shared by every connection.
pub struct Engine<H: EngineHandler> {
    pub(crate) inner: Arc<EngineInner<H>>,
}

impl<H: EngineHandler> Clone for Engine<H> {
    fn clone(&self) -> Self {
        Engine {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct EngineInner<H: EngineHandler> {
    pub(crate) config: EngineConfig,
    /// `config.session`, shared by every session rather than copied into each.
    session_config: Arc<SessionConfig>,
    pub(crate) handler: H,
    sessions: Mutex<SessionMap<H::Connection>>,
    admission: Arc<Mutex<Admission>>,
    /// Log lines about refused requests, which belong to no session.
    refusal_log: LogBudget,
    pub(crate) counters: Counters,
}

/// Live sessions by sid.
type SessionMap<C> = HashMap<Arc<str>, Arc<Entry<C>>>;

/// A live session: the socket and the handler's state for it.
pub(crate) struct Entry<C> {
    pub(crate) socket: Arc<Socket>,
    pub(crate) connection: C,
    /// The session's place in the admission counts, given back when it closes (or, failing
    /// that, when the last reference to the entry goes).
    slot: Mutex<Option<Slot>>,
}

impl<H: EngineHandler> Engine<H> {
    /// An engine with `config`, sending sessions' events to `handler`.
    pub fn new(config: EngineConfig, handler: H) -> Engine<H> {
        Engine {
            inner: Arc::new(EngineInner {
                session_config: Arc::new(config.session.clone()),
                config,
                handler,
                sessions: Mutex::new(HashMap::new()),
                admission: Arc::default(),
                refusal_log: LogBudget::new(REFUSAL_LOG_LINES, REFUSAL_LOG_WINDOW),
                counters: Counters::default(),
            }),
        }
    }

    /// The engine's options.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The handler.
    pub fn handler(&self) -> &H {
        &self.inner.handler
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.inner.sessions().len()
    }

    /// What the admission limits count now: sessions admitted and not yet ended, and the
    /// addresses they come from. With no session open, every count is zero.
    pub fn admission_stats(&self) -> AdmissionStats {
        self.inner.admission().stats()
    }

    /// What the engine has counted, and its open sessions by transport.
    pub fn metrics(&self) -> EngineMetrics {
        let (mut polling, mut websocket) = (0, 0);
        // The list first: the session map's lock is not held while each session's is taken.
        for socket in self.sockets() {
            match socket.transport() {
                TransportKind::WebSocket => websocket += 1,
                _ => polling += 1,
            }
        }
        self.inner.counters.snapshot(polling, websocket)
    }

    /// The open sessions.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.inner
            .sessions()
            .values()
            .map(|entry| entry.socket.clone())
            .collect()
    }

    /// Closes every session with [`CloseReason::ServerShutdown`] (queued frames and a close
    /// packet go out first) and refuses new ones from then on, with 503 `Server shutting down`,
    /// so reconnecting clients go to another server rather than into one about to stop.
    pub fn close_all(&self) {
        self.inner.admission().shut_down();
        for socket in self.sockets() {
            socket.close_with(CloseReason::ServerShutdown);
        }
    }

    /// Like [`Engine::close_all`], with the closes spread over `window`: new sessions are
    /// refused at once, and each open session is closed at an instant drawn uniformly in the
    /// window, so that its clients, reconnecting to other servers, arrive over the window
    /// rather than all at once. Completes when the last close has started. A zero window
    /// closes every session now.
    pub async fn close_all_spread(&self, window: Duration) {
        self.inner.admission().shut_down();
        let start = tokio::time::Instant::now();
        let mut closes: Vec<(Duration, Arc<Socket>)> = {
            use rand::Rng as _;
            let mut rng = rand::thread_rng();
            self.sockets()
                .into_iter()
                .map(|socket| (window.mul_f64(rng.gen::<f64>()), socket))
                .collect()
        };
        closes.sort_by_key(|(at, _)| *at);
        // One timer for all: sessions are few per instant, and a task each would cost more.
        for (at, socket) in closes {
            if !at.is_zero() {
                tokio::time::sleep_until(start + at).await;
            }
            socket.close_with(CloseReason::ServerShutdown);
        }
        // A handshake admitted just before the shutdown may have registered its session
        // after the list above was taken.
        for socket in self.sockets() {
            socket.close_with(CloseReason::ServerShutdown);
        }
    }

    /// Whether `path` is under the engine's path.
    pub fn matches(&self, path: &str) -> bool {
        path.starts_with(self.inner.config.path.as_str())
    }

    /// Answers one Engine.IO request (polling GET/POST, WebSocket upgrade, CORS preflight).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.inner.clone().handle(request).await
    }
}

impl<H: EngineHandler> EngineInner<H> {
    pub(crate) fn sessions(&self) -> MutexGuard<'_, SessionMap<H::Connection>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a session's events to the handler, in order.
    pub(crate) fn dispatch(&self, entry: &Entry<H::Connection>, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Message(message) => self.handler.on_message(&entry.connection, message),
                Event::Upgraded => debug!(sid = entry.socket.sid(), "upgraded to websocket"),
                Event::Closed(reason) => {
                    self.sessions().remove(entry.socket.sid());
                    let slot = entry
                        .slot
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .take();
                    drop(slot);
                    let faults = entry.socket.faults.count();
                    if faults > 1 {
                        // Only the first was logged at WARN: say how many there were.
                        warn!(sid = entry.socket.sid(), faults, %reason, "session closed after repeated peer faults");
                    }
                    debug!(sid = entry.socket.sid(), %reason, "session closed");
                    self.handler.on_close(&entry.connection, reason);
                    entry.socket.wake_closed();
                }
            }
        }
    }

    async fn handle<B>(self: Arc<Self>, mut request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let upgrade = ws::is_upgrade_request(request.headers());
        let query = EngineQuery::parse(request.uri().query());

        if request.method() == Method::OPTIONS {
            if let Some(cors) = &self.config.cors {
                let mut response = plain(StatusCode::NO_CONTENT, "", "text/plain");
                cors.apply_preflight(request.headers(), response.headers_mut());
                return response;
            }
        }

        let Some(transport) = query.transport().filter(|t| self.config.allows(*t)) else {
            return self.refuse(ErrorCode::UnknownTransport, request.headers(), upgrade);
        };

        if let Some(sid) = query.sid {
            let entry = self.sessions().get(sid).cloned();
            let Some(entry) = entry else {
                return self.refuse(ErrorCode::UnknownSid, request.headers(), upgrade);
            };
            return match (transport, upgrade) {
                (TransportKind::WebSocket, true) => {
                    ws::upgrade_session(self.clone(), entry, &mut request)
                }
                (TransportKind::Polling, _) if request.method() == Method::GET => {
                    let mut response = polling::get(&self, &entry).await;
                    self.apply_cors(request.headers(), response.headers_mut());
                    response
                }
                (TransportKind::Polling, _) if request.method() == Method::POST => {
                    let headers = request.headers().clone();
                    let mut response = polling::post(&self, &entry, request).await;
                    self.apply_cors(&headers, response.headers_mut());
                    response
                }
                _ => self.refuse(ErrorCode::BadRequest, request.headers(), upgrade),
            };
        }

        if request.method() != Method::GET {
            return self.refuse(ErrorCode::BadHandshakeMethod, request.headers(), upgrade);
        }
        if query.eio != Some("4") {
            return self.refuse(
                ErrorCode::UnsupportedProtocolVersion,
                request.headers(),
                upgrade,
            );
        }
        if transport == TransportKind::WebSocket && !upgrade {
            return self.refuse(ErrorCode::BadRequest, request.headers(), upgrade);
        }
        // The URI (with its query) is kept with the headers.
        let header_bytes = header_bytes(request.headers()) + request.uri().to_string().len();
        if header_bytes > self.config.max_header_bytes {
            if let Some(held_back) = self.refusal_log.allow(Instant::now()) {
                warn!(
                    header_bytes,
                    held_back, "handshake refused: headers too large"
                );
            } else {
                debug!(header_bytes, "handshake refused: headers too large");
            }
            return self.refuse_limit(Refusal::HeadersTooLarge, request.headers(), upgrade);
        }
        // A WebSocket handshake is checked whole before anything is counted for it.
        let websocket = match transport {
            TransportKind::WebSocket => match ws::accept(&mut request) {
                Some(accepted) => Some(accepted),
                None => return self.refuse_upgrade(),
            },
            TransportKind::Polling => None,
        };
        let remote_addr = request.extensions().get::<RemoteAddr>().map(|addr| addr.0);
        let info = RequestInfo::copied_from(&request, remote_addr);
        if let Some(allow) = &self.config.allow_request {
            if !allow(&info) {
                return self.refuse(ErrorCode::Forbidden, request.headers(), upgrade);
            }
        }
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        let ip = info
            .remote_addr
            .map(|addr| address_key(addr.ip(), self.config.ipv6_prefix_len));
        let slot = match limits::admit(
            &self.admission,
            &self.config.limits,
            Instant::now(),
            ip,
            origin,
        ) {
            Ok(slot) => slot,
            Err(refusal) => {
                if let Some(held_back) = self.refusal_log.allow(Instant::now()) {
                    warn!(?ip, origin, %refusal, held_back, "handshake refused by a limit");
                } else {
                    debug!(?ip, origin, %refusal, "handshake refused by a limit");
                }
                return self.refuse_limit(refusal, request.headers(), upgrade);
            }
        };
        match websocket {
            None => {
                let (entry, open) = self.open_session(TransportKind::Polling, info, slot);
                tokio::spawn(polling::drive(self.clone(), entry));
                let mut response = plain(StatusCode::OK, open, "text/plain; charset=UTF-8");
                self.apply_cors(request.headers(), response.headers_mut());
                response
            }
            Some((response, on_upgrade)) => {
                ws::handshake(self.clone(), info, slot, on_upgrade);
                response
            }
        }
    }

    /// Opens a session and registers it; returns it with its open packet.
    pub(crate) fn open_session(
        &self,
        transport: TransportKind,
        info: RequestInfo,
        slot: Slot,
    ) -> (Arc<Entry<H::Connection>>, Bytes) {
        let sid: Arc<str> = Arc::from(generate_sid());
        let socket = Arc::new(Socket::new(
            sid.clone(),
            self.session_config.clone(),
            transport,
            info,
        ));
        let upgrades: &[TransportKind] = match transport {
            TransportKind::Polling if self.config.allows(TransportKind::WebSocket) => {
                &[TransportKind::WebSocket]
            }
            _ => &[],
        };
        let open = socket.lock().open_packet(&sid, upgrades);
        let connection = self.handler.on_open(socket.clone());
        let entry = Arc::new(Entry {
            socket,
            connection,
            slot: Mutex::new(Some(slot)),
        });
        self.sessions().insert(sid, entry.clone());
        self.counters.handshake();
        if transport == TransportKind::Polling {
            // The handshake's answer; a WebSocket writes its open packet with the others.
            self.counters.sent(1, open.len());
        }
        debug!(
            sid = entry.socket.sid(),
            transport = transport.as_str(),
            "session opened"
        );
        (entry, open.as_bytes().clone())
    }

    fn apply_cors(&self, request: &HeaderMap, response: &mut HeaderMap) {
        if let Some(cors) = &self.config.cors {
            cors.apply(request, response);
        }
    }

    pub(crate) fn admission(&self) -> MutexGuard<'_, Admission> {
        self.admission
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn refuse_limit(
        &self,
        refusal: Refusal,
        headers: &HeaderMap,
        upgrade: bool,
    ) -> Response<Full<Bytes>> {
        self.counters.refused(refusal);
        if upgrade {
            return plain(refusal.status(), refusal.to_string(), "text/plain");
        }
        let mut response = plain(refusal.status(), refusal.json_body(), "application/json");
        if refusal == Refusal::HandshakeRate {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        self.apply_cors(headers, response.headers_mut());
        response
    }

    /// The plain 400 answer to a WebSocket handshake whose headers do not make one.
    pub(crate) fn refuse_upgrade(&self) -> Response<Full<Bytes>> {
        if let Some(held_back) = self.refusal_log.allow(Instant::now()) {
            warn!(
                held_back,
                "refused websocket handshake: bad or missing upgrade headers"
            );
        } else {
            debug!("refused websocket handshake: bad or missing upgrade headers");
        }
        plain(StatusCode::BAD_REQUEST, "Bad request", "text/plain")
    }

    /// The answer to a request the engine refuses: JSON `{code, message}` for HTTP, plain text
    /// for a WebSocket upgrade, as the reference server does.
    fn refuse(&self, code: ErrorCode, headers: &HeaderMap, upgrade: bool) -> Response<Full<Bytes>> {
        if let Some(held_back) = self.refusal_log.allow(Instant::now()) {
            warn!(code = code.code(), message = %code, held_back, "refused engine.io request");
        } else {
            debug!(code = code.code(), message = %code, "refused engine.io request");
        }
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        if upgrade {
            return plain(status, code.to_string(), "text/plain");
        }
        let mut response = plain(status, code.json_body(), "application/json");
        self.apply_cors(headers, response.headers_mut());
        response
    }
}

/// The bytes of `headers` as the session keeps them: names and values.
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// Ends a session whose driving task stops without having ended it (a panic in the handler,
/// the runtime shutting down): the session is closed the way `end` says, so its place in the
/// counts is given back on every path. Disarmed by the task's normal end.
pub(crate) struct EndGuard<'a, H: EngineHandler> {
    inner: &'a EngineInner<H>,
    entry: &'a Entry<H::Connection>,
    end: fn(&mut Session),
    armed: bool,
}

impl<'a, H: EngineHandler> EndGuard<'a, H> {
    pub(crate) fn new(
        inner: &'a EngineInner<H>,
        entry: &'a Entry<H::Connection>,
        end: fn(&mut Session),
    ) -> Self {
        EndGuard {
            inner,
            entry,
            end,
            armed: true,
        }
    }

    /// The task ended normally: nothing to do on drop.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl<H: EngineHandler> Drop for EndGuard<'_, H> {
    fn drop(&mut self) {
        if self.armed {
            debug!(sid = self.entry.socket.sid(), "session task ended early");
            let end = self.end;
            let ((), events) = self.entry.socket.update(|core, _| end(core));
            self.inner.dispatch(self.entry, events);
        }
    }
}

/// Log lines about refused requests allowed per [`REFUSAL_LOG_WINDOW`]; the rest are counted
/// and reported with the next line logged.
const REFUSAL_LOG_LINES: u32 = 10;
/// See [`REFUSAL_LOG_LINES`].
const REFUSAL_LOG_WINDOW: Duration = Duration::from_secs(10);

/// A response with a full body.
pub(crate) fn plain(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON error answer for `code`.
pub(crate) fn error_response(code: ErrorCode) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    plain(status, code.json_body(), "application/json")
}

/// A session id: 15 random bytes from the thread's CSPRNG, base64url (20 characters).
fn generate_sid() -> String {
    let bytes: [u8; 15] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_twenty_url_safe_characters_and_distinct() {
        let a = generate_sid();
        let b = generate_sid();
        assert_eq!(a.len(), 20);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }
}
