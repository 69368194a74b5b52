//! Sans-IO WebSocket framing (RFC 6455), server side: client frames in, server frames out.
//!
//! The decoder takes bytes as they arrive, in pieces of any size, and keeps only what a frame
//! or message in progress needs: an idle connection's decoder holds no buffer at all, so a
//! transport can read into a buffer it borrows for the read alone. Every byte it keeps was
//! received, and a message is refused as soon as its header says it would pass the limit, so
//! a client cannot make it hold more than twice what it sent, up to the message limit.
//!
//! ```
//! use switchyard_engineio_proto::websocket::{FrameDecoder, Incoming};
//!
//! let mut decoder = FrameDecoder::new(1024);
//! // A masked text frame "hi", as a client sends it, arriving in two pieces.
//! let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
//! assert_eq!(decoder.decode(&frame[..3]), (3, Ok(None)));
//! assert_eq!(decoder.decode(&frame[3..]), (5, Ok(Some(Incoming::Text("hi".into())))));
//! ```

use bytes::Bytes;
use thiserror::Error;

use crate::Text;

/// Longest frame header a client sends: 2 bytes, a 64-bit length and a masking key.
const MAX_CLIENT_HEADER: usize = 14;
/// Longest frame header the server writes: 2 bytes and a 64-bit length, no mask.
pub const MAX_SERVER_HEADER: usize = 10;
/// Most bytes a control frame's payload may have.
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continues a fragmented message.
    Continuation,
    /// A text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// Closes the connection.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// What a client sent: a whole message, or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, checked to be UTF-8.
    Text(Text),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with the payload its pong must carry back.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The client closes, with its status code if it gave one. Nothing after it is read.
    Close(Option<u16>),
}

/// Why the client's frames cannot be read on: the connection must close with
/// [`close_code`](FrameError::close_code).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A frame the protocol forbids (code 1002).
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    /// A text message, or a close reason, that is not UTF-8 (code 1007).
    #[error("websocket text is not valid UTF-8")]
    InvalidUtf8,
    /// A message over the limit (code 1009).
    #[error("websocket message over the limit of {max} bytes")]
    TooBig {
        /// The limit.
        max: usize,
    },
}

impl FrameError {
    /// The status code of the close frame that answers this error.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::InvalidUtf8 => 1007,
            FrameError::TooBig { .. } => 1009,
        }
    }
}

/// The reason a server's close frame gives with `code`: a few words for the codes a
/// [`FrameError`] closes with, none for the others.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        1002 => "protocol error",
        1007 => "invalid utf-8",
        1008 => "policy violation",
        1009 => "message too big",
        _ => "",
    }
}

/// The frame being received: its header, and how much of its payload is still to come.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes received so far, which also places the mask.
    received: u64,
    /// Payload bytes still to come.
    remaining: u64,
}

/// Reads client frames into messages (see the [module](self) docs).
#[derive(Debug)]
pub struct FrameDecoder {
    max_message: usize,
    /// The header of the next frame, while it arrives in pieces.
    header: [u8; MAX_CLIENT_HEADER],
    header_len: u8,
    frame: Option<FrameInProgress>,
    /// The kind of the data message in progress, from its first frame to its last.
    message_kind: Option<OpCode>,
    /// The data message's payload so far; no capacity between messages.
    message: Vec<u8>,
    /// A control frame's payload so far; no capacity between control frames.
    control: Vec<u8>,
    /// Set once the client closed or broke the protocol: nothing more is read.
    done: bool,
}

