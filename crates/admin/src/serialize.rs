//! Sockets in the shape the UI reads (`SerializedSocket` of the reference's typed events).

use std::time::SystemTime;

use serde_json::{json, Map, Value};
use switchyard::adapter::SocketInfo;

/// The key a Node server instrumented by the reference keeps in `socket.data` (connection id
/// and transport); read from its sockets, never shown as data.
const REFERENCE_DATA_KEY: &str = "_admin";

/// What replaces a credential in a header, query parameter or URL shown to the UI.
const HIDDEN: &str = "(hidden)";

/// Headers that carry credentials (a bearer token, a session cookie).
const SECRET_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

/// Whether query parameter `name` may carry a credential (`token`, `access_token`, ...).
fn secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("token") || name.contains("password") || name == "auth" || name == "key"
}

/// `url` with the values of its credential parameters hidden.
fn masked_url(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_parameter(name) => format!("{name}={HIDDEN}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// `info`, a socket of namespace `nsp` (on this server or another), as the UI reads it. The
/// handshake's `auth` is never included, and credentials in its headers, query and URL are
/// hidden (the reference shows them).
pub(crate) fn socket(nsp: &str, info: &SocketInfo) -> Value {
    let reference = info.data.get(REFERENCE_DATA_KEY);
    let (client_id, transport) = match &info.connection {
        Some(connection) => (
            Value::from(connection.id.as_str()),
            Value::from(connection.transport.as_str()),
        ),
        // A Node server tells only through the data its own admin namespace keeps.
        None => (
            reference
                .and_then(|admin| admin.get("clientId"))
                .cloned()
                .unwrap_or(Value::Null),
            reference
                .and_then(|admin| admin.get("transport"))
                .cloned()
                .unwrap_or(Value::Null),
        ),
    };
    let data = match &info.data {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| *key != REFERENCE_DATA_KEY)
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        Value::Null => Value::Object(Map::new()),
        other => other.clone(),
    };
    let handshake = &info.handshake;
    // Behind a proxy the client's address is in a header, as the reference reads it.
    let address = ["cf-connecting-ip", "x-forwarded-for"]
        .iter()
        .find_map(|name| handshake.headers.get(*name))
        .unwrap_or(&handshake.address);
    let headers: Map<String, Value> = handshake
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if SECRET_HEADERS.contains(&name.as_str()) {
                HIDDEN
            } else {
                value.as_str()
            };
            (name.clone(), Value::from(shown))
        })
        .collect();
    let query: Map<String, Value> = handshake
        .query
        .iter()
        .map(|(name, value)| {
            let shown = if secret_parameter(name) {
                HIDDEN
            } else {
                value.as_str()
            };
            (name.clone(), Value::from(shown))
        })
        .collect();
    json!({
        "id": &*info.id,
        "clientId": client_id,
        "transport": transport,
        "nsp": nsp,
        "data": data,
        "handshake": {
            "address": address,
            "headers": headers,
            "query": query,
            "issued": handshake.issued,
            "secure": handshake.secure,
            "time": &handshake.time,
            "url": masked_url(&handshake.url),
            "xdomain": handshake.xdomain,
        },
        "rooms": &info.rooms,
    })
}

/// A time as the reference's `Date` goes on the wire: ISO 8601 with milliseconds, UTC.
pub(crate) fn timestamp(at: SystemTime) -> Value {
    Value::String(humantime::format_rfc3339_millis(at).to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use switchyard::adapter::HandshakeInfo;
    use switchyard::ConnectionInfo;

    use super::*;

    fn info(connection: Option<ConnectionInfo>, data: Value) -> SocketInfo {
        let headers = BTreeMap::from([("user-agent".to_owned(), "test".to_owned())]);
        SocketInfo {
            id: "sock1".into(),
            handshake: HandshakeInfo {
                headers,
                time: "Fri, 04 Dec 2026 12:00:00 GMT".into(),
                address: "127.0.0.1".into(),
                xdomain: false,
                secure: false,
                issued: 1_796_388_013_870,
                url: "/socket.io/?EIO=4&transport=polling".into(),
                query: BTreeMap::from([("EIO".to_owned(), "4".to_owned())]),
                auth: json!({"token": "secret"}),
            },
            rooms: vec!["sock1".into(), "chat:general".into()],
            data,
            connection,
        }
    }

    #[test]
    fn a_socket_is_described_as_the_ui_reads_it_without_its_auth() {
        let connection = ConnectionInfo {
            id: "abcdefabcdef".into(),
            transport: "websocket".into(),
        };
        let value = socket("/chat", &info(Some(connection), json!({"name": "alice"})));
        assert_eq!(value["id"], "sock1");
        assert_eq!(value["clientId"], "abcdefabcdef");
        assert_eq!(value["transport"], "websocket");
        assert_eq!(value["nsp"], "/chat");
        assert_eq!(value["data"], json!({"name": "alice"}));
        assert_eq!(value["rooms"], json!(["sock1", "chat:general"]));
        let handshake = &value["handshake"];
        assert_eq!(handshake["address"], "127.0.0.1");
        assert_eq!(handshake["issued"], 1_796_388_013_870u64);
        assert_eq!(handshake["headers"]["user-agent"], "test");
        assert_eq!(handshake["query"]["EIO"], "4");
        assert!(handshake.get("auth").is_none());
        assert!(!value.to_string().contains("secret"));
    }

    #[test]
    fn a_node_servers_socket_is_described_from_its_admin_data() {
        let data = json!({"_admin": {"clientId": "nodeclient12", "transport": "polling"}, "n": 1});
        let value = socket("/", &info(None, data));
        assert_eq!(value["clientId"], "nodeclient12");
        assert_eq!(value["transport"], "polling");
        assert_eq!(value["data"], json!({"n": 1}));
        let bare = socket("/", &info(None, Value::Null));
        assert_eq!(bare["clientId"], Value::Null);
        assert_eq!(bare["data"], json!({}));
    }

    #[test]
    fn the_address_behind_a_proxy_comes_from_its_header() {
        let mut described = info(None, json!({}));
        described
            .handshake
            .headers
            .insert("x-forwarded-for".into(), "203.0.113.7".into());
        assert_eq!(
            socket("/", &described)["handshake"]["address"],
            "203.0.113.7"
        );
    }

    #[test]
    fn credentials_in_the_handshake_are_hidden() {
        let mut described = info(None, json!({}));
        let handshake = &mut described.handshake;
        handshake
            .headers
            .insert("authorization".into(), "Bearer eyJsecret".into());
        handshake
            .headers
            .insert("cookie".into(), "session=secret".into());
        handshake.query.insert("token".into(), "eyJsecret".into());
        handshake.url = "/socket.io/?EIO=4&token=eyJsecret&transport=polling".into();
        let value = socket("/", &described);
        assert!(!value.to_string().contains("secret"), "{value}");
        assert_eq!(value["handshake"]["headers"]["authorization"], HIDDEN);
        assert_eq!(value["handshake"]["headers"]["user-agent"], "test");
        assert_eq!(value["handshake"]["query"]["token"], HIDDEN);
        assert_eq!(value["handshake"]["query"]["EIO"], "4");
        assert_eq!(
            value["handshake"]["url"],
            "/socket.io/?EIO=4&token=(hidden)&transport=polling"
        );
    }

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_388_013_886);
        assert_eq!(timestamp(at), json!("2026-12-04T12:40:13.886Z"));
    }
}
