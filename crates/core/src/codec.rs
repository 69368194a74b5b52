//! Socket.IO packets to and from Engine.IO frames, with either parser.

use bytes::Bytes;
use serde_json::Value;
use switchyard_engineio_proto::{Frame, Message};
use switchyard_socketio_proto::{
    encode_json, encode_msgpack, JsonDecoder, MsgPackDecoder, Packet, ParseError,
};

use crate::args::Args;
use crate::parser::Parser;

/// A packet encoded for the wire: its frames, shared by reference count, so a broadcast is
/// encoded once and every recipient gets the same bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    /// The packet's first frame.
    head: Frame,
    /// Its binary attachments, if any (an empty `Vec` does not allocate).
    attachments: Vec<Frame>,
}

impl EncodedPacket {
    /// Encodes `packet` with `parser`.
    pub fn new(parser: Parser, packet: &Packet) -> EncodedPacket {
        match parser {
            Parser::Json => {
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
                EncodedPacket { head, attachments }
            }
            Parser::MsgPack => EncodedPacket {
                head: Frame::Binary(encode_msgpack(packet)),
                attachments: Vec::new(),
            },
        }
    }

    /// The packet's first frame.
    pub fn head(&self) -> &Frame {
        &self.head
    }

    /// The binary attachments that follow the first frame (JSON parser only).
    pub fn attachments(&self) -> &[Frame] {
        &self.attachments
    }

    /// Every frame, in the order they go on the wire.
    pub fn frames(&self) -> impl Iterator<Item = &Frame> + '_ {
        std::iter::once(&self.head).chain(&self.attachments)
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

/// Why an incoming Engine.IO message is not (part of) a packet.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message does not parse, or breaks a limit.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A text message while the msgpack parser, which sends only binary, is in use.
    #[error("text message while the msgpack parser is in use")]
    TextWithMsgPack,
}

/// The packet decoder of one Engine.IO connection: a binary packet is complete only once its
/// attachments have arrived, so the decoder holds state between messages.
#[derive(Debug)]
pub struct PacketDecoder {
    inner: DecoderState,
}

#[derive(Debug)]
enum DecoderState {
    Json(JsonDecoder),
    MsgPack(MsgPackDecoder),
}

impl PacketDecoder {
    /// A decoder for `parser`; a packet may carry at most `max_attachments` binary
    /// attachments, whatever the parser.
    pub fn new(parser: Parser, max_attachments: usize) -> PacketDecoder {
        let inner = match parser {
            Parser::Json => DecoderState::Json(JsonDecoder::new(max_attachments)),
            Parser::MsgPack => DecoderState::MsgPack(MsgPackDecoder::new(max_attachments)),
        };
        PacketDecoder { inner }
    }

    /// Bounds the bytes of all attachments of one packet, which the JSON parser holds until
    /// the last one arrives (a msgpack packet comes whole, in one message).
    pub fn with_max_attachment_bytes(mut self, bytes: usize) -> PacketDecoder {
        if let DecoderState::Json(decoder) = self.inner {
            self.inner = DecoderState::Json(decoder.with_max_attachment_bytes(bytes));
        }
        self
    }

    /// Feeds one Engine.IO message; returns the packet it completes, if any.
    pub fn decode(&mut self, message: Message) -> Result<Option<Packet>, DecodeError> {
        match (&mut self.inner, message) {
            (DecoderState::Json(decoder), Message::Text(text)) => Ok(decoder.decode_text(&text)?),
            (DecoderState::Json(decoder), Message::Binary(data)) => {
                Ok(decoder.decode_binary(data)?)
            }
            // The msgpack decoder counts binary values as it reads them: one message cannot
            // make it build more than `max_attachments`.
            (DecoderState::MsgPack(decoder), Message::Binary(data)) => {
                Ok(Some(decoder.decode_bytes(&data)?))
            }
            (DecoderState::MsgPack(_), Message::Text(_)) => Err(DecodeError::TextWithMsgPack),
        }
    }
}

/// Builds an EVENT packet `[event, ...args]`, with an ack id if the sender waits for an answer.
pub fn event_packet(nsp: &str, event: &str, args: Args, id: Option<u64>) -> Packet {
    let mut data = Vec::with_capacity(1 + args.values.len());
    data.push(Value::String(event.to_owned()));
    data.extend(args.values);
    Packet::Event {
        nsp: nsp.to_owned(),
        id,
        data: Value::Array(data),
        attachments: args.attachments,
    }
}

