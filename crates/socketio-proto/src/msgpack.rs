//! The msgpack parser, wire compatible with npm `socket.io-msgpack-parser`.
//!
//! That parser sends each packet as one binary Engine.IO message: the packet object
//! `{type, data, id, nsp}` encoded with notepack. The packet type is 0 to 4 only (binary values
//! travel natively, so there is no BINARY_EVENT or BINARY_ACK), absent fields are left out of
//! the map, and unknown fields (the browser client adds `options`) are ignored.
//!
//! Mapping to [`Packet`]: msgpack `bin` values in EVENT and ACK data become placeholders plus
//! attachments, numbered in document order, and placeholders are written back as `bin`. Other
//! msgpack values map to JSON as notepack maps them to JavaScript: integers and floats are
//! numbers (a non-finite float becomes `null`), map keys may be strings or integers (written
//! as decimal strings), the timestamp extension (a JavaScript `Date`) becomes its ISO 8601
//! string as `Date.prototype.toJSON` gives, and the legacy notepack `undefined` extension
//! becomes `null`. Any other extension type is rejected.
//!
//! Beyond the npm parser's checks, the same validation as the text parser applies (event
//! names, ack ids, namespaces starting with `/`). A `nil` `data` or `id` counts as absent. An
//! object shaped like a placeholder in EVENT or ACK data is rejected, since it would be
//! ambiguous with real binary data.
//!
//! Hostile input is bounded: at most a chosen number of `bin` values per message
//! ([`MsgPackDecoder`]), arrays and maps nested fewer than 128 deep (as serde_json for the
//! text parser), and what is reserved from a declared length is capped by what the rest of the
//! message can hold and by a small constant.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

use crate::error::ParseError;
use crate::json::DEFAULT_MAX_ATTACHMENTS;
use crate::packet::{
    assemble, is_marked_placeholder, is_placeholder, placeholder, Packet, PacketType,
};

/// The deepest nesting of arrays and maps accepted in the data, like serde_json's limit.
const MAX_NESTING: usize = 128;

/// The most items reserved for an array before they are read: with `MAX_NESTING` open arrays
/// that is at most 127 × 128 × 32 bytes (half a megabyte) beyond what the items themselves
/// take.
const MAX_PREALLOCATED_ITEMS: usize = 128;

/// Encodes `packet` as one msgpack message.
///
/// Placeholders in EVENT and ACK data that name an existing attachment are written as msgpack
/// `bin` values holding the attachment; other placeholder-shaped objects stay plain maps. An
/// empty namespace is written as `/`.
pub fn encode_msgpack(packet: &Packet) -> Bytes {
    let mut out = Vec::with_capacity(64);
    let packet_type = match packet.packet_type() {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        other => other,
    };
    let data = packet.data();
    let id = packet.id();
    write_map_len(
        &mut out,
        2 + usize::from(data.is_some()) + usize::from(id.is_some()),
    );
    write_str(&mut out, "type");
    write_uint(&mut out, u64::from(packet_type.as_u8()));
    if let Some(data) = data {
        write_str(&mut out, "data");
        write_value(&mut out, data, packet.attachments());
    }
    if let Some(id) = id {
        write_str(&mut out, "id");
        write_uint(&mut out, id);
    }
    write_str(&mut out, "nsp");
    let nsp = packet.nsp();
    write_str(&mut out, if nsp.is_empty() { "/" } else { nsp });
    Bytes::from(out)
}

/// Decodes one msgpack message into a packet; attachments are copied out of `data`.
///
/// At most [`DEFAULT_MAX_ATTACHMENTS`] `bin` values are accepted; use [`MsgPackDecoder`] to
/// choose the limit.
pub fn decode_msgpack(data: &[u8]) -> Result<Packet, ParseError> {
    MsgPackDecoder::default().decode(data)
}

/// Decodes one msgpack message into a packet; attachments are slices of `data`, not copies.
///
/// At most [`DEFAULT_MAX_ATTACHMENTS`] `bin` values are accepted; use [`MsgPackDecoder`] to
/// choose the limit.
pub fn decode_msgpack_bytes(data: &Bytes) -> Result<Packet, ParseError> {
    MsgPackDecoder::default().decode_bytes(data)
}

/// Decoder for the msgpack parser, with a limit on the binary values of one packet.
///
/// Each msgpack `bin` costs a placeholder object in the packet data, far more memory than its
/// two bytes on the wire, so their number is bounded like the text parser's attachments
/// ([`JsonDecoder::new`](crate::JsonDecoder::new)). Every `bin` of the message counts,
/// including those in fields the parser ignores. The decoder holds no state between messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsgPackDecoder {
    max_attachments: usize,
}

impl Default for MsgPackDecoder {
    /// A decoder accepting up to [`DEFAULT_MAX_ATTACHMENTS`] `bin` values per packet.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl MsgPackDecoder {
    /// A decoder rejecting messages that hold more than `max_attachments` `bin` values.
    pub fn new(max_attachments: usize) -> Self {
        Self { max_attachments }
    }

    /// The limit on `bin` values (attachments) per packet.
    pub fn max_attachments(&self) -> usize {
        self.max_attachments
    }

    /// Decodes one msgpack message into a packet; attachments are copied out of `data`.
    pub fn decode(&self, data: &[u8]) -> Result<Packet, ParseError> {
        Decoder::new(data, None, self.max_attachments).packet()
    }

    /// Decodes one msgpack message into a packet; attachments are slices of `data`, not
    /// copies.
    pub fn decode_bytes(&self, data: &Bytes) -> Result<Packet, ParseError> {
        Decoder::new(data, Some(data), self.max_attachments).packet()
    }
}

