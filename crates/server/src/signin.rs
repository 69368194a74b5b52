//! Sign-in for the demo page: `GET /auth/config` and, in dev mode, `POST /auth/dev-token`.
//!
//! | request | answer |
//! |---|---|
//! | `GET /auth/config` | 200 `{ "devTokens": bool, "jwt": bool, "tokenTtlS": number }` |
//! | `POST /auth/dev-token` `{ "name": "alice" }` | 200 `{ "token": "<HS256 JWT>", "sub": "alice", "expiresAt": <unix s> }` |
//!
//! `devTokens`: whether `POST /auth/dev-token` answers; `jwt`: whether tokens are required (a
//! key is configured, the development secret included); `tokenTtlS`: the lifetime of a
//! development token.
//!
//! **For development only.** The token endpoint is unauthenticated: anyone who reaches it gets
//! a token for any name. It signs with the public development secret, and only answers
//! without a real key (none configured, where clients name themselves anyway, or only
//! `--jwt-dev-secret`, where anyone can mint such tokens with the documented secret): it gives
//! nobody more than they already have. With a real key (`JWT_SECRET`, public keys, a JWKS),
//! even beside `--jwt-dev-secret`, or with `--dev-tokens=false`, it is 404: a production
//! server that kept the development secret on by mistake does not also hand out its tokens. The name is checked as a chat name ([`input::name`]); the token carries
//! `rooms: ["*"]`, the configured `iss` and `aud`, and `exp` = now + `--dev-token-ttl-s`.
//!
//! Every refusal is a JSON `{ "error": … }` with 400 (bad JSON or name), 404 (unknown path, or
//! the endpoint off), 405 (another method), 408 (the body too slow) or 413 (a body over
//! 1 KiB), and a log line (a few a second at most).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use switchyard::engineio::LogBudget;
use tower_service::Service;
use tracing::{debug, info};

use crate::api::{self, BoxError, BoxResponseFuture};
use crate::config::{JwtSettings, DEV_SECRET};
use crate::{input, mint};

/// The paths this service answers; everything else under `/auth/` is 404.
const CONFIG_PATH: &str = "/auth/config";
/// The path of the development token endpoint.
const DEV_TOKEN_PATH: &str = "/auth/dev-token";

/// Largest body of `POST /auth/dev-token`.
const MAX_BODY_BYTES: usize = 1024;

/// Refusals logged per second at most; the rest are counted in the next line.
const REFUSAL_LOG_LINES_PER_SECOND: u32 = 5;

/// What the sign-in routes need of the configuration.
pub(crate) struct SignIn {
    /// Whether `POST /auth/dev-token` answers.
    dev_tokens: bool,
    /// Whether tokens are required (a key is configured).
    jwt: bool,
    /// The lifetime of a development token.
    ttl: Duration,
    /// The JWT settings, for `iss` and `aud`.
    settings: JwtSettings,
    /// How long a body may take.
    body_timeout: Duration,
    refusals: LogBudget,
}

impl SignIn {
    /// The routes for `settings`, with bodies bounded by `body_timeout`.
    pub(crate) fn new(settings: &JwtSettings, body_timeout: Duration) -> SignIn {
        SignIn {
            dev_tokens: settings.dev_tokens_on(),
            jwt: settings.enabled(),
            ttl: settings.dev_token_ttl,
            settings: settings.clone(),
            body_timeout,
            refusals: LogBudget::new(REFUSAL_LOG_LINES_PER_SECOND, Duration::from_secs(1)),
        }
    }

