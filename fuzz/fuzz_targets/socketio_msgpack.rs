//! The Socket.IO msgpack parser on one binary message. Copying and slicing decoders agree,
//! a decoded packet holds at most the limit of attachments and encodes and decodes back to
//! itself, and the decode held memory bounded by the message size.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{assert_bounded, check_decoded, peak_during};
use switchyard_socketio_proto::{encode_msgpack, MsgPackDecoder, DEFAULT_MAX_ATTACHMENTS};

fuzz_target!(|data: &[u8]| {
    let decoder = MsgPackDecoder::new(DEFAULT_MAX_ATTACHMENTS);
    let (copied, peak) = peak_during(|| decoder.decode(data));
    assert_bounded(peak, data.len());
    let source = Bytes::copy_from_slice(data);
    let (sliced, peak) = peak_during(|| decoder.decode_bytes(&source));
    assert_bounded(peak, data.len());
    match (&copied, &sliced) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        _ => panic!("copying and slicing disagree: {copied:?} / {sliced:?}"),
    }
    if let Ok(packet) = copied {
        check_decoded(&packet, DEFAULT_MAX_ATTACHMENTS);
        let again = decoder.decode(&encode_msgpack(&packet));
        assert!(
            matches!(&again, Ok(p) if *p == packet),
            "{packet:?} -> {again:?}"
        );
    }
});
