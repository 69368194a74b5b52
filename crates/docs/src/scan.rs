//! A bounded, non-recursive check of the Yjs v1 encodings a client sends (updates, state
//! vectors, awareness updates), run before the bytes reach `yrs`.
//!
//! `yrs` decodes nested `Any` values (arrays, maps) recursively without a depth limit, so a
//! few hundred kilobytes nesting one level every two bytes overflow the stack, which no
//! `catch_unwind` can catch; and it reserves memory for the counts an encoding claims before
//! reading the items. This scanner walks the same layout as `yrs`'s v1 decoders
//! (`Update::decode`, `ItemContent::decode`, `Any::decode`, `IdSet::decode`,
//! `StateVector::decode`, `AwarenessUpdate::decode`) with an explicit stack: it caps the
//! nesting at [`MAX_DEPTH`] (JSON embedded in updates included), requires every claimed count
//! and length to fit in the bytes left, and every clock (and clock + length) to be at most
//! [`MAX_CLOCK`]. It also refuses Skip blocks and a client listed twice among an update's
//! blocks: either can leave a hole in a client's clocks (see [`update_v1`]). What passes can be
//! decoded by `yrs` without deep recursion or large reservations; what `yrs` would refuse
//! anyway may pass (the decoder still runs, under `catch_unwind`).

/// How deep arrays and maps (and JSON arrays and objects) may nest.
pub(crate) const MAX_DEPTH: usize = 32;

/// The largest clock (and end of a block or deleted range: clock + length) accepted:
/// `i32::MAX`. `yrs` computes a block's offset as `local_clock as i32 - clock as i32`, and
/// past it links the block where it does not belong, then panics half way (leaving a
/// dangling pointer behind as it unwinds). Yjs's own clocks are JavaScript numbers counting
/// every character ever inserted by one client: no real document nears 2^31.
pub(crate) const MAX_CLOCK: u64 = i32::MAX as u64;

/// Why an encoding was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScanError {
    /// The bytes end inside a value.
    #[error("truncated")]
    Truncated,
    /// A count or length claims more than the bytes left.
    #[error("a count or length larger than the bytes left")]
    Count,
    /// Values nest deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Anything else `yrs` would refuse or mis-handle: an unknown tag, a varint too long, a
    /// clock past [`MAX_CLOCK`], a client id past 53 bits, invalid UTF-8, an empty block, a
    /// Skip block, a client listed twice among an update's blocks.
    #[error("malformed")]
    Malformed,
}

type Scan<T> = Result<T, ScanError>;

/// Checks a v1 update (`Y.encodeStateAsUpdate`, a `Y.Doc`'s `update` event).
///
/// Each client's blocks must be contiguous: no Skip block (info byte 10, `yrs`'s
/// `BLOCK_SKIP_REF_NUMBER`, which `Y.mergeUpdates` writes over a hole between a client's
/// blocks) and no client listed twice (`yrs` appends the second list, starting at any clock,
/// to the first). A hole in a document's blocks is how `yrs` 0.28.1 ends up following a
/// dangling pointer once an update covering it arrives (`integrate_skip`, then
/// `Item::integrate`): a segfault no `catch_unwind` stops. The other way to make one, an
/// update whose first block for a client starts past the document's clock for it, is refused
/// by the service before applying (it needs the document's state vector).
pub(crate) fn update_v1(bytes: &[u8]) -> Scan<()> {
    let mut scanner = Scanner { bytes, at: 0 };
    scanner.update()
}

/// Checks a v1 state vector (`Y.encodeStateVector`).
pub(crate) fn state_vector_v1(bytes: &[u8]) -> Scan<()> {
    let mut scanner = Scanner { bytes, at: 0 };
    // Each entry takes at least 2 bytes: a client and a clock.
    let entries = scanner.count(2)?;
    for _ in 0..entries {
        scanner.client()?;
        scanner.clock()?;
    }
    Ok(())
}