impl FrameDecoder {
    /// A decoder that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> FrameDecoder {
        FrameDecoder {
            max_message,
            header: [0; MAX_CLIENT_HEADER],
            header_len: 0,
            frame: None,
            message_kind: None,
            message: Vec::new(),
            control: Vec::new(),
            done: false,
        }
    }

    /// Decodes from `input` up to the end of the next message or control frame.
    ///
    /// Returns how many bytes it took, and what they completed: `Ok(None)` when it took all of
    /// `input` and still waits for more. Call again with the rest of `input` after a message.
    /// After a close or an error, it takes everything and returns `Ok(None)`.
    pub fn decode(&mut self, input: &[u8]) -> (usize, Result<Option<Incoming>, FrameError>) {
        if self.done {
            return (input.len(), Ok(None));
        }
        let mut taken = 0;
        loop {
            let frame = match self.frame {
                Some(frame) => frame,
                None => {
                    taken += self.take_header(&input[taken..]);
                    let Some(header) = self.parsed_header() else {
                        return (taken, Ok(None));
                    };
                    self.header_len = 0;
                    match self.start_frame(header) {
                        Ok(frame) => frame,
                        Err(error) => return (input.len(), Err(self.fail(error))),
                    }
                }
            };
            let available = &input[taken..];
            let chunk_len = usize::try_from(frame.remaining)
                .unwrap_or(usize::MAX)
                .min(available.len());
            let target = if frame.opcode.is_control() {
                &mut self.control
            } else {
                &mut self.message
            };
            let start = target.len();
            target.extend_from_slice(&available[..chunk_len]);
            unmask(&mut target[start..], frame.mask, frame.received);
            taken += chunk_len;
            let remaining = frame.remaining - chunk_len as u64;
            if remaining > 0 {
                self.frame = Some(FrameInProgress {
                    received: frame.received + chunk_len as u64,
                    remaining,
                    ..frame
                });
                return (taken, Ok(None));
            }
            self.frame = None;
            match self.finish_frame(frame) {
                Ok(None) => continue,
                Ok(Some(incoming)) => {
                    if matches!(incoming, Incoming::Close(_)) {
                        self.done = true;
                        return (input.len(), Ok(Some(incoming)));
                    }
                    return (taken, Ok(Some(incoming)));
                }
                Err(error) => return (input.len(), Err(self.fail(error))),
            }
        }
    }

    /// Takes header bytes from `input` until the header is whole; returns how many.
    fn take_header(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            let have = usize::from(self.header_len);
            let need = header_len(&self.header[..have]);
            if have >= need || taken == input.len() {
                return taken;
            }
            let count = (need - have).min(input.len() - taken);
            self.header[have..have + count].copy_from_slice(&input[taken..taken + count]);
            self.header_len += count as u8;
            taken += count;
        }
    }

    /// The header, once all of its bytes are here.
    fn parsed_header(&self) -> Option<Header> {
        let bytes = &self.header[..usize::from(self.header_len)];
        if bytes.len() < header_len(bytes) {
            return None;
        }
        let (length, mask_at) = match bytes[1] & 0x7F {
            126 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut length = [0; 8];
                length.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(length), 10)
            }
            short => (u64::from(short), 2),
        };
        let masked = bytes[1] & 0x80 != 0;
        let mut mask = [0; 4];
        if masked {
            mask.copy_from_slice(&bytes[mask_at..mask_at + 4]);
        }
        Some(Header {
            first: bytes[0],
            masked,
            mask,
            length,
        })
    }

    /// Checks a frame's header against the protocol and the limit.
    fn start_frame(&mut self, header: Header) -> Result<FrameInProgress, FrameError> {
        if header.first & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let opcode =
            OpCode::from_bits(header.first & 0x0F).ok_or(FrameError::Protocol("unknown opcode"))?;
        let fin = header.first & 0x80 != 0;
        if !header.masked {
            return Err(FrameError::Protocol("unmasked client frame"));
        }
        if header.length >> 63 != 0 {
            return Err(FrameError::Protocol("frame length with its top bit set"));
        }
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::Protocol("fragmented control frame"));
            }
            if header.length > MAX_CONTROL_PAYLOAD {
                return Err(FrameError::Protocol("control frame over 125 bytes"));
            }
        } else {
            match (opcode, self.message_kind) {
                (OpCode::Continuation, None) => {
                    return Err(FrameError::Protocol("continuation with no message started"))
                }
                (OpCode::Text | OpCode::Binary, Some(_)) => {
                    return Err(FrameError::Protocol(
                        "new message before the fragmented one ended",
                    ))
                }
                (OpCode::Text | OpCode::Binary, None) => self.message_kind = Some(opcode),
                _ => {}
            }
            let total = (self.message.len() as u64).saturating_add(header.length);
            if total > self.max_message as u64 {
                return Err(FrameError::TooBig {
                    max: self.max_message,
                });
            }
        }
        Ok(FrameInProgress {
            opcode,
            fin,
            mask: header.mask,
            received: 0,
            remaining: header.length,
        })
    }

    /// What a frame whose payload is all here completes.
    fn finish_frame(&mut self, frame: FrameInProgress) -> Result<Option<Incoming>, FrameError> {
        match frame.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping(Bytes::from(std::mem::take(
                &mut self.control,
            ))))),
            OpCode::Pong => {
                self.control = Vec::new();
                Ok(Some(Incoming::Pong))
            }
            OpCode::Close => {
                let payload = std::mem::take(&mut self.control);
                close_code(&payload).map(|code| Some(Incoming::Close(code)))
            }
            _ if !frame.fin => Ok(None),
            _ => {
                let mut payload = std::mem::take(&mut self.message);
                match self.message_kind.take() {
                    Some(OpCode::Text) => match Text::from_utf8(Bytes::from(payload)) {
                        Ok(text) => Ok(Some(Incoming::Text(text))),
                        Err(_) => Err(FrameError::InvalidUtf8),
                    },
                    _ => {
                        // A message that arrived in pieces grew its buffer by doubling; the
                        // application may keep it, so it keeps no more than its bytes.
                        payload.shrink_to_fit();
                        Ok(Some(Incoming::Binary(Bytes::from(payload))))
                    }
                }
            }
        }
    }

    /// Stops reading for good, releasing what was kept.
    fn fail(&mut self, error: FrameError) -> FrameError {
        self.done = true;
        self.message = Vec::new();
        self.control = Vec::new();
        error
    }
}

