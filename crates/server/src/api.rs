//! The backend API over HTTP: the application's backend publishes to users and rooms, moves
//! and disconnects sockets, and asks who is connected, without speaking Socket.IO.
//!
//! Every call but the description (`GET /api/openapi.json`, the OpenAPI document of
//! `api/openapi.json`) needs `Authorization: Bearer <key>` with one of the configured keys,
//! compared in constant time. Calls act cluster-wide through the namespaces' adapters. Bodies
//! are JSON, bounded in size and in time; every refusal is a status with a JSON
//! `{"error": …}` body, and refused keys are logged (a bounded number of lines a second).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest::{digest, Digest, SHA256};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use switchyard::engineio::LogBudget;
use switchyard::proto::RESERVED_EVENTS;
use switchyard::{Args, Binary, BroadcastOperator, Namespace, Room, SocketIo};
use tower_service::Service;
use tracing::{debug, warn};

use crate::history::History;
use crate::notifications::{user_room, USER_ROOM_PREFIX};
use crate::presence;

/// The OpenAPI document of this API.
pub(crate) const OPENAPI: &str = include_str!("../api/openapi.json");

/// The routes, as `METHOD path`; a test checks the OpenAPI document lists exactly these.
pub(crate) const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/openapi.json"),
    ("GET", "/api/v1/info"),
    ("POST", "/api/v1/publish"),
    ("POST", "/api/v1/sockets"),
    ("POST", "/api/v1/join"),
    ("POST", "/api/v1/leave"),
    ("POST", "/api/v1/disconnect"),
    ("POST", "/api/v1/presence"),
    ("POST", "/api/v1/history"),
];

/// The most messages one history call returns.
const MAX_HISTORY_LIMIT: usize = 1000;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request body.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Refused keys logged per second at most; the rest are counted in the next line.
const REFUSAL_LOG_LINES_PER_SECOND: u32 = 5;

/// The API's settings and state.
pub(crate) struct Api {
    io: SocketIo,
    key_digests: Vec<Digest>,
    body_timeout: Duration,
    /// Lines about refused keys: a caller without a key decides how often it is refused.
    refusals: LogBudget,
    history: History,
}

impl Api {
    /// The API for `io`, answering holders of `keys`; `history` is where rooms keep theirs.
    pub(crate) fn new(
        io: SocketIo,
        keys: Vec<String>,
        body_timeout: Duration,
        history: History,
    ) -> Api {
        Api {
            io,
            key_digests: keys
                .iter()
                .map(|key| digest(&SHA256, key.as_bytes()))
                .collect(),
            body_timeout,
            refusals: LogBudget::new(REFUSAL_LOG_LINES_PER_SECOND, Duration::from_secs(1)),
            history,
        }
    }

    /// Whether `authorization` (the header's value) holds one of the keys. Digests of equal
    /// length are compared, every key's, each in constant time: the time taken tells neither
    /// which key matched nor any key's length.
    fn authorized(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        let given = digest(&SHA256, given.trim().as_bytes());
        self.key_digests.iter().fold(false, |matched, key| {
            matched | bool::from(key.as_ref().ct_eq(given.as_ref()))
        })
    }

