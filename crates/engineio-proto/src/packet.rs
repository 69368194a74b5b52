//! Engine.IO v4 packets: the seven packet types and their text/binary encodings.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// The type of an Engine.IO packet, as carried by its first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: sent by the server when a session opens.
    Open,
    /// `1`: asks the other side to close the session.
    Close,
    /// `2`: heartbeat request (server to client in v4), or `2probe` during an upgrade.
    Ping,
    /// `3`: heartbeat answer, or `3probe` during an upgrade.
    Pong,
    /// `4`: an application message.
    Message,
    /// `5`: completes the upgrade to a new transport.
    Upgrade,
    /// `6`: does nothing; used to end a pending long-poll during an upgrade.
    Noop,
}

impl PacketType {
    /// The ASCII character that identifies this type on the wire.
    pub const fn as_char(self) -> char {
        match self {
            PacketType::Open => '0',
            PacketType::Close => '1',
            PacketType::Ping => '2',
            PacketType::Pong => '3',
            PacketType::Message => '4',
            PacketType::Upgrade => '5',
            PacketType::Noop => '6',
        }
    }

    /// The type identified by `byte`, if any.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }
}

/// An application message: Engine.IO keeps text and binary apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 text message.
    Text(String),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// Length of the message data in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
        }
    }

    /// Whether the message carries no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The JSON body of the open packet. It has exactly these five keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket {
    /// The session id.
    pub sid: String,
    /// The transports the client may upgrade to.
    pub upgrades: Vec<String>,
    /// Milliseconds between two server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// The largest payload, in bytes, the server accepts.
    pub max_payload: u64,
}

/// One decoded Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// The session's opening parameters.
    Open(OpenPacket),
    /// Close the session.
    Close,
    /// A ping; its data is empty, or `probe` during an upgrade.
    Ping(String),
    /// A pong; its data is empty, or `probe` during an upgrade.
    Pong(String),
    /// An application message.
    Message(Message),
    /// Switch to the probed transport.
    Upgrade,
    /// No operation.
    Noop,
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Open(_) => PacketType::Open,
            Packet::Close => PacketType::Close,
            Packet::Ping(_) => PacketType::Ping,
            Packet::Pong(_) => PacketType::Pong,
            Packet::Message(_) => PacketType::Message,
            Packet::Upgrade => PacketType::Upgrade,
            Packet::Noop => PacketType::Noop,
        }
    }

    /// Decodes a text packet: one WebSocket text frame, or one text item of a polling payload.
    pub fn decode_text(text: &str) -> Result<Packet, DecodeError> {
        let first = *text.as_bytes().first().ok_or(DecodeError::Empty)?;
        let kind = PacketType::from_byte(first).ok_or(DecodeError::UnknownType(first))?;
        // The type is one ASCII byte, so slicing after it stays on a char boundary.
        let data = &text[1..];
        Ok(match kind {
            PacketType::Open => Packet::Open(
                serde_json::from_str(data).map_err(|_| DecodeError::InvalidOpenPacket)?,
            ),
            PacketType::Close => Packet::Close,
            PacketType::Ping => Packet::Ping(data.to_owned()),
            PacketType::Pong => Packet::Pong(data.to_owned()),
            PacketType::Message => Packet::Message(Message::Text(data.to_owned())),
            PacketType::Upgrade => Packet::Upgrade,
            PacketType::Noop => Packet::Noop,
        })
    }

    /// Decodes a binary WebSocket frame: always a binary message, with no type byte.
    pub fn decode_binary(data: Bytes) -> Packet {
        Packet::Message(Message::Binary(data))
    }

    /// Encodes the packet for the wire.
    pub fn encode(&self) -> Frame {
        match self {
            Packet::Message(Message::Binary(data)) => Frame::Binary(data.clone()),
            Packet::Message(Message::Text(text)) => Frame::text_message(text),
            Packet::Open(open) => {
                // Serializing a struct of strings and integers cannot fail.
                let json = serde_json::to_string(open).unwrap_or_default();
                Frame::text_packet(PacketType::Open, &json)
            }
            Packet::Ping(data) => Frame::text_packet(PacketType::Ping, data),
            Packet::Pong(data) => Frame::text_packet(PacketType::Pong, data),
            Packet::Close => Frame::text_packet(PacketType::Close, ""),
            Packet::Upgrade => Frame::text_packet(PacketType::Upgrade, ""),
            Packet::Noop => Frame::text_packet(PacketType::Noop, ""),
        }
    }
}

/// Bytes that are known to be valid UTF-8: the body of an encoded text packet.
///
/// Only safe constructors exist, so transports can hand these bytes to a WebSocket text frame
/// without validating them again for every recipient of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text(Bytes);

impl Text {
    /// Text from a static string.
    pub const fn from_static(text: &'static str) -> Text {
        Text(Bytes::from_static(text.as_bytes()))
    }

