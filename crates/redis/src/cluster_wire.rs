//! The cluster message format of `socket.io-adapter` 2.5 (`ClusterAdapter`), as the Redis
//! streams adapter 0.3 of Node carries it, sans-IO: stream names, stream entries, pub/sub
//! envelopes, stream ids (the offsets of connection state recovery) and stored sessions.
//! `docs/design/redis-wire.md` (sections 3 and 5) is the specification.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard::adapter::{Room, SessionState};
use switchyard_socketio_proto::{encode_msgpack_value, is_placeholder, MsgPackValue};

use crate::error::WireError;
use crate::wire::{Message, MAX_BINS};

/// Message types of the cluster format (section 3.1).
pub(crate) mod ctype {
    pub(crate) const BROADCAST: u64 = 3;
    pub(crate) const SOCKETS_JOIN: u64 = 4;
    pub(crate) const SOCKETS_LEAVE: u64 = 5;
    pub(crate) const DISCONNECT_SOCKETS: u64 = 6;
    pub(crate) const FETCH_SOCKETS: u64 = 7;
    pub(crate) const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub(crate) const SERVER_SIDE_EMIT: u64 = 9;
    pub(crate) const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub(crate) const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub(crate) const BROADCAST_ACK: u64 = 12;

    /// The types whose `data` may carry binary, and is then msgpack rather than JSON.
    pub(crate) fn may_carry_binary(kind: u64) -> bool {
        matches!(
            kind,
            BROADCAST
                | FETCH_SOCKETS_RESPONSE
                | SERVER_SIDE_EMIT
                | SERVER_SIDE_EMIT_RESPONSE
                | BROADCAST_ACK
        )
    }
}

/// Java's `String.hashCode` over UTF-16 code units, as the streams adapter hashes namespaces.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The stream namespace `nsp` is carried on: `base` with one stream, else
/// `base-<hash % count>`, JavaScript's remainder keeping the hash's sign (section 5.1).
pub(crate) fn stream_name(base: &str, count: u32, nsp: &str) -> String {
    if count <= 1 {
        return base.to_owned();
    }
    let count = i64::from(count);
    format!("{base}-{}", i64::from(java_hash(nsp)) % count)
}

/// The public channel of a namespace (`P#N#`) and a server's private one (`P#N#uid#`).
pub(crate) fn public_channel(prefix: &str, nsp: &str) -> String {
    format!("{prefix}#{nsp}#")
}

/// `P#N#uid#`: where server `uid` receives the responses to its requests.
pub(crate) fn private_channel(prefix: &str, nsp: &str, uid: &str) -> String {
    format!("{prefix}#{nsp}#{uid}#")
}

