//! Property tests: round trips through both parsers, and decoders fed arbitrary input.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Map, Value};
use switchyard_socketio_proto::{
    encode_json, is_placeholder, placeholder, JsonDecoder, Packet, ParseError, RESERVED_EVENTS,
};

/// A JSON value without placeholders; floats are short binary fractions so that the text form
/// reads back exactly.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1_000_000i32..1_000_000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        "\\PC{0,12}".prop_map(Value::String),
        ".{0,4}".prop_map(Value::String),
    ]
}

/// A nested JSON value; with `binary`, some leaves are placeholders (numbered later).
fn json_value(binary: bool) -> impl Strategy<Value = Value> {
    let leaf = if binary {
        prop_oneof![4 => json_leaf(), 1 => Just(placeholder(usize::MAX))].boxed()
    } else {
        json_leaf().boxed()
    };
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{0,6}|\\PC{0,6}", inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Numbers the placeholders of `value` in document order, counting in `next`; those past
/// `limit` become `null`.
fn number_placeholders(value: &mut Value, next: &mut usize, limit: usize) {
    if is_placeholder(value).is_some() {
        if *next < limit {
            *value = placeholder(*next);
            *next += 1;
        } else {
            *value = Value::Null;
        }
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| number_placeholders(v, next, limit)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| number_placeholders(v, next, limit)),
        _ => {}
    }
}

/// The most attachments a generated packet has, and the decoders' limit in these tests.
const MAX_ATTACHMENTS: usize = 12;

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[^,]{0,10}"]
}

fn event_name() -> impl Strategy<Value = Value> {
    prop_oneof![
        "\\PC{0,10}"
            .prop_filter("reserved", |s| !RESERVED_EVENTS.contains(&s.as_str()))
            .prop_map(Value::String),
        any::<u32>().prop_map(Value::from),
        (-100i32..100).prop_map(|n| Value::from(f64::from(n) / 4.0)),
    ]
}

/// Arbitrary EVENT or ACK data with its attachments, in canonical form (placeholders numbered
/// in document order, each attachment used once), as the reference encoder produces it.
fn binary_args() -> impl Strategy<Value = (Vec<Value>, Vec<Bytes>)> {
    (
        prop::collection::vec(json_value(true), 0..4),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), MAX_ATTACHMENTS),
    )
        .prop_map(|(mut args, bins)| {
            let mut count = 0;
            args.iter_mut()
                .for_each(|a| number_placeholders(a, &mut count, MAX_ATTACHMENTS));
            let attachments = bins.into_iter().take(count).map(Bytes::from).collect();
            (args, attachments)
        })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("\\PC{0,6}", json_value(false)), 0..4)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (namespace(), prop::option::of(object()))
            .prop_map(|(nsp, data)| Packet::Connect { nsp, data }),
        namespace().prop_map(|nsp| Packet::Disconnect { nsp }),
        (
            namespace(),
            prop::option::of(any::<u64>()),
            event_name(),
            binary_args()
        )
            .prop_map(|(nsp, id, name, (args, attachments))| {
                let mut data = vec![name];
                data.extend(args);
                Packet::Event {
                    nsp,
                    id,
                    data: Value::Array(data),
                    attachments,
                }
            }),
        (namespace(), any::<u64>(), binary_args()).prop_map(|(nsp, id, (args, attachments))| {
            Packet::Ack {
                nsp,
                id,
                data: Value::Array(args),
                attachments,
            }
        }),
        (
            namespace(),
            prop_oneof![object(), "\\PC{0,20}".prop_map(Value::String)]
        )
            .prop_map(|(nsp, data)| Packet::ConnectError { nsp, data }),
    ]
}

