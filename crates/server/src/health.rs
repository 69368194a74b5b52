//! `/healthz`, `/readyz` and `/metrics`, in front of the page's service.
//!
//! `/healthz` answers 200 while the process serves HTTP (liveness). `/readyz` answers 200 when
//! the server should get new clients: it is not draining and, when clustered, Redis answered
//! its links' last check; otherwise 503, with the reasons. Both answer JSON, to `GET` and
//! `HEAD`. `/metrics`, when on, answers the Prometheus text format (see [`crate::metrics`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;
use tower_service::Service;

use crate::metrics::{Exporter, CONTENT_TYPE};

/// What `/readyz` looks at.
#[derive(Default)]
pub(crate) struct Readiness {
    draining: AtomicBool,
    /// Whether the cluster's backend answers, when clustered.
    cluster: Option<Box<dyn Fn() -> bool + Send + Sync>>,
    /// How long the backend must stay unreachable before the server says it is not ready:
    /// every node shares it, so one blip would otherwise take the whole fleet out at once.
    grace: Duration,
    /// Since when a probe has seen the backend unreachable.
    unreachable_since: Mutex<Option<Instant>>,
}

impl Readiness {
    /// Readiness for a server on `cluster`'s reachability, if clustered, unready once the
    /// backend has been unreachable for `grace`.
    pub(crate) fn new(
        cluster: Option<Box<dyn Fn() -> bool + Send + Sync>>,
        grace: Duration,
    ) -> Readiness {
        Readiness {
            cluster,
            grace,
            ..Readiness::default()
        }
    }

    /// From now on, not ready: the server is draining.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why the server should not get new clients now; empty when it is ready.
    fn reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            reasons.push("draining");
        }
        if let Some(reachable) = &self.cluster {
            let mut since = self
                .unreachable_since
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if reachable() {
                *since = None;
            } else if since.get_or_insert_with(Instant::now).elapsed() >= self.grace {
                reasons.push("redis unreachable");
            }
        }
        reasons
    }
}

/// Answers `/healthz` and `/readyz`, and hands everything else to `inner`.
#[derive(Clone)]
pub(crate) struct Health<S> {
    inner: S,
    readiness: Arc<Readiness>,
    metrics: Option<Arc<Exporter>>,
}

impl<S> Health<S> {
    pub(crate) fn new(inner: S, readiness: Arc<Readiness>) -> Health<S> {
        Health {
            inner,
            readiness,
            metrics: None,
        }
    }

    /// Serves `/metrics` from `exporter`.
    pub(crate) fn with_metrics(mut self, exporter: Arc<Exporter>) -> Health<S> {
        self.metrics = Some(exporter);
        self
    }

    /// The answer to `method` on one of these paths, `None` for other paths (and for
    /// `/metrics` when it is off).
    fn respond(&self, method: &Method, path: &str) -> Option<Response<Full<Bytes>>> {
        let exporter = match path {
            "/metrics" => Some(self.metrics.as_ref()?),
            "/healthz" | "/readyz" => None,
            _ => return None,
        };
        if method != Method::GET && method != Method::HEAD {
            let body = json!({ "error": "method not allowed", "allowed": ["GET", "HEAD"] });
            return Some(answer(
                method,
                StatusCode::METHOD_NOT_ALLOWED,
                JSON,
                body.to_string(),
            ));
        }
        if let Some(exporter) = exporter {
            return Some(answer(
                method,
                StatusCode::OK,
                CONTENT_TYPE,
                exporter.render().to_string(),
            ));
        }
        let (status, body) = match self.readiness.reasons() {
            _ if path == "/healthz" => (StatusCode::OK, json!({ "status": "ok" })),
            reasons if reasons.is_empty() => (StatusCode::OK, json!({ "status": "ready" })),
            reasons => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "reasons": reasons }),
            ),
        };
        Some(answer(method, status, JSON, body.to_string()))
    }
}

const JSON: &str = "application/json";

/// A response of `status` with `text`, or just its headers to a `HEAD`; never cached.
fn answer(
    method: &Method,
    status: StatusCode,
    content_type: &'static str,
    text: String,
) -> Response<Full<Bytes>> {
    let length = text.len();
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(text)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}

