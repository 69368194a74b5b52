//! The frames the load generator sends and the minimal parsing of what it receives.
//!
//! Everything sent repeatedly is encoded once (see [`Proto::echo`]): an echo emit's ack id is
//! its in-flight slot, so a client cycles through a fixed set of frames and sending one is a
//! reference-count increment. Received frames are classified by their prefix only, with no
//! JSON parsing.
//!
//! Two framings:
//! - [`Proto::SocketIo`]: Engine.IO v4 / Socket.IO v5 text frames on namespace `/`:
//!   `42<id>["echo","<payload>"]` → `43<id>[...]`; `42<id>["broadcast","<payload>"]` →
//!   `43<id>[]` to the sender and `42["tick","<payload>"]` to every other socket;
//!   `42<id>["join","<room>"]` → `43<id>[]`; the server's ping `2` is answered `3`.
//! - [`Proto::Bare`], for the bare WebSocket server `bench/peers/bare`: no handshake beyond
//!   the WebSocket upgrade and no heartbeat; `E<slot>,<payload>` is echoed verbatim;
//!   `B<id>,<payload>` sends `T<payload>` to every other connection, then `A<id>` to the sender.

use std::fmt::Write as _;

use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The framing spoken to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Proto {
    /// Engine.IO v4 over WebSocket, carrying Socket.IO v5 on namespace `/`.
    SocketIo,
    /// The minimal framing of `bench/peers/bare`.
    Bare,
}

/// What a received text frame means to the load generator.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    /// The answer to the emit with this ack id (or echo slot).
    Ack(u64),
    /// A relayed `broadcast`: its payload.
    Tick(&'a str),
    /// A heartbeat ping that wants a pong.
    Ping,
    /// Anything else (ignored).
    Other,
}

const SIO_ACK: &str = "43";
const SIO_TICK: &str = "42[\"tick\",\"";

impl Proto {
    /// The name used in results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Proto::SocketIo => "socket.io",
            Proto::Bare => "bare",
        }
    }

    /// Classifies a received text frame.
    pub(crate) fn parse(self, text: &str) -> Incoming<'_> {
        match self {
            Proto::SocketIo => {
                if text == "2" {
                    Incoming::Ping
                } else if let Some(rest) = text.strip_prefix(SIO_ACK) {
                    leading_number(rest).map_or(Incoming::Other, Incoming::Ack)
                } else if let Some(rest) = text.strip_prefix(SIO_TICK) {
                    match rest.find('"') {
                        Some(end) => Incoming::Tick(&rest[..end]),
                        None => Incoming::Other,
                    }
                } else {
                    Incoming::Other
                }
            }
            Proto::Bare => match text.as_bytes().first() {
                Some(b'E' | b'A') => {
                    leading_number(&text[1..]).map_or(Incoming::Other, Incoming::Ack)
                }
                Some(b'T') => Incoming::Tick(&text[1..]),
                _ => Incoming::Other,
            },
        }
    }

    /// An `echo` emit with ack id `slot` and a string payload.
    pub(crate) fn echo(self, slot: u64, payload: &str) -> Message {
        self.event(slot, "echo", payload)
    }

    /// A `broadcast` emit with ack id `id` and a string payload.
    pub(crate) fn broadcast(self, id: u64, payload: &str) -> Message {
        self.event(id, "broadcast", payload)
    }

    /// A `join` emit with ack id `id` (Socket.IO only: the bare server has no rooms).
    pub(crate) fn join(self, id: u64, room: &str) -> Option<Message> {
        match self {
            Proto::SocketIo => Some(self.event(id, "join", room)),
            Proto::Bare => None,
        }
    }

    /// The answer to a ping.
    pub(crate) fn pong(self) -> Message {
        Message::Text(Utf8Bytes::from_static("3"))
    }

    fn event(self, id: u64, name: &str, arg: &str) -> Message {
        let mut text = String::with_capacity(arg.len() + name.len() + 16);
        match self {
            // `write!` into a String cannot fail.
            Proto::SocketIo => {
                let _ = write!(text, "42{id}[\"{name}\",\"{arg}\"]");
            }
            Proto::Bare => {
                let tag = if name == "broadcast" { 'B' } else { 'E' };
                let _ = write!(text, "{tag}{id},{arg}");
            }
        }
        Message::Text(Utf8Bytes::from(text))
    }
}

/// The decimal number at the start of `text`, if any.
fn leading_number(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text[..digits].parse().ok()
}

/// A payload of `len` characters (at least 1), safe inside a JSON string.
pub(crate) fn filler(len: usize) -> String {
    (0..len.max(1))
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// Width of the timestamp at the start of a fan-out payload.
pub(crate) const STAMP_DIGITS: usize = 20;

/// A fan-out payload: the send time in nanoseconds (zero-padded) then filler up to `len`.
pub(crate) fn stamped(nanos: u64, len: usize) -> String {
    let mut text = format!("{nanos:0width$}", width = STAMP_DIGITS);
    while text.len() < len {
        text.push('x');
    }
    text
}

/// The send time carried by a fan-out payload.
pub(crate) fn stamp_of(payload: &str) -> Option<u64> {
    payload.get(..STAMP_DIGITS)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: Message) -> String {
        match message {
            Message::Text(text) => text.as_str().to_owned(),
            other => panic!("not text: {other:?}"),
        }
    }

    #[test]
    fn socketio_frames() {
        let p = Proto::SocketIo;
        assert_eq!(text(p.echo(3, "abc")), r#"423["echo","abc"]"#);
        assert_eq!(text(p.broadcast(0, "x")), r#"420["broadcast","x"]"#);
        assert_eq!(
            text(p.join(7, "room-1").unwrap()),
            r#"427["join","room-1"]"#
        );
        assert_eq!(p.parse(r#"4312["abc"]"#), Incoming::Ack(12));
        assert_eq!(p.parse("430[]"), Incoming::Ack(0));
        assert_eq!(p.parse(r#"42["tick","0001x"]"#), Incoming::Tick("0001x"));
        assert_eq!(p.parse("2"), Incoming::Ping);
        assert_eq!(p.parse("6"), Incoming::Other);
        assert_eq!(p.parse("43[]"), Incoming::Other);
    }

    #[test]
    fn bare_frames() {
        let p = Proto::Bare;
        assert_eq!(text(p.echo(3, "abc")), "E3,abc");
        assert_eq!(text(p.broadcast(9, "x")), "B9,x");
        assert!(p.join(0, "r").is_none());
        assert_eq!(p.parse("E3,abc"), Incoming::Ack(3));
        assert_eq!(p.parse("A9"), Incoming::Ack(9));
        assert_eq!(p.parse("Tpayload"), Incoming::Tick("payload"));
        assert_eq!(p.parse(""), Incoming::Other);
    }

    #[test]
    fn stamps() {
        let payload = stamped(123_456_789, 32);
        assert_eq!(payload.len(), 32);
        assert_eq!(stamp_of(&payload), Some(123_456_789));
        assert_eq!(filler(32).len(), 32);
        assert_eq!(stamp_of("short"), None);
    }
}