    async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Error: Into<BoxError>,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        if !ROUTES.iter().any(|(_, route)| *route == path) {
            return error(StatusCode::NOT_FOUND, "no such API path");
        }
        if !ROUTES
            .iter()
            .any(|(m, route)| *route == path && *m == method.as_str())
        {
            let allowed: Vec<&str> = ROUTES
                .iter()
                .filter(|(_, route)| *route == path)
                .map(|(m, _)| *m)
                .collect();
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
        if path == "/api/openapi.json" {
            return json_response(StatusCode::OK, OPENAPI.to_owned());
        }
        if !self.authorized(request.headers().get(header::AUTHORIZATION)) {
            if let Some(held_back) = self.refusals.allow(Instant::now()) {
                warn!(
                    path,
                    held_back, "API call refused: missing or unknown API key"
                );
            }
            let mut response = error(StatusCode::UNAUTHORIZED, "missing or unknown API key");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        if method == Method::GET {
            return self.info().await;
        }
        let body = match self.body(request.into_body()).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let result = match path.as_str() {
            "/api/v1/publish" => self.publish(body),
            "/api/v1/sockets" => self.sockets(body).await,
            "/api/v1/join" => self.join_or_leave(body, true).await,
            "/api/v1/leave" => self.join_or_leave(body, false).await,
            "/api/v1/disconnect" => self.disconnect(body).await,
            "/api/v1/presence" => self.presence(body).await,
            "/api/v1/history" => self.history(body).await,
            _ => Err(ApiError::NotFound("no such API path".to_owned())),
        };
        match result {
            Ok(value) => json_response(StatusCode::OK, value.to_string()),
            Err(failure) => {
                debug!(path, %failure, "API call refused");
                error(failure.status(), &failure.to_string())
            }
        }
    }

    /// The request's body, whole, within the size and time bounds.
    async fn body<B>(&self, body: B) -> Result<Value, Response<Full<Bytes>>>
    where
        B: http_body::Body + Send,
        B::Error: Into<BoxError>,
    {
        let collected = tokio::time::timeout(
            self.body_timeout,
            Limited::new(body, MAX_BODY_BYTES).collect(),
        )
        .await;
        let bytes = match collected {
            Ok(Ok(collected)) => collected.to_bytes(),
            Ok(Err(failure)) => {
                let too_big = failure
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                return Err(if too_big {
                    error(StatusCode::PAYLOAD_TOO_LARGE, "body over 1 MiB")
                } else {
                    error(StatusCode::BAD_REQUEST, "body failed")
                });
            }
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body not received in time",
                ))
            }
        };
        serde_json::from_slice(&bytes).map_err(|failure| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("body is not valid JSON: {failure}"),
            )
        })
    }

    /// An existing namespace; the API never creates one.
    fn namespace(&self, name: &str) -> Result<Namespace, ApiError> {
        self.io
            .namespaces()
            .into_iter()
            .find(|namespace| namespace.name() == name)
            .ok_or_else(|| ApiError::NotFound(format!("no namespace {name}")))
    }

    /// The operator for `target`: its rooms and users, or everyone, minus `except`.
    fn operator(&self, target: &Target) -> Result<BroadcastOperator, ApiError> {
        let namespace = self.namespace(&target.namespace)?;
        let mut rooms: Vec<Room> = target
            .rooms
            .iter()
            .map(|room| Room::from(room.as_str()))
            .collect();
        rooms.extend(target.users.iter().map(|user| user_room(user)));
        rooms.extend(target.sockets.iter().map(|sid| Room::from(sid.as_str())));
        let mut operator = namespace.broadcast();
        if !rooms.is_empty() {
            operator = operator.to(rooms);
        }
        if !target.except.is_empty() {
            let except: Vec<Room> = target
                .except
                .iter()
                .map(|room| Room::from(room.as_str()))
                .collect();
            operator = operator.except(except);
        }
        Ok(operator)
    }

    fn publish(&self, body: Value) -> Result<Value, ApiError> {
        let request: Publish = parse(body)?;
        if RESERVED_EVENTS.contains(&request.event.as_str()) {
            return Err(ApiError::Invalid(format!(
                "`{}` is reserved by Socket.IO",
                request.event
            )));
        }
        let mut operator = self.operator(&request.target)?;
        if request.volatile {
            operator = operator.volatile();
        }
        let values = match request.data {
            None => Vec::new(),
            Some(Value::Array(items)) if request.spread => items,
            Some(value) => vec![value],
        };
        let mut args = Args {
            values,
            attachments: Vec::new(),
        };
        if let Some(binary) = &request.binary {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(binary)
                .map_err(|_| ApiError::Invalid("`binary` is not base64".to_owned()))?;
            args = args
                .push(&Binary::from(bytes))
                .map_err(|failure| ApiError::Invalid(failure.to_string()))?;
        }
        operator
            .emit(&request.event, args)
            .map_err(|failure| ApiError::Invalid(failure.to_string()))?;
        Ok(json!({ "ok": true }))
    }

    async fn sockets(&self, body: Value) -> Result<Value, ApiError> {
        let target: Target = parse(body)?;
        let sockets = self
            .operator(&target)?
            .fetch_sockets()
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        let sockets: Vec<Value> = sockets
            .iter()
            .map(|socket| {
                let user = socket
                    .rooms()
                    .iter()
                    .find_map(|room| room.strip_prefix(USER_ROOM_PREFIX))
                    .map(str::to_owned);
                json!({
                    "id": &**socket.id(),
                    "user": user,
                    "rooms": socket.rooms().iter().map(|room| &**room).collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(json!({ "sockets": sockets }))
    }

    async fn join_or_leave(&self, body: Value, join: bool) -> Result<Value, ApiError> {
        let request: Move = parse(body)?;
        if request.target.rooms.is_empty()
            && request.target.users.is_empty()
            && request.target.sockets.is_empty()
        {
            return Err(ApiError::Invalid(
                "name the sockets to move: `sockets`, `users` or `rooms`".to_owned(),
            ));
        }
        let operator = self.operator(&request.target)?;
        let rooms: Vec<Room> = request
            .to
            .iter()
            .map(|room| Room::from(room.as_str()))
            .collect();
        let moved = if join {
            operator.sockets_join(rooms).await
        } else {
            operator.sockets_leave(rooms).await
        };
        moved.map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        Ok(json!({ "ok": true }))
    }

    async fn disconnect(&self, body: Value) -> Result<Value, ApiError> {
        let target: Target = parse(body)?;
        if target.rooms.is_empty() && target.users.is_empty() && target.sockets.is_empty() {
            return Err(ApiError::Invalid(
                "name the sockets to disconnect: `sockets`, `users` or `rooms`".to_owned(),
            ));
        }
        self.operator(&target)?
            .disconnect_sockets(true)
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        Ok(json!({ "ok": true }))
    }

    async fn presence(&self, body: Value) -> Result<Value, ApiError> {
        let request: RoomRequest = parse(body)?;
        let namespace = self.namespace(&request.namespace)?;
        let occupants = presence::occupants(&namespace, &Room::from(request.room.as_str()), None)
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        let users: Vec<Value> = occupants
            .iter()
            .map(|(user, sockets)| json!({ "user": user, "sockets": sockets }))
            .collect();
        Ok(json!({ "users": users }))
    }

    async fn history(&self, body: Value) -> Result<Value, ApiError> {
        let request: RoomRequest = parse(body)?;
        let limit = request.limit.unwrap_or(50);
        if limit > MAX_HISTORY_LIMIT {
            return Err(ApiError::Invalid(format!(
                "`limit` is at most {MAX_HISTORY_LIMIT}"
            )));
        }
        let namespace = self.namespace(&request.namespace)?;
        let messages = self
            .history
            .recent(namespace.name(), &request.room, limit)
            .await
            .map_err(|failure| ApiError::Cluster(failure.to_string()))?;
        Ok(json!({ "messages": messages }))
    }

    async fn info(&self) -> Response<Full<Bytes>> {
        let metrics = self.io.metrics();
        let all = self.io.namespaces();
        // Asked of every namespace's adapter at once: each answer is bounded by its timeout.
        let counts =
            futures_util::future::join_all(all.iter().map(|namespace| namespace.server_count()))
                .await;
        let mut namespaces = Vec::new();
        for (namespace, servers) in all.iter().zip(counts) {
            let servers = servers.ok();
            let sockets = metrics
                .sockets
                .iter()
                .find(|(name, _)| name == namespace.name())
                .map_or(0, |(_, count)| *count);
            namespaces.push(json!({
                "name": namespace.name(),
                "sockets": sockets,
                "servers": servers,
            }));
        }
        let body = json!({
            "node": {
                "sessions": metrics.engine.sessions_polling + metrics.engine.sessions_websocket,
                "time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |time| time.as_millis() as u64),
            },
            "namespaces": namespaces,
        });
        json_response(StatusCode::OK, body.to_string())
    }
}

/// Which sockets a call is about, in one namespace.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    namespace: String,
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    sockets: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    #[serde(flatten)]
    target: Target,
    event: String,
    /// The event's argument; with `spread`, an array of arguments.
    data: Option<Value>,
    #[serde(default)]
    spread: bool,
    /// Base64 bytes, sent as a binary argument after `data`.
    binary: Option<String>,
    #[serde(default)]
    volatile: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Move {
    #[serde(flatten)]
    target: Target,
    /// The rooms to join or leave.
    to: Vec<String>,
}

/// A call about one room.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoomRequest {
    namespace: String,
    /// The adapter room (`chat:general` for the chat's room `general`).
    room: String,
    /// How many messages at most (history).
    limit: Option<usize>,
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|failure| ApiError::Invalid(failure.to_string()))
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error)]
enum ApiError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the cluster did not answer: {0}")]
    Cluster(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Cluster(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

fn json_response(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": message }).to_string())
}

/// Answers `/api/…` with the API, and hands everything else to `inner`.
#[derive(Clone)]
pub(crate) struct ApiService<S> {
    inner: S,
    api: Option<Arc<Api>>,
}

impl<S> ApiService<S> {
    /// `api`, when the API is on, in front of `inner`.
    pub(crate) fn new(inner: S, api: Option<Arc<Api>>) -> ApiService<S> {
        ApiService { inner, api }
    }
}

type BoxResponseFuture<E> =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, E>> + Send + 'static>>;

impl<S, B> Service<Request<B>> for ApiService<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = BoxResponseFuture<S::Error>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !request.uri().path().starts_with("/api/") {
            return Box::pin(self.inner.call(request));
        }
        let Some(api) = self.api.clone() else {
            return Box::pin(std::future::ready(Ok(error(
                StatusCode::NOT_FOUND,
                "the backend API is off: configure api-keys",
            ))));
        };
        Box::pin(async move { Ok(api.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let document: Value = serde_json::from_str(OPENAPI).expect("the document is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, operations)| {
                operations
                    .as_object()
                    .into_iter()
                    .flat_map(|operations| operations.keys())
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect();
        let routed: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn keys_are_compared_whole() {
        let io = SocketIo::new(switchyard::SocketIoConfig::default());
        let api = Api::new(
            io,
            vec![
                "first-key-0123456789".to_owned(),
                "second-key-0123456789".to_owned(),
            ],
            Duration::from_secs(1),
            History::in_memory(1024),
        );
        let bearer = |value: &str| HeaderValue::from_str(value).ok();
        assert!(api.authorized(bearer("Bearer second-key-0123456789").as_ref()));
        assert!(api.authorized(bearer("Bearer first-key-0123456789").as_ref()));
        assert!(!api.authorized(bearer("Bearer first-key-012345678").as_ref()));
        assert!(!api.authorized(bearer("Bearer first-key-0123456789x").as_ref()));
        assert!(!api.authorized(bearer("first-key-0123456789").as_ref()));
        assert!(!api.authorized(None));
    }
}
