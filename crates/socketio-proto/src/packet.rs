//! The packet model, placeholder helpers and the validation shared by both parsers.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::ParseError;

/// Event names a peer may not emit: they have a meaning of their own on one side or the other.
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The key marking a binary placeholder object.
const PLACEHOLDER_KEY: &str = "_placeholder";
/// The key holding the attachment index of a placeholder object.
const PLACEHOLDER_NUM: &str = "num";

/// The seven Socket.IO v5 packet types, as numbered on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// `0`: connect to a namespace (client) or confirm the connection (server).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: the answer to an event that asked for an acknowledgement.
    Ack = 3,
    /// `4`: the server refuses a namespace connection.
    ConnectError = 4,
    /// `5`: an event followed by binary attachments (text parser only).
    BinaryEvent = 5,
    /// `6`: an ack followed by binary attachments (text parser only).
    BinaryAck = 6,
}

impl PacketType {
    /// The type for a wire number, or `None` when the number is not a packet type.
    pub fn from_u8(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::Connect,
            1 => Self::Disconnect,
            2 => Self::Event,
            3 => Self::Ack,
            4 => Self::ConnectError,
            5 => Self::BinaryEvent,
            6 => Self::BinaryAck,
            _ => return None,
        })
    }

    /// The wire number of the type.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The protocol's upper-case name of the type, e.g. `"BINARY_EVENT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::Disconnect => "DISCONNECT",
            Self::Event => "EVENT",
            Self::Ack => "ACK",
            Self::ConnectError => "CONNECT_ERROR",
            Self::BinaryEvent => "BINARY_EVENT",
            Self::BinaryAck => "BINARY_ACK",
        }
    }

    /// Whether the type announces binary attachments in the text encoding (5 and 6).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One Socket.IO packet, independent of the parser that carries it.
///
/// Binary values inside `data` are placeholders `{"_placeholder":true,"num":i}` (see
/// [`placeholder`]) naming the `i`-th entry of `attachments`, which is exactly the form the
/// text parser puts on the wire; the msgpack parser converts to and from native binary values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Type 0. From a client, `data` is the auth object (or absent); from the server it is
    /// `{"sid": ...}` (plus `"pid"` when connection state recovery is on).
    Connect {
        /// The namespace, starting with `/`.
        nsp: String,
        /// The auth object or the connection details; always an object when present.
        data: Option<Value>,
    },
    /// Type 1: leave the namespace.
    Disconnect {
        /// The namespace, starting with `/`.
        nsp: String,
    },
    /// Type 2, or 5 on the text wire when `attachments` is not empty.
    Event {
        /// The namespace, starting with `/`.
        nsp: String,
        /// The ack id, when the sender wants an acknowledgement.
        id: Option<u64>,
        /// The array `["name", arg1, ...]`.
        data: Value,
        /// The binary attachments the placeholders in `data` point at, in order.
        attachments: Vec<Bytes>,
    },
    /// Type 3, or 6 on the text wire when `attachments` is not empty.
    Ack {
        /// The namespace, starting with `/`.
        nsp: String,
        /// The id of the event this acknowledges.
        id: u64,
        /// The array of the acknowledgement's arguments.
        data: Value,
        /// The binary attachments the placeholders in `data` point at, in order.
        attachments: Vec<Bytes>,
    },
    /// Type 4: the namespace connection was refused.
    ConnectError {
        /// The namespace, starting with `/`.
        nsp: String,
        /// Usually `{"message": ..., "data": ...}`; a plain string is accepted too.
        data: Value,
    },
}

impl Packet {
    /// A CONNECT packet.
    pub fn connect(nsp: impl Into<String>, data: Option<Value>) -> Self {
        Self::Connect {
            nsp: nsp.into(),
            data,
        }
    }

    /// A DISCONNECT packet.
    pub fn disconnect(nsp: impl Into<String>) -> Self {
        Self::Disconnect { nsp: nsp.into() }
    }

