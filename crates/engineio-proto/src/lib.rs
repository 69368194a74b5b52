//! Sans-IO Engine.IO v4: the packet and payload codec and the session state machine.
//!
//! This crate holds the protocol logic of Engine.IO, the transport layer under Socket.IO, with
//! no sockets, no runtime and no clock inside: transports feed it bytes and the current time,
//! and drain what it wants to send. `switchyard-engineio` drives it over hyper and tokio.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use switchyard_engineio_proto::{Event, Frame, Message, Packet, Session, SessionConfig, TransportKind};
//!
//! let start = Instant::now();
//! let mut session = Session::new(start, SessionConfig::default(), TransportKind::Polling);
//!
//! // A POST delivered a message: it comes out as an event.
//! session.handle_packet(start, TransportKind::Polling, Packet::decode_text("4hello").unwrap());
//! assert_eq!(session.poll_event(), Some(Event::Message(Message::Text("hello".into()))));
//!
//! // The application answers; a waiting GET collects it.
//! session.send(Frame::text_message("world")).unwrap();
//! session.poll_start().unwrap();
//! assert_eq!(&session.take_polling_payload().unwrap()[..], b"4world");
//!
//! // The first ping is due one interval after the session opened.
//! assert_eq!(session.poll_timeout(), Some(start + Duration::from_secs(25)));
//! ```

mod error;
mod packet;
mod payload;
mod session;
pub mod websocket;

pub use error::{DecodeError, ErrorCode};
pub use packet::{Frame, Message, OpenPacket, Packet, PacketType, Text};
pub use payload::{decode_payload, encode_payload, SEPARATOR};
pub use session::{
    CloseReason, Event, SendError, Session, SessionConfig, TransportKind, WebSocketRole,
};
