//! The choice of packet encoding.

/// The Socket.IO parser: how packets are written into Engine.IO messages. Server and client
/// must use the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Parser {
    /// The default parser: JSON text, binary values as separate attachments.
    #[default]
    Json,
    /// The msgpack parser, compatible with npm `socket.io-msgpack-parser`: one binary message
    /// per packet.
    MsgPack,
}

impl std::str::FromStr for Parser {
    type Err = UnknownParser;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "json" => Ok(Parser::Json),
            "msgpack" => Ok(Parser::MsgPack),
            other => Err(UnknownParser(other.to_owned())),
        }
    }
}

/// A parser name other than `json` or `msgpack`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown parser {0:?} (expected json or msgpack)")]
pub struct UnknownParser(pub String);
