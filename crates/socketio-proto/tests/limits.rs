//! The decoders against hostile input: the attachment limit of the msgpack parser, nesting
//! depth in both parsers, and memory bounded by the input rather than by declared lengths.
//!
//! A counting global allocator measures the memory a decode takes. Its counters are per
//! thread, so tests running in parallel do not disturb each other.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::Bytes;
use serde_json::json;
use switchyard_socketio_proto::{
    decode_msgpack, decode_msgpack_bytes, placeholder, JsonDecoder, MsgPackDecoder, Packet,
    ParseError, DEFAULT_MAX_ATTACHMENTS,
};

struct Counting;

thread_local! {
    /// Bytes allocated and not yet freed by this thread (frees of memory allocated by another
    /// thread make it drift, hence signed).
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last reset.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn grew(size: usize) {
    // `try_with`: the allocator may run while the thread's locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as isize;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as isize));
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on to `System`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            shrank(layout.size());
            grew(new_size);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most memory it held at once, in bytes.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, (peak - base).max(0) as usize)
}

/// Concatenates msgpack fragments.
fn mp(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// An event `["e", <count> bins]` on `/`, each bin holding one byte.
fn event_with_bins(count: usize) -> Vec<u8> {
    let mut data = vec![0xdd];
    data.extend_from_slice(&(count as u32 + 1).to_be_bytes());
    data.extend_from_slice(b"\xa1e");
    for i in 0..count {
        data.extend_from_slice(&[0xc4, 0x01, i as u8]);
    }
    mp(&[b"\x83\xa4type\x02\xa4data", &data, b"\xa3nsp\xa1/"])
}

/// A msgpack event whose second argument is `value`.
fn event_with_value(value: &[u8]) -> Vec<u8> {
    mp(&[b"\x83\xa4type\x02\xa4data\x92\xa1e", value, b"\xa3nsp\xa1/"])
}

fn expect_err<T: std::fmt::Debug>(result: Result<T, ParseError>) -> ParseError {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error,
    }
}

#[test]
fn msgpack_bins_up_to_the_limit_are_attachments() {
    let decoder = MsgPackDecoder::new(3);
    assert_eq!(decoder.max_attachments(), 3);
    let packet = decoder.decode(&event_with_bins(3));
    let expected = Packet::event(
        "/",
        "e",
        vec![placeholder(0), placeholder(1), placeholder(2)],
    )
    .with_attachments(vec![
        Bytes::from_static(&[0]),
        Bytes::from_static(&[1]),
        Bytes::from_static(&[2]),
    ]);
    assert_eq!(packet.ok(), Some(expected.clone()));
    let bytes = Bytes::from(event_with_bins(3));
    assert_eq!(decoder.decode_bytes(&bytes).ok(), Some(expected));
}

