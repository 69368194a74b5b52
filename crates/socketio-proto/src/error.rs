//! The error type shared by every decoder of this crate.

use crate::packet::PacketType;

/// Why an incoming Socket.IO message was rejected.
///
/// Any of these means the peer broke the protocol: the reference server closes the whole
/// Engine.IO connection when its parser throws, and so should the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The message was empty.
    #[error("empty packet")]
    Empty,
    /// The packet type is missing, not a number or not one of the known types.
    #[error("unknown packet type {0}")]
    UnknownType(String),
    /// A BINARY_EVENT or BINARY_ACK text packet lacks a well-formed `<count>-` header.
    #[error("binary packet without a valid attachment count")]
    InvalidAttachmentCount,
    /// An attachment count (`<count>-`) was found on a packet type that takes none.
    #[error("{0} packet cannot carry an attachment count")]
    UnexpectedAttachmentCount(PacketType),
    /// A binary packet announces more attachments than the decoder accepts.
    #[error("packet announces {count} attachments, more than the limit of {max}")]
    TooManyAttachments {
        /// The announced number of attachments.
        count: usize,
        /// The configured limit.
        max: usize,
    },
    /// The attachments of one binary packet add up to more bytes than the decoder accepts.
    #[error("attachments of one packet exceed {max} bytes")]
    AttachmentsTooLarge {
        /// The configured limit.
        max: usize,
    },
    /// A msgpack packet holds more `bin` values (attachments) than the decoder accepts.
    #[error("msgpack packet holds more than {max} binary values")]
    TooManyBinaryValues {
        /// The configured limit.
        max: usize,
    },
    /// The namespace is missing, not a string or does not start with `/`.
    #[error("invalid namespace: it must be a string starting with '/'")]
    InvalidNamespace,
    /// The ack id does not fit in an unsigned 64-bit integer.
    #[error("ack id does not fit in an unsigned 64-bit integer")]
    IdOverflow,
    /// The ack id is not a non-negative integer (msgpack parser).
    #[error("invalid ack id: not a non-negative integer")]
    InvalidId,
    /// An ack id was given on a packet type that cannot carry one.
    #[error("{0} packet cannot carry an ack id")]
    UnexpectedId(PacketType),
    /// An ACK packet came without the id of the event it answers.
    #[error("ACK packet without an ack id")]
    MissingAckId,
    /// The payload of a text packet is not valid JSON (this includes trailing garbage and
    /// nesting beyond 128 levels).
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The packet type requires a payload and none was given.
    #[error("{0} packet requires a payload")]
    MissingPayload(PacketType),
    /// The packet type takes no payload and one was given.
    #[error("{0} packet cannot carry a payload")]
    UnexpectedPayload(PacketType),
    /// The payload has the wrong shape for the packet type.
    #[error("invalid {packet_type} payload: expected {expected}")]
    InvalidPayload {
        /// The type of the rejected packet.
        packet_type: PacketType,
        /// What the payload should have been, e.g. "an array".
        expected: &'static str,
    },
    /// The first item of an EVENT payload is neither a string nor a number.
    #[error("event name must be a string or a number")]
    InvalidEventName,
    /// The event name is reserved (`connect`, `disconnect`, ...).
    #[error("reserved event name {0:?}")]
    ReservedEventName(String),
    /// An object with `"_placeholder": true` has no valid `num`, or (msgpack) an object shaped
    /// like a placeholder was sent where binary travels natively.
    #[error("invalid binary placeholder")]
    InvalidPlaceholder,
    /// A placeholder refers to an attachment the packet does not have.
    #[error("placeholder refers to attachment {num} but the packet has {count}")]
    PlaceholderOutOfRange {
        /// The attachment index the placeholder names.
        num: u64,
        /// The number of attachments of the packet.
        count: usize,
    },
    /// A binary message arrived while no binary packet was waiting for attachments.
    #[error("binary message received with no binary packet pending")]
    UnexpectedBinary,
    /// A text message arrived while a binary packet was still waiting for attachments.
    #[error("text message received while {remaining} attachment(s) are still expected")]
    UnexpectedText {
        /// How many attachments were still expected.
        remaining: usize,
    },
    /// Binary data appeared in a packet type that cannot carry attachments (msgpack parser).
    #[error("{0} packet cannot carry binary data")]
    BinaryNotAllowed(PacketType),
    /// The msgpack bytes are malformed: truncated, a reserved marker, invalid UTF-8 in a string,
    /// nesting too deep, or bytes left after the packet.
    #[error("invalid msgpack: {0}")]
    InvalidMsgpack(&'static str),
    /// The msgpack packet is not a map.
    #[error("msgpack packet is not a map")]
    NotAMap,
    /// A field of the msgpack packet map appears twice.
    #[error("msgpack packet has the field {0:?} twice")]
    DuplicateField(&'static str),
    /// The msgpack data holds a value that has no JSON counterpart (an unknown extension type, a
    /// map key that is neither a string nor an integer, an out-of-range timestamp).
    #[error("unsupported msgpack value: {0}")]
    UnsupportedMsgpack(&'static str),
}
