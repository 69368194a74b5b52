//! Event arguments: JSON values with binary attachments, for server and client alike.
//!
//! On the wire, binary values inside arguments are replaced by placeholders
//! `{"_placeholder":true,"num":i}` and sent after the packet. [`Binary`] makes that invisible
//! to serde: inside a payload it serializes to a placeholder and collects its bytes, and it
//! deserializes from a placeholder by taking the matching attachment. So user types may hold
//! `Binary` fields at any depth.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use switchyard_socketio_proto::{is_placeholder, placeholder};

thread_local! {
    /// Attachments collected while serializing, or offered while deserializing, a payload.
    static ATTACHMENTS: RefCell<Option<Vec<Bytes>>> = const { RefCell::new(None) };
}

/// Runs `f` with a fresh attachment collector; returns its result and what was collected.
fn with_collector<R>(initial: Vec<Bytes>, f: impl FnOnce() -> R) -> (R, Vec<Bytes>) {
    let previous = ATTACHMENTS.with(|cell| cell.borrow_mut().replace(initial));
    let result = f();
    let collected = ATTACHMENTS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let collected = slot.take().unwrap_or_default();
        *slot = previous;
        collected
    });
    (result, collected)
}

/// Binary data inside event arguments, sent as a binary attachment (a `Buffer` or
/// `ArrayBuffer` for JavaScript clients).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Binary(pub Bytes);

