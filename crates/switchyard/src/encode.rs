//! Queuing encoded packets on an Engine.IO socket.

use switchyard_core::EncodedPacket;
use switchyard_engineio::{SendError, Socket as EngineSocket};

/// Queues the frames of `packet` on `socket`, all or none.
pub(crate) fn send_to(packet: &EncodedPacket, socket: &EngineSocket) -> Result<(), SendError> {
    if packet.attachments().is_empty() {
        socket.send(packet.head().clone())
    } else {
        socket.send_all(packet.frames().cloned())
    }
}
