//! Validation of what clients send. Every check answers with an [`InputError`] whose message
//! goes back to the client in an error ack; nothing here panics on any JSON value.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Longest room name, in characters.
pub(crate) const MAX_ROOM_CHARS: usize = 64;
/// Longest message or notification text, in characters.
pub(crate) const MAX_TEXT_CHARS: usize = 2000;
/// Longest display name or user id, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// Input a client sent that the server refuses; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InputError(pub String);

impl InputError {
    /// An error with `message`.
    pub(crate) fn new(message: impl Into<String>) -> InputError {
        InputError(message.into())
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// The ack a handler's result becomes: the value itself, or `{ "error": message }`.
pub(crate) fn ack(result: Result<Value, InputError>) -> Value {
    match result {
        Ok(value) => value,
        Err(error) => {
            tracing::debug!(%error, "client input refused");
            json!({ "error": error.0 })
        }
    }
}

/// The event data as an object; `what` describes the expected shape for the error.
pub(crate) fn object<'a>(
    data: &'a Value,
    what: &str,
) -> Result<&'a Map<String, Value>, InputError> {
    data.as_object()
        .ok_or_else(|| InputError::new(format!("expected an object {what}")))
}

/// A room name: 1 to [`MAX_ROOM_CHARS`] characters, no control characters.
pub(crate) fn room(value: &Value) -> Result<&str, InputError> {
    let room = value
        .as_str()
        .ok_or_else(|| InputError::new("room must be a string"))?;
    let chars = room.chars().count();
    if chars == 0 || chars > MAX_ROOM_CHARS {
        return Err(InputError::new(format!(
            "room must be 1 to {MAX_ROOM_CHARS} characters"
        )));
    }
    if room.chars().any(char::is_control) {
        return Err(InputError::new("room must not contain control characters"));
    }
    Ok(room)
}

/// A message text: 1 to [`MAX_TEXT_CHARS`] characters, not only whitespace.
pub(crate) fn text(value: &Value) -> Result<&str, InputError> {
    let text = value
        .as_str()
        .ok_or_else(|| InputError::new("text must be a string"))?;
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_TEXT_CHARS {
        return Err(InputError::new(format!(
            "text must be 1 to {MAX_TEXT_CHARS} characters"
        )));
    }
    if text.trim().is_empty() {
        return Err(InputError::new("text must not be blank"));
    }
    Ok(text)
}

/// A display name or user id: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control
/// characters. `None` when absent or blank (the caller says what is required).
pub(crate) fn name(value: Option<&Value>) -> Result<Option<String>, InputError> {
    let Some(name) = value.and_then(Value::as_str).map(str::trim) else {
        return Ok(None);
    };
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(InputError::new(format!(
            "at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(InputError::new("no control characters allowed"));
    }
    Ok(Some(name.to_owned()))
}

/// A fresh random id: 128 bits from the thread's CSPRNG, as 32 lowercase hex digits (call,
/// message and notification ids; unique across a cluster's servers).
pub(crate) fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Milliseconds since the Unix epoch, as JavaScript's `Date.now()`.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: fmt::Debug>(result: Result<T, InputError>) -> String {
        match result {
            Err(error) => error.0,
            Ok(value) => panic!("expected an error, got {value:?}"),
        }
    }

    #[test]
    fn rooms_of_1_to_64_characters_pass() {
        assert_eq!(room(&json!("general")), Ok("general"));
        assert_eq!(room(&json!("a")), Ok("a"));
        let longest = "é".repeat(64); // characters, not bytes
        assert_eq!(room(&json!(longest)), Ok(longest.as_str()));
    }

    #[test]
    fn bad_rooms_are_refused_with_a_reason() {
        assert_eq!(err(room(&json!(""))), "room must be 1 to 64 characters");
        assert_eq!(
            err(room(&json!("x".repeat(65)))),
            "room must be 1 to 64 characters"
        );
        assert_eq!(err(room(&json!(42))), "room must be a string");
        assert_eq!(err(room(&Value::Null)), "room must be a string");
        assert_eq!(
            err(room(&json!("a\nb"))),
            "room must not contain control characters"
        );
    }

    #[test]
    fn texts_of_1_to_2000_characters_pass() {
        assert_eq!(text(&json!("hi")), Ok("hi"));
        assert_eq!(text(&json!(" padded ")), Ok(" padded "));
        let longest = "字".repeat(2000);
        assert_eq!(text(&json!(longest)), Ok(longest.as_str()));
    }

    #[test]
    fn bad_texts_are_refused_with_a_reason() {
        assert_eq!(err(text(&json!(""))), "text must be 1 to 2000 characters");
        assert_eq!(
            err(text(&json!("x".repeat(2001)))),
            "text must be 1 to 2000 characters"
        );
        assert_eq!(err(text(&json!("  \n\t"))), "text must not be blank");
        assert_eq!(err(text(&json!(["hi"]))), "text must be a string");
    }

    #[test]
    fn names_are_trimmed_and_blank_means_absent() {
        assert_eq!(name(Some(&json!("  alice "))), Ok(Some("alice".to_owned())));
        assert_eq!(name(Some(&json!("   "))), Ok(None));
        assert_eq!(name(Some(&json!(""))), Ok(None));
        assert_eq!(name(Some(&json!(7))), Ok(None));
        assert_eq!(name(None), Ok(None));
        assert_eq!(
            name(Some(&json!("n".repeat(65)))),
            Err(InputError::new("at most 64 characters"))
        );
        assert_eq!(
            name(Some(&json!("a\u{7}b"))),
            Err(InputError::new("no control characters allowed"))
        );
    }

    #[test]
    fn objects_are_required_where_expected() {
        let data = json!({ "room": "r", "n": 1 });
        assert_eq!(object(&data, "{ room }").map(|map| map.len()), Ok(2));
        assert_eq!(
            err(object(&json!("text"), "{ room, text }")),
            "expected an object { room, text }"
        );
    }

    #[test]
    fn acks_carry_the_value_or_the_error() {
        assert_eq!(ack(Ok(json!({ "ok": true }))), json!({ "ok": true }));
        assert_eq!(
            ack(Err(InputError::new("nope"))),
            json!({ "error": "nope" })
        );
    }

    #[test]
    fn random_ids_are_32_hex_digits() {
        let id = random_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, random_id());
    }

    #[test]
    fn now_is_after_2024() {
        assert!(now_millis() > 1_704_067_200_000);
    }
}