#[test]
fn msgpack_bins_beyond_the_limit_are_refused() {
    let decoder = MsgPackDecoder::new(3);
    let error = expect_err(decoder.decode(&event_with_bins(4)));
    assert!(
        matches!(error, ParseError::TooManyBinaryValues { max: 3 }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "msgpack packet holds more than 3 binary values"
    );
    let error = expect_err(decoder.decode_bytes(&Bytes::from(event_with_bins(4))));
    assert!(matches!(error, ParseError::TooManyBinaryValues { max: 3 }));

    // No attachment at all.
    let error = expect_err(MsgPackDecoder::new(0).decode(&event_with_bins(1)));
    assert!(matches!(error, ParseError::TooManyBinaryValues { max: 0 }));
    assert!(MsgPackDecoder::new(0).decode(&event_with_bins(0)).is_ok());
}

#[test]
fn the_msgpack_functions_apply_the_default_limit() {
    assert_eq!(
        MsgPackDecoder::default().max_attachments(),
        DEFAULT_MAX_ATTACHMENTS
    );
    let at_limit = event_with_bins(DEFAULT_MAX_ATTACHMENTS);
    let over = event_with_bins(DEFAULT_MAX_ATTACHMENTS + 1);
    assert!(decode_msgpack(&at_limit).is_ok());
    assert!(decode_msgpack_bytes(&Bytes::from(at_limit)).is_ok());
    assert!(matches!(
        decode_msgpack(&over),
        Err(ParseError::TooManyBinaryValues { max }) if max == DEFAULT_MAX_ATTACHMENTS
    ));
    assert!(matches!(
        decode_msgpack_bytes(&Bytes::from(over)),
        Err(ParseError::TooManyBinaryValues { .. })
    ));
}

#[test]
fn msgpack_bins_in_ignored_fields_count_too() {
    let decoder = MsgPackDecoder::new(2);
    // Two bins in an unknown field and one in the data: three in the message.
    let bytes = mp(&[
        b"\x84\xa5extra\x92\xc4\x00\xc4\x00",
        b"\xa4type\x02",
        b"\xa4data\x92\xa1e\xc4\x01c",
        b"\xa3nsp\xa1/",
    ]);
    assert!(matches!(
        decoder.decode(&bytes),
        Err(ParseError::TooManyBinaryValues { max: 2 })
    ));
    // A bin as a field name counts as well.
    let bytes = mp(&[
        b"\x85\xc4\x00\x01\xc4\x00\x02",
        b"\xa4type\x02",
        b"\xa4data\x92\xa1e\xc4\x01c",
        b"\xa3nsp\xa1/",
    ]);
    assert!(matches!(
        decoder.decode(&bytes),
        Err(ParseError::TooManyBinaryValues { max: 2 })
    ));
}

#[test]
fn a_megabyte_of_msgpack_bins_is_refused_cheaply() {
    // 1 MB of two-byte bins: without a limit, half a million placeholder objects.
    let count = 500_000;
    let mut data = vec![0xdd];
    data.extend_from_slice(&(count as u32 + 1).to_be_bytes());
    data.extend_from_slice(b"\xa1e");
    for _ in 0..count {
        data.extend_from_slice(b"\xc4\x00");
    }
    let bytes = Bytes::from(mp(&[b"\x83\xa4type\x02\xa4data", &data, b"\xa3nsp\xa1/"]));
    let (result, peak) = peak_during(|| decode_msgpack_bytes(&bytes).map(drop));
    assert!(matches!(
        result,
        Err(ParseError::TooManyBinaryValues { .. })
    ));
    // The array reserves at most one 32-byte value per remaining input byte: 32 MB here
    // would show a bin costing more than its share; allow 40 bytes per input byte.
    assert!(
        peak <= 40 * bytes.len(),
        "{peak} bytes for {} input bytes",
        bytes.len()
    );
    // With the limit met, the same message without the bins is cheap.
    let (result, peak) = peak_during(|| decode_msgpack(&event_with_bins(10)).map(drop));
    assert!(result.is_ok());
    assert!(peak < 64 * 1024, "{peak} bytes");
}

#[test]
fn huge_declared_msgpack_lengths_with_short_bodies_allocate_little() {
    let packet_map32 = b"\xdf\xff\xff\xff\xff\xa4type\x02".to_vec();
    let cases: Vec<Vec<u8>> = vec![
        packet_map32,
        event_with_value(b"\xdd\xff\xff\xff\xff\x01\x02"),
        event_with_value(b"\xdf\xff\xff\xff\xff\xa1k\x01"),
        event_with_value(b"\xdb\xff\xff\xff\xffabc"),
        event_with_value(b"\xc6\xff\xff\xff\xffabc"),
        event_with_value(b"\xc9\xff\xff\xff\xff\xffabc"),
        event_with_value(b"\xdc\xff\xff\x01"),
        event_with_value(b"\xde\xff\xff\xa1k\x01"),
        // The declared length hides inside an ignored field.
        mp(&[
            b"\x84\xa5extra\xdd\xff\xff\xff\xff\x01",
            &event_with_value(b"\x01")[1..],
        ]),
    ];
    for bytes in cases {
        let (result, peak) = peak_during(|| decode_msgpack(&bytes).map(drop));
        assert!(result.is_err(), "{bytes:x?}");
        assert!(peak < 16 * 1024, "{peak} bytes for {bytes:x?}");
        let source = Bytes::from(bytes);
        let (result, peak) = peak_during(|| decode_msgpack_bytes(&source).map(drop));
        assert!(result.is_err());
        assert!(peak < 16 * 1024, "{peak} bytes for {source:x?}");
    }
    // Nested arrays declaring 4 G items each, then a long tail: each level must not reserve
    // for the whole tail again (127 levels × 32 bytes × 1 MB would be 4 GB).
    for header in [&b"\xdd\xff\xff\xff\xff"[..], b"\xdc\xff\xff"] {
        let tail = mp(&[b"\xdb\x00\x0f\x42\x40", &vec![b'a'; 1_000_000]]);
        let bytes = event_with_value(&mp(&[&header.repeat(126), &tail]));
        let (result, peak) = peak_during(|| decode_msgpack(&bytes).map(drop));
        assert!(result.is_err());
        assert!(
            peak < 3 * bytes.len() + 1024 * 1024,
            "{peak} bytes for {} input bytes",
            bytes.len()
        );
    }
    let error = expect_err(decode_msgpack(&event_with_value(
        b"\xdd\xff\xff\xff\xff\x01",
    )));
    assert_eq!(
        error.to_string(),
        "invalid msgpack: unexpected end of input"
    );
}

/// Runs `f` on a thread with a 2 MiB stack, the size of a tokio worker's: a decoder that
/// recursed without bound would overflow it and abort the test binary.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .unwrap_or_else(|error| panic!("spawn: {error}"));
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn deep_msgpack_nesting_is_refused_not_a_stack_overflow() {
    on_small_stack(|| {
        let depth = 1_000_000;
        let deep_arrays = mp(&[&vec![0x91; depth], b"\xc0"]);
        let deep_maps = mp(&[&b"\x81\xa0".repeat(depth), b"\xc0"]);
        // Nesting in map keys: `{[[[...]]]: nil}`.
        let deep_keys = mp(&[&b"\x81".repeat(depth), b"\xc0"]);
        for value in [&deep_arrays, &deep_maps, &deep_keys] {
            let error = expect_err(decode_msgpack(&event_with_value(value)));
            assert_eq!(error.to_string(), "invalid msgpack: nesting too deep");
            // The same inside a field the parser ignores.
            let ignored = mp(&[b"\x84\xa5extra", value, &event_with_value(b"\x01")[1..]]);
            let error = expect_err(decode_msgpack(&ignored));
            assert_eq!(error.to_string(), "invalid msgpack: nesting too deep");
        }
        // 127 levels (the data array and 126 inside) are fine; 128 are not, as in serde_json.
        let ok = event_with_value(&mp(&[&[0x91; 126], b"\xc0"]));
        assert!(decode_msgpack(&ok).is_ok());
        let too_deep = event_with_value(&mp(&[&[0x91; 127], b"\xc0"]));
        assert!(decode_msgpack(&too_deep).is_err());
    });
}

#[test]
fn deep_json_nesting_is_refused_not_a_stack_overflow() {
    on_small_stack(|| {
        let depth = 1_000_000;
        for text in [
            format!("2[\"e\",{}", "[".repeat(depth)),
            format!("2[\"e\",{}1{}]", "[".repeat(depth), "]".repeat(depth)),
            format!("2[\"e\",{}", "{\"a\":".repeat(depth)),
            format!("0{}", "{\"a\":".repeat(depth)),
            format!("51-[\"e\",{}", "[".repeat(depth)),
        ] {
            let error = expect_err(JsonDecoder::default().decode_text(&text));
            assert!(matches!(error, ParseError::InvalidJson(_)), "{error:?}");
        }
        // serde_json refuses 128 levels, the event array included, as the msgpack parser does.
        let deep = format!("2[\"e\",{}1{}]", "[".repeat(127), "]".repeat(127));
        assert!(JsonDecoder::default().decode_text(&deep).is_err());
        let deep = format!("2[\"e\",{}1{}]", "[".repeat(126), "]".repeat(126));
        assert!(JsonDecoder::default().decode_text(&deep).is_ok());
    });
}

#[test]
fn json_binary_packets_hold_at_most_the_limit() {
    let mut decoder = JsonDecoder::new(2);
    let error = expect_err(decoder.decode_text("53-[\"e\"]"));
    assert!(matches!(
        error,
        ParseError::TooManyAttachments { count: 3, max: 2 }
    ));
    // A count too large for usize is refused too, not wrapped.
    let error = expect_err(decoder.decode_text("599999999999999999999999-[\"e\"]"));
    assert!(matches!(error, ParseError::TooManyAttachments { .. }));
    assert!(matches!(decoder.decode_text("52-[\"e\"]"), Ok(None)));
    let data = json!(["e"]);
    assert!(decoder.decode_binary(Bytes::new()).is_ok());
    assert_eq!(
        decoder.decode_binary(Bytes::new()).ok().flatten(),
        Some(Packet::Event {
            nsp: "/".into(),
            id: None,
            data,
            attachments: vec![Bytes::new(), Bytes::new()],
        })
    );
}

/// The most bytes a decoded message may take per input byte (see the test below).
const BYTES_PER_INPUT_BYTE: usize = 512;

#[test]
fn decoded_memory_is_linear_in_the_input() {
    // The costliest shapes per byte: a B-tree node (over 600 bytes) for each map of one
    // entry, either side by side in one array (3 bytes each) or nested 124 deep (2 bytes each).
    let count = 100_000;
    let side_by_side = mp(&[
        b"\xdd",
        &(count as u32).to_be_bytes(),
        &b"\x81\x00\xc0".repeat(count),
    ]);
    let chains = count / 200;
    let nested = mp(&[
        b"\xdd",
        &(chains as u32).to_be_bytes(),
        &mp(&[&b"\x81\x00".repeat(124), b"\xc0"]).repeat(chains),
    ]);
    for value in [side_by_side, nested] {
        let bytes = event_with_value(&value);
        let (result, peak) = peak_during(|| decode_msgpack(&bytes).map(drop));
        assert!(result.is_ok());
        assert!(
            peak <= BYTES_PER_INPUT_BYTE * bytes.len() + 1024 * 1024,
            "{peak} bytes for {} input bytes",
            bytes.len()
        );
    }
    // The text form: `{"":{"":...}}` is 5 bytes per map.
    let chain = format!("{}0{}", "{\"\":".repeat(124), "}".repeat(124));
    let text = format!("2[\"e\",[{}]]", vec![chain; count / 200].join(","));
    let (result, peak) = peak_during(|| JsonDecoder::default().decode_text(&text).map(drop));
    assert!(result.is_ok());
    assert!(
        peak <= BYTES_PER_INPUT_BYTE * text.len() + 1024 * 1024,
        "{peak} bytes for {} input bytes",
        text.len()
    );
}

/// A peer that announces attachments and sends them one by one makes the decoder hold them
/// until the last: their bytes together are bounded, and the pending packet is dropped when
/// the bound is passed.
#[test]
fn pending_attachments_are_bounded_in_bytes() {
    let mut decoder = JsonDecoder::new(DEFAULT_MAX_ATTACHMENTS).with_max_attachment_bytes(1000);
    let header = r#"52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    assert!(decoder.decode_text(header).unwrap().is_none());
    assert!(decoder
        .decode_binary(Bytes::from(vec![0u8; 600]))
        .unwrap()
        .is_none());
    let error = expect_err(decoder.decode_binary(Bytes::from(vec![0u8; 401])));
    assert!(
        matches!(error, ParseError::AttachmentsTooLarge { max: 1000 }),
        "{error:?}"
    );
    assert_eq!(
        decoder.pending_attachments(),
        0,
        "the pending packet is dropped"
    );
    // Up to the bound exactly: decoded.
    assert!(decoder.decode_text(header).unwrap().is_none());
    decoder.decode_binary(Bytes::from(vec![0u8; 600])).unwrap();
    let packet = decoder
        .decode_binary(Bytes::from(vec![0u8; 400]))
        .unwrap()
        .expect("complete");
    assert_eq!(packet.attachments().len(), 2);
}