    /// The bytes, shared.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor takes a `str` or validates the bytes as UTF-8, and the
        // bytes are never changed after.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The bytes, shared, consuming `self`.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Validates `bytes` as UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Bytes::from(text))
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Text {
        Text(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// An encoded packet ready for a transport, shared by reference count.
///
/// A text frame holds the whole Engine.IO text packet, type character included (`4hello`); a
/// binary frame holds only the message bytes, since binary packets are always messages. A
/// broadcast builds one `Frame` and clones it to every recipient without copying the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet, type character first.
    Text(Text),
    /// The data of a binary message.
    Binary(Bytes),
}

impl Frame {
    /// A text packet of type `kind` with `data` after the type character.
    pub fn text_packet(kind: PacketType, data: &str) -> Frame {
        let mut out = String::with_capacity(1 + data.len());
        out.push(kind.as_char());
        out.push_str(data);
        Frame::Text(Text::from(out))
    }

    /// A text message packet (`4` followed by `text`).
    pub fn text_message(text: &str) -> Frame {
        Frame::text_packet(PacketType::Message, text)
    }

    /// A text message encoded by the caller, who wrote its packet after a leading `4`.
    ///
    /// This lets an upper layer encode into one buffer with no copy; a packet of another
    /// type is refused, so a frame built here is always a message.
    pub fn from_encoded_message(encoded: String) -> Option<Frame> {
        encoded
            .starts_with(PacketType::Message.as_char())
            .then(|| Frame::Text(Text::from(encoded)))
    }

    /// A binary message.
    pub fn binary_message(data: Bytes) -> Frame {
        Frame::Binary(data)
    }

    /// The bytes this frame carries on a WebSocket (type character included for text).
    pub fn as_bytes(&self) -> &Bytes {
        match self {
            Frame::Text(text) => text.as_bytes(),
            Frame::Binary(data) => data,
        }
    }

    /// The number of bytes this frame keeps in memory.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the frame holds no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_packet_type() {
        assert_eq!(Packet::decode_text("1").unwrap(), Packet::Close);
        assert_eq!(
            Packet::decode_text("2").unwrap(),
            Packet::Ping(String::new())
        );
        assert_eq!(
            Packet::decode_text("2probe").unwrap(),
            Packet::Ping("probe".into())
        );
        assert_eq!(
            Packet::decode_text("3probe").unwrap(),
            Packet::Pong("probe".into())
        );
        assert_eq!(
            Packet::decode_text("4héllo").unwrap(),
            Packet::Message(Message::Text("héllo".into()))
        );
        assert_eq!(
            Packet::decode_text("4").unwrap(),
            Packet::Message(Message::Text(String::new()))
        );
        assert_eq!(Packet::decode_text("5").unwrap(), Packet::Upgrade);
        assert_eq!(Packet::decode_text("6").unwrap(), Packet::Noop);
    }

    #[test]
    fn decodes_open_packet_with_its_five_keys() {
        let packet = Packet::decode_text(
            r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#,
        )
        .unwrap();
        assert_eq!(
            packet,
            Packet::Open(OpenPacket {
                sid: "abc".into(),
                upgrades: vec!["websocket".into()],
                ping_interval: 300,
                ping_timeout: 200,
                max_payload: 1_000_000,
            })
        );
    }

    #[test]
    fn encodes_open_packet_as_exact_json() {
        let frame = Packet::Open(OpenPacket {
            sid: "abc".into(),
            upgrades: vec![],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        })
        .encode();
        assert_eq!(
            frame,
            Frame::Text(Text::from_static(
                r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
            ))
        );
    }

    #[test]
    fn rejects_unknown_type_and_empty_packet() {
        assert_eq!(
            Packet::decode_text("7"),
            Err(DecodeError::UnknownType(b'7'))
        );
        assert_eq!(
            Packet::decode_text("x4"),
            Err(DecodeError::UnknownType(b'x'))
        );
        assert_eq!(Packet::decode_text(""), Err(DecodeError::Empty));
        assert_eq!(
            Packet::decode_text("0{not json"),
            Err(DecodeError::InvalidOpenPacket)
        );
    }

    #[test]
    fn encodes_every_packet_type() {
        let text = |p: Packet| match p.encode() {
            Frame::Text(t) => String::from_utf8(t.as_bytes().to_vec()).unwrap(),
            Frame::Binary(_) => panic!("expected text"),
        };
        assert_eq!(text(Packet::Close), "1");
        assert_eq!(text(Packet::Ping(String::new())), "2");
        assert_eq!(text(Packet::Pong("probe".into())), "3probe");
        assert_eq!(text(Packet::Message(Message::Text("hi".into()))), "4hi");
        assert_eq!(text(Packet::Upgrade), "5");
        assert_eq!(text(Packet::Noop), "6");
        assert_eq!(
            Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3]))).encode(),
            Frame::Binary(Bytes::from_static(&[1, 2, 3]))
        );
    }

    #[test]
    fn binary_frames_decode_as_binary_messages() {
        assert_eq!(
            Packet::decode_binary(Bytes::from_static(&[0, 255])),
            Packet::Message(Message::Binary(Bytes::from_static(&[0, 255])))
        );
    }
}
