//! Helpers shared by the fuzz targets: a counting allocator to bound the memory a decode takes,
//! Socket.IO packets built from fuzz input, and the checks every decoded packet must pass.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};
use switchyard_socketio_proto::{
    encode_json, is_placeholder, placeholder, JsonDecoder, Packet, ParseError, RESERVED_EVENTS,
};

/// The most bytes a decoded message may hold per input byte, plus [`ALLOCATION_SLACK`].
///
/// The costliest shape is a chain of one-entry msgpack maps: 2 bytes each on the wire, a
/// B-tree node of over 600 bytes each once decoded (see crates/socketio-proto/tests/limits.rs).
pub const BYTES_PER_INPUT_BYTE: usize = 512;

/// Memory a decode may take whatever its input: the msgpack decoder reserves up to 128 items
/// for each of up to 127 open arrays before reading them.
pub const ALLOCATION_SLACK: usize = 1024 * 1024;

/// A global allocator that tracks the live bytes of the process and their peak.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
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
///
/// The targets run one input at a time on one thread, so the process-wide counters measure
/// `f` alone.
pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let result = f();
    let peak = PEAK.load(Ordering::Relaxed);
    (result, peak.saturating_sub(base))
}

/// Panics when a decode of `input_len` bytes held more than the allowed memory.
pub fn assert_bounded(peak: usize, input_len: usize) {
    let max = BYTES_PER_INPUT_BYTE * input_len + ALLOCATION_SLACK;
    assert!(
        peak <= max,
        "decoding {input_len} bytes held {peak} bytes at once (limit {max})"
    );
}

/// The placeholders of `value` in document order (the order both encoders write them).
fn placeholders(value: &Value, out: &mut Vec<usize>) {
    if let Some(num) = is_placeholder(value) {
        out.push(num);
        return;
    }
    match value {
        Value::Array(items) => items.iter().for_each(|v| placeholders(v, out)),
        Value::Object(map) => map.values().for_each(|v| placeholders(v, out)),
        _ => {}
    }
}

/// The invariants of any packet a decoder returned with a limit of `max_attachments`.
pub fn check_decoded(packet: &Packet, max_attachments: usize) {
    let attachments = packet.attachments().len();
    assert!(
        attachments <= max_attachments,
        "{attachments} attachments, limit {max_attachments}"
    );
    if let Packet::Event { data, .. } | Packet::Ack { data, .. } = packet {
        let mut nums = Vec::new();
        placeholders(data, &mut nums);
        assert!(
            nums.iter().all(|&n| n < attachments),
            "placeholders {nums:?} with {attachments} attachments"
        );
    } else {
        assert_eq!(attachments, 0, "attachments on {packet:?}");
    }
}

/// Whether two JSON values are equal, floats within a few units of the last place: serde_json
/// without its `float_roundtrip` feature may read back a float it wrote one ULP off.
pub fn approx_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || approx_number(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| approx_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kx, vx), (ky, vy))| kx == ky && approx_eq(vx, vy))
        }
        _ => a == b,
    }
}

fn approx_number(x: &Number, y: &Number) -> bool {
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) if x.is_sign_negative() == y.is_sign_negative() => {
            x.to_bits().abs_diff(y.to_bits()) <= 4
        }
        _ => false,
    }
}

/// Whether two packets are equal, floats in their data compared by [`approx_eq`].
pub fn approx_same_packet(a: &Packet, b: &Packet) -> bool {
    let data = match (a.data(), b.data()) {
        (Some(x), Some(y)) => approx_eq(x, y),
        (x, y) => x == y,
    };
    a.packet_type() == b.packet_type()
        && a.nsp() == b.nsp()
        && a.id() == b.id()
        && a.attachments() == b.attachments()
        && data
}

/// Encodes `packet` with the text parser and decodes it again with its attachments.
pub fn json_round_trip(packet: &Packet) -> std::result::Result<Option<Packet>, ParseError> {
    let mut out = Vec::new();
    encode_json(packet, &mut out);
    let text = String::from_utf8(out).map_err(|_| ParseError::Empty)?;
    let mut decoder = JsonDecoder::new(packet.attachments().len());
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

/// Deepest nesting of generated values: enough to reach every branch, shallow enough that
/// generation stays fast.
const MAX_DEPTH: u32 = 6;

/// A JSON value from fuzz input. With `bins`, some leaves are binary values: placeholders
/// numbered by their index in `bins` (see [`renumber`]).
pub fn value(u: &mut Unstructured, depth: u32, bins: Option<&mut Vec<Bytes>>) -> Result<Value> {
    let leaves = if bins.is_some() { 7 } else { 6 };
    let kinds = if depth >= MAX_DEPTH {
        leaves
    } else {
        leaves + 2
    };
    Ok(match u.choose_index(kinds)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => Value::String(u.arbitrary()?),
        6 if leaves == 7 => match bins {
            Some(bins) => {
                bins.push(Bytes::from(u.arbitrary::<Vec<u8>>()?));
                placeholder(bins.len() - 1)
            }
            None => Value::Null,
        },
        k if k == leaves => {
            let len = u.int_in_range(0..=4)?;
            let mut items = Vec::with_capacity(len);
            let mut bins = bins;
            for _ in 0..len {
                items.push(value(u, depth + 1, bins.as_deref_mut())?);
            }
            Value::Array(items)
        }
        _ => {
            let len = u.int_in_range(0..=4)?;
            let mut map = Map::new();
            let mut bins = bins;
            for _ in 0..len {
                let mut key: String = u.arbitrary()?;
                // A generated object must not look like a placeholder.
                if key == "_placeholder" {
                    key.push('_');
                }
                map.insert(key, value(u, depth + 1, bins.as_deref_mut())?);
            }
            Value::Object(map)
        }
    })
}

