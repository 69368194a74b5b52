//! The default (text) parser: `<type>[<count>-][<nsp>,][<id>][<json>]` plus binary messages.

use bytes::Bytes;
use serde_json::Value;

use crate::error::ParseError;
use crate::packet::{assemble, check_placeholders, Packet, PacketType};

/// The default limit on attachments per binary packet used by [`JsonDecoder::default`].
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// Appends the text form of `packet` to `out` (which is not cleared, so an Engine.IO type byte
/// may already be in it).
///
/// The `/` namespace (or an empty one) is omitted, any other is written followed by `,`. An
/// EVENT or ACK with attachments becomes BINARY_EVENT or BINARY_ACK with its attachment count;
/// the caller sends the attachments themselves as separate binary messages, in order.
pub fn encode_json(packet: &Packet, out: &mut Vec<u8>) {
    let packet_type = packet.packet_type();
    out.push(b'0' + packet_type.as_u8());
    if packet_type.is_binary() {
        write_decimal(out, packet.attachments().len() as u64);
        out.push(b'-');
    }
    let nsp = packet.nsp();
    if !nsp.is_empty() && nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = packet.id() {
        write_decimal(out, id);
    }
    if let Some(data) = packet.data() {
        // Serializing a `Value` into a `Vec` cannot fail: the writer is infallible and every
        // map key is a string.
        let written = serde_json::to_writer(&mut *out, data);
        debug_assert!(written.is_ok());
    }
}

/// Writes `n` in decimal without allocating.
fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[start..]);
}

/// A packet waiting for its binary attachments.
#[derive(Debug)]
struct Pending {
    packet: Packet,
    expected: usize,
    /// Bytes of the attachments received so far.
    bytes: usize,
}

/// Decoder for the text parser, fed one Engine.IO message at a time (without the Engine.IO
/// `4` message type).
///
/// A BINARY_EVENT or BINARY_ACK packet is held until all its attachments have arrived as binary
/// messages. After any error the decoder is back in its initial state; the caller is expected
/// to close the connection, as the reference server does.
#[derive(Debug)]
pub struct JsonDecoder {
    max_attachments: usize,
    max_attachment_bytes: usize,
    /// Boxed: a connection holds its decoder for its whole life, and most never send a
    /// binary packet.
    pending: Option<Box<Pending>>,
}

impl Default for JsonDecoder {
    /// A decoder accepting up to [`DEFAULT_MAX_ATTACHMENTS`] attachments per packet.
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl JsonDecoder {
    /// A decoder rejecting binary packets that announce more than `max_attachments`
    /// attachments.
    pub fn new(max_attachments: usize) -> Self {
        Self {
            max_attachments,
            max_attachment_bytes: usize::MAX,
            pending: None,
        }
    }

    /// Bounds the bytes of all attachments of one packet (default: no bound beyond the count).
    /// A peer that announces attachments and sends them one by one makes the decoder hold
    /// them until the last arrives: without this bound, `max_attachments` messages of the
    /// largest size a transport accepts.
    pub fn with_max_attachment_bytes(mut self, bytes: usize) -> Self {
        self.max_attachment_bytes = bytes;
        self
    }

    /// The limit on attachments per packet.
    pub fn max_attachments(&self) -> usize {
        self.max_attachments
    }

    /// How many attachments the pending binary packet still waits for (0 when none is pending).
    pub fn pending_attachments(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(0, |p| p.expected - p.packet.attachments().len())
    }

    /// Drops a pending binary packet, if any.
    pub fn reset(&mut self) {
        self.pending = None;
    }

    /// Decodes a text message.
    ///
    /// Returns the packet, or `None` when it is a binary packet whose attachments are still to
    /// come. A text message while attachments are pending is an error.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, ParseError> {
        let remaining = self.pending_attachments();
        if remaining > 0 {
            self.pending = None;
            return Err(ParseError::UnexpectedText { remaining });
        }
        let (packet, expected) = parse_text(text, self.max_attachments)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        let mut packet = packet;
        if let Packet::Event { attachments, .. } | Packet::Ack { attachments, .. } = &mut packet {
            attachments.reserve_exact(expected);
        }
        self.pending = Some(Box::new(Pending {
            packet,
            expected,
            bytes: 0,
        }));
        Ok(None)
    }

