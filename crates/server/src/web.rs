//! The demo page and its assets, embedded in the binary, as a tower service.
//!
//! `GET`/`HEAD` of a known path answers the file; a known path with another method gets 405;
//! any other path 404. The Socket.IO server is put in front of this service (see `main.rs`),
//! so `/socket.io/` never reaches it.

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use tower_service::Service;

/// Policy for every page: nothing but this server's own scripts, styles and connections.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/app.js"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../web/style.css"),
    },
    Asset {
        // The official socket.io-client 4.8.1 browser bundle, unchanged.
        path: "/vendor/socket.io.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/vendor/socket.io.min.js"),
    },
];

/// Serves the embedded page and assets.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StaticFiles;

impl StaticFiles {
    /// The answer to `method` on `path`.
    pub(crate) fn respond(method: &Method, path: &str) -> Response<Full<Bytes>> {
        let path = if path == "/index.html" { "/" } else { path };
        let Some(asset) = ASSETS.iter().find(|asset| asset.path == path) else {
            return plain(StatusCode::NOT_FOUND, "Not Found");
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
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
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
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
        response
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
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
        assert!(body.starts_with(b"<!doctype html>"));
        let (status, _, same) = get(Method::GET, "/index.html").await;
        assert_eq!((status, same), (StatusCode::OK, body));
    }

    #[tokio::test]
    async fn the_client_bundle_is_the_official_one() {
        let (status, headers, body) = get(Method::GET, "/vendor/socket.io.min.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(body.starts_with(b"/*!\n * Socket.IO v4.8.1\n"));
    }

    #[tokio::test]
    async fn head_has_the_length_but_no_body() {
        let (status, headers, body) = get(Method::HEAD, "/style.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            include_bytes!("../../../web/style.css")
                .len()
                .to_string()
                .as_str()
        );
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_are_404_and_other_methods_405() {
        let (status, _, body) = get(Method::GET, "/secret").await;
        assert_eq!(
            (status, &body[..]),
            (StatusCode::NOT_FOUND, &b"Not Found"[..])
        );
        let (status, _, _) = get(Method::GET, "/vendor/").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = get(Method::POST, "/").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
    }
}