/// Runs the text parser over an encoded packet and its attachments.
fn json_round_trip(packet: &Packet) -> Result<Option<Packet>, ParseError> {
    let mut out = Vec::new();
    encode_json(packet, &mut out);
    let text = String::from_utf8(out).map_err(|_| ParseError::Empty)?;
    let mut decoder = JsonDecoder::new(MAX_ATTACHMENTS);
    let mut decoded = decoder.decode_text(&text)?;
    for bin in packet.attachments() {
        if decoded.is_some() {
            // Complete before its last attachment: not the packet that was sent.
            return Ok(None);
        }
        decoded = decoder.decode_binary(bin.clone())?;
    }
    Ok(decoded)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn json_round_trips(packet in packet()) {
        let decoded = json_round_trip(&packet);
        prop_assert!(matches!(&decoded, Ok(Some(p)) if *p == packet), "{:?} -> {:?}", packet, decoded);
    }

        #[test]
    fn msgpack_round_trips(packet in packet()) {
        use switchyard_socketio_proto::{encode_msgpack, MsgPackDecoder};
        let bytes = encode_msgpack(&packet);
        let decoder = MsgPackDecoder::new(MAX_ATTACHMENTS);
        let decoded = decoder.decode(&bytes);
        prop_assert!(matches!(&decoded, Ok(p) if *p == packet), "{:?} -> {:?}", packet, decoded);
        let decoded = decoder.decode_bytes(&bytes);
        prop_assert!(matches!(&decoded, Ok(p) if *p == packet), "{:?} -> {:?}", packet, decoded);
    }

    /// Arbitrary text never panics the decoder, and it stays usable afterwards.
    #[test]
    fn json_decoder_survives_any_text(texts in prop::collection::vec(".{0,40}", 1..6)) {
        let mut decoder = JsonDecoder::new(3);
        for text in &texts {
            let _ = decoder.decode_text(text);
        }
        decoder.reset();
        prop_assert!(matches!(decoder.decode_text("2[\"ok\"]"), Ok(Some(_))));
    }

    /// Text built from the packet grammar's alphabet reaches deeper into the parser.
    #[test]
    fn json_decoder_survives_packet_like_text(
        messages in prop::collection::vec(
            prop_oneof![
                "[0-7]{1,2}[0-9-]{0,3}(/[a-z,]{0,3})?[0-9]{0,4}[\\[\\]{}\",:a-z0-9_ ]{0,24}"
                    .prop_map(Ok),
                prop::collection::vec(any::<u8>(), 0..8).prop_map(Err),
            ],
            1..8,
        )
    ) {
        let mut decoder = JsonDecoder::default();
        for message in messages {
            let result = match message {
                Ok(text) => decoder.decode_text(&text),
                Err(bin) => decoder.decode_binary(Bytes::from(bin)),
            };
            if let Ok(Some(packet)) = result {
                prop_assert!(placeholders_consistent(&packet));
            }
        }
    }

    #[test]
    fn json_decoder_survives_any_binary(bins in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..4)) {
        let mut decoder = JsonDecoder::default();
        for bin in bins {
            prop_assert!(matches!(decoder.decode_binary(Bytes::from(bin)), Err(ParseError::UnexpectedBinary)));
        }
    }

        #[test]
    fn msgpack_decoder_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = switchyard_socketio_proto::decode_msgpack(&bytes);
    }

    /// Mutated and truncated valid messages never panic the msgpack decoder.
        #[test]
    fn msgpack_decoder_survives_mutations(
        packet in packet(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        use switchyard_socketio_proto::{decode_msgpack, encode_msgpack};
        let valid = encode_msgpack(&packet);
        // A strict prefix of a msgpack value is never a complete value.
        let end = cut.index(valid.len());
        prop_assert!(decode_msgpack(&valid[..end]).is_err());
        let mut bytes = valid.to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(packet) = decode_msgpack(&bytes) {
            prop_assert!(placeholders_consistent(&packet));
        }
    }
}

/// Whether every placeholder of an EVENT or ACK names one of its attachments.
fn placeholders_consistent(packet: &Packet) -> bool {
    match packet {
        Packet::Event {
            data, attachments, ..
        }
        | Packet::Ack {
            data, attachments, ..
        } => max_placeholder(data).is_none_or(|n| n < attachments.len()),
        _ => true,
    }
}

/// The highest placeholder index in `value`, if it has any.
fn max_placeholder(value: &Value) -> Option<usize> {
    if let Some(n) = is_placeholder(value) {
        return Some(n);
    }
    match value {
        Value::Array(items) => items.iter().filter_map(max_placeholder).max(),
        Value::Object(map) => map.values().filter_map(max_placeholder).max(),
        _ => None,
    }
}
