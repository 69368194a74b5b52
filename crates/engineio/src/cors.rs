//! Cross-origin resource sharing for polling requests.

use http::header::{self, HeaderMap, HeaderValue};

/// Which origins may make cross-origin requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin; the request's own origin is echoed back.
    Any,
    /// Only these exact origins (scheme, host and port, e.g. `https://app.example.com`).
    List(Vec<String>),
}

/// A cross-origin policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsConfig {
    /// The origins allowed.
    pub origins: AllowedOrigins,
    /// Whether cookies and credentials may be sent; the exact origin is then echoed.
    pub credentials: bool,
}

impl CorsConfig {
    /// Allows every origin, without credentials.
    pub fn any() -> Self {
        CorsConfig {
            origins: AllowedOrigins::Any,
            credentials: false,
        }
    }

    /// Allows exactly these origins.
    pub fn origins(origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CorsConfig {
            origins: AllowedOrigins::List(origins.into_iter().map(Into::into).collect()),
            credentials: false,
        }
    }

    /// Allows credentials.
    pub fn with_credentials(mut self) -> Self {
        self.credentials = true;
        self
    }

    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        match &self.origins {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|allowed| allowed == origin),
        }
    }

    /// Adds the headers for a request carrying `request_headers` to `response`.
    pub(crate) fn apply(&self, request_headers: &HeaderMap, response: &mut HeaderMap) {
        response.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = request_headers.get(header::ORIGIN) else {
            return;
        };
        let Ok(origin_str) = origin.to_str() else {
            return;
        };
        if !self.allows(origin_str) {
            return;
        }
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            response.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// Adds the preflight answer's headers.
    pub(crate) fn apply_preflight(&self, request_headers: &HeaderMap, response: &mut HeaderMap) {
        self.apply(request_headers, response);
        response.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
        );
        if let Some(requested) = request_headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            response.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested.clone());
            response.append(
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn any_origin_is_echoed() {
        let mut response = HeaderMap::new();
        CorsConfig::any().apply(&request("https://a.test"), &mut response);
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.test"
        );
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn listed_origin_with_credentials_gets_exact_origin() {
        let cors = CorsConfig::origins(["https://a.test"]).with_credentials();
        let mut response = HeaderMap::new();
        cors.apply(&request("https://a.test"), &mut response);
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://a.test"
        );
        assert_eq!(response[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn unlisted_origin_gets_no_allow_header() {
        let cors = CorsConfig::origins(["https://a.test"]);
        let mut response = HeaderMap::new();
        cors.apply(&request("https://evil.test"), &mut response);
        assert!(!response.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    }

    #[test]
    fn preflight_echoes_requested_headers() {
        let mut headers = request("https://a.test");
        headers.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        let mut response = HeaderMap::new();
        CorsConfig::any().apply_preflight(&headers, &mut response);
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "content-type"
        );
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET,HEAD,PUT,PATCH,POST,DELETE"
        );
    }
}
