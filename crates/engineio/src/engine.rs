//! The engine: routes requests to sessions, opens and closes them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use switchyard_engineio_proto::{CloseReason, ErrorCode, Event, Message, TransportKind};
use tracing::{debug, warn};

use crate::config::EngineConfig;
use crate::limits::{Admission, Refusal};
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
    pub(crate) handler: H,
    sessions: Mutex<SessionMap<H::Connection>>,
    admission: Mutex<Admission>,
}

/// Live sessions by sid.
type SessionMap<C> = HashMap<Arc<str>, Arc<Entry<C>>>;

/// A live session: the socket and the handler's state for it.
pub(crate) struct Entry<C> {
    pub(crate) socket: Arc<Socket>,
    pub(crate) connection: C,
}

impl<H: EngineHandler> Engine<H> {
    /// An engine with `config`, sending sessions' events to `handler`.
    pub fn new(config: EngineConfig, handler: H) -> Engine<H> {
        Engine {
            inner: Arc::new(EngineInner {
                config,
                handler,
                sessions: Mutex::new(HashMap::new()),
                admission: Mutex::default(),
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

    /// The open sessions.
    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.inner
            .sessions()
            .values()
            .map(|entry| entry.socket.clone())
            .collect()
    }

    /// Closes every session with [`CloseReason::ServerShutdown`]: queued frames and a close
    /// packet go out first.
    pub fn close_all(&self) {
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
                    let ip = entry.socket.request().remote_addr.map(|addr| addr.ip());
                    self.admission().release(ip);
                    debug!(sid = entry.socket.sid(), %reason, "session closed");
                    self.handler.on_close(&entry.connection, reason);
                    entry.socket.wake_poll.notify_one();
                    entry.socket.wake_drivers();
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
        let info = RequestInfo {
            method: request.method().clone(),
            uri: request.uri().clone(),
            headers: request.headers().clone(),
            remote_addr: request.extensions().get::<RemoteAddr>().map(|addr| addr.0),
            time: SystemTime::now(),
        };
        if let Some(allow) = &self.config.allow_request {
            if !allow(&info) {
                return self.refuse(ErrorCode::Forbidden, request.headers(), upgrade);
            }
        }
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        let live = self.sessions().len();
        let ip = info.remote_addr.map(|addr| addr.ip());
        let admitted =
            self.admission()
                .admit(&self.config.limits, Instant::now(), live, ip, origin);
        if let Err(refusal) = admitted {
            warn!(?ip, origin, %refusal, "handshake refused by a limit");
            return self.refuse_limit(refusal, request.headers(), upgrade);
        }
        match transport {
            TransportKind::Polling => {
                let (entry, open) = self.open_session(TransportKind::Polling, info);
                tokio::spawn(polling::drive(self.clone(), entry));
                let mut response = plain(StatusCode::OK, open, "text/plain; charset=UTF-8");
                self.apply_cors(request.headers(), response.headers_mut());
                response
            }
            TransportKind::WebSocket => ws::handshake(self.clone(), info, &mut request),
        }
    }

    /// Opens a session and registers it; returns it with its open packet.
    pub(crate) fn open_session(
        &self,
        transport: TransportKind,
        info: RequestInfo,
    ) -> (Arc<Entry<H::Connection>>, Bytes) {
        let sid: Arc<str> = Arc::from(generate_sid());
        let socket = Arc::new(Socket::new(
            sid.clone(),
            self.config.session.clone(),
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
        let entry = Arc::new(Entry { socket, connection });
        self.sessions().insert(sid, entry.clone());
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

    fn admission(&self) -> MutexGuard<'_, Admission> {
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

    /// The answer to a request the engine refuses: JSON `{code, message}` for HTTP, plain text
    /// for a WebSocket upgrade, as the reference server does.
    fn refuse(&self, code: ErrorCode, headers: &HeaderMap, upgrade: bool) -> Response<Full<Bytes>> {
        warn!(code = code.code(), message = %code, "refused engine.io request");
        let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
        if upgrade {
            return plain(status, code.to_string(), "text/plain");
        }
        let mut response = plain(status, code.json_body(), "application/json");
        self.apply_cors(headers, response.headers_mut());
        response
    }
}

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
