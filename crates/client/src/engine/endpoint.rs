//! Where the server is: host, port, path and query of every Engine.IO request.

use std::fmt::Write as _;

use switchyard_engineio_proto::TransportKind;

use crate::error::EngineError;

/// The parsed server URL plus the Engine.IO path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Host name or address, as in the URL (IPv6 without brackets).
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// `host:port` for the `Host` header and WebSocket URLs.
    pub(crate) authority: String,
    /// The Engine.IO path, with a leading and a trailing `/`.
    pub(crate) path: String,
    /// Encoded extra query, `&`-joined, possibly empty.
    pub(crate) extra_query: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/][?query]` (or `ws://`); `path` is the Engine.IO path.
    pub(crate) fn parse(
        url: &str,
        path: &str,
        query: &[(String, String)],
    ) -> Result<Endpoint, EngineError> {
        let invalid = |reason| EngineError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let default_port = match uri.scheme_str() {
            Some("http") | Some("ws") => 80,
            Some("https") | Some("wss") => return Err(invalid("TLS is not supported")),
            _ => return Err(invalid("the scheme must be http or ws")),
        };
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
            .to_owned();
        let port = uri.port_u16().unwrap_or(default_port);
        if !matches!(uri.path(), "" | "/") {
            return Err(invalid(
                "the URL has a path: choose the namespace with Manager::socket",
            ));
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut path = path.to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        if !path.ends_with('/') {
            path.push('/');
        }
        let mut extra_query = uri.query().unwrap_or_default().to_owned();
        for (key, value) in query {
            if !extra_query.is_empty() {
                extra_query.push('&');
            }
            encode_component(&mut extra_query, key);
            extra_query.push('=');
            encode_component(&mut extra_query, value);
        }
        Ok(Endpoint {
            host,
            port,
            authority,
            path,
            extra_query,
        })
    }

    /// The path and query of a request on `transport`, with `sid` once the session exists.
    pub(crate) fn path_and_query(&self, transport: TransportKind, sid: Option<&str>) -> String {
        let mut out = format!(
            "{}?EIO=4&transport={}",
            self.path,
            match transport {
                TransportKind::Polling => "polling",
                TransportKind::WebSocket => "websocket",
            }
        );
        if let Some(sid) = sid {
            out.push_str("&sid=");
            encode_component(&mut out, sid);
        }
        if !self.extra_query.is_empty() {
            out.push('&');
            out.push_str(&self.extra_query);
        }
        out
    }

    /// The `ws://` URL of a WebSocket connection.
    pub(crate) fn websocket_url(&self, sid: Option<&str>) -> String {
        format!(
            "ws://{}{}",
            self.authority,
            self.path_and_query(TransportKind::WebSocket, sid)
        )
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn encode_component(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing into a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_and_builds_queries() {
        let endpoint = Endpoint::parse(
            "http://127.0.0.1:3000?x=1",
            "/socket.io",
            &[("token".into(), "a b&c".into())],
        )
        .unwrap();
        assert_eq!(endpoint.host, "127.0.0.1");
        assert_eq!(endpoint.port, 3000);
        assert_eq!(endpoint.authority, "127.0.0.1:3000");
        assert_eq!(
            endpoint.path_and_query(TransportKind::Polling, None),
            "/socket.io/?EIO=4&transport=polling&x=1&token=a%20b%26c"
        );
        assert_eq!(
            endpoint.websocket_url(Some("ab+c")),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket&sid=ab%2Bc&x=1&token=a%20b%26c"
        );
    }

    #[test]
    fn default_port_ipv6_and_ws_scheme() {
        let endpoint = Endpoint::parse("ws://[::1]/", "/engine.io/", &[]).unwrap();
        assert_eq!(endpoint.host, "::1");
        assert_eq!(endpoint.port, 80);
        assert_eq!(endpoint.authority, "[::1]:80");
        assert_eq!(
            endpoint.path_and_query(TransportKind::WebSocket, None),
            "/engine.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn refuses_tls_paths_and_garbage() {
        for url in [
            "https://localhost",
            "ftp://localhost",
            "http://localhost/chat",
            "not a url",
        ] {
            assert!(
                matches!(
                    Endpoint::parse(url, "/socket.io/", &[]),
                    Err(EngineError::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
    }
}