    /// An EVENT packet with data `[name, args...]`, no ack id and no attachments.
    pub fn event(nsp: impl Into<String>, name: impl Into<String>, args: Vec<Value>) -> Self {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(name.into()));
        data.extend(args);
        Self::Event {
            nsp: nsp.into(),
            id: None,
            data: Value::Array(data),
            attachments: Vec::new(),
        }
    }

    /// An ACK packet answering event `id` with `args`, without attachments.
    pub fn ack(nsp: impl Into<String>, id: u64, args: Vec<Value>) -> Self {
        Self::Ack {
            nsp: nsp.into(),
            id,
            data: Value::Array(args),
            attachments: Vec::new(),
        }
    }

    /// A CONNECT_ERROR packet; `data` is usually `{"message": ...}`.
    pub fn connect_error(nsp: impl Into<String>, data: Value) -> Self {
        Self::ConnectError {
            nsp: nsp.into(),
            data,
        }
    }

    /// Sets the ack id of an EVENT or ACK packet; other packets are returned unchanged.
    #[must_use]
    pub fn with_ack_id(mut self, ack_id: u64) -> Self {
        match &mut self {
            Self::Event { id, .. } => *id = Some(ack_id),
            Self::Ack { id, .. } => *id = ack_id,
            _ => {}
        }
        self
    }

    /// Sets the attachments of an EVENT or ACK packet; other packets are returned unchanged.
    ///
    /// The placeholders in the data must already name them (see [`placeholder`]).
    #[must_use]
    pub fn with_attachments(mut self, bins: Vec<Bytes>) -> Self {
        match &mut self {
            Self::Event { attachments, .. } | Self::Ack { attachments, .. } => *attachments = bins,
            _ => {}
        }
        self
    }

    /// The namespace of the packet.
    pub fn nsp(&self) -> &str {
        match self {
            Self::Connect { nsp, .. }
            | Self::Disconnect { nsp }
            | Self::Event { nsp, .. }
            | Self::Ack { nsp, .. }
            | Self::ConnectError { nsp, .. } => nsp,
        }
    }

    /// The wire type of the packet in the text encoding: EVENT and ACK with attachments are
    /// BINARY_EVENT and BINARY_ACK.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect { .. } => PacketType::Connect,
            Self::Disconnect { .. } => PacketType::Disconnect,
            Self::Event { attachments, .. } if attachments.is_empty() => PacketType::Event,
            Self::Event { .. } => PacketType::BinaryEvent,
            Self::Ack { attachments, .. } if attachments.is_empty() => PacketType::Ack,
            Self::Ack { .. } => PacketType::BinaryAck,
            Self::ConnectError { .. } => PacketType::ConnectError,
        }
    }

    /// The ack id of an EVENT (when it has one) or ACK packet.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Event { id, .. } => *id,
            Self::Ack { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// The JSON payload of the packet, if it has one.
    pub fn data(&self) -> Option<&Value> {
        match self {
            Self::Connect { data, .. } => data.as_ref(),
            Self::Disconnect { .. } => None,
            Self::Event { data, .. } | Self::Ack { data, .. } | Self::ConnectError { data, .. } => {
                Some(data)
            }
        }
    }

    /// The binary attachments of an EVENT or ACK packet (empty for other packets).
    pub fn attachments(&self) -> &[Bytes] {
        match self {
            Self::Event { attachments, .. } | Self::Ack { attachments, .. } => attachments,
            _ => &[],
        }
    }

    /// The name of an EVENT packet, when it is a string (a number is a valid name too, for
    /// which this returns `None`).
    pub fn event_name(&self) -> Option<&str> {
        match self {
            Self::Event {
                data: Value::Array(items),
                ..
            } => items.first().and_then(Value::as_str),
            _ => None,
        }
    }

    /// The arguments of an EVENT (after the name) or ACK packet.
    pub fn args(&self) -> Option<&[Value]> {
        match self {
            Self::Event {
                data: Value::Array(items),
                ..
            } => items.get(1..),
            Self::Ack {
                data: Value::Array(items),
                ..
            } => Some(items),
            _ => None,
        }
    }
}

/// The placeholder object `{"_placeholder":true,"num":num}` that stands for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    let mut map = Map::new();
    map.insert(PLACEHOLDER_KEY.to_owned(), Value::Bool(true));
    map.insert(PLACEHOLDER_NUM.to_owned(), Value::from(num));
    Value::Object(map)
}