/// A msgpack document decoded into JSON: `bin` values became placeholders numbered in the
/// order they were read, and `bins` holds them.
///
/// For messages that carry packets inside a larger document (the Redis adapters' `[uid,
/// packet, opts]`, say): take the part that is packet data out of `value`, then give it its own
/// attachments with [`MsgPackValue::attachments_of`].
#[derive(Debug, Clone, PartialEq)]
pub struct MsgPackValue {
    /// The document, with placeholders for its `bin` values.
    pub value: Value,
    /// The `bin` values, in the order they were read.
    pub bins: Vec<Bytes>,
}

impl MsgPackValue {
    /// Decodes one whole msgpack document; at most `max_bins` `bin` values are accepted, and a
    /// map shaped like a placeholder is refused (it would be taken for binary data).
    /// Attachments are slices of `data`.
    pub fn decode(data: &Bytes, max_bins: usize) -> Result<MsgPackValue, ParseError> {
        let mut decoder = Decoder::new(data, Some(data), max_bins);
        let value = decoder.value(0)?;
        if decoder.pos != data.len() {
            return Err(ParseError::InvalidMsgpack("trailing bytes after the value"));
        }
        if decoder.literal_placeholder {
            return Err(ParseError::InvalidPlaceholder);
        }
        Ok(MsgPackValue {
            value,
            bins: decoder.attachments,
        })
    }

    /// Renumbers the placeholders of `part` (a value taken out of this document) from 0, in
    /// the order the encoder writes them, and returns the attachments they name.
    pub fn attachments_of(&self, part: &mut Value) -> Vec<Bytes> {
        canonical_attachments(part, self.bins.clone())
    }
}

/// Encodes `value` as one msgpack document: placeholders naming one of `attachments` become
/// `bin` values, numbers their smallest integer form or a float 64, as notepack writes them.
pub fn encode_msgpack_value(value: &Value, attachments: &[Bytes]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, value, attachments);
    out
}

fn write_map_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, 0x80, 16, 0xde);
}

fn write_array_len(out: &mut Vec<u8>, len: usize) {
    write_len(out, len, 0x90, 16, 0xdc);
}

