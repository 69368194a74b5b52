//! The backend API over HTTP: the application's backend publishes to users and rooms, moves
//! and disconnects sockets, asks who is connected and who is in a room, and reads rooms'
//! history, without speaking Socket.IO (the operations: [`crate::backend`]).
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
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_service::Service;
use tracing::debug;

use crate::backend::{ApiError, ApiKeys, Operations, Publish, Target};

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
    ("POST", "/api/v1/notify"),
];

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest request body.
const MAX_BODY_BYTES: usize = 1 << 20;

/// The HTTP API: its keys, the operations, and how long a body may take.
pub(crate) struct Api {
    keys: Arc<ApiKeys>,
    operations: Arc<Operations>,
    body_timeout: Duration,
}

impl Api {
    /// The API answering holders of `keys` with `operations`.
    pub(crate) fn new(
        keys: Arc<ApiKeys>,
        operations: Arc<Operations>,
        body_timeout: Duration,
    ) -> Api {
        Api {
            keys,
            operations,
            body_timeout,
        }
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
        let authorization = request.headers().get(header::AUTHORIZATION);
        if !self
            .keys
            .check(authorization.map(HeaderValue::as_bytes), &path)
        {
            let mut response = error(StatusCode::UNAUTHORIZED, "missing or unknown API key");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let result = if method == Method::GET {
            Ok(self.info().await)
        } else {
            match self.body(request.into_body()).await {
                Ok(body) => self.call(&path, body).await,
                Err(response) => return response,
            }
        };
        match result {
            Ok(value) => json_response(StatusCode::OK, value.to_string()),
            Err(failure) => {
                debug!(path, %failure, "API call refused");
                error(status(&failure), &failure.to_string())
            }
        }
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        let operations = &self.operations;
        let ok = json!({ "ok": true });
        match path {
            "/api/v1/publish" => {
                operations.publish(parse::<PublishBody>(body)?.into_publish()?)?;
                Ok(ok)
            }
            "/api/v1/sockets" => {
                let sockets = operations.sockets(&parse(body)?).await?;
                let sockets: Vec<Value> = sockets
                    .iter()
                    .map(|socket| {
                        json!({ "id": socket.id, "user": socket.user, "rooms": socket.rooms })
                    })
                    .collect();
                Ok(json!({ "sockets": sockets }))
            }
            "/api/v1/join" | "/api/v1/leave" => {
                let request: Move = parse(body)?;
                let join = path == "/api/v1/join";
                operations
                    .join_or_leave(&request.target, &request.to, join)
                    .await?;
                Ok(ok)
            }
            "/api/v1/disconnect" => {
                operations.disconnect(&parse(body)?).await?;
                Ok(ok)
            }
            "/api/v1/presence" => {
                let request: RoomRequest = parse(body)?;
                let occupants = operations
                    .presence(&request.namespace, &request.room)
                    .await?;
                let users: Vec<Value> = occupants
                    .iter()
                    .map(|(user, sockets)| json!({ "user": user, "sockets": sockets }))
                    .collect();
                Ok(json!({ "users": users }))
            }
            "/api/v1/history" => {
                let request: RoomRequest = parse(body)?;
                let messages = operations
                    .history(&request.namespace, &request.room, request.limit)
                    .await?;
                Ok(json!({ "messages": messages }))
            }
            "/api/v1/notify" => {
                let (id, delivered) = operations.notify(&parse(body)?).await?;
                Ok(json!({ "id": id, "delivered": delivered }))
            }
            _ => Err(ApiError::NotFound("no such API path".to_owned())),
        }
    }

    /// The request's body, whole, within the size and time bounds.
    async fn body<B>(&self, body: B) -> Result<Value, Response<Full<Bytes>>>
    where
        B: http_body::Body + Send,
        B::Error: Into<BoxError>,
    {
        read_json(body, MAX_BODY_BYTES, "body over 1 MiB", self.body_timeout).await
    }

    async fn info(&self) -> Value {
        let info = self.operations.info().await;
        let namespaces: Vec<Value> = info
            .namespaces
            .iter()
            .map(|namespace| {
                json!({
                    "name": namespace.name,
                    "sockets": namespace.sockets,
                    "servers": namespace.servers,
                })
            })
            .collect();
        json!({
            "node": { "sessions": info.sessions, "time": info.time },
            "namespaces": namespaces,
        })
    }
}

/// A request body as JSON, whole, at most `max_bytes` (past it, 413 with `too_big` as the
/// error) and within `timeout` (else 408); a body that fails or is not JSON is 400. Each
/// refusal is the response to send, with a JSON `{"error": …}` body.
pub(crate) async fn read_json<B>(
    body: B,
    max_bytes: usize,
    too_big: &str,
    timeout: Duration,
) -> Result<Value, Response<Full<Bytes>>>
where
    B: http_body::Body + Send,
    B::Error: Into<BoxError>,
{
    let collected = tokio::time::timeout(timeout, Limited::new(body, max_bytes).collect()).await;
    let bytes = match collected {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(failure)) => {
            let too_big_body = failure
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return Err(if too_big_body {
                error(StatusCode::PAYLOAD_TOO_LARGE, too_big)
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

/// `POST /api/v1/publish`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
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

impl PublishBody {
    fn into_publish(self) -> Result<Publish, ApiError> {
        let binary = self
            .binary
            .map(|binary| {
                base64::engine::general_purpose::STANDARD
                    .decode(binary)
                    .map(Bytes::from)
                    .map_err(|_| ApiError::Invalid("`binary` is not base64".to_owned()))
            })
            .transpose()?;
        Ok(Publish {
            target: self.target,
            event: self.event,
            values: arguments(self.data, self.spread),
            binary,
            volatile: self.volatile,
        })
    }
}

/// The arguments of an event whose data is `data`: none, it, or with `spread` its items.
pub(crate) fn arguments(data: Option<Value>, spread: bool) -> Vec<Value> {
    match data {
        None => Vec::new(),
        Some(Value::Array(items)) if spread => items,
        Some(value) => vec![value],
    }
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

/// The status of a refusal.
fn status(failure: &ApiError) -> StatusCode {
    match failure {
        ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ApiError::NotFound(_) => StatusCode::NOT_FOUND,
        ApiError::Cluster(_) | ApiError::Store => StatusCode::BAD_GATEWAY,
    }
}

pub(crate) fn json_response(status: StatusCode, text: String) -> Response<Full<Bytes>> {
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

pub(crate) fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
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

pub(crate) type BoxResponseFuture<E> =
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
}