/// Builds the ACK packet answering event `id`.
pub fn ack_packet(nsp: &str, id: u64, args: Args) -> Packet {
    Packet::Ack {
        nsp: nsp.to_owned(),
        id,
        data: Value::Array(args.values),
        attachments: args.attachments,
    }
}

/// Splits an incoming EVENT's data and attachments into its name and arguments. The name may
/// be a number, as the protocol allows; `None` if the data is not a non-empty array starting
/// with a string or a number.
pub fn split_event(data: Value, attachments: Vec<Bytes>) -> Option<(String, Args)> {
    let Value::Array(mut values) = data else {
        return None;
    };
    let name = match values.first() {
        Some(Value::String(name)) => name.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => return None,
    };
    values.remove(0);
    Some((
        name,
        Args {
            values,
            attachments,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Binary;
    use serde_json::json;
    use switchyard_engineio_proto::Text;
    use switchyard_socketio_proto::ParseError;

    #[test]
    fn json_packet_is_one_text_frame_with_the_message_type() {
        let packet = Packet::event("/chat", "hi", vec![json!(1)]);
        let encoded = EncodedPacket::new(Parser::Json, &packet);
        assert_eq!(encoded.head, Frame::text_message(r#"2/chat,["hi",1]"#));
        assert!(encoded.attachments.is_empty());
    }

    #[test]
    fn json_event_with_binary_is_a_text_frame_then_attachments_and_decodes_back() {
        let args = Args::one(&"x")
            .unwrap()
            .push(&Binary::from(vec![1, 2]))
            .unwrap();
        let packet = event_packet("/chat", "up", args, Some(7));
        let encoded = EncodedPacket::new(Parser::Json, &packet);
        assert_eq!(
            encoded.frames().cloned().collect::<Vec<_>>(),
            vec![
                Frame::Text(Text::from(
                    r#"451-/chat,7["up","x",{"_placeholder":true,"num":0}]"#
                )),
                Frame::Binary(Bytes::from_static(&[1, 2])),
            ]
        );
        let mut decoder = PacketDecoder::new(Parser::Json, 10);
        let text = r#"51-/chat,7["up","x",{"_placeholder":true,"num":0}]"#;
        assert_eq!(decoder.decode(Message::Text(text.into())).unwrap(), None);
        assert_eq!(
            decoder
                .decode(Message::Binary(Bytes::from_static(&[1, 2])))
                .unwrap(),
            Some(packet)
        );
    }

    #[test]
    fn msgpack_round_trip_and_text_refused() {
        let packet = ack_packet("/", 3, Args::one(&json!({"ok": true})).unwrap());
        let encoded = EncodedPacket::new(Parser::MsgPack, &packet);
        assert!(encoded.attachments().is_empty());
        let Frame::Binary(data) = encoded.head() else {
            panic!("msgpack frames are binary");
        };
        let mut decoder = PacketDecoder::new(Parser::MsgPack, 10);
        assert_eq!(
            decoder.decode(Message::Binary(data.clone())).unwrap(),
            Some(packet)
        );
        assert!(matches!(
            decoder.decode(Message::Text("2[\"a\"]".into())),
            Err(DecodeError::TextWithMsgPack)
        ));
    }

    #[test]
    fn msgpack_packets_obey_the_attachment_limit() {
        let values: Vec<Binary> = (0..3u8).map(|i| Binary::from(vec![i])).collect();
        let packet = event_packet("/", "bin", Args::one(&values).unwrap(), None);
        let encoded = EncodedPacket::new(Parser::MsgPack, &packet);
        let Frame::Binary(data) = encoded.head() else {
            panic!("msgpack frames are binary");
        };
        let mut within = PacketDecoder::new(Parser::MsgPack, 3);
        assert!(within.decode(Message::Binary(data.clone())).is_ok());
        let mut over = PacketDecoder::new(Parser::MsgPack, 2);
        assert!(matches!(
            over.decode(Message::Binary(data.clone())),
            Err(DecodeError::Parse(ParseError::TooManyBinaryValues { .. }))
        ));
    }

    #[test]
    fn event_names_may_be_numbers() {
        let split = |data| split_event(data, Vec::new()).map(|(name, args)| (name, args.values));
        assert_eq!(
            split(json!(["a", 1, "b"])),
            Some(("a".to_owned(), vec![json!(1), json!("b")]))
        );
        assert_eq!(split(json!([42])), Some(("42".to_owned(), vec![])));
        assert_eq!(split(json!([])), None);
        assert_eq!(split(json!({"a": 1})), None);
        assert_eq!(split(json!([null])), None);
    }
}