    /// The answer to `request`, whose path is under `/auth/`.
    async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Error: Into<BoxError>,
    {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let allowed =
            match path.as_str() {
                CONFIG_PATH => "GET, HEAD",
                DEV_TOKEN_PATH if self.dev_tokens => "POST",
                DEV_TOKEN_PATH => return self.refuse(
                    &path,
                    StatusCode::NOT_FOUND,
                    "development tokens are off (a JWT key is configured, or --dev-tokens=false)",
                ),
                _ => return self.refuse(&path, StatusCode::NOT_FOUND, "no such path"),
            };
        if !allowed.split(", ").any(|m| m == method.as_str()) {
            let mut response =
                self.refuse(&path, StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allowed));
            return response;
        }
        if path == CONFIG_PATH {
            let config = json!({
                "devTokens": self.dev_tokens,
                "jwt": self.jwt,
                "tokenTtlS": self.ttl.as_secs(),
            });
            let mut response = api::json_response(StatusCode::OK, config.to_string());
            if method == Method::HEAD {
                *response.body_mut() = Full::new(Bytes::new());
            }
            return response;
        }
        let body = match api::read_json(
            request.into_body(),
            MAX_BODY_BYTES,
            "body over 1 KiB",
            self.body_timeout,
        )
        .await
        {
            Ok(body) => body,
            Err(response) => {
                self.log(&path, response.status(), "body refused");
                return response;
            }
        };
        match self.mint(&body) {
            Ok(answer) => api::json_response(StatusCode::OK, answer.to_string()),
            Err((status, message)) => self.refuse(&path, status, &message),
        }
    }

    /// The token for the body's `name`, or the status and message of a refusal.
    fn mint(&self, body: &Value) -> Result<Value, (StatusCode, String)> {
        let bad = |message: String| (StatusCode::BAD_REQUEST, message);
        if !body.is_object() {
            return Err(bad("expected a JSON object { \"name\": … }".to_owned()));
        }
        let name = match body.get("name") {
            None | Some(Value::Null) => return Err(bad("name required".to_owned())),
            Some(Value::String(_)) => input::name(body.get("name"))
                .map_err(|error| bad(format!("invalid name: {error}")))?
                .ok_or_else(|| bad("name required".to_owned()))?,
            Some(_) => return Err(bad("name must be a string".to_owned())),
        };
        let now = mint::now();
        let rooms = ["*".to_owned()];
        let claims = mint::token_claims(&self.settings, &name, Some(&rooms), self.ttl, now);
        let token = mint::sign(DEV_SECRET, &claims).map_err(|error| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot sign the token: {error}"),
            )
        })?;
        debug!(sub = %name, "development token issued");
        Ok(json!({
            "token": token,
            "sub": name,
            "expiresAt": claims["exp"],
        }))
    }

    /// A JSON refusal, logged.
    fn refuse(&self, path: &str, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
        self.log(path, status, message);
        api::error(status, message)
    }

    fn log(&self, path: &str, status: StatusCode, message: &str) {
        if let Some(held_back) = self.refusals.allow(Instant::now()) {
            info!(
                path,
                status = status.as_u16(),
                held_back,
                "sign-in request refused: {message}"
            );
        }
    }
}

/// Answers `/auth/…` with [`SignIn`], and hands everything else to `inner`.
#[derive(Clone)]
pub(crate) struct SignInService<S> {
    inner: S,
    routes: Arc<SignIn>,
}

impl<S> SignInService<S> {
    /// `routes` in front of `inner`.
    pub(crate) fn new(inner: S, routes: Arc<SignIn>) -> SignInService<S> {
        SignInService { inner, routes }
    }
}