/// Numbers the placeholders of `value` in document order, as the decoders do, moving the
/// binary value each named from `pool` into `attachments`.
pub fn renumber(value: &mut Value, pool: &[Bytes], attachments: &mut Vec<Bytes>) {
    if let Some(num) = is_placeholder(value) {
        attachments.push(pool[num].clone());
        *value = placeholder(attachments.len() - 1);
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| renumber(v, pool, attachments)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| renumber(v, pool, attachments)),
        _ => {}
    }
}

/// EVENT or ACK arguments with binary values, and their attachments.
fn args(u: &mut Unstructured) -> Result<(Vec<Value>, Vec<Bytes>)> {
    let mut pool = Vec::new();
    let len = u.int_in_range(0..=4)?;
    let mut args = Vec::with_capacity(len);
    for _ in 0..len {
        args.push(value(u, 1, Some(&mut pool))?);
    }
    let mut attachments = Vec::new();
    args.iter_mut()
        .for_each(|a| renumber(a, &pool, &mut attachments));
    Ok((args, attachments))
}

fn object(u: &mut Unstructured) -> Result<Value> {
    let len = u.int_in_range(0..=4)?;
    let mut map = Map::new();
    for _ in 0..len {
        map.insert(u.arbitrary()?, value(u, 1, None)?);
    }
    Ok(Value::Object(map))
}

/// A valid packet from fuzz input, in the canonical form both encoders write (placeholders
/// numbered in document order, each attachment used once).
pub fn packet(u: &mut Unstructured) -> Result<Packet> {
    // The text parser ends a namespace at the first comma.
    let nsp: String = u.arbitrary()?;
    let nsp = format!("/{}", nsp.replace(',', ""));
    Ok(match u.choose_index(5)? {
        0 => Packet::Connect {
            nsp,
            data: if u.arbitrary()? {
                Some(object(u)?)
            } else {
                None
            },
        },
        1 => Packet::Disconnect { nsp },
        2 => {
            let name = match u.choose_index(3)? {
                0 => {
                    let name: String = u.arbitrary()?;
                    if RESERVED_EVENTS.contains(&name.as_str()) {
                        Value::from(format!("{name}!"))
                    } else {
                        Value::from(name)
                    }
                }
                1 => Value::from(u.arbitrary::<u32>()?),
                _ => Number::from_f64(u.arbitrary()?).map_or(Value::from(0), Value::Number),
            };
            let (args, attachments) = args(u)?;
            let mut data = vec![name];
            data.extend(args);
            Packet::Event {
                nsp,
                id: u.arbitrary()?,
                data: Value::Array(data),
                attachments,
            }
        }
        3 => {
            let (args, attachments) = args(u)?;
            Packet::Ack {
                nsp,
                id: u.arbitrary()?,
                data: Value::Array(args),
                attachments,
            }
        }
        _ => Packet::ConnectError {
            nsp,
            data: if u.arbitrary()? {
                object(u)?
            } else {
                Value::String(u.arbitrary()?)
            },
        },
    })
}

/// Splits fuzz input into Engine.IO messages: each a kind byte (even: text, odd: binary), a
/// big-endian u32 length and that many bytes (fewer if the input ends first). Returns
/// `(is_text, bytes)` pairs.
pub fn messages(mut data: &[u8]) -> Vec<(bool, &[u8])> {
    let mut out = Vec::new();
    while let Some((&kind, rest)) = data.split_first() {
        let (len, rest) = match rest.split_first_chunk::<4>() {
            Some((len, rest)) => (u32::from_be_bytes(*len) as usize, rest),
            None => (rest.len(), &rest[rest.len()..]),
        };
        let (message, rest) = rest.split_at(len.min(rest.len()));
        out.push((kind % 2 == 0, message));
        data = rest;
    }
    out
}