/// Writes a length with its fix form (`fix_max` exclusive) or its 16- or 32-bit form, whose
/// markers are `marker16` and the next one.
fn write_len(out: &mut Vec<u8>, len: usize, fix: u8, fix_max: usize, marker16: u8) {
    if len < fix_max {
        out.push(fix | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(marker16);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        // msgpack cannot express more than u32::MAX items or bytes.
        out.push(marker16 + 1);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(len) = u8::try_from(len) {
        out.push(0xd9);
        out.push(len);
    } else {
        write_len(out, len, 0, 0, 0xda);
    }
    out.extend_from_slice(s.as_bytes());
}

fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    if let Ok(len) = u8::try_from(b.len()) {
        out.push(0xc4);
        out.push(len);
    } else {
        write_len(out, b.len(), 0, 0, 0xc5);
    }
    out.extend_from_slice(b);
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Writes a negative integer in its smallest form.
fn write_negative(out: &mut Vec<u8>, n: i64) {
    if n >= -32 {
        out.push(n as i8 as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_value(out: &mut Vec<u8>, value: &Value, attachments: &[Bytes]) {
    match value {
        Value::Null => out.push(0xc0),
        Value::Bool(false) => out.push(0xc2),
        Value::Bool(true) => out.push(0xc3),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(out, u);
            } else if let Some(i) = n.as_i64() {
                write_negative(out, i);
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.as_f64().unwrap_or_default().to_be_bytes());
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            write_array_len(out, items.len());
            for item in items {
                write_value(out, item, attachments);
            }
        }
        Value::Object(map) => {
            if let Some(bin) = is_placeholder(value).and_then(|num| attachments.get(num)) {
                write_bin(out, bin);
                return;
            }
            write_map_len(out, map.len());
            for (key, item) in map {
                write_str(out, key);
                write_value(out, item, attachments);
            }
        }
    }
}

/// A cursor over one msgpack message and the attachments found in its data so far.
struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    /// When set, `input` is this buffer and attachments are sliced out of it.
    source: Option<&'a Bytes>,
    attachments: Vec<Bytes>,
    /// `bin` values seen in the whole message, ignored fields included.
    bins: usize,
    /// The most `bin` values the message may hold.
    max_bins: usize,
    /// A map marked as a placeholder was found in the data.
    literal_placeholder: bool,
}

/// The packet map's fields this parser knows.
#[derive(Default)]
struct Fields {
    packet_type: Option<Value>,
    nsp: Option<Value>,
    data: Option<Value>,
    id: Option<Value>,
}

impl<'a> Decoder<'a> {
    fn new(input: &'a [u8], source: Option<&'a Bytes>, max_bins: usize) -> Self {
        Self {
            input,
            pos: 0,
            source,
            attachments: Vec::new(),
            bins: 0,
            max_bins,
            literal_placeholder: false,
        }
    }

    fn packet(mut self) -> Result<Packet, ParseError> {
        let len = match self.byte()? {
            m @ 0x80..=0x8f => usize::from(m & 0x0f),
            0xde => usize::from(self.u16()?),
            0xdf => self.u32()? as usize,
            _ => return Err(ParseError::NotAMap),
        };
        let mut fields = Fields::default();
        for _ in 0..len {
            let key = self.discard()?;
            let (slot, name) = match key.as_str() {
                Some("type") => (&mut fields.packet_type, "type"),
                Some("nsp") => (&mut fields.nsp, "nsp"),
                Some("id") => (&mut fields.id, "id"),
                Some("data") => (&mut fields.data, "data"),
                _ => {
                    self.discard()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(ParseError::DuplicateField(name));
            }
            *slot = Some(if name == "data" {
                self.value(1)?
            } else {
                self.discard()?
            });
        }
        if self.pos != self.input.len() {
            return Err(ParseError::InvalidMsgpack(
                "trailing bytes after the packet",
            ));
        }
        self.build(fields)
    }

    fn build(self, fields: Fields) -> Result<Packet, ParseError> {
        let packet_type = match &fields.packet_type {
            Some(Value::Number(n)) => as_integer(n)
                .and_then(|t| u8::try_from(t).ok())
                .and_then(PacketType::from_u8)
                .filter(|t| !t.is_binary())
                .ok_or_else(|| ParseError::UnknownType(n.to_string()))?,
            Some(_) => return Err(ParseError::UnknownType("(not a number)".to_owned())),
            None => return Err(ParseError::UnknownType("(missing)".to_owned())),
        };
        let nsp = match fields.nsp {
            Some(Value::String(nsp)) => nsp,
            _ => return Err(ParseError::InvalidNamespace),
        };
        let data = fields.data.filter(|d| !d.is_null());
        let id = match &fields.id {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(as_integer(n).ok_or(ParseError::InvalidId)?),
            Some(_) => return Err(ParseError::InvalidId),
        };
        let mut packet = assemble(packet_type, nsp, id, data)?;
        match &mut packet {
            Packet::Event {
                data, attachments, ..
            }
            | Packet::Ack {
                data, attachments, ..
            } => {
                if self.literal_placeholder {
                    return Err(ParseError::InvalidPlaceholder);
                }
                if !self.attachments.is_empty() {
                    *attachments = canonical_attachments(data, self.attachments);
                }
            }
            _ if !self.attachments.is_empty() => {
                return Err(ParseError::BinaryNotAllowed(packet_type));
            }
            _ => {}
        }
        Ok(packet)
    }

    /// Decodes a value that is not packet data: binary values in it are not attachments.
    fn discard(&mut self) -> Result<Value, ParseError> {
        let (count, literal) = (self.attachments.len(), self.literal_placeholder);
        let value = self.value(1)?;
        self.attachments.truncate(count);
        self.literal_placeholder = literal;
        Ok(value)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len())
            .ok_or(ParseError::InvalidMsgpack("unexpected end of input"))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        self.array().map(u64::from_be_bytes)
    }

    fn value(&mut self, depth: usize) -> Result<Value, ParseError> {
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Value::from(marker),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.seq(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.string(usize::from(marker & 0x1f))?,
            0xc0 => Value::Null,
            0xc1 => return Err(ParseError::InvalidMsgpack("reserved marker 0xc1")),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let len = usize::from(self.byte()?);
                self.binary(len)?
            }
            0xc5 => {
                let len = usize::from(self.u16()?);
                self.binary(len)?
            }
            0xc6 => {
                let len = self.u32()? as usize;
                self.binary(len)?
            }
            0xc7 => {
                let len = usize::from(self.byte()?);
                self.ext(len)?
            }
            0xc8 => {
                let len = usize::from(self.u16()?);
                self.ext(len)?
            }
            0xc9 => {
                let len = self.u32()? as usize;
                self.ext(len)?
            }
            0xca => float(f64::from(f32::from_bits(self.u32()?))),
            0xcb => float(f64::from_bits(self.u64()?)),
            0xcc => Value::from(self.byte()?),
            0xcd => Value::from(self.u16()?),
            0xce => Value::from(self.u32()?),
            0xcf => Value::from(self.u64()?),
            0xd0 => Value::from(i8::from_be_bytes(self.array()?)),
            0xd1 => Value::from(i16::from_be_bytes(self.array()?)),
            0xd2 => Value::from(i32::from_be_bytes(self.array()?)),
            0xd3 => Value::from(i64::from_be_bytes(self.array()?)),
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xd9 => {
                let len = usize::from(self.byte()?);
                self.string(len)?
            }
            0xda => {
                let len = usize::from(self.u16()?);
                self.string(len)?
            }
            0xdb => {
                let len = self.u32()? as usize;
                self.string(len)?
            }
            0xdc => {
                let len = usize::from(self.u16()?);
                self.seq(len, depth)?
            }
            0xdd => {
                let len = self.u32()? as usize;
                self.seq(len, depth)?
            }
            0xde => {
                let len = usize::from(self.u16()?);
                self.map(len, depth)?
            }
            0xdf => {
                let len = self.u32()? as usize;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::from(marker as i8),
        })
    }

    fn string(&mut self, len: usize) -> Result<Value, ParseError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(|s| Value::String(s.to_owned()))
            .map_err(|_| ParseError::InvalidMsgpack("string is not valid UTF-8"))
    }

    fn binary(&mut self, len: usize) -> Result<Value, ParseError> {
        // Refused before the placeholder is built: that is where the memory goes.
        self.bins += 1;
        if self.bins > self.max_bins {
            return Err(ParseError::TooManyBinaryValues { max: self.max_bins });
        }
        let start = self.pos;
        let bytes = self.take(len)?;
        let bin = match self.source {
            Some(source) => source.slice(start..start + len),
            None => Bytes::copy_from_slice(bytes),
        };
        self.attachments.push(bin);
        Ok(placeholder(self.attachments.len() - 1))
    }

    fn nest(&self, depth: usize) -> Result<usize, ParseError> {
        if depth >= MAX_NESTING {
            return Err(ParseError::InvalidMsgpack("nesting too deep"));
        }
        Ok(depth + 1)
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Value, ParseError> {
        let depth = self.nest(depth)?;
        // The declared length is untrusted: every item takes at least one byte, so never
        // reserve more than the rest of the input can hold, and never more than a few items
        // either, since each of the enclosing arrays (up to `MAX_NESTING`) would otherwise
        // reserve for the same remaining bytes. Longer arrays grow as they fill.
        let mut items = Vec::with_capacity(
            len.min(self.input.len() - self.pos)
                .min(MAX_PREALLOCATED_ITEMS),
        );
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, ParseError> {
        let depth = self.nest(depth)?;
        let mut map = Map::new();
        for _ in 0..len {
            let key = match self.value(depth)? {
                Value::String(key) => key,
                Value::Number(n) if !n.is_f64() => n.to_string(),
                _ => {
                    return Err(ParseError::UnsupportedMsgpack(
                        "map key that is neither a string nor an integer",
                    ))
                }
            };
            let value = self.value(depth)?;
            map.insert(key, value);
        }
        if is_marked_placeholder(&map) {
            self.literal_placeholder = true;
        }
        Ok(Value::Object(map))
    }

    fn ext(&mut self, len: usize) -> Result<Value, ParseError> {
        let ext_type = self.byte()? as i8;
        let body = self.take(len)?;
        match (ext_type, body) {
            // notepack before 3.0 wrote `undefined` as fixext 1 [0, 0].
            (0, [0]) => Ok(Value::Null),
            (-1, _) => timestamp(body),
            _ => Err(ParseError::UnsupportedMsgpack("extension type")),
        }
    }
}

/// Renumbers the placeholders of `data` in the order the encoder writes them and returns the
/// attachments in that order, dropping those no placeholder names.
///
/// The wire order of `bin` values differs from the encoder's when map keys are not sorted, and
/// a map key given twice keeps only its last value (as in JavaScript): a `bin` in a value it
/// replaced must not stay behind as an attachment nothing refers to.
fn canonical_attachments(data: &mut Value, mut found: Vec<Bytes>) -> Vec<Bytes> {
    fn renumber(value: &mut Value, found: &mut [Bytes], out: &mut Vec<Bytes>) {
        if let Some(num) = is_placeholder(value) {
            // Each placeholder the decoder made names its own attachment, so `take` is enough.
            if let Some(bin) = found.get_mut(num) {
                out.push(std::mem::take(bin));
                *value = placeholder(out.len() - 1);
            }
            return;
        }
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| renumber(v, found, out)),
            Value::Object(map) => map.values_mut().for_each(|v| renumber(v, found, out)),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(found.len());
    renumber(data, &mut found, &mut out);
    out
}

/// The value of an integral number, as JavaScript's `Number.isInteger` sees it, if it is a
/// non-negative u64.
fn as_integer(n: &Number) -> Option<u64> {
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 18_446_744_073_709_551_616.0)
            .map(|f| f as u64)
    })
}

