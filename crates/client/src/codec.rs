//! Socket.IO packets to and from Engine.IO messages, with either parser.

use serde_json::Value;
use switchyard::Args;
use switchyard_engineio_proto::{Frame, Message};
use switchyard_socketio_proto::{
    decode_msgpack_bytes, encode_json, encode_msgpack, JsonDecoder, Packet, ParseError,
};
use tracing::error;

use crate::config::Parser;

/// The most attachments one incoming binary packet may announce.
const MAX_ATTACHMENTS: usize = 1024;

/// Encodes `packet` as the Engine.IO messages that carry it, in order.
pub(crate) fn encode(packet: &Packet, parser: Parser) -> Vec<Frame> {
    match parser {
        Parser::Json => {
            let mut out = b"4".to_vec();
            encode_json(packet, &mut out);
            let mut frames = Vec::with_capacity(1 + packet.attachments().len());
            match String::from_utf8(out)
                .ok()
                .and_then(Frame::from_encoded_message)
            {
                Some(frame) => frames.push(frame),
                None => {
                    // `encode_json` writes ASCII and JSON only; this cannot happen.
                    error!("encoded packet is not UTF-8; dropped");
                    return Vec::new();
                }
            }
            frames.extend(packet.attachments().iter().cloned().map(Frame::Binary));
            frames
        }
        Parser::MsgPack => vec![Frame::Binary(encode_msgpack(packet))],
    }
}

/// Why an incoming message is not a packet.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("text message while the msgpack parser is in use")]
    TextWithMsgPack,
}

/// The decoder of one Engine.IO connection.
pub(crate) struct Decoder {
    parser: Parser,
    json: JsonDecoder,
}

impl Decoder {
    pub(crate) fn new(parser: Parser) -> Decoder {
        Decoder {
            parser,
            json: JsonDecoder::new(MAX_ATTACHMENTS),
        }
    }

    /// The packet completed by `message`, if any (a binary packet waits for its attachments).
    pub(crate) fn decode(&mut self, message: Message) -> Result<Option<Packet>, DecodeError> {
        match (self.parser, message) {
            (Parser::Json, Message::Text(text)) => Ok(self.json.decode_text(&text)?),
            (Parser::Json, Message::Binary(data)) => Ok(self.json.decode_binary(data)?),
            (Parser::MsgPack, Message::Binary(data)) => Ok(Some(decode_msgpack_bytes(&data)?)),
            (Parser::MsgPack, Message::Text(_)) => Err(DecodeError::TextWithMsgPack),
        }
    }
}

/// An EVENT packet `[name, ...args]`.
pub(crate) fn event_packet(nsp: &str, name: &str, args: Args, id: Option<u64>) -> Packet {
    let mut data = Vec::with_capacity(args.values.len() + 1);
    data.push(Value::String(name.to_owned()));
    data.extend(args.values);
    Packet::Event {
        nsp: nsp.to_owned(),
        id,
        data: Value::Array(data),
        attachments: args.attachments,
    }
}

/// An ACK packet answering event `id`.
pub(crate) fn ack_packet(nsp: &str, id: u64, args: Args) -> Packet {
    Packet::Ack {
        nsp: nsp.to_owned(),
        id,
        data: Value::Array(args.values),
        attachments: args.attachments,
    }
}

/// Splits the data of an incoming EVENT into its name and argument values.
pub(crate) fn split_event(data: Value) -> Option<(String, Vec<Value>)> {
    let Value::Array(mut items) = data else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    let name = match items.remove(0) {
        Value::String(name) => name,
        Value::Number(number) => number.to_string(),
        _ => return None,
    };
    Some((name, items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;
    use switchyard::Binary;
    use switchyard_engineio_proto::Text;

    #[test]
    fn json_event_with_binary_is_a_text_frame_then_attachments() {
        let args = Args::one(&"x")
            .unwrap()
            .push(&Binary::from(vec![1, 2]))
            .unwrap();
        let packet = event_packet("/chat", "up", args, Some(7));
        let frames = encode(&packet, Parser::Json);
        assert_eq!(
            frames,
            vec![
                Frame::Text(Text::from(
                    r#"451-/chat,7["up","x",{"_placeholder":true,"num":0}]"#
                )),
                Frame::Binary(Bytes::from_static(&[1, 2])),
            ]
        );
        let mut decoder = Decoder::new(Parser::Json);
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
        let frames = encode(&packet, Parser::MsgPack);
        assert_eq!(frames.len(), 1);
        let Frame::Binary(data) = &frames[0] else {
            panic!("msgpack frames are binary");
        };
        let mut decoder = Decoder::new(Parser::MsgPack);
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
    fn event_names_may_be_numbers() {
        assert_eq!(
            split_event(json!(["a", 1, "b"])),
            Some(("a".to_owned(), vec![json!(1), json!("b")]))
        );
        assert_eq!(split_event(json!([42])), Some(("42".to_owned(), vec![])));
        assert_eq!(split_event(json!([])), None);
        assert_eq!(split_event(json!({"a": 1})), None);
        assert_eq!(split_event(json!([null])), None);
    }
}
