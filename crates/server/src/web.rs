//! The web app (the React build in `web/dist/`), embedded in the binary, as a tower service.
//!
//! `build.rs` walks `web/dist/` and generates the table of its files ([`ASSETS`]). `GET`/`HEAD`
//! of a file's path answers the file with its content type; `/`, `/index.html` and the app's
//! own routes ([`is_app_route`]: `/chat`, `/chat/<room>`, `/notifications`, `/docs`,
//! `/docs/<id>`, `/call`) answer `index.html`, so the app routes in the browser; a known path
//! with another method gets 405; any other path 404. Errors are JSON `{ "error": … }`. Every
//! answer carries a strict Content-Security-Policy and `X-Content-Type-Options: nosniff`; the
//! file names are not content-hashed, so nothing is cached without asking (`no-cache`). The
//! Socket.IO server, `/auth/`, `/api/` and the probes are put in front of this service (see
//! `main.rs`), so their paths never reach it.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

/// Policy for every page: nothing but this server's own scripts, styles, connections and
/// images, and media from the page's own streams (the call's video elements).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; \
    media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// An embedded file.
struct Asset {
    /// Its URL path: `/` and its path under `web/dist`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// The app's page.
const INDEX: &str = "/index.html";

/// Whether `path` is a route of the app (answered with `index.html`).
fn is_app_route(path: &str) -> bool {
    /// Routes with an optional single segment after them (`/chat/<room>`).
    const WITH_SEGMENT: [&str; 2] = ["/chat", "/docs"];
    /// Routes alone.
    const ALONE: [&str; 4] = ["/", INDEX, "/notifications", "/call"];
    if ALONE.contains(&path) || WITH_SEGMENT.contains(&path) {
        return true;
    }
    WITH_SEGMENT.iter().any(|route| {
        path.strip_prefix(route)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|segment| !segment.is_empty() && !segment.contains('/'))
    })
}

/// The embedded file that answers `path`, if any.
fn asset_for(path: &str) -> Option<&'static Asset> {
    let path = if is_app_route(path) { INDEX } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// Serves the embedded app.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StaticFiles;

impl StaticFiles {
    /// The answer to `method` on `path`.
    pub(crate) fn respond(method: &Method, path: &str) -> Response<Full<Bytes>> {
        let Some(asset) = asset_for(path) else {
            return error(StatusCode::NOT_FOUND, "not found");
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        let body = if method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from_static(asset.body)
        };
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        // The names carry no content hash: every use asks whether the file changed.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        protect(response)
    }
}

/// The security headers of every answer.
fn protect(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The call page asks for the camera and microphone; nothing framed or injected elsewhere
    // may, and nothing may ask for other devices.
    headers.insert(
        http::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
    response
}

/// The devices a page may ask for: the call's camera and microphone, on this origin only.
const PERMISSIONS_POLICY: &str =
    "camera=(self), microphone=(self), geolocation=(), usb=(), payment=()";

/// A JSON `{ "error": message }` answer.
fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    protect(response)
}

impl<B> Service<Request<B>> for StaticFiles {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(StaticFiles::respond(
            request.method(),
            request.uri().path(),
        )))
    }
}

/// Sends `method uri` to `service`: the status, headers and body of its answer.
#[cfg(test)]
pub(crate) async fn call<S>(
    service: &mut S,
    method: Method,
    uri: &str,
) -> (StatusCode, http::HeaderMap, Bytes)
where
    S: Service<Request<()>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    use http_body_util::BodyExt;

    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .unwrap_or_else(|error| panic!("request {uri}: {error}"));
    let response = match service.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    (parts.status, parts.headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(method: Method, uri: &str) -> (StatusCode, http::HeaderMap, Bytes) {
        call(&mut StaticFiles, method, uri).await
    }

    fn dist(path: &str) -> Vec<u8> {
        let file = format!("{}/../../web/dist{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&file).unwrap_or_else(|error| panic!("{file}: {error}"))
    }

    #[test]
    fn the_table_has_every_file_of_the_build() {
        let paths: Vec<&str> = ASSETS.iter().map(|asset| asset.path).collect();
        for path in ["/index.html", "/assets/app.js", "/assets/app.css"] {
            assert!(paths.contains(&path), "{path} not embedded: {paths:?}");
        }
        for asset in ASSETS {
            assert_eq!(asset.body, dist(asset.path), "{}", asset.path);
        }
        // The old page is no longer embedded.
        for old in ["/app.js", "/style.css", "/vendor/socket.io.min.js"] {
            assert!(!paths.contains(&old), "{old} still embedded");
        }
    }

    #[tokio::test]
    async fn the_page_is_served_at_the_root_with_a_strict_policy() {
        let (status, headers, body) = get(Method::GET, "/?x=1").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            body.len().to_string().as_str()
        );
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert!(headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .is_ok_and(|csp| csp.contains("media-src 'self' blob: mediastream:")));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers["permissions-policy"], PERMISSIONS_POLICY);
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(body, dist("/index.html"));
        let (status, _, same) = get(Method::GET, "/index.html").await;
        assert_eq!((status, same), (StatusCode::OK, body));
    }

    #[tokio::test]
    async fn the_app_routes_answer_the_page() {
        let page = dist("/index.html");
        for route in [
            "/chat",
            "/chat/general",
            "/chat/caf%C3%A9",
            "/notifications",
            "/docs",
            "/docs/plan-1",
            "/call",
            "/call?with=bob",
        ] {
            let (status, headers, body) = get(Method::GET, route).await;
            assert_eq!(status, StatusCode::OK, "{route}");
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(body, page, "{route}");
            let (status, _, body) = get(Method::HEAD, route).await;
            assert_eq!((status, body.len()), (StatusCode::OK, 0), "HEAD {route}");
        }
    }

    #[tokio::test]
    async fn files_are_served_with_their_type() {
        let (status, headers, body) = get(Method::GET, "/assets/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(body, dist("/assets/app.js"));
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        let (status, headers, _) = get(Method::GET, "/assets/app.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/css; charset=utf-8");
    }

    #[tokio::test]
    async fn head_has_the_length_but_no_body() {
        let (status, headers, body) = get(Method::HEAD, "/assets/app.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            dist("/assets/app.css").len().to_string().as_str()
        );
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405_in_json() {
        for path in [
            "/secret",
            "/app.js",
            "/style.css",
            "/vendor/socket.io.min.js",
            "/assets/",
            "/assets",
            "/chat/",
            "/chat/a/b",
            "/docs/",
            "/calls",
            "/chatroom",
            "/notifications/x",
            "/../Cargo.toml",
        ] {
            let (status, headers, body) = get(Method::GET, path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            let json: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            assert_eq!(json, serde_json::json!({ "error": "not found" }), "{path}");
        }
        for path in ["/", "/chat/general", "/assets/app.js"] {
            let (status, headers, body) = get(Method::POST, path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(headers[header::ALLOW], "GET, HEAD");
            assert_eq!(&body[..], br#"{"error":"method not allowed"}"#);
        }
    }
}
