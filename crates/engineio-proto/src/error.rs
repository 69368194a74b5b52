//! Error types of the protocol core.

use thiserror::Error;

/// Why a packet or a payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// A packet with no type character.
    #[error("empty packet")]
    Empty,
    /// A type character outside `0`..=`6`.
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// An open packet whose JSON body does not have the expected keys.
    #[error("invalid open packet")]
    InvalidOpenPacket,
    /// A polling payload that is not UTF-8 text.
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    /// A `b` item whose base64 does not decode.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A payload larger than the configured maximum.
    #[error("payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// The error codes the reference server answers bad HTTP requests with.
///
/// Each is sent as a JSON body `{"code": N, "message": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum ErrorCode {
    /// Code 0: the `transport` query parameter is missing or not allowed.
    #[error("Transport unknown")]
    UnknownTransport,
    /// Code 1: no live session has this `sid`.
    #[error("Session ID unknown")]
    UnknownSid,
    /// Code 2: a handshake that is not a GET.
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    /// Code 3: the request does not fit the session's state.
    #[error("Bad request")]
    BadRequest,
    /// Code 4: refused by the application's `allow_request` hook.
    #[error("Forbidden")]
    Forbidden,
    /// Code 5: `EIO` is missing or not 4.
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
}

impl ErrorCode {
    /// The numeric code sent in the JSON body.
    pub const fn code(self) -> u8 {
        match self {
            ErrorCode::UnknownTransport => 0,
            ErrorCode::UnknownSid => 1,
            ErrorCode::BadHandshakeMethod => 2,
            ErrorCode::BadRequest => 3,
            ErrorCode::Forbidden => 4,
            ErrorCode::UnsupportedProtocolVersion => 5,
        }
    }

    /// The HTTP status: 403 for [`ErrorCode::Forbidden`], 400 for every other code.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            _ => 400,
        }
    }

    /// The exact JSON body the reference server sends.
    pub fn json_body(self) -> String {
        format!(r#"{{"code":{},"message":"{}"}}"#, self.code(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_has_its_number_status_and_message() {
        let all = [
            (ErrorCode::UnknownTransport, 0, 400, "Transport unknown"),
            (ErrorCode::UnknownSid, 1, 400, "Session ID unknown"),
            (
                ErrorCode::BadHandshakeMethod,
                2,
                400,
                "Bad handshake method",
            ),
            (ErrorCode::BadRequest, 3, 400, "Bad request"),
            (ErrorCode::Forbidden, 4, 403, "Forbidden"),
            (
                ErrorCode::UnsupportedProtocolVersion,
                5,
                400,
                "Unsupported protocol version",
            ),
        ];
        for (code, number, status, message) in all {
            assert_eq!(code.code(), number);
            assert_eq!(code.http_status(), status);
            assert_eq!(
                code.json_body(),
                format!(r#"{{"code":{number},"message":"{message}"}}"#)
            );
        }
    }
}