impl<S, B> Service<Request<B>> for SignInService<S>
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
        if !request.uri().path().starts_with("/auth/") {
            return Box::pin(self.inner.call(request));
        }
        let routes = self.routes.clone();
        Box::pin(async move { Ok(routes.handle(request).await) })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use switchyard_auth::{ClaimRules, JwtAuth, JwtConfig, Key, KeySet};

    use super::*;
    use crate::config::defaults;

    async fn send(routes: &SignIn, method: Method, path: &str, body: &str) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap_or_else(|error| panic!("{error}"));
        let response = routes.handle(request).await;
        let status = response.status();
        let bytes = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn dev_verifier(settings: &JwtSettings) -> JwtAuth {
        let key = Key::hmac_secret(DEV_SECRET.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let config = JwtConfig {
            rules: ClaimRules {
                issuers: settings.issuer.iter().cloned().collect(),
                audiences: settings.audience.iter().cloned().collect(),
                ..ClaimRules::default()
            },
            ..JwtConfig::default()
        };
        JwtAuth::new(KeySet::new().with_key(key), config).unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn a_dev_token_carries_the_name_the_lifetime_and_every_room() {
        let mut settings = defaults().0.jwt;
        settings.issuer = Some("https://issuer.test".into());
        settings.audience = Some("switchyard".into());
        let routes = SignIn::new(&settings, Duration::from_secs(5));
        let before = mint::now();
        let (status, answer) = send(
            &routes,
            Method::POST,
            DEV_TOKEN_PATH,
            r#"{ "name": " alice " }"#,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["sub"], "alice");
        let expires = answer["expiresAt"].as_u64().unwrap_or_default();
        assert!((before + 300..=mint::now() + 300).contains(&expires));
        let token = answer["token"].as_str().unwrap_or_default();
        let claims = dev_verifier(&settings)
            .verify(token)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.exp, Some(expires));
        assert!(claims.may_join("any-room"));
    }

    #[tokio::test]
    async fn the_config_tells_each_mode() {
        let dev = defaults().0.jwt;
        let routes = SignIn::new(&dev, Duration::from_secs(5));
        assert_eq!(
            send(&routes, Method::GET, CONFIG_PATH, "").await,
            (
                StatusCode::OK,
                json!({ "devTokens": true, "jwt": false, "tokenTtlS": 300 })
            )
        );
        let real = JwtSettings {
            secret: Some("0123456789abcdef0123".into()),
            ..dev.clone()
        };
        let routes = SignIn::new(&real, Duration::from_secs(5));
        assert_eq!(
            send(&routes, Method::GET, CONFIG_PATH, "").await.1,
            json!({ "devTokens": false, "jwt": true, "tokenTtlS": 300 })
        );
        let (status, body) = send(&routes, Method::POST, DEV_TOKEN_PATH, r#"{"name":"a"}"#).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body["error"].is_string());
        let both = JwtSettings {
            dev_secret: true,
            ..real
        };
        let routes = SignIn::new(&both, Duration::from_secs(5));
        assert_eq!(
            send(&routes, Method::GET, CONFIG_PATH, "").await.1,
            json!({ "devTokens": false, "jwt": true, "tokenTtlS": 300 })
        );
        let dev_secret_only = JwtSettings {
            dev_secret: true,
            ..dev.clone()
        };
        let routes = SignIn::new(&dev_secret_only, Duration::from_secs(5));
        assert_eq!(
            send(&routes, Method::GET, CONFIG_PATH, "").await.1,
            json!({ "devTokens": true, "jwt": true, "tokenTtlS": 300 })
        );
        let off = JwtSettings {
            dev_tokens: false,
            dev_token_ttl: Duration::from_secs(60),
            ..dev
        };
        let routes = SignIn::new(&off, Duration::from_secs(5));
        assert_eq!(
            send(&routes, Method::GET, CONFIG_PATH, "").await.1,
            json!({ "devTokens": false, "jwt": false, "tokenTtlS": 60 })
        );
        let (status, _) = send(&routes, Method::POST, DEV_TOKEN_PATH, r#"{"name":"a"}"#).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_json() {
        let routes = SignIn::new(&defaults().0.jwt, Duration::from_secs(5));
        let long = format!(r#"{{"name":"{}"}}"#, "a".repeat(2000));
        let overlong = format!(r#"{{"name":"{}"}}"#, "a".repeat(65));
        for (body, status) in [
            ("", StatusCode::BAD_REQUEST),
            ("{", StatusCode::BAD_REQUEST),
            ("[]", StatusCode::BAD_REQUEST),
            ("{}", StatusCode::BAD_REQUEST),
            (r#"{"name":"  "}"#, StatusCode::BAD_REQUEST),
            (r#"{"name":7}"#, StatusCode::BAD_REQUEST),
            (r#"{"name":"a\u0007b"}"#, StatusCode::BAD_REQUEST),
            (overlong.as_str(), StatusCode::BAD_REQUEST),
            (long.as_str(), StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            let (got, answer) = send(&routes, Method::POST, DEV_TOKEN_PATH, body).await;
            assert_eq!(got, status, "{body}: {answer}");
            assert!(answer["error"].is_string(), "{body}: {answer}");
        }
        let (status, _) = send(&routes, Method::GET, DEV_TOKEN_PATH, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _) = send(&routes, Method::POST, CONFIG_PATH, "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, answer) = send(&routes, Method::GET, "/auth/other", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(answer["error"].is_string());
    }
}
