//! Both Socket.IO encoders on valid packets built from the fuzz input: decoding what they
//! wrote gives the packet back (floats within a few ULPs for the text parser, exactly for
//! msgpack).
#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{approx_same_packet, json_round_trip, packet};
use switchyard_socketio_proto::{encode_msgpack, MsgPackDecoder};

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(packet) = packet(&mut u) else {
        return;
    };
    let decoded = json_round_trip(&packet);
    assert!(
        matches!(&decoded, Ok(Some(p)) if approx_same_packet(p, &packet)),
        "text: {packet:?} -> {decoded:?}"
    );
    let decoded = MsgPackDecoder::new(packet.attachments().len()).decode(&encode_msgpack(&packet));
    assert!(
        matches!(&decoded, Ok(p) if *p == packet),
        "msgpack: {packet:?} -> {decoded:?}"
    );
});