/// The attachment index a placeholder object names, or `None` when `value` is not a valid
/// placeholder.
///
/// Like the reference parser, any object whose `_placeholder` is `true` is a placeholder; its
/// `num` must be a non-negative integer.
pub fn is_placeholder(value: &Value) -> Option<usize> {
    match value {
        Value::Object(map) => placeholder_num(map)?.ok(),
        _ => None,
    }
}

/// `None` when the object is not marked as a placeholder, `Some(Err)` when it is marked but has
/// no valid `num`.
fn placeholder_num(map: &Map<String, Value>) -> Option<Result<usize, ParseError>> {
    if map.get(PLACEHOLDER_KEY) != Some(&Value::Bool(true)) {
        return None;
    }
    let num = match map.get(PLACEHOLDER_NUM) {
        Some(Value::Number(n)) => n.as_u64().or_else(|| {
            // `0.0` is a number like any other to the reference parser.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_007_199_254_740_992.0)
                .map(|f| f as u64)
        }),
        _ => None,
    };
    Some(
        num.and_then(|n| usize::try_from(n).ok())
            .ok_or(ParseError::InvalidPlaceholder),
    )
}

/// Checks that every placeholder in `value` names one of `count` attachments.
pub(crate) fn check_placeholders(value: &Value, count: usize) -> Result<(), ParseError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| check_placeholders(v, count)),
        Value::Object(map) => match placeholder_num(map) {
            Some(num) => {
                let num = num?;
                if num < count {
                    Ok(())
                } else {
                    Err(ParseError::PlaceholderOutOfRange {
                        num: num as u64,
                        count,
                    })
                }
            }
            None => map.values().try_for_each(|v| check_placeholders(v, count)),
        },
        _ => Ok(()),
    }
}

/// Whether the object is marked as a placeholder (`"_placeholder": true`).
pub(crate) fn is_marked_placeholder(map: &Map<String, Value>) -> bool {
    map.get(PLACEHOLDER_KEY) == Some(&Value::Bool(true))
}

