//! The Rust client's reading of what a server sends: Engine.IO messages through the client's
//! packet decoder (its parser and attachment limit), then every decoded packet through
//! `switchyard_client::incoming::interpret`, the rules the client's connection driver applies
//! (CONNECT reply ids, CONNECT_ERROR message and data, event name, arguments and recovery
//! offset, ack arguments). Nothing panics; decoding is bounded in memory; an offset is taken
//! only from an event without ack id on a socket that knows its private id, and only the
//! offset is taken.
//!
//! Input: one byte (bit 0: msgpack parser, else JSON; bit 1: the socket knows a pid), then
//! messages as in `socketio_json`: a kind byte (even: text, odd: binary), a big-endian u32
//! length and that many bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_client::incoming::{decoder, interpret, Interpreted};
use switchyard_core::Parser;
use switchyard_engineio_proto::Message;
use switchyard_fuzz::{assert_bounded, check_decoded, messages, peak_during};
use switchyard_socketio_proto::Packet;

/// The client's own bound on attachments per packet.
const CLIENT_MAX_ATTACHMENTS: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let parser = if mode & 1 == 1 {
        Parser::MsgPack
    } else {
        Parser::Json
    };
    let pid_known = mode & 2 == 2;
    let mut decoder = decoder(parser);
    for (is_text, bytes) in messages(rest) {
        let message = if is_text {
            Message::Text(String::from_utf8_lossy(bytes).into_owned())
        } else {
            Message::Binary(Bytes::copy_from_slice(bytes))
        };
        let (decoded, peak) = peak_during(|| decoder.decode(message));
        assert_bounded(peak, bytes.len());
        let Ok(Some(packet)) = decoded else {
            continue;
        };
        check_decoded(&packet, CLIENT_MAX_ATTACHMENTS);
        // An event's ack id, item count, first and last items, as decoded.
        let event_shape = match &packet {
            Packet::Event { id, data, .. } => {
                let items = data.as_array();
                Some((
                    id.is_some(),
                    items.map(Vec::len),
                    items.and_then(|values| values.first()).cloned(),
                    items.and_then(|values| values.last()).cloned(),
                ))
            }
            _ => None,
        };
        match (interpret(packet, pid_known), event_shape) {
            (Interpreted::Event(Some((_, args, offset))), Some((has_id, Some(len), _, last))) => {
                if let Some(offset) = offset {
                    assert!(
                        pid_known && !has_id,
                        "offset taken where recovery does not apply"
                    );
                    assert_eq!(last, Some(Value::String(offset)));
                    assert_eq!(args.values.len() + 2, len, "only the offset is taken");
                } else {
                    assert_eq!(args.values.len() + 1, len);
                }
            }
            (Interpreted::Event(None), Some((_, _, first, _))) => {
                // No name: not an array, an empty one, or a first item no name can be read from.
                assert!(!matches!(first, Some(Value::String(_) | Value::Number(_))));
            }
            (Interpreted::Event(Some(_)), Some((_, None, _, _))) => {
                panic!("an event whose data is not an array was given a name")
            }
            _ => {}
        }
    }
});
