//! Sans-IO codec for Socket.IO v5 packets, the layer carried inside Engine.IO v4 messages.
//!
//! * [`Packet`] is the one representation the rest of the server sees. Binary values in its
//!   JSON data are placeholders (`{"_placeholder":true,"num":i}`, see [`placeholder`] and
//!   [`is_placeholder`]) naming the packet's `attachments`.
//! * The default text parser: [`encode_json`] writes `<type>[<count>-][<nsp>,][<id>][<json>]`,
//!   and [`JsonDecoder`] is fed one Engine.IO message at a time, holding a binary packet until
//!   its attachments have arrived.
//! * [`encode_msgpack`] and [`MsgPackDecoder`] (or
//!   [`decode_msgpack`] with the default attachment limit) speak the wire format of npm
//!   `socket.io-msgpack-parser`.
//!
//! Decoders validate as the reference server does; any [`ParseError`] means the peer broke the
//! protocol and the Engine.IO connection should be closed.
//!
//! ```
//! use bytes::Bytes;
//! use serde_json::json;
//! use switchyard_socketio_proto::{encode_json, placeholder, JsonDecoder, Packet};
//!
//! // Encoding: the caller prefixes the Engine.IO message type `4` itself.
//! let packet = Packet::event("/admin", "project:delete", vec![json!(123)]).with_ack_id(456);
//! let mut out = b"4".to_vec();
//! encode_json(&packet, &mut out);
//! assert_eq!(out, b"42/admin,456[\"project:delete\",123]");
//!
//! // Decoding a binary event: the packet is complete once its attachment has arrived.
//! let mut decoder = JsonDecoder::default();
//! let text = r#"51-["upload",{"_placeholder":true,"num":0}]"#;
//! assert_eq!(decoder.decode_text(text)?, None);
//! let packet = decoder.decode_binary(Bytes::from_static(b"\x01\x02"))?;
//! assert_eq!(
//!     packet,
//!     Some(Packet::Event {
//!         nsp: "/".to_owned(),
//!         id: None,
//!         data: json!(["upload", placeholder(0)]),
//!         attachments: vec![Bytes::from_static(b"\x01\x02")],
//!     })
//! );
//! # Ok::<(), switchyard_socketio_proto::ParseError>(())
//! ```

mod error;
mod json;
mod msgpack;
mod packet;

pub use error::ParseError;
pub use json::{encode_json, JsonDecoder, DEFAULT_MAX_ATTACHMENTS};
pub use msgpack::{
    decode_msgpack, decode_msgpack_bytes, encode_msgpack, encode_msgpack_value, MsgPackDecoder,
    MsgPackValue,
};
pub use packet::{is_placeholder, placeholder, Packet, PacketType, RESERVED_EVENTS};
