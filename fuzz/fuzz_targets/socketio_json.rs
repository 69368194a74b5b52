//! The Socket.IO text parser: a sequence of text and binary Engine.IO messages fed to one
//! `JsonDecoder`. Completed packets hold at most the limit of attachments, every placeholder
//! names one of them, they encode and decode back to themselves, and no message makes the
//! decoder hold more memory than its size allows.
//!
//! Input: one byte whose value modulo 16 is the attachment limit, then messages, each a kind
//! byte (even: text, odd: binary), a big-endian u32 length and that many bytes (fewer if the
//! input ends first). Text that is not UTF-8 is read lossily.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use switchyard_fuzz::{
    approx_same_packet, assert_bounded, check_decoded, json_round_trip, messages, peak_during,
};
use switchyard_socketio_proto::JsonDecoder;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let max_attachments = usize::from(limit % 16);
    let mut decoder = JsonDecoder::new(max_attachments);
    for (is_text, message) in messages(rest) {
        let (result, peak) = if is_text {
            let text = String::from_utf8_lossy(message);
            peak_during(|| decoder.decode_text(&text))
        } else {
            let data = Bytes::copy_from_slice(message);
            peak_during(|| decoder.decode_binary(data))
        };
        assert_bounded(peak, message.len());
        assert!(decoder.pending_attachments() <= max_attachments);
        match result {
            Ok(Some(packet)) => {
                check_decoded(&packet, max_attachments);
                let again = json_round_trip(&packet);
                assert!(
                    matches!(&again, Ok(Some(p)) if approx_same_packet(p, &packet)),
                    "{packet:?} -> {again:?}"
                );
            }
            Ok(None) => assert!(decoder.pending_attachments() > 0),
            // After an error the decoder starts afresh, as documented.
            Err(_) => assert_eq!(decoder.pending_attachments(), 0),
        }
    }
});
