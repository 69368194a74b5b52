//! Property tests: every packet and payload survives encode → decode unchanged.

use bytes::Bytes;
use proptest::prelude::*;
use switchyard_engineio_proto::{
    decode_payload, encode_payload, Frame, Message, OpenPacket, Packet,
};

/// Text that may appear in a polling payload: anything but the record separator.
fn payload_text() -> impl Strategy<Value = String> {
    "[^\u{1e}]{0,40}"
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        Just(Packet::Close),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
        payload_text().prop_map(Packet::Ping),
        payload_text().prop_map(Packet::Pong),
        payload_text().prop_map(|t| Packet::Message(Message::Text(t))),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| Packet::Message(Message::Binary(Bytes::from(b)))),
        (
            "[a-zA-Z0-9_-]{1,20}",
            any::<u32>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(|(sid, interval, timeout, max)| Packet::Open(OpenPacket {
                sid,
                upgrades: vec!["websocket".into()],
                ping_interval: interval.into(),
                ping_timeout: timeout.into(),
                max_payload: max.into(),
            })),
    ]
}

fn decode_frame(frame: Frame) -> Packet {
    match frame {
        Frame::Text(text) => {
            Packet::decode_text(std::str::from_utf8(text.as_bytes()).unwrap()).unwrap()
        }
        Frame::Binary(bytes) => Packet::decode_binary(bytes),
    }
}

proptest! {
    #[test]
    fn packet_round_trips(packet in packet()) {
        prop_assert_eq!(decode_frame(packet.encode()), packet);
    }

    #[test]
    fn payload_round_trips(packets in proptest::collection::vec(packet(), 1..10)) {
        let frames: Vec<Frame> = packets.iter().map(Packet::encode).collect();
        let body = encode_payload(&frames);
        prop_assert_eq!(decode_payload(&body, usize::MAX).unwrap(), packets);
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_payload(&body, 1000);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,64}") {
        let _ = Packet::decode_text(&text);
    }
}