impl<S, B> Service<Request<B>> for Health<S>
where
    S: Service<Request<B>, Response = Response<Full<Bytes>>>,
    S::Future: Send + 'static,
{
    type Response = Response<Full<Bytes>>;
    type Error = S::Error;
    type Future = futures_util::future::Either<
        std::future::Ready<Result<Self::Response, S::Error>>,
        S::Future,
    >;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.respond(request.method(), request.uri().path()) {
            Some(response) => futures_util::future::Either::Left(std::future::ready(Ok(response))),
            None => futures_util::future::Either::Right(self.inner.call(request)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use serde_json::Value;

    use super::*;
    use crate::web::StaticFiles;

    async fn get(
        service: &mut Health<StaticFiles>,
        method: Method,
        uri: &str,
    ) -> (StatusCode, Value) {
        let (status, _, body) = crate::web::call(service, method, uri).await;
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        (status, value)
    }

    #[tokio::test]
    async fn health_and_readiness_follow_the_draining_flag_and_the_cluster() {
        let reachable = Arc::new(AtomicBool::new(true));
        let probe = reachable.clone();
        let readiness = Arc::new(Readiness::new(
            Some(Box::new(move || probe.load(Ordering::Acquire))),
            Duration::ZERO,
        ));
        let mut service = Health::new(StaticFiles, readiness.clone());
        assert_eq!(
            get(&mut service, Method::GET, "/healthz").await,
            (StatusCode::OK, json!({ "status": "ok" }))
        );
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await,
            (StatusCode::OK, json!({ "status": "ready" }))
        );
        reachable.store(false, Ordering::Release);
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "reasons": ["redis unreachable"] })
            )
        );
        readiness.start_draining();
        assert_eq!(
            get(&mut service, Method::GET, "/readyz?verbose").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "reasons": ["draining", "redis unreachable"] })
            )
        );
        // Liveness does not depend on readiness.
        assert_eq!(
            get(&mut service, Method::GET, "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(&mut service, Method::HEAD, "/healthz").await,
            (StatusCode::OK, Value::Null)
        );
        assert_eq!(
            get(&mut service, Method::POST, "/healthz").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        // Other paths go to the page's service.
        assert_eq!(
            get(&mut service, Method::GET, "/nowhere").await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(get(&mut service, Method::GET, "/").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_served_when_on() {
        let io = switchyard::SocketIo::new(switchyard::SocketIoConfig::default());
        let readiness = Arc::new(Readiness::default());
        let mut off = Health::new(StaticFiles, readiness.clone());
        assert_eq!(
            get(&mut off, Method::GET, "/metrics").await.0,
            StatusCode::NOT_FOUND
        );
        let mut on = Health::new(StaticFiles, readiness)
            .with_metrics(Arc::new(crate::metrics::Exporter::new(io, None)));
        let (status, headers, body) = crate::web::call(&mut on, Method::GET, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE)
        );
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("switchyard_sockets{namespace=\"/\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE switchyard_handshakes_total counter"),
            "{text}"
        );
        assert_eq!(
            get(&mut on, Method::POST, "/metrics").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn a_blip_shorter_than_the_grace_keeps_the_server_ready() {
        let reachable = Arc::new(AtomicBool::new(false));
        let probe = reachable.clone();
        let readiness = Arc::new(Readiness::new(
            Some(Box::new(move || probe.load(Ordering::Acquire))),
            Duration::from_secs(3600),
        ));
        let mut service = Health::new(StaticFiles, readiness);
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await.0,
            StatusCode::OK
        );
        reachable.store(true, Ordering::Release);
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await.0,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_single_server_is_ready_until_it_drains() {
        let readiness = Arc::new(Readiness::default());
        let mut service = Health::new(StaticFiles, readiness.clone());
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await.0,
            StatusCode::OK
        );
        readiness.start_draining();
        assert_eq!(
            get(&mut service, Method::GET, "/readyz").await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "status": "not ready", "reasons": ["draining"] })
            )
        );
    }
}
