//! Turning Socket.IO packets into Engine.IO frames, once per packet.

use switchyard_engineio::{Frame, SendError, Socket as EngineSocket};
use switchyard_socketio_proto::{encode_json, encode_msgpack, JsonDecoder, Packet, ParseError};

use switchyard_engineio::Message;

/// The Socket.IO parser: how packets are written into Engine.IO messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ParserKind {
    /// The default parser: JSON text, binary values as separate attachments.
    #[default]
    Json,
    /// The msgpack parser, compatible with npm `socket.io-msgpack-parser`: one binary message
    /// per packet.
    MsgPack,
}

/// A packet encoded for the wire: its frames, shared by reference count so a broadcast encodes
/// once and every recipient gets the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    /// The packet's first frame.
    head: Frame,
    /// Its binary attachments, if any (an empty `Vec` does not allocate).
    attachments: Vec<Frame>,
}

impl EncodedPacket {
    /// Encodes `packet` with `parser`.
    pub fn new(parser: ParserKind, packet: &Packet) -> EncodedPacket {
        let frames = match parser {
            ParserKind::Json => {
                let mut out = Vec::with_capacity(64);
                out.push(b'4');
                encode_json(packet, &mut out);
                // serde_json writes UTF-8 and namespaces are strings: this cannot fail, but
                // the check keeps the frame's invariant without unsafe code.
                let text = String::from_utf8(out).unwrap_or_else(|_| "4".into());
                let head =
                    Frame::from_encoded_message(text).unwrap_or_else(|| Frame::text_message(""));
                let attachments = packet
                    .attachments()
                    .iter()
                    .cloned()
                    .map(Frame::Binary)
                    .collect();
                (head, attachments)
            }
            ParserKind::MsgPack => (Frame::Binary(encode_msgpack(packet)), Vec::new()),
        };
        EncodedPacket {
            head: frames.0,
            attachments: frames.1,
        }
    }

    /// Queues the frames on `socket`, all or none.
    pub(crate) fn send_to(&self, socket: &EngineSocket) -> Result<(), SendError> {
        if self.attachments.is_empty() {
            socket.send(self.head.clone())
        } else {
            socket.send_all(
                std::iter::once(&self.head)
                    .chain(&self.attachments)
                    .cloned(),
            )
        }
    }

    /// Total bytes of the frames.
    pub fn len(&self) -> usize {
        self.head.len() + self.attachments.iter().map(Frame::len).sum::<usize>()
    }

    /// Whether the packet encodes to no bytes (never, for a real packet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-connection decoder state.
#[derive(Debug)]
pub(crate) enum Decoder {
    Json(JsonDecoder),
    MsgPack,
}

impl Decoder {
    pub(crate) fn new(parser: ParserKind, max_attachments: usize) -> Decoder {
        match parser {
            ParserKind::Json => Decoder::Json(JsonDecoder::new(max_attachments)),
            ParserKind::MsgPack => Decoder::MsgPack,
        }
    }

    /// Feeds one Engine.IO message; returns a packet once it is complete.
    pub(crate) fn decode(&mut self, message: Message) -> Result<Option<Packet>, ParseError> {
        match (self, message) {
            (Decoder::Json(decoder), Message::Text(text)) => decoder.decode_text(&text),
            (Decoder::Json(decoder), Message::Binary(data)) => decoder.decode_binary(data),
            (Decoder::MsgPack, Message::Binary(data)) => {
                switchyard_socketio_proto::decode_msgpack_bytes(&data).map(Some)
            }
            (Decoder::MsgPack, Message::Text(_)) => {
                Err(ParseError::UnexpectedText { remaining: 0 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    #[test]
    fn json_packet_is_one_text_frame_with_the_message_type() {
        let packet = Packet::event("/chat", "hi", vec![json!(1)]);
        let encoded = EncodedPacket::new(ParserKind::Json, &packet);
        assert_eq!(encoded.head, Frame::text_message(r#"2/chat,["hi",1]"#));
        assert!(encoded.attachments.is_empty());
    }

    #[test]
    fn binary_packet_is_followed_by_its_attachments() {
        let packet = Packet::event("/", "file", vec![json!({"_placeholder": true, "num": 0})])
            .with_attachments(vec![Bytes::from_static(&[1, 2])]);
        let encoded = EncodedPacket::new(ParserKind::Json, &packet);
        assert_eq!(
            encoded.head,
            Frame::text_message(r#"51-["file",{"_placeholder":true,"num":0}]"#)
        );
        assert_eq!(
            encoded.attachments,
            vec![Frame::Binary(Bytes::from_static(&[1, 2]))]
        );
    }

    #[test]
    fn msgpack_packet_is_one_binary_frame() {
        let packet = Packet::event("/", "a", vec![]);
        let encoded = EncodedPacket::new(ParserKind::MsgPack, &packet);
        assert!(matches!(encoded.head, Frame::Binary(_)));
        assert!(encoded.attachments.is_empty());
    }
}