impl Binary {
    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for Binary {
    fn from(bytes: Bytes) -> Self {
        Binary(bytes)
    }
}

impl From<Vec<u8>> for Binary {
    fn from(bytes: Vec<u8>) -> Self {
        Binary(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Binary {
    fn from(bytes: &'static [u8]) -> Self {
        Binary(Bytes::from_static(bytes))
    }
}

impl Serialize for Binary {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let index = ATTACHMENTS.with(|cell| {
            cell.borrow_mut().as_mut().map(|attachments| {
                attachments.push(self.0.clone());
                attachments.len() - 1
            })
        });
        match index {
            Some(index) => placeholder(index).serialize(serializer),
            // Outside a payload (plain serde_json), binary is a byte array.
            None => serializer.serialize_bytes(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Binary {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if let Some(num) = is_placeholder(&value) {
            let found = ATTACHMENTS.with(|cell| {
                cell.borrow()
                    .as_ref()
                    .and_then(|attachments| attachments.get(num).cloned())
            });
            return found
                .map(Binary)
                .ok_or_else(|| D::Error::custom(format!("no binary attachment {num}")));
        }
        match value {
            Value::Array(items) => items
                .into_iter()
                .map(|item| {
                    item.as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .ok_or_else(|| D::Error::custom("expected a byte"))
                })
                .collect::<Result<Vec<u8>, _>>()
                .map(Binary::from),
            _ => Err(D::Error::custom("expected binary data")),
        }
    }
}

/// The arguments of an event or an ack, as received or to be sent: JSON values (with binary
/// placeholders) and the binary attachments they point to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Args {
    /// The argument values; binary values are placeholders indexing `attachments`.
    pub values: Vec<Value>,
    /// The binary attachments, in placeholder order.
    pub attachments: Vec<Bytes>,
}

/// Why arguments could not be converted to or from a Rust type.
#[derive(Debug, thiserror::Error)]
#[error("invalid event arguments: {0}")]
pub struct ArgsError(#[from] serde_json::Error);

impl Args {
    /// No arguments.
    pub fn empty() -> Args {
        Args::default()
    }

    /// One argument, serialized from `value` (which may contain [`Binary`] anywhere).
    pub fn one<T: Serialize + ?Sized>(value: &T) -> Result<Args, ArgsError> {
        let (value, attachments) = with_collector(Vec::new(), || serde_json::to_value(value));
        Ok(Args {
            values: vec![value?],
            attachments,
        })
    }

    /// Adds one argument.
    pub fn push<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Args, ArgsError> {
        let attachments = std::mem::take(&mut self.attachments);
        let (value, attachments) = with_collector(attachments, || serde_json::to_value(value));
        self.attachments = attachments;
        self.values.push(value?);
        Ok(self)
    }

    /// Number of arguments.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no arguments.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Deserializes argument `index` (null if absent) as `T`, binary placeholders included.
    pub fn get<T: DeserializeOwned>(&self, index: usize) -> Result<T, ArgsError> {
        let value = self.values.get(index).cloned().unwrap_or(Value::Null);
        self.decode(value)
    }

    /// Deserializes all arguments as one `T` (a tuple, a `Vec`, ...).
    pub fn all<T: DeserializeOwned>(&self) -> Result<T, ArgsError> {
        self.decode(Value::Array(self.values.clone()))
    }

    fn decode<T: DeserializeOwned>(&self, value: Value) -> Result<T, ArgsError> {
        let (result, _) =
            with_collector(self.attachments.clone(), || serde_json::from_value(value));
        Ok(result?)
    }

    /// The arguments after the first `n`, with only the attachments they use, renumbered.
    ///
    /// Relays use it to pass on data behind a routing argument (a room name, say) without
    /// losing its binary parts, which a `serde_json::Value` cannot hold.
    pub fn skip(&self, n: usize) -> Args {
        let mut values: Vec<Value> = self.values.iter().skip(n).cloned().collect();
        let mut attachments = Vec::new();
        let mut renumbered: Vec<Option<usize>> = vec![None; self.attachments.len()];
        for value in &mut values {
            renumber(value, &self.attachments, &mut renumbered, &mut attachments);
        }
        Args {
            values,
            attachments,
        }
    }

    /// The attachment a placeholder value points to.
    pub fn binary(&self, value: &Value) -> Option<&Bytes> {
        is_placeholder(value).and_then(|num| self.attachments.get(num))
    }
}

/// Rewrites the placeholders in `value` to index `kept`, copying each attachment once.
fn renumber(
    value: &mut Value,
    source: &[Bytes],
    renumbered: &mut [Option<usize>],
    kept: &mut Vec<Bytes>,
) {
    if let Some(num) = is_placeholder(value) {
        if let (Some(slot), Some(bytes)) = (renumbered.get_mut(num), source.get(num)) {
            let index = *slot.get_or_insert_with(|| {
                kept.push(bytes.clone());
                kept.len() - 1
            });
            *value = placeholder(index);
        }
        return;
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| renumber(item, source, renumbered, kept)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| renumber(item, source, renumbered, kept)),
        _ => {}
    }
}

/// Conversion of a handler's return value, or of emitted data, into [`Args`].
///
/// Any `Serialize` type becomes one argument; [`Args`] is used as it is (several arguments);
/// `()` means no argument.
pub trait IntoArgs {
    /// Converts into arguments.
    fn into_args(self) -> Result<Args, ArgsError>;
}

impl<T: Serialize> IntoArgs for T {
    fn into_args(self) -> Result<Args, ArgsError> {
        if std::mem::size_of::<T>() == 0 && serde_json::to_value(&self)?.is_null() {
            return Ok(Args::empty());
        }
        Args::one(&self)
    }
}

impl IntoArgs for Args {
    fn into_args(self) -> Result<Args, ArgsError> {
        Ok(self)
    }
}

/// Conversion of received arguments into a handler's argument type.
///
/// [`Args`] gives every argument raw; any other `DeserializeOwned` type is read from the first
/// argument (binary placeholders included, through [`Binary`]).
pub trait FromArgs: Sized {
    /// Converts the arguments.
    fn from_args(args: Args) -> Result<Self, ArgsError>;
}

impl FromArgs for Args {
    fn from_args(args: Args) -> Result<Self, ArgsError> {
        Ok(args)
    }
}

impl<T: DeserializeOwned> FromArgs for T {
    fn from_args(args: Args) -> Result<Self, ArgsError> {
        args.get(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct File {
        name: String,
        chunks: Vec<Binary>,
    }

    #[test]
    fn nested_binary_becomes_placeholders_and_attachments() {
        let file = File {
            name: "a".into(),
            chunks: vec![Binary::from(vec![1, 2]), Binary::from(vec![3])],
        };
        let args = Args::one(&file)
            .unwrap()
            .push(&Binary::from(vec![9]))
            .unwrap();
        assert_eq!(
            args.values,
            vec![
                json!({"name": "a", "chunks": [
                    {"_placeholder": true, "num": 0},
                    {"_placeholder": true, "num": 1}
                ]}),
                json!({"_placeholder": true, "num": 2})
            ]
        );
        assert_eq!(
            args.attachments,
            vec![
                Bytes::from_static(&[1, 2]),
                Bytes::from_static(&[3]),
                Bytes::from_static(&[9])
            ]
        );
        let back: File = args.get(0).unwrap();
        assert_eq!(back, file);
        let last: Binary = args.get(1).unwrap();
        assert_eq!(last, Binary::from(vec![9]));
    }

    #[test]
    fn skip_keeps_and_renumbers_only_the_attachments_still_used() {
        let args = Args::one(&Binary::from(vec![1]))
            .unwrap()
            .push("room")
            .unwrap()
            .push(&json!({"x": 1}))
            .unwrap()
            .push(&vec![Binary::from(vec![2]), Binary::from(vec![3])])
            .unwrap();
        let rest = args.skip(2);
        assert_eq!(
            rest.values,
            vec![
                json!({"x": 1}),
                json!([
                    {"_placeholder": true, "num": 0},
                    {"_placeholder": true, "num": 1}
                ])
            ]
        );
        assert_eq!(
            rest.attachments,
            vec![Bytes::from_static(&[2]), Bytes::from_static(&[3])]
        );
        assert_eq!(args.skip(4), Args::empty());
    }

    #[test]
    fn placeholder_past_the_attachments_is_an_error() {
        let args = Args {
            values: vec![json!({"_placeholder": true, "num": 3})],
            attachments: vec![],
        };
        assert!(args.get::<Binary>(0).is_err());
    }

    #[test]
    fn unit_is_no_argument_and_values_are_one() {
        assert_eq!(().into_args().unwrap(), Args::empty());
        assert_eq!(5.into_args().unwrap().values, vec![json!(5)]);
        assert_eq!(
            Args::one(&json!(null)).unwrap().into_args().unwrap().values,
            vec![json!(null)]
        );
    }

    #[test]
    fn missing_argument_reads_as_null() {
        let args = Args::empty();
        assert_eq!(args.get::<Option<u32>>(0).unwrap(), None);
        assert!(args.get::<u32>(0).is_err());
    }

    #[test]
    fn all_arguments_as_a_tuple() {
        let args = Args::one(&1).unwrap().push("two").unwrap();
        let (a, b): (u32, String) = args.all().unwrap();
        assert_eq!((a, b.as_str()), (1, "two"));
    }

    #[test]
    fn binary_outside_a_payload_is_a_byte_array() {
        assert_eq!(
            serde_json::to_value(Binary::from(vec![1, 2])).unwrap(),
            json!([1, 2])
        );
    }
}
