//! The Engine.IO decoders: a polling payload (packets joined by 0x1e, binary as base64) and a
//! single text packet (a WebSocket text frame). Whatever decodes must encode and decode back
//! to the same packets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_engineio_proto::{decode_payload, encode_payload, Frame, Packet};
use switchyard_fuzz::{assert_bounded, peak_during};

/// The default `max_payload` of the server.
const MAX_PAYLOAD: usize = 1_000_000;

fuzz_target!(|data: &[u8]| {
    let (decoded, peak) = peak_during(|| decode_payload(data, MAX_PAYLOAD));
    assert_bounded(peak, data.len());
    if let Ok(packets) = decoded {
        assert!(!packets.is_empty());
        let frames: Vec<Frame> = packets.iter().map(Packet::encode).collect();
        let again = decode_payload(&encode_payload(&frames), usize::MAX);
        assert_eq!(again.as_ref(), Ok(&packets), "payload {data:x?}");
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(packet) = Packet::decode_text(text) {
            let again = match packet.encode() {
                Frame::Text(text) => std::str::from_utf8(text.as_bytes())
                    .ok()
                    .and_then(|text| Packet::decode_text(text).ok()),
                Frame::Binary(data) => Some(Packet::decode_binary(data)),
            };
            assert_eq!(again.as_ref(), Some(&packet), "text {text:?}");
        }
    }
    let binary = Packet::decode_binary(Bytes::copy_from_slice(data));
    assert_eq!(binary.encode().as_bytes().as_ref(), data);
});