/// Checks a y-protocols awareness update (`encodeAwarenessUpdate`).
pub(crate) fn awareness_v1(bytes: &[u8]) -> Scan<()> {
    let mut scanner = Scanner { bytes, at: 0 };
    // Each entry takes at least 3 bytes: a client, a clock, a string's length.
    let entries = scanner.count(3)?;
    for _ in 0..entries {
        scanner.client()?;
        scanner.var_u32()?;
        scanner.string()?;
    }
    Ok(())
}

/// The block and content tags (`yrs::block`).
const BLOCK_GC: u8 = 0;
const BLOCK_SKIP: u8 = 10;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;
const CONTENT_DELETED: u8 = 1;
const CONTENT_JSON: u8 = 2;
const CONTENT_BINARY: u8 = 3;
const CONTENT_STRING: u8 = 4;
const CONTENT_EMBED: u8 = 5;
const CONTENT_FORMAT: u8 = 6;
const CONTENT_TYPE: u8 = 7;
const CONTENT_ANY: u8 = 8;
const CONTENT_DOC: u8 = 9;
/// The type references whose content carries a key (`yrs::types`).
const TYPE_XML_ELEMENT: u8 = 3;
/// The type references `yrs` decodes (without its `weak` feature): array, map, text, XML
/// element, fragment, hook and text, sub-document, undefined.
const TYPES: [u8; 9] = [0, 1, 2, 3, 4, 5, 6, 9, 15];

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn u8(&mut self) -> Scan<u8> {
        let byte = *self.bytes.get(self.at).ok_or(ScanError::Truncated)?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, len: u64) -> Scan<&'a [u8]> {
        if len > self.left() as u64 {
            return Err(ScanError::Count);
        }
        let start = self.at;
        self.at += len as usize;
        Ok(&self.bytes[start..self.at])
    }

    /// An unsigned varint of at most 10 bytes (64 bits).
    fn var_u64(&mut self) -> Scan<u64> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            if index == 9 && bits > 1 {
                return Err(ScanError::Malformed);
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ScanError::Malformed)
    }

    /// An unsigned varint that fits in a `u32`.
    fn var_u32(&mut self) -> Scan<u64> {
        let value = self.var_u64()?;
        if value > u64::from(u32::MAX) {
            return Err(ScanError::Malformed);
        }
        Ok(value)
    }

    /// A clock (or a length in clock units): at most [`MAX_CLOCK`].
    fn clock(&mut self) -> Scan<u64> {
        let value = self.var_u64()?;
        if value > MAX_CLOCK {
            return Err(ScanError::Malformed);
        }
        Ok(value)
    }

    /// A client id: 53 bits at most (`yrs::ClientID`).
    fn client(&mut self) -> Scan<u64> {
        let client = self.var_u64()?;
        if client >> 53 != 0 {
            return Err(ScanError::Malformed);
        }
        Ok(client)
    }

    /// A signed varint (`Any`'s integers): at most 9 bytes, so that `yrs` never shifts past
    /// 64 bits or negates `i64::MIN`.
    fn var_signed(&mut self) -> Scan<()> {
        for _ in 0..9 {
            if self.u8()? & 0x80 == 0 {
                return Ok(());
            }
        }
        Err(ScanError::Malformed)
    }

    /// A count of items each taking at least `min_bytes`, checked against the bytes left.
    fn count(&mut self, min_bytes: u64) -> Scan<u64> {
        let count = self.var_u64()?;
        if count.saturating_mul(min_bytes) > self.left() as u64 {
            return Err(ScanError::Count);
        }
        Ok(count)
    }

    fn buf(&mut self) -> Scan<&'a [u8]> {
        let len = self.var_u64()?;
        self.take(len)
    }

    fn string(&mut self) -> Scan<&'a str> {
        let bytes = self.buf()?;
        std::str::from_utf8(bytes).map_err(|_| ScanError::Malformed)
    }

    /// A JSON text (embeds, formatting attributes): a string whose arrays and objects nest at
    /// most [`MAX_DEPTH`] deep (`yrs` parses it with `serde_json`).
    fn json(&mut self) -> Scan<()> {
        let text = self.string()?;
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        for byte in text.bytes() {
            if in_string {
                match byte {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ScanError::TooDeep);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Ok(())
    }

    /// One `Any` (lib0's `readAny`), its nested arrays and maps on an explicit stack.
    fn any(&mut self) -> Scan<()> {
        /// An open array or map: values left to read, and whether each comes after a key.
        struct Open {
            left: u64,
            map: bool,
        }
        let mut open: Vec<Open> = Vec::new();
        loop {
            match self.u8()? {
                // undefined, null, false, true
                127 | 126 | 121 | 120 => {}
                // integer
                125 => self.var_signed()?,
                // float32
                124 => {
                    self.take(4)?;
                }
                // float64, bigint
                123 | 122 => {
                    self.take(8)?;
                }
                // string
                119 => {
                    self.string()?;
                }
                // buffer
                116 => {
                    self.buf()?;
                }
                // map (a key and a value each: 2 bytes at least), array
                tag @ (118 | 117) => {
                    let map = tag == 118;
                    let left = self.count(if map { 2 } else { 1 })?;
                    if left > 0 {
                        if open.len() >= MAX_DEPTH {
                            return Err(ScanError::TooDeep);
                        }
                        open.push(Open { left, map });
                        if map {
                            self.string()?;
                        }
                        continue;
                    }
                }
                _ => return Err(ScanError::Malformed),
            }
            // A value is complete: close what it completes.
            loop {
                let Some(last) = open.last_mut() else {
                    return Ok(());
                };
                last.left -= 1;
                if last.left > 0 {
                    if last.map {
                        self.string()?;
                    }
                    break;
                }
                open.pop();
            }
        }
    }

    fn id(&mut self) -> Scan<()> {
        self.client()?;
        self.clock()?;
        Ok(())
    }

    /// An item's content (`ItemContent::decode`): its length in clock units.
    fn content(&mut self, info: u8) -> Scan<u64> {
        Ok(match info & 0b1111 {
            CONTENT_DELETED => self.clock()?,
            CONTENT_JSON => {
                // `yrs` reads one string more than the count (and refuses a count past
                // `i32::MAX`).
                let count = self.count(1)?;
                if count > i32::MAX as u64 {
                    return Err(ScanError::Malformed);
                }
                for _ in 0..=count {
                    self.string()?;
                }
                count + 1
            }
            CONTENT_BINARY => {
                self.buf()?;
                1
            }
            CONTENT_STRING => self.string()?.encode_utf16().count() as u64,
            CONTENT_EMBED => {
                self.json()?;
                1
            }
            CONTENT_FORMAT => {
                self.string()?;
                self.json()?;
                1
            }
            CONTENT_TYPE => {
                let type_ref = self.u8()?;
                if !TYPES.contains(&type_ref) {
                    return Err(ScanError::Malformed);
                }
                if type_ref == TYPE_XML_ELEMENT {
                    self.string()?;
                }
                1
            }
            CONTENT_ANY => {
                let count = self.count(1)?;
                for _ in 0..count {
                    self.any()?;
                }
                count
            }
            CONTENT_DOC => {
                self.string()?;
                self.any()?;
                1
            }
            _ => return Err(ScanError::Malformed),
        })
    }

    /// A block (`Update::decode_block`): its length in clock units. Skip blocks are refused
    /// (see [`update_v1`]).
    fn block(&mut self) -> Scan<u64> {
        let info = self.u8()?;
        if info == BLOCK_SKIP {
            return Err(ScanError::Malformed);
        }
        if info == BLOCK_GC {
            let len = self.clock()?;
            if len == 0 {
                return Err(ScanError::Malformed);
            }
            return Ok(len);
        }
        if info & HAS_ORIGIN != 0 {
            self.id()?;
        }
        if info & HAS_RIGHT_ORIGIN != 0 {
            self.id()?;
        }
        if info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0 {
            if self.var_u32()? == 1 {
                // A root type's name.
                self.string()?;
            } else {
                self.id()?;
            }
            if info & HAS_PARENT_SUB != 0 {
                self.string()?;
            }
        }
        self.content(info)
    }

    fn update(&mut self) -> Scan<()> {
        // Each client takes at least 3 bytes: its block count, id and first clock.
        let clients = self.count(3)?;
        // Bounded by the bytes: each client took 3 at least.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..clients {
            let blocks = self.count(1)?;
            if blocks > u64::from(u32::MAX) {
                return Err(ScanError::Malformed);
            }
            if !seen.insert(self.client()?) {
                // Listed twice: its second list may start past a hole (see `update_v1`).
                return Err(ScanError::Malformed);
            }
            let mut clock = self.clock()?;
            for _ in 0..blocks {
                // Where the block ends: at most MAX_CLOCK (both terms are, no overflow).
                clock += self.block()?;
                if clock > MAX_CLOCK {
                    return Err(ScanError::Malformed);
                }
            }
        }
        // The delete set: per client, ranges of a clock and a length.
        let clients = self.count(2)?;
        for _ in 0..clients {
            self.client()?;
            let ranges = self.count(2)?;
            for _ in 0..ranges {
                let clock = self.clock()?;
                let len = self.clock()?;
                if clock + len > MAX_CLOCK {
                    return Err(ScanError::Malformed);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use yrs::updates::encoder::Encode;
    use yrs::{
        Any, Array, Doc, Map, ReadTxn, StateVector, Text, Transact, WriteTxn, XmlFragment,
        XmlTextPrelim,
    };

    /// An update whose one item (an `Any` in root array `t`) nests `depth` arrays or maps.
    pub(crate) fn nested(depth: usize, map: bool) -> Vec<u8> {
        let mut bytes = vec![1, 1, 1, 0, CONTENT_ANY, 1, 1, b't', 1];
        for _ in 0..depth {
            if map {
                bytes.extend_from_slice(&[118, 1, 1, b'k']);
            } else {
                bytes.extend_from_slice(&[117, 1]);
            }
        }
        bytes.extend_from_slice(&[126, 0]);
        bytes
    }

    fn rich_update() -> Vec<u8> {
        let doc = Doc::new();
        let mut txn = doc.transact_mut();
        let text = txn.get_or_insert_text("text");
        text.insert(&mut txn, 0, "hello world");
        text.remove_range(&mut txn, 2, 3);
        text.push(&mut txn, " é 👋");
        let array = txn.get_or_insert_array("array");
        array.insert(&mut txn, 0, 1.5);
        array.insert(&mut txn, 1, "two");
        array.insert(&mut txn, 2, vec![Any::from(1), Any::from(true)]);
        let map = txn.get_or_insert_map("map");
        map.insert(&mut txn, "k", Any::Null);
        map.insert(
            &mut txn,
            "big",
            Any::Number(yrs::any::Number::Int(-1 << 60)),
        );
        map.insert(&mut txn, "buf", Any::Buffer(vec![1u8, 2, 3].into()));
        let nested: Any =
            (0..MAX_DEPTH - 1).fold(Any::from(7), |inner, _| Any::Array(vec![inner].into()));
        map.insert(&mut txn, "nested", nested);
        let xml = txn.get_or_insert_xml_fragment("xml");
        xml.push_back(&mut txn, XmlTextPrelim::new("x"));
        drop(txn);
        let update = doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        update
    }

    #[test]
    fn what_yrs_encodes_passes() {
        let update = rich_update();
        assert_eq!(update_v1(&update), Ok(()));
        let doc = Doc::new();
        let mut txn = doc.transact_mut();
        let text = txn.get_or_insert_text("t");
        text.insert(&mut txn, 0, "abc");
        assert_eq!(update_v1(&txn.encode_update_v1()), Ok(()));
        assert_eq!(state_vector_v1(&txn.state_vector().encode_v1()), Ok(()));
        assert_eq!(update_v1(&[0, 0]), Ok(()));
        assert_eq!(state_vector_v1(&[0]), Ok(()));
        assert_eq!(awareness_v1(&[1, 5, 1, 2, b'{', b'}']), Ok(()));
    }

    #[test]
    fn deep_nesting_and_huge_counts_are_refused() {
        assert_eq!(update_v1(&nested(MAX_DEPTH, false)), Ok(()));
        assert_eq!(update_v1(&nested(MAX_DEPTH, true)), Ok(()));
        assert_eq!(
            update_v1(&nested(MAX_DEPTH + 1, false)),
            Err(ScanError::TooDeep)
        );
        assert_eq!(update_v1(&nested(100_000, true)), Err(ScanError::TooDeep));
        // A map claiming 2^27 entries.
        let mut huge = vec![1, 1, 1, 0, CONTENT_ANY, 1, 1, b't', 1, 118];
        huge.extend_from_slice(&[0x80, 0x80, 0x80, 0x40, 1, b'k', 126, 0]);
        assert_eq!(update_v1(&huge), Err(ScanError::Count));
        assert_eq!(
            state_vector_v1(&[0x80, 0x80, 0x80, 0x80, 0x01]),
            Err(ScanError::Count)
        );
        assert_eq!(awareness_v1(&[0xff, 0xff, 0x03, 1]), Err(ScanError::Count));
        // Embedded JSON nesting too deep.
        let mut embed = vec![1, 1, 1, 0, CONTENT_EMBED, 1, 1, b't'];
        let json = "[".repeat(MAX_DEPTH + 1);
        embed.push(json.len() as u8);
        embed.extend_from_slice(json.as_bytes());
        embed.extend_from_slice(&[0]);
        assert_eq!(update_v1(&embed), Err(ScanError::TooDeep));
    }

    #[test]
    fn clocks_past_i32_max_are_refused() {
        let max = MAX_CLOCK as u32;
        // One string block of `text` by client 1 at `clock`.
        let block = |clock: u32, text: &str| {
            let mut bytes = vec![1, 1, 1];
            write_var(&mut bytes, clock.into());
            bytes.extend_from_slice(&[CONTENT_STRING, 1, 1, b't', text.len() as u8]);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0);
            bytes
        };
        assert_eq!(update_v1(&block(max - 1, "a")), Ok(()));
        assert_eq!(update_v1(&block(max, "a")), Err(ScanError::Malformed));
        assert_eq!(update_v1(&block(max - 1, "ab")), Err(ScanError::Malformed));
        assert_eq!(update_v1(&block(1 << 31, "a")), Err(ScanError::Malformed));
        assert_eq!(update_v1(&block(u32::MAX, "a")), Err(ScanError::Malformed));
        // A deleted range ending past it.
        let range = |clock: u32, len: u32| {
            let mut bytes = vec![0, 1, 1, 1];
            write_var(&mut bytes, clock.into());
            write_var(&mut bytes, len.into());
            bytes
        };
        assert_eq!(update_v1(&range(max - 1, 1)), Ok(()));
        assert_eq!(update_v1(&range(max, 1)), Err(ScanError::Malformed));
        assert_eq!(update_v1(&range(1 << 31, 1)), Err(ScanError::Malformed));
        // A state vector's clock.
        let mut vector = vec![1, 1];
        write_var(&mut vector, u64::from(max) + 1);
        assert_eq!(state_vector_v1(&vector), Err(ScanError::Malformed));
    }

    fn write_var(bytes: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            bytes.push((value as u8) | 0x80);
            value >>= 7;
        }
        bytes.push(value as u8);
    }

    #[test]
    fn mutated_and_random_updates_never_panic() {
        let seeds = [rich_update(), nested(40, false), nested(10, true)];
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..20_000 {
            let mut bytes = if round % 4 == 0 {
                let len = rng.gen_range(0..96);
                (0..len).map(|_| rng.gen()).collect()
            } else {
                seeds[round % seeds.len()].clone()
            };
            for _ in 0..rng.gen_range(1..6) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.gen_range(0..bytes.len());
                match rng.gen_range(0..4) {
                    0 => bytes[at] = rng.gen(),
                    1 => bytes.truncate(at),
                    2 => bytes.insert(at, rng.gen()),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let _ = state_vector_v1(&bytes);
            let _ = awareness_v1(&bytes);
            if update_v1(&bytes).is_ok() {
                // Passed the scan: decoding and applying may fail, never overflow or abort.
                if let Ok(update) = yrs::Update::decode_v1(&bytes) {
                    let doc = Doc::new();
                    let _ = doc.transact_mut().apply_update(update);
                    let _ = doc
                        .transact()
                        .encode_state_as_update_v1(&StateVector::default());
                }
            }
        }
    }

    use yrs::updates::decoder::Decode;
}