/// A float as JSON holds it: `null` when not finite, as `JSON.stringify` does.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Decodes the body of a msgpack timestamp extension into the ISO 8601 string of the
/// JavaScript `Date` it stands for (millisecond precision).
fn timestamp(body: &[u8]) -> Result<Value, ParseError> {
    let (secs, nanos) = match body.len() {
        4 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(body);
            (i64::from(u32::from_be_bytes(b)), 0)
        }
        8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(body);
            let v = u64::from_be_bytes(b);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => {
            let (mut n, mut s) = ([0u8; 4], [0u8; 8]);
            n.copy_from_slice(&body[..4]);
            s.copy_from_slice(&body[4..]);
            (i64::from_be_bytes(s), u32::from_be_bytes(n))
        }
        _ => {
            return Err(ParseError::UnsupportedMsgpack(
                "timestamp of unknown length",
            ))
        }
    };
    // The range of a JavaScript Date: 8.64e15 ms either side of the epoch.
    const MAX_SECS: i64 = 8_640_000_000_000;
    if nanos >= 1_000_000_000 || !(-MAX_SECS..=MAX_SECS).contains(&secs) {
        return Err(ParseError::UnsupportedMsgpack("timestamp out of range"));
    }
    Ok(Value::String(iso8601(secs, nanos / 1_000_000)))
}

