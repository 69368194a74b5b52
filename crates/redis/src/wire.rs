//! The classic protocol of `@socket.io/redis-adapter` 8.3 (`createAdapter`) and of
//! `@socket.io/redis-emitter` 5.1, sans-IO: channel names, and the messages that travel on
//! them, to and from bytes. `docs/design/redis-wire.md` (section 2) is the specification.
//!
//! Every payload is decoded into a JSON value (msgpack `bin` values become placeholders) and
//! read by field name, whatever the sender's key order; every payload we write starts with `{`
//! when it is JSON, so a receiver can tell the two encodings apart by their first byte.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard::adapter::{BroadcastOptions, HandshakeInfo, Room, SocketInfo};
use switchyard::proto::Packet;
use switchyard_core::Args;
use switchyard_socketio_proto::{encode_msgpack_value, MsgPackValue};

use crate::error::WireError;

/// The most `bin` values one adapter message may hold: Node sets no limit here, so this is
/// only a bound on what a message can make us build.
pub(crate) const MAX_BINS: usize = 4096;

/// The uid the emitters publish under: 7 characters, so it never equals a server's 6.
pub(crate) const EMITTER_UID: &str = "emitter";

/// Request types of the classic protocol (section 2.4).
pub(crate) mod kind {
    pub(crate) const SOCKETS: u64 = 0;
    pub(crate) const ALL_ROOMS: u64 = 1;
    pub(crate) const REMOTE_JOIN: u64 = 2;
    pub(crate) const REMOTE_LEAVE: u64 = 3;
    pub(crate) const REMOTE_DISCONNECT: u64 = 4;
    pub(crate) const REMOTE_FETCH: u64 = 5;
    pub(crate) const SERVER_SIDE_EMIT: u64 = 6;
    pub(crate) const BROADCAST: u64 = 7;
    pub(crate) const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub(crate) const BROADCAST_ACK: u64 = 9;
}

/// The channels of one namespace under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    /// `P#N#`: broadcasts to no room or to several rooms.
    pub(crate) broadcast: String,
    /// `P#N#*`: the pattern every server subscribes to for broadcasts.
    pub(crate) pattern: String,
    /// `P-request#N#`.
    pub(crate) request: String,
    /// `P-response#N#`: the shared response channel.
    pub(crate) response: String,
}

impl Channels {
    /// The channels of namespace `nsp` under `prefix`.
    pub(crate) fn new(prefix: &str, nsp: &str) -> Channels {
        let broadcast = format!("{prefix}#{nsp}#");
        Channels {
            pattern: format!("{broadcast}*"),
            broadcast,
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
        }
    }

    /// `P-response#N#uid#`: the responses meant for server `uid` alone.
    pub(crate) fn own_response(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }

    /// Where a broadcast with `options` is published: the room's channel when it targets
    /// exactly one room (so servers with no socket in it skip it undecoded), else the main one.
    pub(crate) fn broadcast_channel(&self, options: &BroadcastOptions) -> String {
        match options.rooms.as_slice() {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// The room a broadcast channel names: `Some("")` for the main channel, `None` when the
    /// channel is not one of this namespace's broadcast channels.
    pub(crate) fn room_of<'c>(&self, channel: &'c str) -> Option<&'c str> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        if rest.is_empty() {
            return Some("");
        }
        rest.strip_suffix('#')
    }
}

/// A decoded payload: a JSON value with placeholders for the msgpack `bin` values it held.
#[derive(Debug)]
pub(crate) struct Message {
    doc: MsgPackValue,
}

impl Message {
    /// Decodes a payload: JSON when it starts with `{`, msgpack otherwise.
    pub(crate) fn decode(payload: &Bytes) -> Result<Message, WireError> {
        let doc = if payload.first() == Some(&b'{') {
            MsgPackValue {
                value: serde_json::from_slice(payload)?,
                bins: Vec::new(),
            }
        } else {
            MsgPackValue::decode(payload, MAX_BINS)?
        };
        Ok(Message { doc })
    }

    /// Decodes a msgpack payload (no JSON form).
    pub(crate) fn decode_msgpack(payload: &Bytes) -> Result<Message, WireError> {
        Ok(Message {
            doc: MsgPackValue::decode(payload, MAX_BINS)?,
        })
    }

