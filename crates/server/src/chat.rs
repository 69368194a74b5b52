//! The `/chat` namespace: named clients, rooms, messages and typing indicators.
//!
//! | event (client → server) | data | ack |
//! | --- | --- | --- |
//! | `join` | room name | `{ room, members }` |
//! | `leave` | room name | `{ room, members }` (members left) |
//! | `message` | `{ room, text }` | `{ ok: true }`; the room gets `message` `{ room, sender, text, time }` |
//! | `typing` | `{ room }` | `{ ok: true }`; the rest of the room gets `typing` `{ room, sender }` (volatile) |
//!
//! Bad input is answered with the ack `{ error: message }`.

use std::convert::Infallible;

use serde_json::{json, Value};
use switchyard::{Namespace, Room, Socket, SocketIo};

use crate::identity::{self, ChatName};
use crate::input::{self, ack, InputError};

/// Most chat rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 32;

/// Registers the namespace's middleware and handlers on `io`.
pub fn register(io: &SocketIo) {
    let chat = io.of("/chat");
    chat.use_middleware(|socket: Socket| async move {
        let name = identity::chat_name(socket.handshake())?;
        socket.insert_data(name);
        Ok(())
    });
    chat.on_connection(|socket: Socket| async move {
        socket.on("join", |socket: Socket, data: Value| async move {
            Ok::<_, Infallible>(ack(join(&socket, &data)))
        });
        socket.on("leave", |socket: Socket, data: Value| async move {
            Ok::<_, Infallible>(ack(leave(&socket, &data)))
        });
        socket.on("message", |socket: Socket, data: Value| async move {
            Ok::<_, Infallible>(ack(message(&socket, &data)))
        });
        socket.on("typing", |socket: Socket, data: Value| async move {
            Ok::<_, Infallible>(ack(typing(&socket, &data)))
        });
    });
}

/// The adapter room of chat room `room`. The prefix keeps chat rooms apart from the rooms
/// named by socket ids (which never contain `:`), so no one can join another's private room.
pub fn room_key(room: &str) -> Room {
    Room::from(format!("chat:{room}"))
}

/// A parsed `message` event.
#[derive(Debug, PartialEq, Eq)]
pub struct MessageInput<'a> {
    /// The room.
    pub room: &'a str,
    /// The text.
    pub text: &'a str,
}

impl<'a> MessageInput<'a> {
    /// Reads and validates `{ room, text }`.
    pub fn parse(data: &'a Value) -> Result<MessageInput<'a>, InputError> {
        let object = input::object(data, "{ room, text }")?;
        let room = input::room(object.get("room").unwrap_or(&Value::Null))?;
        let text = input::text(object.get("text").unwrap_or(&Value::Null))?;
        Ok(MessageInput { room, text })
    }
}

/// Reads and validates `typing`'s `{ room }`.
pub fn parse_typing(data: &Value) -> Result<&str, InputError> {
    let object = input::object(data, "{ room }")?;
    input::room(object.get("room").unwrap_or(&Value::Null))
}

fn sender(socket: &Socket) -> Result<ChatName, InputError> {
    // The middleware stored it; it is gone only once the socket is closed.
    socket
        .data::<ChatName>()
        .ok_or_else(|| InputError::new("not connected"))
}

fn is_member(socket: &Socket, key: &Room) -> bool {
    socket.rooms().iter().any(|room| room == key)
}

/// How many of this server's sockets are in `key`.
fn member_count(namespace: &Namespace, key: &Room) -> usize {
    let mut count = 0;
    namespace
        .adapter()
        .for_each_in_room(key, &mut |_| count += 1);
    count
}

fn join(socket: &Socket, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = room_key(room);
    if !is_member(socket, &key) {
        // Every socket is in its own id room, which is not a chat room.
        if socket.rooms().len() > MAX_ROOMS_PER_SOCKET {
            return Err(InputError::new(format!(
                "too many rooms (at most {MAX_ROOMS_PER_SOCKET})"
            )));
        }
        socket.join(key.clone());
    }
    let members = member_count(&socket.namespace(), &key);
    Ok(json!({ "room": room, "members": members }))
}

fn leave(socket: &Socket, data: &Value) -> Result<Value, InputError> {
    let room = input::room(data)?;
    let key = room_key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    socket.leave(key.clone());
    let members = member_count(&socket.namespace(), &key);
    Ok(json!({ "room": room, "members": members }))
}

fn message(socket: &Socket, data: &Value) -> Result<Value, InputError> {
    let MessageInput { room, text } = MessageInput::parse(data)?;
    let key = room_key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    let ChatName(sender) = sender(socket)?;
    let message = json!({
        "room": room,
        "sender": &*sender,
        "text": text,
        "time": input::now_millis(),
    });
    // The namespace's broadcast, not the socket's: the sender gets its own message too.
    socket
        .namespace()
        .to(key)
        .emit("message", message)
        .map_err(|error| {
            tracing::warn!(%error, "chat message not sent");
            InputError::new("message not sent")
        })?;
    Ok(json!({ "ok": true }))
}

fn typing(socket: &Socket, data: &Value) -> Result<Value, InputError> {
    let room = parse_typing(data)?;
    let key = room_key(room);
    if !is_member(socket, &key) {
        return Err(InputError::new(format!("not in room {room}")));
    }
    let ChatName(sender) = sender(socket)?;
    socket
        .to(key)
        .volatile()
        .emit("typing", json!({ "room": room, "sender": &*sender }))
        .map_err(|error| {
            tracing::warn!(%error, "typing indicator not sent");
            InputError::new("typing not sent")
        })?;
    Ok(json!({ "ok": true }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error<T: std::fmt::Debug>(result: Result<T, InputError>) -> String {
        match result {
            Err(error) => error.0,
            Ok(value) => panic!("expected an error, got {value:?}"),
        }
    }

    #[test]
    fn room_keys_cannot_be_socket_ids() {
        assert_eq!(&*room_key("general"), "chat:general");
        // Socket ids are base64url: never a colon.
        assert!(room_key("x").contains(':'));
    }

    #[test]
    fn messages_parse_room_and_text() {
        let data = json!({ "room": "general", "text": "hello", "extra": 1 });
        assert_eq!(
            MessageInput::parse(&data),
            Ok(MessageInput {
                room: "general",
                text: "hello"
            })
        );
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        assert_eq!(
            error(MessageInput::parse(&json!("hello"))),
            "expected an object { room, text }"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "text": "hello" }))),
            "room must be a string"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "room": "r" }))),
            "text must be a string"
        );
        assert_eq!(
            error(MessageInput::parse(&json!({ "room": "r", "text": "" }))),
            "text must be 1 to 2000 characters"
        );
        assert_eq!(
            error(MessageInput::parse(
                &json!({ "room": "r".repeat(65), "text": "t" })
            )),
            "room must be 1 to 64 characters"
        );
    }

    #[test]
    fn typing_reads_the_room() {
        assert_eq!(parse_typing(&json!({ "room": "general" })), Ok("general"));
        assert_eq!(
            error(parse_typing(&json!(null))),
            "expected an object { room }"
        );
        assert_eq!(
            error(parse_typing(&json!({ "room": "" }))),
            "room must be 1 to 64 characters"
        );
    }
}