/// Formats a time as `Date.prototype.toISOString` does.
fn iso8601(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400);
    // Days to civil date in the proleptic Gregorian calendar (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9_999).contains(&year) {
        format!("{year:04}")
    } else if year < 0 {
        format!("-{:06}", -year)
    } else {
        format!("+{year:06}")
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3_600,
        secs_of_day / 60 % 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Concatenates msgpack fragments.
    fn mp(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn both_ways(bytes: &[u8], packet: Packet) {
        assert_eq!(encode_msgpack(&packet).as_ref(), bytes);
        assert_eq!(decode_msgpack(bytes).ok(), Some(packet.clone()));
        assert_eq!(
            decode_msgpack_bytes(&Bytes::copy_from_slice(bytes)).ok(),
            Some(packet)
        );
    }

    fn err(bytes: &[u8]) -> String {
        match decode_msgpack(bytes) {
            Ok(p) => format!("unexpected success: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn event() {
        both_ways(
            &mp(&[
                b"\x83\xa4type\x02",
                b"\xa4data\x92\xa5hello\x01",
                b"\xa3nsp\xa1/",
            ]),
            Packet::event("/", "hello", vec![json!(1)]),
        );
        both_ways(
            &mp(&[
                b"\x84\xa4type\x02",
                b"\xa4data\x92\xaeproject:delete\x7b",
                b"\xa2id\xcd\x01\xc8",
                b"\xa3nsp\xa6/admin",
            ]),
            Packet::event("/admin", "project:delete", vec![json!(123)]).with_ack_id(456),
        );
    }

    #[test]
    fn binary_event_is_type_two_with_bin() {
        let packet = Packet::Event {
            nsp: "/".into(),
            id: None,
            data: json!(["hello", placeholder(0), {"b": placeholder(1)}]),
            attachments: vec![Bytes::from_static(&[1, 2, 3]), Bytes::new()],
        };
        both_ways(
            &mp(&[
                b"\x83\xa4type\x02",
                b"\xa4data\x93\xa5hello\xc4\x03\x01\x02\x03\x81\xa1b\xc4\x00",
                b"\xa3nsp\xa1/",
            ]),
            packet,
        );
    }

    #[test]
    fn attachments_are_sliced_or_copied() {
        let bytes = Bytes::from(mp(&[
            b"\x83\xa4type\x02",
            b"\xa4data\x92\xa1e\xc4\x02hi",
            b"\xa3nsp\xa1/",
        ]));
        let sliced = decode_msgpack_bytes(&bytes).ok();
        let bin = sliced.as_ref().map(|p| p.attachments()[0].clone());
        assert_eq!(bin.as_deref(), Some(&b"hi"[..]));
        // The slice points into the message.
        let inside = bin.map(|b| b.as_ptr() as usize - bytes.as_ptr() as usize);
        assert_eq!(inside, Some(bytes.len() - 2 - 6));
        assert_eq!(decode_msgpack(&bytes).ok(), sliced);
    }

    #[test]
    fn ack() {
        both_ways(
            &mp(&[
                b"\x84\xa4type\x03",
                b"\xa4data\x90",
                b"\xa2id\xcd\x01\xc8",
                b"\xa3nsp\xa6/admin",
            ]),
            Packet::ack("/admin", 456, vec![]),
        );
        let packet = Packet::ack("/", 1, vec![placeholder(0)])
            .with_attachments(vec![Bytes::from_static(b"x")]);
        both_ways(
            &mp(&[
                b"\x84\xa4type\x03",
                b"\xa4data\x91\xc4\x01x",
                b"\xa2id\x01",
                b"\xa3nsp\xa1/",
            ]),
            packet,
        );
    }

    #[test]
    fn connect_disconnect_connect_error() {
        both_ways(b"\x82\xa4type\x00\xa3nsp\xa1/", Packet::connect("/", None));
        both_ways(
            &mp(&[
                b"\x83\xa4type\x00",
                b"\xa4data\x81\xa5token\xa3123",
                b"\xa3nsp\xa6/admin",
            ]),
            Packet::connect("/admin", Some(json!({"token": "123"}))),
        );
        both_ways(
            b"\x82\xa4type\x01\xa3nsp\xa6/admin",
            Packet::disconnect("/admin"),
        );
        both_ways(
            &mp(&[
                b"\x83\xa4type\x04",
                b"\xa4data\x81\xa7message\xaeNot authorized",
                b"\xa3nsp\xa1/",
            ]),
            Packet::connect_error("/", json!({"message": "Not authorized"})),
        );
        both_ways(
            &mp(&[b"\x83\xa4type\x04", b"\xa4data\xa2no", b"\xa3nsp\xa1/"]),
            Packet::connect_error("/", json!("no")),
        );
        // An empty namespace is written as `/`.
        assert_eq!(
            encode_msgpack(&Packet::disconnect("")).as_ref(),
            b"\x82\xa4type\x01\xa3nsp\xa1/"
        );
    }

    #[test]
    fn decoding_is_lenient_where_notepack_is() {
        // Field order does not matter, unknown fields are ignored, nil means absent.
        let bytes = mp(&[
            b"\x86\xa3nsp\xa1/",
            b"\xa7options\x81\xa8compress\xc3",
            b"\xa2id\xc0",
            b"\xa4data\x91\xa1e",
            b"\xa4type\xcb\x40\x00\x00\x00\x00\x00\x00\x00",
            b"\x01\xc4\x01z",
        ]);
        assert_eq!(
            decode_msgpack(&bytes).ok(),
            Some(Packet::event("/", "e", vec![]))
        );
        let bytes = mp(&[b"\x83\xa4type\x00\xa4data\xc0\xa3nsp\xa1/"]);
        assert_eq!(
            decode_msgpack(&bytes).ok(),
            Some(Packet::connect("/", None))
        );
        // map16 and map32 packet maps.
        let bytes = mp(&[b"\xde\x00\x02\xa4type\x01\xa3nsp\xa1/"]);
        assert_eq!(decode_msgpack(&bytes).ok(), Some(Packet::disconnect("/")));
        let bytes = mp(&[b"\xdf\x00\x00\x00\x02\xa4type\x01\xa3nsp\xa1/"]);
        assert_eq!(decode_msgpack(&bytes).ok(), Some(Packet::disconnect("/")));
    }

    /// Decodes `value` as the data of an event named "e".
    fn data_value(value: &[u8]) -> Result<Value, String> {
        let bytes = mp(&[b"\x83\xa4type\x02\xa4data\x92\xa1e", value, b"\xa3nsp\xa1/"]);
        match decode_msgpack(&bytes) {
            Ok(Packet::Event { data, .. }) => Ok(data[1].clone()),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn every_scalar_marker() {
        let cases: &[(&[u8], Value)] = &[
            (b"\x00", json!(0)),
            (b"\x7f", json!(127)),
            (b"\xff", json!(-1)),
            (b"\xe0", json!(-32)),
            (b"\xc0", json!(null)),
            (b"\xc2", json!(false)),
            (b"\xc3", json!(true)),
            (b"\xcc\xff", json!(255)),
            (b"\xcd\xff\xff", json!(65535)),
            (b"\xce\xff\xff\xff\xff", json!(4294967295u64)),
            (b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", json!(u64::MAX)),
            (b"\xd0\x80", json!(-128)),
            (b"\xd1\x80\x00", json!(-32768)),
            (b"\xd2\x80\x00\x00\x00", json!(i32::MIN)),
            (b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", json!(i64::MIN)),
            (b"\xd0\x05", json!(5)),
            (b"\xca\x3f\xc0\x00\x00", json!(1.5)),
            (b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", json!(1.5)),
            (b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", json!(null)),
            (b"\xca\x7f\x80\x00\x00", json!(null)),
            (b"\xa0", json!("")),
            (b"\xd9\x01a", json!("a")),
            (b"\xda\x00\x01a", json!("a")),
            (b"\xdb\x00\x00\x00\x01a", json!("a")),
            (b"\x90", json!([])),
            (b"\xdc\x00\x01\x01", json!([1])),
            (b"\xdd\x00\x00\x00\x01\x01", json!([1])),
            (b"\x80", json!({})),
            (b"\x81\x01\x02", json!({"1": 2})),
            (b"\x81\xff\x02", json!({"-1": 2})),
            (b"\xde\x00\x01\xa1k\x01", json!({"k": 1})),
            (b"\xdf\x00\x00\x00\x01\xa1k\x01", json!({"k": 1})),
            (b"\xd4\x00\x00", json!(null)),
            (
                b"\xd6\xff\x39\x45\x79\x80",
                json!("2000-06-13T00:00:00.000Z"),
            ),
            (
                b"\xd6\xff\x00\x00\x00\x00",
                json!("1970-01-01T00:00:00.000Z"),
            ),
            // timestamp 64: 123 ms in the upper 30 bits.
            (
                b"\xd7\xff\x1d\x53\x53\x00\x39\x45\x79\x80",
                json!("2000-06-13T00:00:00.123Z"),
            ),
            // timestamp 96: one second before the epoch.
            (
                b"\xc7\x0c\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
                json!("1969-12-31T23:59:59.000Z"),
            ),
            // timestamp 96: year 10000 and year -1.
            (
                b"\xc7\x0c\xff\x00\x00\x00\x00\x00\x00\x00\x3a\xff\xf4\x41\x80",
                json!("+010000-01-01T00:00:00.000Z"),
            ),
            (
                b"\xc7\x0c\xff\x00\x00\x00\x00\xff\xff\xff\xf1\x84\xaa\x50\x80",
                json!("-000001-01-01T00:00:00.000Z"),
            ),
            (
                b"\xc7\x0c\xff\x00\x00\x00\x00\x00\x00\x00\x00\x5f\xd6\x6f\x2a",
                json!("2020-12-13T19:44:42.000Z"),
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(data_value(bytes), Ok(expected.clone()), "{bytes:x?}");
        }
    }

    #[test]
    fn bin_markers_become_placeholders() {
        for bytes in [
            &b"\xc4\x01z"[..],
            b"\xc5\x00\x01z",
            b"\xc6\x00\x00\x00\x01z",
        ] {
            let packet = decode_msgpack(&mp(&[
                b"\x83\xa4type\x02\xa4data\x92\xa1e",
                bytes,
                b"\xa3nsp\xa1/",
            ]));
            assert_eq!(
                packet.ok(),
                Some(
                    Packet::event("/", "e", vec![placeholder(0)])
                        .with_attachments(vec![Bytes::from_static(b"z")])
                )
            );
        }
    }

    #[test]
    fn encodes_in_smallest_forms() {
        let cases: Vec<(Value, Vec<u8>)> = vec![
            (json!(127), b"\x7f".to_vec()),
            (json!(128), b"\xcc\x80".to_vec()),
            (json!(256), b"\xcd\x01\x00".to_vec()),
            (json!(65536), b"\xce\x00\x01\x00\x00".to_vec()),
            (
                json!(4294967296u64),
                b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00".to_vec(),
            ),
            (json!(-32), b"\xe0".to_vec()),
            (json!(-33), b"\xd0\xdf".to_vec()),
            (json!(-129), b"\xd1\xff\x7f".to_vec()),
            (json!(-32769), b"\xd2\xff\xff\x7f\xff".to_vec()),
            (
                json!(-2147483649i64),
                b"\xd3\xff\xff\xff\xff\x7f\xff\xff\xff".to_vec(),
            ),
            (json!(0.5), b"\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00".to_vec()),
            (
                json!("a".repeat(31)),
                mp(&[b"\xbf", "a".repeat(31).as_bytes()]),
            ),
            (
                json!("a".repeat(32)),
                mp(&[b"\xd9\x20", "a".repeat(32).as_bytes()]),
            ),
            (
                json!("a".repeat(256)),
                mp(&[b"\xda\x01\x00", "a".repeat(256).as_bytes()]),
            ),
            (
                json!("a".repeat(65536)),
                mp(&[b"\xdb\x00\x01\x00\x00", "a".repeat(65536).as_bytes()]),
            ),
            (json!(vec![0; 15]), mp(&[b"\x9f", &[0; 15]])),
            (json!(vec![0; 16]), mp(&[b"\xdc\x00\x10", &[0; 16]])),
            (
                json!(vec![0; 65536]),
                mp(&[b"\xdd\x00\x01\x00\x00", &[0; 65536]]),
            ),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_value(&mut out, &value, &[]);
            assert_eq!(out, bytes, "{value}");
        }
        let map: Map<String, Value> = (0..16).map(|i| (format!("{i:02}"), json!(i))).collect();
        let mut out = Vec::new();
        write_value(&mut out, &Value::Object(map), &[]);
        assert_eq!(out[..3], [0xde, 0x00, 0x10]);
        assert_eq!(out.len(), 3 + 16 * 4);
        for (len, header) in [
            (255usize, &b"\xc4\xff"[..]),
            (256, b"\xc5\x01\x00"),
            (65536, b"\xc6\x00\x01\x00\x00"),
        ] {
            let mut out = Vec::new();
            write_bin(&mut out, &vec![7; len]);
            assert_eq!(out, mp(&[header, &vec![7; len]]));
        }
        // A placeholder naming no attachment stays a map.
        let mut out = Vec::new();
        write_value(&mut out, &placeholder(1), &[Bytes::new()]);
        assert_eq!(out, b"\x82\xac_placeholder\xc3\xa3num\x01");
    }

    #[test]
    fn structure_errors() {
        assert_eq!(err(b""), "invalid msgpack: unexpected end of input");
        assert_eq!(err(b"\x92\x01\x02"), "msgpack packet is not a map");
        assert_eq!(err(b"\xc4\x01\x01"), "msgpack packet is not a map");
        assert_eq!(
            err(b"\x82\xa4type\x02"),
            "invalid msgpack: unexpected end of input"
        );
        assert_eq!(
            err(b"\x82\xa4type\x01\xa3nsp\xa1/\x00"),
            "invalid msgpack: trailing bytes after the packet"
        );
        assert_eq!(
            err(b"\x83\xa4type\x01\xa4type\x01\xa3nsp\xa1/"),
            "msgpack packet has the field \"type\" twice"
        );
        assert_eq!(
            data_value(b"\xc1"),
            Err("invalid msgpack: reserved marker 0xc1".to_owned())
        );
        assert_eq!(
            data_value(b"\xa2\xff\xfe"),
            Err("invalid msgpack: string is not valid UTF-8".to_owned())
        );
        assert_eq!(
            data_value(b"\xdd\xff\xff\xff\xff"),
            Err("invalid msgpack: unexpected end of input".to_owned())
        );
        assert_eq!(
            data_value(b"\xc6\xff\xff\xff\xff"),
            Err("invalid msgpack: unexpected end of input".to_owned())
        );
        assert_eq!(
            data_value(&mp(&[&[0x91; 200], &[0xc0]])),
            Err("invalid msgpack: nesting too deep".to_owned())
        );
        assert_eq!(
            data_value(b"\x81\xc3\x01"),
            Err(
                "unsupported msgpack value: map key that is neither a string nor an integer"
                    .to_owned()
            )
        );
        assert_eq!(
            data_value(b"\x81\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00\x01"),
            Err(
                "unsupported msgpack value: map key that is neither a string nor an integer"
                    .to_owned()
            )
        );
        assert_eq!(
            data_value(b"\xd4\x05\x00"),
            Err("unsupported msgpack value: extension type".to_owned())
        );
        assert_eq!(
            data_value(b"\xd5\xff\x00\x00"),
            Err("unsupported msgpack value: timestamp of unknown length".to_owned())
        );
        assert_eq!(
            data_value(b"\xc7\x0c\xff\x00\x00\x00\x00\x7f\xff\xff\xff\xff\xff\xff\xff"),
            Err("unsupported msgpack value: timestamp out of range".to_owned())
        );
        assert_eq!(
            data_value(b"\xd7\xff\xff\xff\xff\xfc\x00\x00\x00\x00"),
            Err("unsupported msgpack value: timestamp out of range".to_owned())
        );
    }

    #[test]
    fn field_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"\x80", "unknown packet type (missing)"),
            (b"\x81\xa4type\xa1a", "unknown packet type (not a number)"),
            (b"\x81\xa4type\x07", "unknown packet type 7"),
            (b"\x81\xa4type\x05", "unknown packet type 5"),
            (b"\x81\xa4type\xff", "unknown packet type -1"),
            (b"\x81\xa4type\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", "unknown packet type 1.5"),
            (b"\x81\xa4type\x02", "invalid namespace: it must be a string starting with '/'"),
            (b"\x82\xa4type\x02\xa3nsp\x02", "invalid namespace: it must be a string starting with '/'"),
            (b"\x82\xa4type\x02\xa3nsp\xa5admin", "invalid namespace: it must be a string starting with '/'"),
            (b"\x82\xa4type\x02\xa3nsp\xa1/", "EVENT packet requires a payload"),
            (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x04", "invalid EVENT payload: expected a non-empty array"),
            (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x90", "invalid EVENT payload: expected a non-empty array"),
            (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xc3", "event name must be a string or a number"),
            (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xaadisconnect", "reserved event name \"disconnect\""),
            (b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x91\x01\xa2id\xa1a", "invalid ack id: not a non-negative integer"),
            (b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x91\x01\xa2id\xff", "invalid ack id: not a non-negative integer"),
            (b"\x84\xa4type\x02\xa3nsp\xa1/\xa4data\x91\x01\xa2id\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00", "invalid ack id: not a non-negative integer"),
            (b"\x83\xa4type\x03\xa3nsp\xa1/\xa4data\x90", "ACK packet without an ack id"),
            (b"\x84\xa4type\x03\xa3nsp\xa1/\xa4data\x80\xa2id\x01", "invalid ACK payload: expected an array"),
            (b"\x83\xa4type\x04\xa3nsp\xa1/\xa4data\x90", "invalid CONNECT_ERROR payload: expected an object or a string"),
            (b"\x83\xa4type\x00\xa3nsp\xa1/\xa4data\x90", "invalid CONNECT payload: expected an object"),
            (b"\x83\xa4type\x00\xa3nsp\xa1/\xa2id\x01", "CONNECT packet cannot carry an ack id"),
            (b"\x83\xa4type\x01\xa3nsp\xa1/\xa4data\x80", "DISCONNECT packet cannot carry a payload"),
            (b"\x83\xa4type\x00\xa3nsp\xa1/\xa4data\x81\xa1k\xc4\x00", "CONNECT packet cannot carry binary data"),
            (b"\x83\xa4type\x04\xa3nsp\xa1/\xa4data\x81\xa1k\xc4\x00", "CONNECT_ERROR packet cannot carry binary data"),
            (
                b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\x82\xac_placeholder\xc3\xa3num\x00",
                "invalid binary placeholder",
            ),
        ];
        for (bytes, message) in cases {
            assert_eq!(err(bytes), *message, "{bytes:x?}");
        }
    }

    #[test]
    fn ignored_fields_do_not_shift_attachments() {
        let bytes = mp(&[
            b"\x84\xa5extra\xc4\x01a",
            b"\xc4\x01b\x01",
            b"\xa4type\x02",
            b"\xa4data\x92\xa1e\xc4\x01c",
        ]);
        // Not a valid packet (no nsp), but the extra bins must not count either way.
        assert_eq!(
            err(&bytes),
            "invalid namespace: it must be a string starting with '/'"
        );
        let bytes = mp(&[
            b"\x85\xa5extra\x81\xac_placeholder\xc3",
            b"\xc4\x01b\x01",
            b"\xa4type\x02",
            b"\xa4data\x92\xa1e\xc4\x01c",
            b"\xa3nsp\xa1/",
        ]);
        assert_eq!(
            decode_msgpack(&bytes).ok(),
            Some(
                Packet::event("/", "e", vec![placeholder(0)])
                    .with_attachments(vec![Bytes::from_static(b"c")])
            )
        );
    }

    /// Found by the `socketio_msgpack` fuzz target: a `bin` replaced by a repeated map key
    /// stayed behind as an attachment no placeholder named.
    #[test]
    fn a_bin_replaced_by_a_repeated_key_is_dropped() {
        let bytes = mp(&[
            b"\x83\xa4type\x02",
            b"\xa4data\x93\xa1e\x82\xa1k\xc4\x01a\xa1k\x01\xc4\x01b",
            b"\xa3nsp\xa1/",
        ]);
        let expected = Packet::event("/", "e", vec![json!({"k": 1}), placeholder(0)])
            .with_attachments(vec![Bytes::from_static(b"b")]);
        assert_eq!(decode_msgpack(&bytes).ok(), Some(expected.clone()));
        assert_eq!(
            decode_msgpack_bytes(&Bytes::from(bytes)).ok(),
            Some(expected)
        );
        // The replacing value may hold a bin of its own.
        let bytes = mp(&[
            b"\x84\xa4type\x03\xa2id\x07",
            b"\xa4data\x91\x82\xa1k\x92\xc4\x01a\xc4\x01b\xa1k\xc4\x01c",
            b"\xa3nsp\xa1/",
        ]);
        let expected = Packet::ack("/", 7, vec![json!({"k": placeholder(0)})])
            .with_attachments(vec![Bytes::from_static(b"c")]);
        assert_eq!(decode_msgpack(&bytes).ok(), Some(expected));
    }

    /// Attachments are numbered in the order the encoder writes them (map keys sorted), so a
    /// decoded packet encodes and decodes back to itself.
    #[test]
    fn bins_are_numbered_in_encoder_order() {
        let bytes = mp(&[
            b"\x83\xa4type\x02",
            b"\xa4data\x93\xa1e\x82\xa1b\xc4\x01x\xa1a\xc4\x01y\xc4\x01z",
            b"\xa3nsp\xa1/",
        ]);
        let expected = Packet::event(
            "/",
            "e",
            vec![
                json!({"a": placeholder(0), "b": placeholder(1)}),
                placeholder(2),
            ],
        )
        .with_attachments(vec![
            Bytes::from_static(b"y"),
            Bytes::from_static(b"x"),
            Bytes::from_static(b"z"),
        ]);
        let decoded = decode_msgpack(&bytes).ok();
        assert_eq!(decoded, Some(expected.clone()));
        assert_eq!(decode_msgpack(&encode_msgpack(&expected)).ok(), decoded);
    }

    #[test]
    fn placeholder_maps_outside_event_data_are_plain() {
        let bytes = mp(&[
            b"\x83\xa4type\x00",
            b"\xa4data\x82\xac_placeholder\xc3\xa3num\x00",
            b"\xa3nsp\xa1/",
        ]);
        let packet = Packet::connect("/", Some(placeholder(0)));
        assert_eq!(decode_msgpack(&bytes).ok(), Some(packet.clone()));
        assert_eq!(encode_msgpack(&packet).as_ref(), &bytes[..]);
    }

    #[test]
    fn documents_with_packet_data_inside() {
        // ["u", {"data": ["ev", bin(01)]}, bin(02)]: the packet data gets attachment 0 only.
        let bytes = Bytes::from(mp(&[
            b"\x93\xa1u\x81\xa4data\x92\xa2ev\xc4\x01\x01",
            b"\xc4\x01\x02",
        ]));
        let mut doc = MsgPackValue::decode(&bytes, 10).unwrap();
        assert_eq!(
            doc.value,
            json!(["u", {"data": ["ev", placeholder(0)]}, placeholder(1)])
        );
        let original = doc.value.clone();
        let mut data = doc.value[1]["data"].take();
        assert_eq!(
            doc.attachments_of(&mut data),
            vec![Bytes::from_static(b"\x01")]
        );
        let mut last = doc.value[2].clone();
        assert_eq!(last, placeholder(1));
        assert_eq!(
            doc.attachments_of(&mut last),
            vec![Bytes::from_static(b"\x02")]
        );
        assert_eq!(last, placeholder(0));
        // Written back, the document is the same bytes.
        assert_eq!(encode_msgpack_value(&original, &doc.bins), bytes.as_ref());
        // Limits and ambiguity hold as for packets.
        assert!(MsgPackValue::decode(&bytes, 1).is_err());
        let literal = Bytes::from_static(b"\x82\xac_placeholder\xc3\xa3num\x00");
        assert!(MsgPackValue::decode(&literal, 10).is_err());
        assert!(MsgPackValue::decode(&Bytes::from_static(b"\x90\x90"), 10).is_err());
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(iso8601(-62_135_596_800, 0), "0001-01-01T00:00:00.000Z");
        assert_eq!(iso8601(-62_167_219_200, 0), "0000-01-01T00:00:00.000Z");
        assert_eq!(iso8601(253_402_300_799, 999), "9999-12-31T23:59:59.999Z");
        assert_eq!(iso8601(8_640_000_000_000, 0), "+275760-09-13T00:00:00.000Z");
        assert_eq!(
            iso8601(-8_640_000_000_000, 0),
            "-271821-04-20T00:00:00.000Z"
        );
    }
}
