//! How the client reads what a server sends, once a packet is decoded: sans-IO rules the
//! connection driver applies to every packet, public so that the fuzz targets (`fuzz/`) reach
//! them with arbitrary input. None of them panics, whatever the server sent.

use serde_json::Value;
use switchyard_core::{split_event, Args, PacketDecoder, Parser};
use switchyard_socketio_proto::Packet;

use crate::codec::MAX_ATTACHMENTS;
use crate::error::ConnectError;
use crate::recovery::take_offset;

/// The decoder for a server's packets, with the client's limits.
pub fn decoder(parser: Parser) -> PacketDecoder {
    PacketDecoder::new(parser, MAX_ATTACHMENTS)
}

/// A CONNECT reply's `{sid, pid}`: the socket id, and the private session id when the server
/// has connection state recovery on. A reply without a string `sid` comes from a server that
/// does not speak Socket.IO v5 (v2 answers CONNECT with no payload) and is a refusal.
pub fn connect_reply(data: Option<&Value>) -> Result<(String, Option<String>), ConnectError> {
    let sid = data
        .and_then(|data| data.get("sid"))
        .and_then(Value::as_str);
    let Some(sid) = sid else {
        return Err(ConnectError::Refused {
            message: "CONNECT reply without sid: is the server Socket.IO v2?".to_owned(),
            data: None,
        });
    };
    let pid = data
        .and_then(|data| data.get("pid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok((sid.to_owned(), pid))
}

/// A CONNECT_ERROR's payload as socket.io-client reads it: `{message, data}`, or a bare string
/// message (Socket.IO v4's older servers), or anything else shown as JSON.
pub fn connect_error(data: Value) -> ConnectError {
    let (message, data) = match data {
        Value::Object(mut map) => (
            match map.remove("message") {
                Some(Value::String(message)) => message,
                Some(other) => other.to_string(),
                None => String::new(),
            },
            map.remove("data"),
        ),
        Value::String(message) => (message, None),
        other => (other.to_string(), None),
    };
    ConnectError::Refused { message, data }
}

/// An EVENT's name and arguments, with the recovery offset taken off the arguments (returned
/// beside them) when the server gave this socket a private id and the event wants no ack.
/// `None`: not an event a handler can receive (no name).
pub fn event(
    data: Value,
    attachments: Vec<bytes::Bytes>,
    pid_known: bool,
    ack_id: Option<u64>,
) -> Option<(String, Args, Option<String>)> {
    let (name, mut args) = split_event(data, attachments)?;
    let offset = take_offset(&mut args.values, pid_known, ack_id.is_some());
    Some((name, args, offset))
}

/// An ACK's arguments: an array's items, or the value itself.
pub fn ack_args(data: Value, attachments: Vec<bytes::Bytes>) -> Args {
    let values = match data {
        Value::Array(values) => values,
        other => vec![other],
    };
    Args {
        values,
        attachments,
    }
}

/// What a packet means to the client, for the fuzz targets: every rule above applied to it.
pub fn interpret(packet: Packet, pid_known: bool) -> Interpreted {
    match packet {
        Packet::Connect { data, .. } => Interpreted::Connect(connect_reply(data.as_ref())),
        Packet::ConnectError { data, .. } => Interpreted::Refused(connect_error(data)),
        Packet::Event {
            id,
            data,
            attachments,
            ..
        } => Interpreted::Event(event(data, attachments, pid_known, id)),
        Packet::Ack {
            data, attachments, ..
        } => Interpreted::Ack(ack_args(data, attachments)),
        Packet::Disconnect { .. } => Interpreted::Disconnect,
    }
}

/// A packet as the client reads it; see [`interpret`].
#[derive(Debug)]
pub enum Interpreted {
    /// A CONNECT reply: the ids, or why it is a refusal.
    Connect(Result<(String, Option<String>), ConnectError>),
    /// A CONNECT_ERROR.
    Refused(ConnectError),
    /// An event: name, arguments, offset; `None` if it has no name.
    Event(Option<(String, Args, Option<String>)>),
    /// An acknowledgement's arguments.
    Ack(Args),
    /// The server disconnected the socket.
    Disconnect,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connect_replies_need_a_string_sid() {
        assert_eq!(
            connect_reply(Some(&json!({ "sid": "a", "pid": "p" }))).unwrap(),
            ("a".to_owned(), Some("p".to_owned()))
        );
        assert_eq!(
            connect_reply(Some(&json!({ "sid": "a", "pid": 3 }))).unwrap(),
            ("a".to_owned(), None)
        );
        for bad in [
            None,
            Some(json!({})),
            Some(json!({ "sid": 1 })),
            Some(json!("x")),
        ] {
            assert!(connect_reply(bad.as_ref()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connect_errors_read_like_socket_io_client() {
        let refused = |error: ConnectError| match error {
            ConnectError::Refused { message, data } => (message, data),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            refused(connect_error(
                json!({ "message": "no", "data": { "code": 1 } })
            )),
            ("no".to_owned(), Some(json!({ "code": 1 })))
        );
        assert_eq!(
            refused(connect_error(json!("plain"))),
            ("plain".to_owned(), None)
        );
        assert_eq!(refused(connect_error(json!(42))), ("42".to_owned(), None));
        assert_eq!(
            refused(connect_error(json!({ "message": [1] }))),
            ("[1]".to_owned(), None)
        );
    }

    #[test]
    fn events_lose_their_offset_only_when_recovery_applies() {
        let data = json!(["tick", 1, "7"]);
        let (name, args, offset) = event(data.clone(), Vec::new(), true, None).unwrap();
        assert_eq!(
            (name.as_str(), args.values, offset),
            ("tick", vec![json!(1)], Some("7".to_owned()))
        );
        let (_, args, offset) = event(data.clone(), Vec::new(), false, None).unwrap();
        assert_eq!((args.values.len(), offset), (2, None));
        let (_, args, offset) = event(data, Vec::new(), true, Some(3)).unwrap();
        assert_eq!((args.values.len(), offset), (2, None));
        assert!(event(json!([null, 1]), Vec::new(), true, None).is_none());
        assert!(event(json!({ "a": 1 }), Vec::new(), true, None).is_none());
    }
}
