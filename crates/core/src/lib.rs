//! The Socket.IO layer shared by Switchyard's server (`switchyard`) and client
//! (`switchyard-client`): everything both ends do the same way, and nothing that does IO.
//!
//! - [`Args`], [`Binary`], [`IntoArgs`], [`FromArgs`]: event and ack arguments, with binary
//!   values anywhere inside serde types travelling as binary attachments;
//! - [`Parser`]: the packet encoding (JSON with attachments, or msgpack);
//! - [`EncodedPacket`]: a packet turned into its Engine.IO frames once, shared by reference
//!   count (a broadcast is encoded once for every recipient);
//! - [`PacketDecoder`]: the per-connection decoder that joins binary attachments to their
//!   packet, with a bound on how many a packet may announce;
//! - [`event_packet`], [`ack_packet`], [`split_event`]: the EVENT and ACK packet shapes.
//!
//! ```
//! use switchyard_core::{event_packet, Args, Binary, EncodedPacket, PacketDecoder, Parser};
//! use switchyard_engineio_proto::{Frame, Message};
//!
//! let args = Args::one(&"report.pdf").unwrap().push(&Binary::from(vec![1, 2, 3])).unwrap();
//! let packet = event_packet("/files", "upload", args, Some(7));
//! let encoded = EncodedPacket::new(Parser::Json, &packet);
//! assert_eq!(encoded.frames().count(), 2); // the text packet, then one attachment
//!
//! // The receiving end joins the attachment back to its packet.
//! let mut decoder = PacketDecoder::new(Parser::Json, 10);
//! let mut decoded = None;
//! for frame in encoded.frames() {
//!     let message = match frame {
//!         // A text frame holds the Engine.IO type byte (`4`, message) before the packet.
//!         Frame::Text(text) => {
//!             Message::Text(String::from_utf8_lossy(&text.as_bytes()[1..]).into_owned())
//!         }
//!         Frame::Binary(bytes) => Message::Binary(bytes.clone()),
//!     };
//!     decoded = decoder.decode(message).unwrap();
//! }
//! assert_eq!(decoded, Some(packet));
//! ```

mod args;
mod codec;
mod parser;

pub use args::{Args, ArgsError, Binary, FromArgs, IntoArgs};
pub use codec::{ack_packet, event_packet, split_event, DecodeError, EncodedPacket, PacketDecoder};
pub use parser::{Parser, UnknownParser};
pub use switchyard_socketio_proto as proto;