    /// A JSON value as a message (no binary).
    pub(crate) fn from_json(value: Value) -> Message {
        Message {
            doc: MsgPackValue {
                value,
                bins: Vec::new(),
            },
        }
    }

    /// Field `name` of a map payload as a message of its own, with the binary it refers to.
    pub(crate) fn take(mut self, name: &str) -> Option<Message> {
        let value = self.doc.value.get_mut(name)?.take();
        Some(Message {
            doc: MsgPackValue {
                value,
                bins: self.doc.bins,
            },
        })
    }

    /// Field `name` of a map payload.
    pub(crate) fn field(&self, name: &str) -> Option<&Value> {
        self.doc.value.get(name)
    }

    /// Field `name` as a string.
    pub(crate) fn str_field(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// The request or response type (`type`).
    pub(crate) fn kind(&self) -> Option<u64> {
        self.field("type").and_then(Value::as_u64)
    }

    /// The request id (`requestId`).
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.str_field("requestId")
    }

    /// The sender's uid (`uid`); requests of the emitter have none.
    pub(crate) fn uid(&self) -> Option<&str> {
        self.str_field("uid")
    }

    /// Field `name` as one argument (an ack's or a server-side answer's first argument),
    /// with its own attachments; no argument when the field is absent (`undefined` on Node).
    pub(crate) fn argument(&self, name: &str) -> Args {
        match self.field(name) {
            Some(value) => self.args_of(Value::Array(vec![value.clone()])),
            None => Args::empty(),
        }
    }

    /// `value` (a part of this payload) as arguments with their own attachments: an array is
    /// the argument list, anything else one argument.
    pub(crate) fn args_of(&self, mut value: Value) -> Args {
        let attachments = self.doc.attachments_of(&mut value);
        let values = match value {
            Value::Array(values) => values,
            other => vec![other],
        };
        Args {
            values,
            attachments,
        }
    }

    /// The options of a request (`opts`); absent options target every socket.
    pub(crate) fn options(&self) -> BroadcastOptions {
        self.field("opts")
            .map(options_from_wire)
            .unwrap_or_default()
    }

    /// Field `name` as a list of rooms (strings, or numbers as Node allows).
    pub(crate) fn rooms_field(&self, name: &str) -> Vec<Room> {
        rooms_from_wire(self.field(name))
    }

    /// Reads a broadcast `[uid, packet, opts]` (section 2.3) for namespace `nsp`: the sender's
    /// uid, then the packet and options to deliver, or `None` when the packet is for another
    /// namespace or not an event.
    pub(crate) fn broadcast(self, nsp: &str) -> Result<(String, Option<Delivery>), WireError> {
        let Value::Array(parts) = &self.doc.value else {
            return Err(WireError::Shape("broadcast is not an array"));
        };
        let [uid, packet, opts] = parts.as_slice() else {
            return Err(WireError::Shape("broadcast is not [uid, packet, opts]"));
        };
        let uid = uid.as_str().unwrap_or_default().to_owned();
        let delivery = self.delivery(packet, opts, nsp);
        Ok((uid, delivery))
    }

    /// The packet and options of a broadcast or a broadcast request, when it is an event of
    /// namespace `nsp`.
    pub(crate) fn delivery(&self, packet: &Value, opts: &Value, nsp: &str) -> Option<Delivery> {
        // A packet without `nsp` is for the main namespace (section 2.3, step 4).
        let packet_nsp = packet.get("nsp").and_then(Value::as_str).unwrap_or("/");
        let event = packet.get("type").and_then(Value::as_u64) == Some(2);
        if packet_nsp != nsp || !event {
            return None;
        }
        let mut data = packet.get("data").cloned().filter(Value::is_array)?;
        let attachments = self.doc.attachments_of(&mut data);
        let mut options = options_from_wire(opts);
        // What a server receives from another it only delivers to its own sockets.
        options.local = true;
        Some(Delivery {
            packet: Packet::Event {
                nsp: nsp.to_owned(),
                id: None,
                data,
                attachments,
            },
            options,
            timeout: opts
                .get("flags")
                .and_then(|flags| flags.get("timeout"))
                .and_then(Value::as_u64)
                .map(Duration::from_millis),
        })
    }
}

