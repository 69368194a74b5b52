//! Connection state recovery, client side: the CONNECT payload and the event offsets.
//!
//! A server with recovery on answers CONNECT with a private session id `pid` beside `sid`, and
//! appends an offset (a string) as the last argument of every EVENT without an ack id that is
//! not volatile. socket.io-client records that last argument as the offset when it knows a pid,
//! the event has no ack id and the last argument is a string; it sends
//! `{pid, offset, ...auth}` in the next CONNECT and reports `recovered` when the reply carries
//! the pid it sent. This client decides the same way and, since Rust handlers are typed,
//! also removes the offset from the arguments it hands to them.

use serde_json::{Map, Value};

/// The CONNECT payload: the auth data, preceded by `pid` and `offset` once the server gave a
/// pid; keys of an object `auth` win over them, as with `Object.assign`.
///
/// A non-object `auth` cannot be merged: without a pid it is sent as it is (the server will
/// refuse it), with one it is dropped. `offset` is left out when no event brought one yet.
pub fn connect_payload(
    auth: Option<Value>,
    pid: Option<&str>,
    offset: Option<&str>,
) -> Option<Value> {
    let auth = auth.filter(|value| !value.is_null());
    let Some(pid) = pid else {
        return auth;
    };
    let mut data = Map::new();
    data.insert("pid".to_owned(), Value::String(pid.to_owned()));
    if let Some(offset) = offset {
        data.insert("offset".to_owned(), Value::String(offset.to_owned()));
    }
    if let Some(Value::Object(auth)) = auth {
        data.extend(auth);
    }
    Some(Value::Object(data))
}

/// Removes and returns the recovery offset of an incoming event's arguments, if it has one:
/// only when recovery is on (`pid_known`), the event has no ack id, and its last argument is
/// a string.
pub fn take_offset(values: &mut Vec<Value>, pid_known: bool, has_ack_id: bool) -> Option<String> {
    if !pid_known || has_ack_id {
        return None;
    }
    match values.last() {
        Some(Value::String(_)) => match values.pop() {
            Some(Value::String(offset)) => Some(offset),
            _ => None,
        },
        _ => None,
    }
}

/// Whether the CONNECT reply recovered the session: it carries a pid, and that pid is the
/// one the client sent.
pub fn is_recovered(sent_pid: Option<&str>, reply_pid: Option<&str>) -> bool {
    matches!((sent_pid, reply_pid), (Some(sent), Some(reply)) if sent == reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn without_pid_the_auth_goes_as_it_is() {
        assert_eq!(connect_payload(None, None, None), None);
        assert_eq!(connect_payload(Some(Value::Null), None, Some("x")), None);
        assert_eq!(
            connect_payload(Some(json!({"token": "abc"})), None, Some("x")),
            Some(json!({"token": "abc"}))
        );
    }

    #[test]
    fn pid_and_offset_are_merged_with_the_auth() {
        assert_eq!(
            connect_payload(Some(json!({"token": "abc"})), Some("p1"), Some("o9")),
            Some(json!({"pid": "p1", "offset": "o9", "token": "abc"}))
        );
        assert_eq!(
            connect_payload(None, Some("p1"), Some("o9")),
            Some(json!({"pid": "p1", "offset": "o9"}))
        );
        // No event carried an offset yet: like `undefined` in JSON.stringify, it is left out.
        assert_eq!(
            connect_payload(Some(json!({"token": "abc"})), Some("p1"), None),
            Some(json!({"pid": "p1", "token": "abc"}))
        );
    }

    #[test]
    fn auth_keys_win_over_pid_and_offset_and_non_objects_are_dropped() {
        assert_eq!(
            connect_payload(Some(json!({"offset": "mine"})), Some("p1"), Some("o9")),
            Some(json!({"pid": "p1", "offset": "mine"}))
        );
        assert_eq!(
            connect_payload(Some(json!(42)), Some("p1"), Some("o9")),
            Some(json!({"pid": "p1", "offset": "o9"}))
        );
        assert_eq!(
            connect_payload(Some(json!(42)), None, None),
            Some(json!(42))
        );
    }

    #[test]
    fn offset_is_the_last_string_of_an_event_without_ack_when_recovery_is_on() {
        let mut values = vec![json!("hello"), json!(1), json!("MzUPkW0")];
        assert_eq!(
            take_offset(&mut values, true, false),
            Some("MzUPkW0".to_owned())
        );
        assert_eq!(values, vec![json!("hello"), json!(1)]);
    }

    #[test]
    fn no_offset_without_pid_with_ack_id_or_when_the_last_argument_is_not_a_string() {
        let original = vec![json!("hello"), json!("MzUPkW0")];
        let mut values = original.clone();
        assert_eq!(take_offset(&mut values, false, false), None);
        assert_eq!(take_offset(&mut values, true, true), None);
        assert_eq!(values, original);
        let mut values = vec![json!("a"), json!({"offset": "x"})];
        assert_eq!(take_offset(&mut values, true, false), None);
        assert_eq!(values.len(), 2);
        let mut empty: Vec<Value> = Vec::new();
        assert_eq!(take_offset(&mut empty, true, false), None);
    }

    #[test]
    fn recovered_only_when_the_reply_carries_the_pid_sent() {
        assert!(is_recovered(Some("p1"), Some("p1")));
        assert!(!is_recovered(Some("p1"), Some("p2")));
        assert!(!is_recovered(None, Some("p1")));
        assert!(!is_recovered(Some("p1"), None));
        assert!(!is_recovered(None, None));
    }
}