/// Builds a packet from its decoded parts, applying the reference server's validation.
///
/// `packet_type` is one of the five base types (the text parser maps 5 and 6 to 2 and 3).
/// Placeholders are not checked here.
pub(crate) fn assemble(
    packet_type: PacketType,
    nsp: String,
    id: Option<u64>,
    data: Option<Value>,
) -> Result<Packet, ParseError> {
    if !nsp.starts_with('/') {
        return Err(ParseError::InvalidNamespace);
    }
    let no_id = |p: PacketType| match id {
        Some(_) => Err(ParseError::UnexpectedId(p)),
        None => Ok(()),
    };
    match packet_type {
        PacketType::Connect => {
            no_id(packet_type)?;
            match data {
                None | Some(Value::Object(_)) => Ok(Packet::Connect { nsp, data }),
                Some(_) => Err(ParseError::InvalidPayload {
                    packet_type,
                    expected: "an object",
                }),
            }
        }
        PacketType::Disconnect => {
            no_id(packet_type)?;
            match data {
                None => Ok(Packet::Disconnect { nsp }),
                Some(_) => Err(ParseError::UnexpectedPayload(packet_type)),
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let data = data.ok_or(ParseError::MissingPayload(PacketType::Event))?;
            match data.as_array().and_then(|items| items.first()) {
                Some(Value::Number(_)) => {}
                Some(Value::String(name)) => {
                    if RESERVED_EVENTS.contains(&name.as_str()) {
                        return Err(ParseError::ReservedEventName(name.clone()));
                    }
                }
                Some(_) => return Err(ParseError::InvalidEventName),
                None => {
                    return Err(ParseError::InvalidPayload {
                        packet_type: PacketType::Event,
                        expected: "a non-empty array",
                    })
                }
            }
            Ok(Packet::Event {
                nsp,
                id,
                data,
                attachments: Vec::new(),
            })
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let id = id.ok_or(ParseError::MissingAckId)?;
            let data = data.ok_or(ParseError::MissingPayload(PacketType::Ack))?;
            if !data.is_array() {
                return Err(ParseError::InvalidPayload {
                    packet_type: PacketType::Ack,
                    expected: "an array",
                });
            }
            Ok(Packet::Ack {
                nsp,
                id,
                data,
                attachments: Vec::new(),
            })
        }
        PacketType::ConnectError => {
            no_id(packet_type)?;
            match data {
                Some(data @ (Value::Object(_) | Value::String(_))) => {
                    Ok(Packet::ConnectError { nsp, data })
                }
                Some(_) => Err(ParseError::InvalidPayload {
                    packet_type,
                    expected: "an object or a string",
                }),
                None => Err(ParseError::MissingPayload(packet_type)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn placeholder_shape() {
        assert_eq!(placeholder(3), json!({"_placeholder": true, "num": 3}));
        assert_eq!(is_placeholder(&placeholder(3)), Some(3));
        assert_eq!(
            is_placeholder(&json!({"_placeholder": true, "num": 0.0})),
            Some(0)
        );
        assert_eq!(
            is_placeholder(&json!({"_placeholder": true, "num": 1, "x": 2})),
            Some(1)
        );
        assert_eq!(
            is_placeholder(&json!({"_placeholder": true, "num": -1})),
            None
        );
        assert_eq!(
            is_placeholder(&json!({"_placeholder": true, "num": 0.5})),
            None
        );
        assert_eq!(
            is_placeholder(&json!({"_placeholder": true, "num": "0"})),
            None
        );
        assert_eq!(is_placeholder(&json!({"_placeholder": true})), None);
        assert_eq!(is_placeholder(&json!({"_placeholder": 1, "num": 0})), None);
        assert_eq!(
            is_placeholder(&json!([{"_placeholder": true, "num": 0}])),
            None
        );
        assert_eq!(is_placeholder(&json!(0)), None);
    }

    #[test]
    fn constructors_and_accessors() {
        let p = Packet::event("/", "hello", vec![json!(1), json!("two")]);
        assert_eq!(
            p,
            Packet::Event {
                nsp: "/".into(),
                id: None,
                data: json!(["hello", 1, "two"]),
                attachments: vec![],
            }
        );
        assert_eq!(p.event_name(), Some("hello"));
        assert_eq!(p.args(), Some(&[json!(1), json!("two")][..]));
        assert_eq!(p.id(), None);
        assert_eq!(p.packet_type(), PacketType::Event);

        let p = p
            .with_ack_id(7)
            .with_attachments(vec![Bytes::from_static(b"x")]);
        assert_eq!(p.id(), Some(7));
        assert_eq!(p.packet_type(), PacketType::BinaryEvent);
        assert_eq!(p.attachments(), &[Bytes::from_static(b"x")]);

        let a = Packet::ack("/admin", 4, vec![json!(true)]);
        assert_eq!(a.nsp(), "/admin");
        assert_eq!(a.id(), Some(4));
        assert_eq!(a.event_name(), None);
        assert_eq!(a.args(), Some(&[json!(true)][..]));
        assert_eq!(a.data(), Some(&json!([true])));
        assert_eq!(
            a.clone().with_attachments(vec![Bytes::new()]).packet_type(),
            PacketType::BinaryAck
        );
        assert_eq!(a.with_ack_id(9).id(), Some(9));

        let c = Packet::connect("/", None).with_ack_id(3);
        assert_eq!(
            c,
            Packet::Connect {
                nsp: "/".into(),
                data: None
            }
        );
        assert_eq!(c.id(), None);
        assert_eq!(c.data(), None);
        assert_eq!(c.attachments(), &[] as &[Bytes]);
        assert_eq!(
            Packet::disconnect("/x").packet_type(),
            PacketType::Disconnect
        );
        assert_eq!(
            Packet::connect_error("/", json!("no")).packet_type(),
            PacketType::ConnectError
        );
        let numeric = Packet::Event {
            nsp: "/".into(),
            id: None,
            data: json!([1, 2]),
            attachments: vec![],
        };
        assert_eq!(numeric.event_name(), None);
        assert_eq!(numeric.args(), Some(&[json!(2)][..]));
    }

    #[test]
    fn packet_type_numbers_and_names() {
        for n in 0..=6u8 {
            let t = PacketType::from_u8(n).map(PacketType::as_u8);
            assert_eq!(t, Some(n));
        }
        assert_eq!(PacketType::from_u8(7), None);
        assert_eq!(PacketType::BinaryAck.to_string(), "BINARY_ACK");
        assert_eq!(PacketType::ConnectError.as_str(), "CONNECT_ERROR");
        assert!(PacketType::BinaryEvent.is_binary());
        assert!(!PacketType::Event.is_binary());
    }
}
