//! Socket.IO packets into Engine.IO frames; the codec itself is `switchyard-core`'s.

use switchyard_core::{EncodedPacket, Parser};
use switchyard_engineio_proto::Frame;
use switchyard_socketio_proto::Packet;

/// The most attachments one incoming binary packet may announce.
pub(crate) const MAX_ATTACHMENTS: usize = 1024;

/// Encodes `packet` as the Engine.IO messages that carry it, in order.
pub(crate) fn encode(packet: &Packet, parser: Parser) -> Vec<Frame> {
    EncodedPacket::new(parser, packet)
        .frames()
        .cloned()
        .collect()
}