/// A packet another server asks this one to deliver to its sockets.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The event, with this server's namespace and no ack id.
    pub(crate) packet: Packet,
    /// Which local sockets; `local` is set.
    pub(crate) options: BroadcastOptions,
    /// `flags.timeout`, for a broadcast with acks.
    pub(crate) timeout: Option<Duration>,
}

/// A room name from the wire: Node allows numbers, which travel as numbers.
fn room_from_wire(value: &Value) -> Option<Room> {
    match value {
        Value::String(room) => Some(room.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

fn rooms_from_wire(value: Option<&Value>) -> Vec<Room> {
    value
        .and_then(Value::as_array)
        .map(|rooms| rooms.iter().filter_map(room_from_wire).collect())
        .unwrap_or_default()
}

/// `{rooms, except, flags}` to options.
pub(crate) fn options_from_wire(opts: &Value) -> BroadcastOptions {
    let flag = |name: &str| {
        opts.get("flags")
            .and_then(|flags| flags.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    BroadcastOptions {
        rooms: rooms_from_wire(opts.get("rooms")),
        except: rooms_from_wire(opts.get("except")),
        volatile: flag("volatile"),
        compress: flag("compress"),
        local: flag("local"),
    }
}

/// Options to `{rooms, except, flags}`. A flag is written only when set: Node takes the mere
/// presence of `volatile` for a volatile packet. `timeout` is added for requests with acks.
pub(crate) fn options_to_wire(options: &BroadcastOptions, timeout: Option<Duration>) -> Value {
    let mut flags = Map::new();
    if options.volatile {
        flags.insert("volatile".into(), Value::Bool(true));
    }
    if options.compress {
        flags.insert("compress".into(), Value::Bool(true));
    }
    if let Some(timeout) = timeout {
        flags.insert("timeout".into(), json!(timeout.as_millis() as u64));
    }
    json!({
        "rooms": options.rooms,
        "except": options.except,
        "flags": flags,
    })
}

/// The options of the room requests (join, leave, disconnect): no flags, as Node sends them.
pub(crate) fn room_options_to_wire(options: &BroadcastOptions) -> Value {
    json!({ "rooms": options.rooms, "except": options.except })
}

/// The packet object of an adapter message: `{type: 2, data, nsp}`, binary inline.
pub(crate) fn packet_to_wire(packet: &Packet) -> (Value, &[Bytes]) {
    let data = packet.data().cloned().unwrap_or(Value::Null);
    (
        json!({ "type": 2, "data": data, "nsp": packet.nsp() }),
        packet.attachments(),
    )
}

/// A broadcast `[uid, packet, opts]`, msgpack.
pub(crate) fn encode_broadcast(uid: &str, packet: &Packet, options: &BroadcastOptions) -> Bytes {
    let (packet, attachments) = packet_to_wire(packet);
    let message = json!([uid, packet, options_to_wire(options, None)]);
    Bytes::from(encode_msgpack_value(&message, attachments))
}

/// A broadcast-with-acks request (type 7), msgpack.
pub(crate) fn encode_broadcast_request(
    uid: &str,
    request_id: &str,
    packet: &Packet,
    options: &BroadcastOptions,
    timeout: Duration,
) -> Bytes {
    let (packet, attachments) = packet_to_wire(packet);
    let message = json!({
        "uid": uid,
        "requestId": request_id,
        "type": kind::BROADCAST,
        "packet": packet,
        "opts": options_to_wire(options, Some(timeout)),
    });
    Bytes::from(encode_msgpack_value(&message, attachments))
}

/// One client's acknowledgement of a broadcast request (type 9), msgpack: its first argument.
pub(crate) fn encode_broadcast_ack(request_id: &str, args: &Args) -> Bytes {
    let mut message = json!({
        "type": kind::BROADCAST_ACK,
        "requestId": request_id,
    });
    // No argument: Node's `undefined`, a key notepack leaves out.
    if let (Some(first), Value::Object(map)) = (args.values.first(), &mut message) {
        map.insert("packet".into(), first.clone());
    }
    Bytes::from(encode_msgpack_value(&message, &args.attachments))
}

/// The first argument as JSON carries it (binary in Node's Buffer shape); `null` when none.
pub(crate) fn first_as_json(args: &Args) -> Value {
    args.values
        .first()
        .map(|value| buffers_to_json(value, &args.attachments))
        .unwrap_or(Value::Null)
}

/// A JSON payload (requests and most responses).
pub(crate) fn encode_json(value: &Value) -> Bytes {
    // Serializing a `Value` cannot fail; an object always starts with `{`.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// `[event, ...args]` as JSON carries it: binary becomes Node's `{type: "Buffer", data}`
/// shape, as `JSON.stringify` turns a Buffer.
pub(crate) fn event_to_json(event: &str, args: &Args) -> Value {
    let mut values = Vec::with_capacity(args.values.len() + 1);
    values.push(Value::String(event.to_owned()));
    values.extend(
        args.values
            .iter()
            .map(|v| buffers_to_json(v, &args.attachments)),
    );
    Value::Array(values)
}

fn buffers_to_json(value: &Value, attachments: &[Bytes]) -> Value {
    if let Some(bin) =
        switchyard_socketio_proto::is_placeholder(value).and_then(|n| attachments.get(n))
    {
        return json!({ "type": "Buffer", "data": bin.as_ref() });
    }
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| buffers_to_json(item, attachments))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), buffers_to_json(v, attachments)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// A socket description as Node sends it (section 1.5), to ours. Tolerant: header and query
/// values may be lists, any field may be missing.
pub(crate) fn socket_from_wire(value: &Value) -> Option<SocketInfo> {
    let id = value.get("id")?.as_str()?;
    let handshake = value.get("handshake").cloned().unwrap_or(Value::Null);
    let text_map = |value: Option<&Value>| {
        value
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .map(|(k, v)| {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            Value::Array(items) => items
                                .iter()
                                .map(|i| {
                                    i.as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| i.to_string())
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                            other => other.to_string(),
                        };
                        (k.clone(), text)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |name: &str| {
        handshake
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let flag = |name: &str| {
        handshake
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Some(SocketInfo {
        id: id.into(),
        handshake: HandshakeInfo {
            headers: text_map(handshake.get("headers")),
            time: text("time"),
            address: text("address"),
            xdomain: flag("xdomain"),
            secure: flag("secure"),
            issued: handshake.get("issued").and_then(Value::as_u64).unwrap_or(0),
            url: text("url"),
            query: text_map(handshake.get("query")),
            auth: handshake.get("auth").cloned().unwrap_or(Value::Null),
        },
        rooms: rooms_from_wire(value.get("rooms")),
        data: value.get("data").cloned().unwrap_or_else(|| json!({})),
        // Switchyard servers say which connection a socket is on; Node servers do not.
        connection: value
            .get("connection")
            .and_then(|connection| serde_json::from_value(connection.clone()).ok()),
    })
}

/// A fresh id: 6 characters of the URL-safe alphabet, as Node's `uid2(6)` makes server uids
/// and request ids.
pub(crate) fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..6)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..64)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_socketio_proto::placeholder;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn channel_names() {
        let channels = Channels::new("socket.io", "/chat");
        assert_eq!(channels.broadcast, "socket.io#/chat#");
        assert_eq!(channels.pattern, "socket.io#/chat#*");
        assert_eq!(channels.request, "socket.io-request#/chat#");
        assert_eq!(channels.response, "socket.io-response#/chat#");
        assert_eq!(
            channels.own_response("AbC12x"),
            "socket.io-response#/chat#AbC12x#"
        );
        let one = BroadcastOptions {
            rooms: vec!["r1".into()],
            ..Default::default()
        };
        assert_eq!(channels.broadcast_channel(&one), "socket.io#/chat#r1#");
        let two = BroadcastOptions {
            rooms: vec!["r1".into(), "r2".into()],
            ..Default::default()
        };
        assert_eq!(channels.broadcast_channel(&two), "socket.io#/chat#");
        assert_eq!(channels.room_of("socket.io#/chat#r1#"), Some("r1"));
        assert_eq!(channels.room_of("socket.io#/chat#"), Some(""));
        assert_eq!(channels.room_of("socket.io#/other#"), None);
    }

    /// The example of the specification (section 2.3), byte for byte as notepack writes it,
    /// but for the key order of maps, which receivers never rely on.
    #[test]
    fn broadcast_example_round_trip() {
        let node = "93a641624331327883a47479706502a46461746192a568656c6c6f01a36e7370a52f6368617483a5726f6f6d7391a27231a665786365707490a5666c61677380";
        let bytes: Vec<u8> = (0..node.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&node[i..i + 2], 16).unwrap())
            .collect();
        let message = Message::decode(&Bytes::from(bytes.clone())).unwrap();
        let (uid, delivery) = message.broadcast("/chat").unwrap();
        assert_eq!(uid, "AbC12x");
        let delivery = delivery.unwrap();
        assert_eq!(
            delivery.packet,
            Packet::event("/chat", "hello", vec![json!(1)])
        );
        assert_eq!(delivery.options.rooms, vec![Room::from("r1")]);
        assert!(delivery.options.except.is_empty() && !delivery.options.volatile);
        // Ours decodes to the same thing, and is as long.
        let options = BroadcastOptions {
            rooms: vec!["r1".into()],
            ..Default::default()
        };
        let ours = encode_broadcast("AbC12x", &delivery.packet, &options);
        assert_eq!(ours.len(), bytes.len(), "{}", hex(&ours));
        let again = Message::decode(&ours).unwrap().broadcast("/chat").unwrap();
        assert_eq!(again.1.unwrap().packet, delivery.packet);
        // Another namespace's packet is not delivered; a missing nsp means `/`.
        let message = Message::decode(&Bytes::from(bytes)).unwrap();
        assert!(message.broadcast("/").unwrap().1.is_none());
        let no_nsp = json!(["x", {"type": 2, "data": ["e"]}, {"rooms": [], "except": []}]);
        let bytes = Bytes::from(encode_msgpack_value(&no_nsp, &[]));
        assert!(Message::decode(&bytes)
            .unwrap()
            .broadcast("/")
            .unwrap()
            .1
            .is_some());
    }

    #[test]
    fn binary_travels_inline() {
        let packet = Packet::Event {
            nsp: "/".into(),
            id: None,
            data: json!(["file", {"name": "a", "body": placeholder(0)}, placeholder(1)]),
            attachments: vec![Bytes::from_static(b"\xde\xad"), Bytes::from_static(b"\x01")],
        };
        let bytes = encode_broadcast("u", &packet, &BroadcastOptions::default());
        assert!(hex(&bytes).contains("c402dead"));
        let (_, delivery) = Message::decode(&bytes).unwrap().broadcast("/").unwrap();
        assert_eq!(delivery.unwrap().packet, packet);
    }

    #[test]
    fn flags_only_when_set() {
        let options = BroadcastOptions {
            except: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            options_to_wire(&options, None),
            json!({"rooms": [], "except": ["x"], "flags": {}})
        );
        let volatile = BroadcastOptions {
            volatile: true,
            ..Default::default()
        };
        let wire = options_to_wire(&volatile, Some(Duration::from_secs(5)));
        assert_eq!(wire["flags"], json!({"volatile": true, "timeout": 5000}));
        let back = options_from_wire(&wire);
        assert!(back.volatile && !back.compress);
        // Numeric rooms, as Node allows them.
        let numeric = options_from_wire(&json!({"rooms": [42, "a"], "except": []}));
        assert_eq!(numeric.rooms, vec![Room::from("42"), Room::from("a")]);
    }

    #[test]
    fn broadcast_request_and_ack() {
        let packet = Packet::event("/", "ping", vec![]);
        let bytes = encode_broadcast_request(
            "AbC12x",
            "Qw3rty",
            &packet,
            &BroadcastOptions::default(),
            Duration::from_millis(5000),
        );
        let message = Message::decode(&bytes).unwrap();
        assert_eq!(message.kind(), Some(kind::BROADCAST));
        assert_eq!(message.request_id(), Some("Qw3rty"));
        assert_eq!(message.uid(), Some("AbC12x"));
        let delivery = message
            .delivery(
                message.field("packet").unwrap(),
                message.field("opts").unwrap(),
                "/",
            )
            .unwrap();
        assert_eq!(delivery.timeout, Some(Duration::from_secs(5)));
        // The specification's ack answer: 83 a4"type" 09 a9"requestId" a6"Qw3rty" a6"packet" a4"pong".
        let ack = encode_broadcast_ack("Qw3rty", &Args::one("pong").unwrap());
        let message = Message::decode(&ack).unwrap();
        assert_eq!(message.kind(), Some(kind::BROADCAST_ACK));
        assert_eq!(ack.len(), 1 + 5 + 1 + 10 + 7 + 7 + 5);
        let args = message.argument("packet");
        assert_eq!(args.values, vec![json!("pong")]);
        // An array is one argument; no argument is no `packet` key.
        let ack = encode_broadcast_ack("r", &Args::one(&json!([1, 2])).unwrap());
        let message = Message::decode(&ack).unwrap();
        assert_eq!(message.argument("packet").values, vec![json!([1, 2])]);
        let ack = encode_broadcast_ack("r", &Args::empty());
        let message = Message::decode(&ack).unwrap();
        assert!(message.field("packet").is_none());
        assert!(message.argument("packet").is_empty());
    }

    #[test]
    fn json_and_msgpack_share_a_channel() {
        let json = encode_json(&json!({"requestId": "abc", "sockets": []}));
        assert_eq!(json[0], b'{');
        assert_eq!(Message::decode(&json).unwrap().request_id(), Some("abc"));
        assert!(Message::decode(&Bytes::from_static(b"{nope")).is_err());
        assert!(Message::decode(&Bytes::from_static(b"\xc1")).is_err());
    }

    #[test]
    fn buffers_as_json_stringify_writes_them() {
        let args = Args {
            values: vec![json!({"b": placeholder(0)})],
            attachments: vec![Bytes::from_static(b"\x01\x02")],
        };
        assert_eq!(
            event_to_json("ev", &args),
            json!(["ev", {"b": {"type": "Buffer", "data": [1, 2]}}])
        );
    }

    #[test]
    fn node_socket_descriptions() {
        let node = json!({
            "id": "abc",
            "handshake": {
                "headers": {"host": "x", "x-many": ["a", "b"]},
                "time": "Tue Jan 02 2024", "address": "::1", "xdomain": false, "secure": false,
                "issued": 1704153600000u64, "url": "/socket.io/?EIO=4",
                "query": {"EIO": "4", "k": ["1", "2"]}, "auth": {"token": "t"}
            },
            "rooms": ["abc", "r1", 7],
            "data": {"user": "u"}
        });
        let info = socket_from_wire(&node).unwrap();
        assert_eq!(&*info.id, "abc");
        assert_eq!(info.handshake.headers["x-many"], "a, b");
        assert_eq!(info.handshake.query["k"], "1, 2");
        assert_eq!(info.handshake.issued, 1_704_153_600_000);
        assert_eq!(info.rooms.len(), 3);
        assert_eq!(info.data, json!({"user": "u"}));
        // The bare minimum.
        let bare = socket_from_wire(&json!({"id": "x"})).unwrap();
        assert_eq!(bare.data, json!({}));
        assert!(socket_from_wire(&json!({"rooms": []})).is_none());
    }

    proptest::proptest! {
        /// Whatever another server (or anyone who can publish on Redis) sends, reading it
        /// never panics.
        #[test]
        fn any_payload_is_read_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let payload = Bytes::from(bytes);
            if let Ok(message) = Message::decode(&payload) {
                let _ = message.kind();
                let _ = message.options();
                let _ = message.rooms_field("rooms");
                if let (Some(packet), Some(opts)) = (message.field("packet"), message.field("opts")) {
                    let _ = message.delivery(packet, opts, "/");
                }
                let _ = message.broadcast("/");
            }
        }

        /// Broadcasts read back as written, whatever the arguments.
        #[test]
        fn broadcasts_round_trip(
            text in ".{0,20}",
            n in proptest::num::i64::ANY,
            bin in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            room in "[a-z]{1,8}",
        ) {
            let packet = Packet::Event {
                nsp: "/".into(),
                id: None,
                data: json!(["ev", text, n, placeholder(0)]),
                attachments: vec![Bytes::from(bin)],
            };
            let options = BroadcastOptions { rooms: vec![room.as_str().into()], ..Default::default() };
            let bytes = encode_broadcast("u", &packet, &options);
            let (uid, delivery) = Message::decode(&bytes).unwrap().broadcast("/").unwrap();
            proptest::prop_assert_eq!(uid, "u");
            let delivery = delivery.unwrap();
            proptest::prop_assert_eq!(delivery.packet, packet);
            proptest::prop_assert_eq!(delivery.options.rooms, options.rooms);
        }
    }

    #[test]
    fn ids_are_six_url_safe_characters() {
        let id = new_id();
        assert_eq!(id.len(), 6);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(new_id(), new_id());
    }
}