    /// Decodes a binary message: the next attachment of the pending binary packet.
    ///
    /// Returns the complete packet once its last attachment has arrived, `None` before. A
    /// binary message with no binary packet pending is an error.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, ParseError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(ParseError::UnexpectedBinary);
        };
        pending.bytes = pending.bytes.saturating_add(data.len());
        if pending.bytes > self.max_attachment_bytes {
            self.pending = None;
            return Err(ParseError::AttachmentsTooLarge {
                max: self.max_attachment_bytes,
            });
        }
        if let Packet::Event { attachments, .. } | Packet::Ack { attachments, .. } =
            &mut pending.packet
        {
            attachments.push(data);
            if attachments.len() < pending.expected {
                return Ok(None);
            }
        }
        Ok(self.pending.take().map(|p| p.packet))
    }
}

/// Parses one text packet; returns it with the number of attachments still to come.
fn parse_text(text: &str, max_attachments: usize) -> Result<(Packet, usize), ParseError> {
    let bytes = text.as_bytes();
    let first = *bytes.first().ok_or(ParseError::Empty)?;
    let packet_type = first
        .checked_sub(b'0')
        .and_then(PacketType::from_u8)
        .ok_or_else(|| {
            let c = text.chars().next().unwrap_or_default();
            ParseError::UnknownType(c.escape_debug().to_string())
        })?;
    let mut pos = 1;

    let mut attachments = 0;
    if packet_type.is_binary() {
        let digits = count_digits(&bytes[pos..]);
        if digits == 0 || bytes.get(pos + digits) != Some(&b'-') {
            return Err(ParseError::InvalidAttachmentCount);
        }
        attachments = text[pos..pos + digits]
            .parse::<usize>()
            .unwrap_or(usize::MAX);
        if attachments > max_attachments {
            return Err(ParseError::TooManyAttachments {
                count: attachments,
                max: max_attachments,
            });
        }
        pos += digits + 1;
    }

    // The namespace is present only when `/` follows; it runs up to the first `,` (or the end).
    let nsp = if bytes.get(pos) == Some(&b'/') {
        match bytes[pos..].iter().position(|&b| b == b',') {
            Some(len) => {
                let nsp = &text[pos..pos + len];
                pos += len + 1;
                nsp
            }
            None => {
                let nsp = &text[pos..];
                pos = bytes.len();
                nsp
            }
        }
    } else {
        if !packet_type.is_binary() && pos == 1 {
            let digits = count_digits(&bytes[pos..]);
            if digits > 0 && bytes.get(pos + digits) == Some(&b'-') {
                return Err(ParseError::UnexpectedAttachmentCount(packet_type));
            }
        }
        "/"
    };

    let digits = count_digits(&bytes[pos..]);
    let id = if digits > 0 {
        let id = text[pos..pos + digits]
            .parse::<u64>()
            .map_err(|_| ParseError::IdOverflow)?;
        pos += digits;
        Some(id)
    } else {
        None
    };

    let rest = &text[pos..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(ParseError::InvalidJson)?)
    };

    let packet = assemble(packet_type, nsp.to_owned(), id, data)?;
    if let Packet::Event { data, .. } | Packet::Ack { data, .. } = &packet {
        // A placeholder key is written either verbatim or with an escape sequence: when the
        // text has neither, there is nothing to check.
        if rest.contains("_placeholder") || rest.contains('\\') {
            check_placeholders(data, attachments)?;
        }
    }
    Ok((packet, attachments))
}