/// A fresh server uid or request id: 8 random bytes as 16 lower-case hex characters.
pub(crate) fn new_uid() -> String {
    use rand::Rng;
    let bytes: [u8; 8] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Redis stream entry id, `milliseconds-sequence`: the offsets clients hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub(crate) struct StreamId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl StreamId {
    /// Parses `digits-digits`; anything else (Node rejects it too) is `None`.
    pub(crate) fn parse(text: &str) -> Option<StreamId> {
        let (ms, seq) = text.split_once('-')?;
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(StreamId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The XRANGE start that excludes this id, built by hand as Node does (the `(` prefix
    /// needs Redis 6.2).
    pub(crate) fn exclusive_start(&self) -> String {
        match self.seq.checked_add(1) {
            Some(seq) => format!("{}-{seq}", self.ms),
            None => format!("{}-0", self.ms.saturating_add(1)),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A cluster message, whichever way it came: its sender, namespace, type and data.
#[derive(Debug)]
pub(crate) struct ClusterMessage {
    pub(crate) uid: String,
    pub(crate) nsp: String,
    pub(crate) kind: u64,
    /// `data`: absent for the heartbeats and ADAPTER_CLOSE.
    pub(crate) data: Option<Message>,
}

/// Whether a JSON value holds a placeholder for binary.
fn holds_binary(value: &Value) -> bool {
    if is_placeholder(value).is_some() {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().any(holds_binary),
        Value::Object(map) => map.values().any(holds_binary),
        _ => false,
    }
}

/// The fields of a stream entry (section 5.3): `uid`, `nsp`, `type` as a decimal string and,
/// when there is data, `data`: JSON text, or the base64 of its msgpack form when it carries
/// binary.
pub(crate) fn stream_fields(
    uid: &str,
    nsp: &str,
    kind: u64,
    data: Option<(&Value, &[Bytes])>,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut fields = vec![
        ("uid", uid.as_bytes().to_vec()),
        ("nsp", nsp.as_bytes().to_vec()),
        ("type", kind.to_string().into_bytes()),
    ];
    if let Some((value, attachments)) = data {
        let text = if ctype::may_carry_binary(kind) && holds_binary(value) {
            BASE64
                .encode(encode_msgpack_value(value, attachments))
                .into_bytes()
        } else {
            // Serializing a `Value` cannot fail.
            serde_json::to_vec(value).unwrap_or_default()
        };
        fields.push(("data", text));
    }
    fields
}

/// Reads a stream entry's fields; `Ok(None)` for an entry without `nsp` (not the adapter's).
pub(crate) fn read_stream_entry(
    fields: &[(String, Vec<u8>)],
) -> Result<Option<ClusterMessage>, WireError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_slice())
    };
    let Some(nsp) = field("nsp") else {
        return Ok(None);
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let kind = field("type")
        .and_then(|t| std::str::from_utf8(t).ok())
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or(WireError::Shape("stream entry without a numeric type"))?;
    let data = match field("data") {
        None => None,
        Some(raw) if raw.first() == Some(&b'{') => {
            Some(Message::from_json(serde_json::from_slice(raw)?))
        }
        Some(raw) => {
            let bytes = BASE64
                .decode(raw)
                .map_err(|_| WireError::Shape("stream entry data neither JSON nor base64"))?;
            Some(Message::decode_msgpack(&Bytes::from(bytes))?)
        }
    };
    Ok(Some(ClusterMessage {
        uid: field("uid").map(text).unwrap_or_default(),
        nsp: text(nsp),
        kind,
        data,
    }))
}

/// A pub/sub message (section 5.4): the msgpack of the whole envelope.
pub(crate) fn encode_envelope(
    uid: &str,
    nsp: &str,
    kind: u64,
    data: &Value,
    attachments: &[Bytes],
) -> Bytes {
    let envelope = json!({ "uid": uid, "nsp": nsp, "type": kind, "data": data });
    Bytes::from(encode_msgpack_value(&envelope, attachments))
}

/// A message of the sharded adapter (section 4.2): the JSON text of the envelope, or its
/// msgpack when it may carry binary and does.
pub(crate) fn encode_sharded(
    uid: &str,
    nsp: &str,
    kind: u64,
    data: Option<&Value>,
    attachments: &[Bytes],
) -> Bytes {
    /// The envelope, borrowed: a broadcast's data is not copied to be written as JSON.
    #[derive(serde::Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a Value>,
        uid: &'a str,
        nsp: &'a str,
    }
    if let Some(data) = data.filter(|data| ctype::may_carry_binary(kind) && holds_binary(data)) {
        let envelope = json!({ "type": kind, "data": data, "uid": uid, "nsp": nsp });
        return Bytes::from(encode_msgpack_value(&envelope, attachments));
    }
    let envelope = Envelope {
        kind,
        data,
        uid,
        nsp,
    };
    // Serializing JSON values and strings cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Reads a pub/sub message (JSON text or msgpack, told apart by the first byte).
pub(crate) fn read_envelope(payload: &Bytes) -> Result<ClusterMessage, WireError> {
    let message = Message::decode(payload)?;
    let uid = message.uid().unwrap_or_default().to_owned();
    let nsp = message.str_field("nsp").unwrap_or_default().to_owned();
    let kind = message
        .kind()
        .ok_or(WireError::Shape("cluster message without a type"))?;
    Ok(ClusterMessage {
        uid,
        nsp,
        kind,
        data: message.take("data"),
    })
}

/// A session as the streams adapter stores it (section 5.7): base64 of the msgpack of
/// `{sid, pid, rooms, data}`, `rooms` with the socket's own id. Ours adds `startOffset` (Node
/// ignores it): where a client that saw no packet resumes.
pub(crate) fn encode_session(session: &SessionState) -> String {
    let mut rooms: Vec<&str> = vec![&session.sid];
    rooms.extend(session.rooms.iter().map(|room| &**room));
    let mut map = Map::new();
    map.insert("sid".into(), json!(&*session.sid));
    map.insert("pid".into(), json!(&*session.pid));
    map.insert("rooms".into(), json!(rooms));
    // Node's `socket.data` is an object: a session without data gets `{}`, not `null`.
    let data = match &session.data {
        Value::Null => json!({}),
        data => data.clone(),
    };
    map.insert("data".into(), data);
    if let Some(start) = &session.start_offset {
        map.insert("startOffset".into(), json!(start));
    }
    BASE64.encode(encode_msgpack_value(&Value::Object(map), &[]))
}

/// Reads a stored session, Node's or ours.
pub(crate) fn decode_session(text: &[u8]) -> Result<SessionState, WireError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| WireError::Shape("session is not base64"))?;
    let doc = MsgPackValue::decode(&Bytes::from(bytes), MAX_BINS)?;
    let value = &doc.value;
    let text = |name: &str| value.get(name).and_then(Value::as_str);
    let (Some(sid), Some(pid)) = (text("sid"), text("pid")) else {
        return Err(WireError::Shape("session without sid or pid"));
    };
    let rooms: Vec<Room> = value
        .get("rooms")
        .and_then(Value::as_array)
        .map(|rooms| {
            rooms
                .iter()
                .filter_map(|room| match room {
                    Value::String(room) if room != sid => Some(Room::from(room.as_str())),
                    Value::Number(n) => Some(Room::from(n.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let state = json!({
        "sid": sid,
        "pid": pid,
        "rooms": rooms,
        "data": value.get("data").cloned().unwrap_or(Value::Null),
        "start_offset": text("startOffset"),
    });
    Ok(serde_json::from_value(state)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard::proto::Packet;
    use switchyard_socketio_proto::placeholder;

    #[test]
    fn stream_names_hash_namespaces_as_java_does() {
        assert_eq!(java_hash("/"), 47);
        assert_eq!(java_hash("/chat"), 46_457_863);
        assert_eq!(java_hash("/orders-europe"), -1_978_948_165);
        assert_eq!(stream_name("socket.io", 1, "/chat"), "socket.io");
        assert_eq!(stream_name("socket.io", 2, "/"), "socket.io-1");
        assert_eq!(stream_name("socket.io", 2, "/chat"), "socket.io-1");
        // JavaScript's remainder keeps the sign: Node writes this very name.
        assert_eq!(
            stream_name("socket.io", 2, "/orders-europe"),
            "socket.io--1"
        );
    }

    #[test]
    fn channels() {
        assert_eq!(public_channel("socket.io", "/chat"), "socket.io#/chat#");
        assert_eq!(
            private_channel("socket.io", "/", "9f86d081884c7d65"),
            "socket.io#/#9f86d081884c7d65#"
        );
        let uid = new_uid();
        assert_eq!(uid.len(), 16);
        assert!(uid
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn stream_ids() {
        let id = StreamId::parse("1700000000000-12").unwrap();
        assert_eq!((id.ms, id.seq), (1_700_000_000_000, 12));
        assert_eq!(id.to_string(), "1700000000000-12");
        assert_eq!(id.exclusive_start(), "1700000000000-13");
        let last = StreamId {
            ms: 5,
            seq: u64::MAX,
        };
        assert_eq!(last.exclusive_start(), "6-0");
        assert!(StreamId::parse("1700000000000-13").unwrap() > id);
        assert!(StreamId::parse("1700000000001-0").unwrap() > id);
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "+1-2",
            "99999999999999999999-0",
        ] {
            assert_eq!(StreamId::parse(bad), None, "{bad}");
        }
    }

    /// The binary BROADCAST example of the specification (section 5.3), read and written.
    #[test]
    fn binary_broadcast_entry() {
        let example =
            "gqZwYWNrZXSCpHR5cGUCpGRhdGGSo2ltZ8QC3q2kb3B0c4Olcm9vbXOQpmV4Y2VwdJClZmxhZ3OA";
        let fields = vec![
            ("uid".to_owned(), b"9f86d081884c7d65".to_vec()),
            ("nsp".to_owned(), b"/".to_vec()),
            ("type".to_owned(), b"3".to_vec()),
            ("data".to_owned(), example.as_bytes().to_vec()),
        ];
        let message = read_stream_entry(&fields).unwrap().unwrap();
        assert_eq!(
            (message.uid.as_str(), message.nsp.as_str(), message.kind),
            ("9f86d081884c7d65", "/", 3)
        );
        let data = message.data.unwrap();
        let delivery = data
            .delivery(
                data.field("packet").unwrap(),
                data.field("opts").unwrap(),
                "/",
            )
            .unwrap();
        assert_eq!(
            delivery.packet,
            Packet::Event {
                nsp: "/".into(),
                id: None,
                data: json!(["img", placeholder(0)]),
                attachments: vec![Bytes::from_static(&[0xde, 0xad])],
            }
        );
        // Written back: msgpack (the packet has no `nsp` in Node's entry, ours adds it).
        let (packet, attachments) = crate::wire::packet_to_wire(&delivery.packet);
        let value = json!({"packet": packet, "opts": {"rooms": [], "except": [], "flags": {}}});
        let fields = stream_fields("u", "/", ctype::BROADCAST, Some((&value, attachments)));
        assert_eq!(fields[2], ("type", b"3".to_vec()));
        let data = &fields[3].1;
        assert_ne!(data.first(), Some(&b'{'));
        let again: Vec<(String, Vec<u8>)> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let again = read_stream_entry(&again).unwrap().unwrap().data.unwrap();
        let delivery_again = again
            .delivery(
                again.field("packet").unwrap(),
                again.field("opts").unwrap(),
                "/",
            )
            .unwrap();
        assert_eq!(delivery_again.packet, delivery.packet);
    }

    #[test]
    fn text_entries_are_json_and_entries_without_nsp_are_skipped() {
        let value = json!({"opts": {"rooms": ["r1"], "except": []}, "rooms": ["r2"]});
        let fields = stream_fields("u", "/chat", ctype::SOCKETS_JOIN, Some((&value, &[])));
        assert_eq!(fields[3].1, serde_json::to_vec(&value).unwrap());
        let owned: Vec<(String, Vec<u8>)> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let message = read_stream_entry(&owned).unwrap().unwrap();
        assert_eq!(message.kind, ctype::SOCKETS_JOIN);
        assert_eq!(
            message.data.unwrap().rooms_field("rooms"),
            vec![Room::from("r2")]
        );
        assert!(read_stream_entry(&[("uid".to_owned(), b"x".to_vec())])
            .unwrap()
            .is_none());
        assert!(read_stream_entry(&[("nsp".to_owned(), b"/".to_vec())]).is_err());
    }

    /// The sharded adapter's example (section 4.2): JSON text, read back; binary makes the
    /// whole envelope msgpack; heartbeats carry no data.
    #[test]
    fn sharded_messages_are_json_unless_they_carry_binary() {
        let data = json!({"packet": {"type": 2, "data": ["hello", 1]}, "opts": {"rooms": ["r1"], "except": [], "flags": {}}});
        let bytes = encode_sharded(
            "9f86d081884c7d65",
            "/chat",
            ctype::BROADCAST,
            Some(&data),
            &[],
        );
        let text: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            text,
            json!({"type": 3, "data": data, "uid": "9f86d081884c7d65", "nsp": "/chat"})
        );
        let message = read_envelope(&bytes).unwrap();
        assert_eq!((message.kind, message.nsp.as_str()), (3, "/chat"));

        let binary = json!({"packet": {"type": 5, "data": ["file", {"_placeholder": true, "num": 0}]}, "opts": {"rooms": [], "except": [], "flags": {}}});
        let attachments = [Bytes::from_static(&[1, 2, 3])];
        let bytes = encode_sharded("u", "/", ctype::BROADCAST, Some(&binary), &attachments);
        assert_ne!(bytes[0], b'{', "msgpack");
        let message = read_envelope(&bytes).unwrap();
        let packet = message.data.unwrap();
        assert_eq!(
            packet.field("packet").unwrap()["data"][1],
            json!({"_placeholder": true, "num": 0})
        );

        // Only the types that may carry binary switch to msgpack.
        let join = json!({"opts": {"rooms": [], "except": [], "flags": {}}, "rooms": [{"_placeholder": true, "num": 0}]});
        let bytes = encode_sharded("u", "/", ctype::SOCKETS_JOIN, Some(&join), &[]);
        assert_eq!(bytes[0], b'{');
        let heartbeat = encode_sharded("u", "/", 2, None, &[]);
        assert_eq!(&heartbeat[..], br#"{"type":2,"uid":"u","nsp":"/"}"#);
    }

    /// The FETCH_SOCKETS example of the specification (section 5.4).
    #[test]
    fn envelope_round_trip() {
        let data = json!({"opts": {"rooms": ["r1"], "except": [], "flags": {}}, "requestId": "1a2b3c4d5e6f7a8b"});
        let bytes = encode_envelope("9f86d081884c7d65", "/", ctype::FETCH_SOCKETS, &data, &[]);
        assert_eq!(bytes[0], 0x84, "a map of four");
        let message = read_envelope(&bytes).unwrap();
        assert_eq!(
            (message.uid.as_str(), message.nsp.as_str(), message.kind),
            ("9f86d081884c7d65", "/", 7)
        );
        let data = message.data.unwrap();
        assert_eq!(data.request_id(), Some("1a2b3c4d5e6f7a8b"));
        assert_eq!(data.options().rooms, vec![Room::from("r1")]);
        assert!(read_envelope(&Bytes::from_static(b"\x80")).is_err());
    }

    #[test]
    fn sessions_round_trip_and_node_sessions_are_read() {
        let state: SessionState = serde_json::from_value(json!({
            "sid": "AAAAAAAAAAAAAAAAAAAA", "pid": "BBBBBBBBBBBBBBBBBBBB",
            "rooms": ["r1", "r2"], "data": {"name": "ada"}, "start_offset": "5-0",
        }))
        .unwrap();
        let text = encode_session(&state);
        let back = decode_session(text.as_bytes()).unwrap();
        assert_eq!(&*back.sid, "AAAAAAAAAAAAAAAAAAAA");
        assert_eq!(&*back.pid, "BBBBBBBBBBBBBBBBBBBB");
        assert_eq!(back.rooms, vec![Room::from("r1"), Room::from("r2")]);
        assert_eq!(back.data, json!({"name": "ada"}));
        assert_eq!(back.start_offset.as_deref(), Some("5-0"));
        // Node's: rooms with the own id, no start offset.
        let node = json!({"sid": "s", "pid": "p", "rooms": ["s", "room"], "data": {}});
        let text = BASE64.encode(encode_msgpack_value(&node, &[]));
        let session = decode_session(text.as_bytes()).unwrap();
        assert_eq!(session.rooms, vec![Room::from("room")]);
        assert_eq!(session.start_offset, None);
        // No data: `{}`, as Node's `socket.data` starts (a Node server would get `null`).
        let empty: SessionState = serde_json::from_value(json!({
            "sid": "s", "pid": "p", "rooms": [], "data": null,
        }))
        .unwrap();
        let back = decode_session(encode_session(&empty).as_bytes()).unwrap();
        assert_eq!(back.data, json!({}));
        assert!(decode_session(b"not base64!").is_err());
        assert!(decode_session(BASE64.encode([0x80u8]).as_bytes()).is_err());
    }
}