/// A frame header's fields.
struct Header {
    first: u8,
    masked: bool,
    mask: [u8; 4],
    length: u64,
}

/// How long a header is, from what of it is here (at least its first two bytes decide).
fn header_len(bytes: &[u8]) -> usize {
    let Some(second) = bytes.get(1) else {
        return 2;
    };
    let length_bytes = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask_bytes = if second & 0x80 != 0 { 4 } else { 0 };
    2 + length_bytes + mask_bytes
}

/// Unmasks `data`, which starts `offset` bytes into its frame's payload.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    let mask = [
        mask[shift],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let key = u32::from_ne_bytes(mask);
    let mut words = data.chunks_exact_mut(4);
    for word in &mut words {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) ^ key;
        word.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, key) in words.into_remainder().iter_mut().zip(mask) {
        *byte ^= key;
    }
}

/// The status code of a close frame's payload; a payload of one byte, a code no endpoint may
/// send, or a reason that is not UTF-8 breaks the protocol.
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame of one byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(FrameError::Protocol("close code no endpoint may send"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Appends the header of a server frame (final, unmasked) with a payload of `len` bytes.
pub fn encode_header(opcode: OpCode, len: usize, out: &mut Vec<u8>) {
    out.push(0x80 | opcode.bits());
    match len {
        0..=125 => out.push(len as u8),
        126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends a whole server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    encode_header(opcode, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame, with `code` and `reason` when a code is given. A reason longer than
/// a control frame allows is cut at a character boundary.
pub fn encode_close(code: Option<u16>, reason: &str, out: &mut Vec<u8>) {
    let Some(code) = code else {
        encode_frame(OpCode::Close, &[], out);
        return;
    };
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD as usize - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_header(OpCode::Close, 2 + end, out);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: `first` byte as given, masked with `mask`.
    fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Everything `decoder` makes of `input`, fed in pieces of `piece` bytes.
    fn decode_all(
        decoder: &mut FrameDecoder,
        input: &[u8],
        piece: usize,
    ) -> Vec<Result<Incoming, FrameError>> {
        let mut out = Vec::new();
        for mut chunk in input.chunks(piece) {
            while !chunk.is_empty() {
                let (taken, result) = decoder.decode(chunk);
                assert!(
                    taken > 0 && taken <= chunk.len(),
                    "took {taken} of {}",
                    chunk.len()
                );
                chunk = &chunk[taken..];
                match result {
                    Ok(Some(incoming)) => out.push(Ok(incoming)),
                    Ok(None) => assert!(chunk.is_empty(), "waits with input left"),
                    Err(error) => out.push(Err(error)),
                }
            }
        }
        out
    }

    #[test]
    fn a_masked_text_frame_is_one_message() {
        let frame = client_frame(0x81, b"4hello", MASK);
        let mut decoder = FrameDecoder::new(100);
        assert_eq!(
            decode_all(&mut decoder, &frame, frame.len()),
            vec![Ok(Incoming::Text("4hello".into()))]
        );
    }

    #[test]
    fn frames_in_pieces_of_any_size_decode_the_same() {
        let mut input = client_frame(0x82, &[7; 300], MASK);
        input.extend(client_frame(0x01, b"he", MASK));
        input.extend(client_frame(0x89, b"ping!", [1, 2, 3, 4]));
        input.extend(client_frame(0x80, b"llo", [9, 8, 7, 6]));
        input.extend(client_frame(0x8A, b"", MASK));
        let expected = vec![
            Ok(Incoming::Binary(Bytes::from(vec![7; 300]))),
            Ok(Incoming::Ping(Bytes::from_static(b"ping!"))),
            Ok(Incoming::Text("hello".into())),
            Ok(Incoming::Pong),
        ];
        for piece in 1..=input.len() {
            let mut decoder = FrameDecoder::new(1000);
            assert_eq!(
                decode_all(&mut decoder, &input, piece),
                expected,
                "piece {piece}"
            );
        }
    }

    #[test]
    fn a_64_bit_length_is_read() {
        let payload = vec![b'x'; 70_000];
        let frame = client_frame(0x81, &payload, MASK);
        assert_eq!(frame[1], 0x80 | 127);
        let mut decoder = FrameDecoder::new(100_000);
        assert_eq!(
            decode_all(&mut decoder, &frame, 4096),
            vec![Ok(Incoming::Text(Text::from(
                String::from_utf8(payload).unwrap()
            )))]
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header() {
        let mut decoder = FrameDecoder::new(10);
        let frame = client_frame(0x82, &[0; 11], MASK);
        // The header alone is enough: nothing of the payload is kept.
        let (_, result) = decoder.decode(&frame[..6]);
        assert_eq!(result, Err(FrameError::TooBig { max: 10 }));
        assert_eq!(FrameError::TooBig { max: 10 }.close_code(), 1009);
        assert_eq!(decoder.message.capacity(), 0);
    }

    #[test]
    fn fragments_that_each_fit_but_sum_over_the_limit_are_refused() {
        let mut input = client_frame(0x01, &[b'a'; 6], MASK);
        input.extend(client_frame(0x80, &[b'a'; 6], MASK));
        let mut decoder = FrameDecoder::new(10);
        assert_eq!(
            decode_all(&mut decoder, &input, input.len()),
            vec![Err(FrameError::TooBig { max: 10 })]
        );
    }

    #[test]
    fn a_claimed_length_keeps_only_what_arrived() {
        let mut decoder = FrameDecoder::new(1 << 20);
        let frame = client_frame(0x82, &vec![1; 1 << 20], MASK);
        assert_eq!(decoder.decode(&frame[..14 + 10]), (24, Ok(None)));
        assert!(
            decoder.message.capacity() < 64,
            "{}",
            decoder.message.capacity()
        );
    }

    #[test]
    fn protocol_violations_are_refused_with_1002() {
        let unmasked = [0x81, 0x01, b'a'];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked", unmasked.to_vec()),
            ("rsv1", client_frame(0xC1, b"a", MASK)),
            ("rsv3", client_frame(0x91, b"a", MASK)),
            ("opcode 3", client_frame(0x83, b"a", MASK)),
            ("opcode 11", client_frame(0x8B, b"", MASK)),
            ("long ping", client_frame(0x89, &[0; 126], MASK)),
            ("fragmented ping", client_frame(0x09, b"", MASK)),
            ("lone continuation", client_frame(0x80, b"a", MASK)),
            ("close of one byte", client_frame(0x88, &[3], MASK)),
            (
                "close code 1005",
                client_frame(0x88, &1005u16.to_be_bytes(), MASK),
            ),
            (
                "close code 999",
                client_frame(0x88, &999u16.to_be_bytes(), MASK),
            ),
            ("new message mid-fragments", {
                let mut input = client_frame(0x01, b"a", MASK);
                input.extend(client_frame(0x81, b"b", MASK));
                input
            }),
        ];
        for (name, input) in cases {
            let mut decoder = FrameDecoder::new(1000);
            let results = decode_all(&mut decoder, &input, input.len());
            assert!(
                matches!(results.as_slice(), [Err(error @ FrameError::Protocol(_))] if error.close_code() == 1002),
                "{name}: {results:?}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_refused_with_1007() {
        let mut decoder = FrameDecoder::new(100);
        let frame = client_frame(0x81, &[0xff, 0xfe], MASK);
        let results = decode_all(&mut decoder, &frame, frame.len());
        assert_eq!(results, vec![Err(FrameError::InvalidUtf8)]);
        assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
        let mut close = 1000u16.to_be_bytes().to_vec();
        close.push(0xff);
        let mut decoder = FrameDecoder::new(100);
        let frame = client_frame(0x88, &close, MASK);
        let results = decode_all(&mut decoder, &frame, frame.len());
        assert_eq!(results, vec![Err(FrameError::InvalidUtf8)]);
    }

    #[test]
    fn nothing_is_read_after_a_close() {
        let mut input = client_frame(0x88, &1000u16.to_be_bytes(), MASK);
        input.extend(client_frame(0x81, b"late", MASK));
        let mut decoder = FrameDecoder::new(100);
        assert_eq!(
            decode_all(&mut decoder, &input, input.len()),
            vec![Ok(Incoming::Close(Some(1000)))]
        );
        let frame = client_frame(0x88, b"", MASK);
        let mut decoder = FrameDecoder::new(100);
        assert_eq!(
            decode_all(&mut decoder, &frame, 1),
            vec![Ok(Incoming::Close(None))]
        );
    }

    #[test]
    fn an_idle_decoder_keeps_no_buffer() {
        let mut decoder = FrameDecoder::new(1000);
        let mut input = client_frame(0x01, &[b'a'; 200], MASK);
        input.extend(client_frame(0x89, &[1; 100], MASK));
        input.extend(client_frame(0x80, &[b'b'; 200], MASK));
        assert_eq!(decode_all(&mut decoder, &input, 7).len(), 2);
        assert_eq!(decoder.message.capacity(), 0);
        assert_eq!(decoder.control.capacity(), 0);
    }

    #[test]
    fn server_frames_are_final_unmasked_and_sized_by_the_shortest_length() {
        for (len, header) in [
            (0, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65_535, vec![0x81, 126, 0xff, 0xff]),
            (65_536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            encode_header(OpCode::Text, len, &mut out);
            assert_eq!(out, header, "length {len}");
            assert!(out.len() <= MAX_SERVER_HEADER);
        }
    }

    #[test]
    fn a_close_frame_carries_its_code_and_a_reason_cut_to_fit() {
        let mut out = Vec::new();
        encode_close(Some(1009), "message too big", &mut out);
        assert_eq!(&out[..4], &[0x88, 17, 0x03, 0xF1]);
        assert_eq!(&out[4..], b"message too big");
        let mut out = Vec::new();
        encode_close(Some(1000), &"é".repeat(100), &mut out);
        assert_eq!(usize::from(out[1]), out.len() - 2);
        assert!(out.len() - 2 <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        let mut out = Vec::new();
        encode_close(None, "ignored", &mut out);
        assert_eq!(out, [0x88, 0]);
    }
}