/// The length of the run of ASCII digits at the start of `bytes`.
fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::placeholder;
    use serde_json::json;

    fn encode(packet: &Packet) -> String {
        let mut out = Vec::new();
        encode_json(packet, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn decode(text: &str) -> Result<Option<Packet>, ParseError> {
        JsonDecoder::default().decode_text(text)
    }

    /// Checks both directions for a packet without attachments.
    fn both_ways(text: &str, packet: Packet) {
        assert_eq!(encode(&packet), text);
        assert_eq!(decode(text).ok().flatten(), Some(packet));
    }

    fn event(nsp: &str, id: Option<u64>, data: Value) -> Packet {
        Packet::Event {
            nsp: nsp.into(),
            id,
            data,
            attachments: vec![],
        }
    }

    #[test]
    fn connect() {
        both_ways("0", Packet::connect("/", None));
        both_ways("0/admin,", Packet::connect("/admin", None));
        both_ways(
            "0/admin,{\"token\":\"123\"}",
            Packet::connect("/admin", Some(json!({"token": "123"}))),
        );
        both_ways(
            "0{\"sid\":\"oSO0OpakMV_3jnilAAAA\"}",
            Packet::connect("/", Some(json!({"sid": "oSO0OpakMV_3jnilAAAA"}))),
        );
        // The trailing comma is optional when nothing follows the namespace.
        assert_eq!(
            decode("0/admin").ok().flatten(),
            Some(Packet::connect("/admin", None))
        );
    }

    #[test]
    fn disconnect() {
        both_ways("1", Packet::disconnect("/"));
        both_ways("1/admin,", Packet::disconnect("/admin"));
        assert_eq!(
            decode("1/admin").ok().flatten(),
            Some(Packet::disconnect("/admin"))
        );
    }

    #[test]
    fn event_packets() {
        both_ways("2[\"hello\",1]", event("/", None, json!(["hello", 1])));
        both_ways(
            "2/admin,456[\"project:delete\",123]",
            event("/admin", Some(456), json!(["project:delete", 123])),
        );
        both_ways("212[\"foo\"]", event("/", Some(12), json!(["foo"])));
        both_ways("2[42,\"x\"]", event("/", None, json!([42, "x"])));
        both_ways(
            "2/chat/room,[\"é\",{\"a\":[null,true,1.5]}]",
            event("/chat/room", None, json!(["é", {"a": [null, true, 1.5]}])),
        );
        both_ways(
            "2/admin,18446744073709551615[\"max\"]",
            event("/admin", Some(u64::MAX), json!(["max"])),
        );
        assert_eq!(
            encode(&Packet::event("/", "hello", vec![json!(1)])),
            "2[\"hello\",1]"
        );
        // An empty namespace is written like `/`.
        assert_eq!(encode(&event("", None, json!(["a"]))), "2[\"a\"]");
        // Whitespace around the JSON is JSON's business.
        assert_eq!(
            decode("2 [\"a\"] ").ok().flatten(),
            Some(event("/", None, json!(["a"])))
        );
    }

    #[test]
    fn ack_packets() {
        both_ways("3/admin,456[]", Packet::ack("/admin", 456, vec![]));
        both_ways(
            "312[\"bar\",2]",
            Packet::ack("/", 12, vec![json!("bar"), json!(2)]),
        );
    }

    #[test]
    fn connect_error() {
        both_ways(
            "4{\"message\":\"Not authorized\"}",
            Packet::connect_error("/", json!({"message": "Not authorized"})),
        );
        both_ways(
            "4/ns,{\"message\":\"Invalid namespace\"}",
            Packet::connect_error("/ns", json!({"message": "Invalid namespace"})),
        );
        both_ways(
            "4\"Not authorized\"",
            Packet::connect_error("/", json!("Not authorized")),
        );
    }

    #[test]
    fn encode_appends() {
        let mut out = b"4".to_vec();
        encode_json(&Packet::connect("/", None), &mut out);
        encode_json(&Packet::ack("/a", 1, vec![]), &mut out);
        assert_eq!(out, b"403/a,1[]");
    }

    #[test]
    fn binary_event() {
        let bin = Bytes::from_static(&[1, 2, 3]);
        let packet = Packet::Event {
            nsp: "/".into(),
            id: None,
            data: json!(["hello", placeholder(0)]),
            attachments: vec![bin.clone()],
        };
        assert_eq!(
            encode(&packet),
            "51-[\"hello\",{\"_placeholder\":true,\"num\":0}]"
        );
        let mut d = JsonDecoder::default();
        assert_eq!(
            d.decode_text("51-[\"hello\",{\"_placeholder\":true,\"num\":0}]")
                .ok(),
            Some(None)
        );
        assert_eq!(d.pending_attachments(), 1);
        assert_eq!(d.decode_binary(bin).ok(), Some(Some(packet)));
        assert_eq!(d.pending_attachments(), 0);
    }

    #[test]
    fn binary_ack_with_namespace_and_two_attachments() {
        let (a, b) = (Bytes::from_static(b"a"), Bytes::from_static(b"bb"));
        let text =
            "62-/admin,456[{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]";
        let packet = Packet::Ack {
            nsp: "/admin".into(),
            id: 456,
            data: json!([placeholder(1), placeholder(0)]),
            attachments: vec![a.clone(), b.clone()],
        };
        assert_eq!(encode(&packet), text);
        let mut d = JsonDecoder::default();
        assert_eq!(d.decode_text(text).ok(), Some(None));
        assert_eq!(d.decode_binary(a).ok(), Some(None));
        assert_eq!(d.pending_attachments(), 1);
        assert_eq!(d.decode_binary(b).ok(), Some(Some(packet)));
        // The decoder is ready for the next packet.
        assert_eq!(
            d.decode_text("2[\"x\"]").ok().flatten(),
            Some(event("/", None, json!(["x"])))
        );
    }

    #[test]
    fn binary_event_with_id_and_zero_attachments() {
        let mut d = JsonDecoder::default();
        assert_eq!(
            d.decode_text("50-/a,7[\"e\"]").ok().flatten(),
            Some(event("/a", Some(7), json!(["e"])))
        );
        assert_eq!(d.pending_attachments(), 0);
    }

    #[test]
    fn state_machine_errors() {
        let mut d = JsonDecoder::default();
        assert!(matches!(
            d.decode_binary(Bytes::from_static(b"x")),
            Err(ParseError::UnexpectedBinary)
        ));
        assert_eq!(
            d.decode_text("52-[\"a\",{\"_placeholder\":true,\"num\":0}]")
                .ok(),
            Some(None)
        );
        assert_eq!(d.decode_binary(Bytes::from_static(b"x")).ok(), Some(None));
        assert!(matches!(
            d.decode_text("2[\"b\"]"),
            Err(ParseError::UnexpectedText { remaining: 1 })
        ));
        // The error dropped the pending packet.
        assert_eq!(d.pending_attachments(), 0);
        assert!(matches!(
            d.decode_binary(Bytes::from_static(b"y")),
            Err(ParseError::UnexpectedBinary)
        ));
        assert_eq!(
            d.decode_text("2[\"b\"]").ok().flatten(),
            Some(event("/", None, json!(["b"])))
        );
        // An invalid binary header leaves nothing pending either.
        assert!(d.decode_text("51-[\"connect\"]").is_err());
        assert!(matches!(
            d.decode_binary(Bytes::new()),
            Err(ParseError::UnexpectedBinary)
        ));
        // reset() drops a pending packet.
        assert_eq!(d.decode_text("51-[\"a\"]").ok(), Some(None));
        d.reset();
        assert_eq!(d.pending_attachments(), 0);
    }

    #[test]
    fn attachment_limit() {
        let mut d = JsonDecoder::new(2);
        assert_eq!(d.max_attachments(), 2);
        assert_eq!(d.decode_text("52-[\"a\"]").ok(), Some(None));
        d.reset();
        assert!(matches!(
            d.decode_text("53-[\"a\"]"),
            Err(ParseError::TooManyAttachments { count: 3, max: 2 })
        ));
        assert_eq!(JsonDecoder::default().max_attachments(), 10);
        assert!(matches!(
            decode("611-/x,1[]"),
            Err(ParseError::TooManyAttachments { count: 11, max: 10 })
        ));
        assert!(matches!(
            decode("599999999999999999999999-[\"a\"]"),
            Err(ParseError::TooManyAttachments {
                count: usize::MAX,
                max: 10
            })
        ));
        assert!(matches!(
            JsonDecoder::new(0).decode_text("51-[\"a\"]"),
            Err(ParseError::TooManyAttachments { count: 1, max: 0 })
        ));
    }

    #[test]
    fn header_errors() {
        assert!(matches!(decode(""), Err(ParseError::Empty)));
        assert!(matches!(decode("7"), Err(ParseError::UnknownType(t)) if t == "7"));
        assert!(matches!(decode("a[]"), Err(ParseError::UnknownType(t)) if t == "a"));
        assert!(matches!(decode("é"), Err(ParseError::UnknownType(t)) if t == "é"));
        assert!(matches!(decode("\n"), Err(ParseError::UnknownType(t)) if t == "\\n"));
        for text in [
            "5",
            "6",
            "5-[\"a\"]",
            "51",
            "51[\"a\"]",
            "5a-[\"a\"]",
            "5/a,1-[]",
        ] {
            assert!(
                matches!(decode(text), Err(ParseError::InvalidAttachmentCount)),
                "{text}"
            );
        }
        assert!(matches!(
            decode("21-[\"a\"]"),
            Err(ParseError::UnexpectedAttachmentCount(PacketType::Event))
        ));
        assert!(matches!(
            decode("01-{}"),
            Err(ParseError::UnexpectedAttachmentCount(PacketType::Connect))
        ));
        assert!(matches!(
            decode("2/a,18446744073709551616[\"a\"]"),
            Err(ParseError::IdOverflow)
        ));
    }

    #[test]
    fn forty_five_is_an_error() {
        // `45` is a CONNECT_ERROR with id 5 and no payload: rejected at once.
        assert!(matches!(
            decode("45"),
            Err(ParseError::UnexpectedId(PacketType::ConnectError))
        ));
        assert!(matches!(
            decode("4"),
            Err(ParseError::MissingPayload(PacketType::ConnectError))
        ));
        assert!(matches!(
            decode("5"),
            Err(ParseError::InvalidAttachmentCount)
        ));
    }

    #[test]
    fn payload_errors() {
        let cases: &[(&str, &str)] = &[
            ("0[]", "invalid CONNECT payload: expected an object"),
            ("0\"a\"", "invalid CONNECT payload: expected an object"),
            ("0null", "invalid CONNECT payload: expected an object"),
            ("01{}", "CONNECT packet cannot carry an ack id"),
            ("1{}", "DISCONNECT packet cannot carry a payload"),
            ("1/a,[]", "DISCONNECT packet cannot carry a payload"),
            ("12", "DISCONNECT packet cannot carry an ack id"),
            ("2", "EVENT packet requires a payload"),
            ("2/a,", "EVENT packet requires a payload"),
            ("21", "EVENT packet requires a payload"),
            ("2[]", "invalid EVENT payload: expected a non-empty array"),
            ("2{}", "invalid EVENT payload: expected a non-empty array"),
            (
                "2\"a\"",
                "invalid EVENT payload: expected a non-empty array",
            ),
            ("2[null]", "event name must be a string or a number"),
            ("2[[\"a\"]]", "event name must be a string or a number"),
            ("2[\"connect\"]", "reserved event name \"connect\""),
            (
                "2[\"connect_error\"]",
                "reserved event name \"connect_error\"",
            ),
            ("2[\"disconnect\"]", "reserved event name \"disconnect\""),
            (
                "2[\"disconnecting\"]",
                "reserved event name \"disconnecting\"",
            ),
            ("2[\"newListener\"]", "reserved event name \"newListener\""),
            (
                "2[\"removeListener\"]",
                "reserved event name \"removeListener\"",
            ),
            ("3[]", "ACK packet without an ack id"),
            ("3/a,[]", "ACK packet without an ack id"),
            ("31", "ACK packet requires a payload"),
            ("31{}", "invalid ACK payload: expected an array"),
            ("31\"a\"", "invalid ACK payload: expected an array"),
            (
                "4[]",
                "invalid CONNECT_ERROR payload: expected an object or a string",
            ),
            ("41{}", "CONNECT_ERROR packet cannot carry an ack id"),
            ("51-", "EVENT packet requires a payload"),
            ("61-1", "ACK packet requires a payload"),
            ("61-[]", "ACK packet without an ack id"),
        ];
        for (text, message) in cases {
            let got = decode(text).map_err(|e| e.to_string());
            assert_eq!(got, Err((*message).to_owned()), "{text}");
        }
    }

    #[test]
    fn json_errors() {
        for text in [
            "2[\"a\"]x",
            "2[\"a\"]]",
            "2[\"a\"",
            "0{}{}",
            "2admin,[\"a\"]",
            "2 ",
            "2/a,b[\"a\"]",
            "2-[\"a\"]",
            "0{\"a\":1,}",
        ] {
            assert!(
                matches!(decode(text), Err(ParseError::InvalidJson(_))),
                "{text}"
            );
        }
        // Without a comma, everything after `/` is the namespace: no payload remains.
        assert!(matches!(
            decode("2/a[\"x\"]"),
            Err(ParseError::MissingPayload(PacketType::Event))
        ));
        // serde_json's nesting limit guards the stack.
        let deep = format!("2[\"a\",{}{}]", "[".repeat(200), "]".repeat(200));
        assert!(matches!(decode(&deep), Err(ParseError::InvalidJson(_))));
    }

    #[test]
    fn placeholder_errors() {
        assert!(matches!(
            decode("2[\"a\",{\"_placeholder\":true,\"num\":0}]"),
            Err(ParseError::PlaceholderOutOfRange { num: 0, count: 0 })
        ));
        assert!(matches!(
            decode("3/a,1[{\"\\u005fplaceholder\":true,\"num\":0}]"),
            Err(ParseError::PlaceholderOutOfRange { num: 0, count: 0 })
        ));
        assert!(matches!(
            decode("51-[\"a\",{\"x\":[{\"_placeholder\":true,\"num\":1}]}]"),
            Err(ParseError::PlaceholderOutOfRange { num: 1, count: 1 })
        ));
        for num in ["-1", "0.5", "\"0\"", "null"] {
            let text = format!("51-[\"a\",{{\"_placeholder\":true,\"num\":{num}}}]");
            assert!(
                matches!(decode(&text), Err(ParseError::InvalidPlaceholder)),
                "{text}"
            );
        }
        assert!(matches!(
            decode("51-[\"a\",{\"_placeholder\":true}]"),
            Err(ParseError::InvalidPlaceholder)
        ));
        // Not marked `true`: an ordinary object.
        assert_eq!(
            decode("2[\"a\",{\"_placeholder\":false,\"num\":0}]")
                .ok()
                .flatten(),
            Some(event(
                "/",
                None,
                json!(["a", {"_placeholder": false, "num": 0}])
            ))
        );
        // CONNECT data is not binary-aware: placeholders there are plain objects.
        assert_eq!(
            decode("0{\"_placeholder\":true,\"num\":4}").ok().flatten(),
            Some(Packet::connect(
                "/",
                Some(json!({"_placeholder": true, "num": 4}))
            ))
        );
    }

    #[test]
    fn namespace_edge_cases() {
        // A namespace may hold any character but `,`.
        assert_eq!(
            decode("2/a b/é?x=1,[\"e\"]").ok().flatten(),
            Some(event("/a b/é?x=1", None, json!(["e"])))
        );
        // `/,` is the main namespace written out.
        assert_eq!(
            decode("2/,[\"e\"]").ok().flatten(),
            Some(event("/", None, json!(["e"])))
        );
        // Digits right after the type are the id, not a namespace.
        assert_eq!(
            decode("2123[\"e\"]").ok().flatten(),
            Some(event("/", Some(123), json!(["e"])))
        );
    }

    #[test]
    fn decimal_writer() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
