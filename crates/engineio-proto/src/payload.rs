//! Long-polling payloads: several packets in one HTTP body.
//!
//! Packets are joined by the record separator byte `0x1e`. A binary message travels as `b`
//! followed by the standard base64 of its bytes, since the body is text.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::{Frame, Message, Packet};

/// The byte that separates packets in a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// Joins `frames` into one polling payload.
pub fn encode_payload<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Bytes {
    let mut out = BytesMut::new();
    for (index, frame) in frames.into_iter().enumerate() {
        if index > 0 {
            out.put_u8(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.put_slice(text.as_bytes()),
            Frame::Binary(data) => {
                out.put_u8(b'b');
                let start = out.len();
                out.resize(
                    start + base64::encoded_len(data.len(), true).unwrap_or(0),
                    0,
                );
                let written = BASE64
                    .encode_slice(data, &mut out[start..])
                    .unwrap_or_default();
                out.truncate(start + written);
            }
        }
    }
    out.freeze()
}

/// Splits a polling payload into packets.
///
/// `max_payload` bounds the body; a larger one is refused before any decoding work.
pub fn decode_payload(body: &[u8], max_payload: usize) -> Result<Vec<Packet>, DecodeError> {
    if body.len() > max_payload {
        return Err(DecodeError::PayloadTooLarge {
            len: body.len(),
            max: max_payload,
        });
    }
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::InvalidUtf8)?;
    text.split(SEPARATOR as char).map(decode_item).collect()
}

fn decode_item(item: &str) -> Result<Packet, DecodeError> {
    match item.strip_prefix('b') {
        Some(encoded) => {
            let data = BASE64
                .decode(encoded)
                .map_err(|_| DecodeError::InvalidBase64)?;
            Ok(Packet::Message(Message::Binary(Bytes::from(data))))
        }
        None => Packet::decode_text(item),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_packets_with_the_record_separator() {
        let frames = [
            Frame::text_message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::text_packet(crate::PacketType::Ping, ""),
        ];
        assert_eq!(
            encode_payload(&frames),
            Bytes::from_static(b"4hello\x1ebAQIDBA==\x1e2")
        );
    }

    #[test]
    fn one_packet_has_no_separator() {
        assert_eq!(
            encode_payload(&[Frame::text_message("x")]),
            Bytes::from_static(b"4x")
        );
        assert_eq!(encode_payload(&[]), Bytes::new());
    }

    #[test]
    fn splits_a_mixed_payload() {
        let packets = decode_payload(b"4hello\x1ebAQIDBA==\x1e1", 1000).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message(Message::Text("hello".into())),
                Packet::Message(Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
                Packet::Close,
            ]
        );
    }

    #[test]
    fn binary_containing_the_separator_byte_survives_base64() {
        let data = Bytes::from_static(&[0x1e, 0x1e, 0, 0x1e]);
        let encoded = encode_payload(&[Frame::Binary(data.clone()), Frame::text_message("a")]);
        assert_eq!(
            decode_payload(&encoded, 1000).unwrap(),
            vec![
                Packet::Message(Message::Binary(data)),
                Packet::Message(Message::Text("a".into())),
            ]
        );
    }

    #[test]
    fn empty_body_and_empty_items_are_errors() {
        assert_eq!(decode_payload(b"", 1000), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b"4a\x1e", 1000), Err(DecodeError::Empty));
        assert_eq!(decode_payload(b"\x1e4a", 1000), Err(DecodeError::Empty));
    }

    #[test]
    fn max_payload_exactly_is_accepted_and_one_over_refused() {
        let body = format!("4{}", "x".repeat(99));
        assert_eq!(body.len(), 100);
        assert_eq!(decode_payload(body.as_bytes(), 100).unwrap().len(), 1);
        let over = format!("4{}", "x".repeat(100));
        assert_eq!(
            decode_payload(over.as_bytes(), 100),
            Err(DecodeError::PayloadTooLarge { len: 101, max: 100 })
        );
    }

    #[test]
    fn bad_base64_and_bad_utf8_are_errors() {
        assert_eq!(
            decode_payload(b"b!!!", 100),
            Err(DecodeError::InvalidBase64)
        );
        assert_eq!(decode_payload(b"4\xff", 100), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            decode_payload(b"9", 100),
            Err(DecodeError::UnknownType(b'9'))
        );
    }

    #[test]
    fn empty_binary_message_round_trips() {
        let encoded = encode_payload(&[Frame::Binary(Bytes::new())]);
        assert_eq!(encoded, Bytes::from_static(b"b"));
        assert_eq!(
            decode_payload(&encoded, 10).unwrap(),
            vec![Packet::Message(Message::Binary(Bytes::new()))]
        );
    }
}
