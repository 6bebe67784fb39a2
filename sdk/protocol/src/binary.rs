//! Binary payloads: the envelope of a binary WebSocket message, and the
//! text form a binary payload takes wherever JSON carries it.
//!
//! A client that connects with `?binary=1` sends and receives bytes as
//! binary WebSocket messages, each an envelope:
//!
//! ```text
//! +----------------------+----------------------------+-----------------+
//! | header length N      | header: N bytes of UTF-8   | payload: the    |
//! | (u32, big-endian)    | JSON, a frame without data | rest, raw bytes |
//! +----------------------+----------------------------+-----------------+
//! ```
//!
//! The header is the frame that would otherwise carry the payload in its
//! `data` field (a client's `publish` or `send`, the hub's `message`),
//! without `data` and `encoding`. Everywhere else (a JSON-only client, a
//! history page, SSE, webhooks, hooks, the HTTP API) the payload is the
//! base64 text of the bytes (RFC 4648, standard alphabet, padded) in
//! `data`, with `"encoding": "base64"` beside it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How a frame's `data` encodes its payload, when it is not JSON.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The payload is bytes; `data` is their base64 text.
    Base64,
}

/// What a message carries: a JSON value, or bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Any JSON value.
    Json(Value),
    /// Bytes: a binary frame to clients that speak binary, base64 text
    /// (with `"encoding":"base64"`) everywhere else.
    Bytes(Vec<u8>),
}

impl From<Value> for Payload {
    fn from(value: Value) -> Payload {
        Payload::Json(value)
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Payload {
        Payload::Bytes(bytes.to_vec())
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload::Bytes(bytes)
    }
}

impl Payload {
    /// The `data` and `encoding` fields of its frame.
    pub fn into_fields(self) -> (Value, Option<Encoding>) {
        match self {
            Payload::Json(value) => (value, None),
            Payload::Bytes(bytes) => (Value::String(to_base64(&bytes)), Some(Encoding::Base64)),
        }
    }
}

/// The bytes the envelope's length field takes.
pub const LENGTH_BYTES: usize = 4;

/// How every `message` frame with a binary payload begins, as the hub
/// serializes it: [`Message::encoding`](crate::Message::encoding) is its
/// first field, so that the hub tells a binary message from a JSON one by
/// this prefix alone, whatever the payload holds.
pub const BINARY_MESSAGE_PREFIX: &str = r#"{"type":"message","encoding":"base64","#;

/// Why a binary WebSocket message is not an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    /// Fewer than [`LENGTH_BYTES`] bytes.
    TooShort(usize),
    /// The header length points past the end of the message.
    HeaderPastEnd {
        /// The header length the message states.
        header: u64,
        /// The bytes after the length field.
        available: usize,
    },
    /// The header is not UTF-8.
    HeaderNotUtf8,
}

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvelopeError::TooShort(len) => write!(
                f,
                "a binary message of {len} bytes has no room for its {LENGTH_BYTES}-byte header length"
            ),
            EnvelopeError::HeaderPastEnd { header, available } => write!(
                f,
                "the header length {header} is past the end of the message ({available} bytes follow it)"
            ),
            EnvelopeError::HeaderNotUtf8 => f.write_str("the header is not UTF-8 text"),
        }
    }
}

impl std::error::Error for EnvelopeError {}

/// Splits an envelope into its header (JSON text, not yet parsed) and its
/// payload.
pub fn split_envelope(message: &[u8]) -> Result<(&str, &[u8]), EnvelopeError> {
    let (length, rest) = message
        .split_first_chunk::<LENGTH_BYTES>()
        .ok_or(EnvelopeError::TooShort(message.len()))?;
    let header = u32::from_be_bytes(*length);
    let (header, payload) = rest
        .split_at_checked(header as usize)
        .ok_or(EnvelopeError::HeaderPastEnd { header: header.into(), available: rest.len() })?;
    let header = std::str::from_utf8(header).map_err(|_| EnvelopeError::HeaderNotUtf8)?;
    Ok((header, payload))
}

/// An envelope of `header` (a frame's JSON without `data`) and `payload`.
/// A header is a frame without its payload: far under the 4 GiB its length
/// field could state.
pub fn envelope(header: &str, payload: &[u8]) -> Vec<u8> {
    // Saturating rather than panicking: the browser package carries no
    // panic path for a case that cannot happen.
    let length = u32::try_from(header.len()).unwrap_or(u32::MAX);
    let mut message = Vec::with_capacity(LENGTH_BYTES + header.len() + payload.len());
    message.extend_from_slice(&length.to_be_bytes());
    message.extend_from_slice(header.as_bytes());
    message.extend_from_slice(payload);
    message
}

/// The base64 text of `bytes`, as `data` carries it in JSON.
pub fn to_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The bytes of `data`'s base64 text; `None` if it is not canonical,
/// padded, standard-alphabet base64.
pub fn from_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_splits_into_what_made_it() {
        let made = envelope(r#"{"type":"publish","room":"r","event":"e"}"#, &[0, 159, 255, 10]);
        assert_eq!(&made[..4], &41u32.to_be_bytes());
        let (header, payload) = split_envelope(&made).unwrap();
        assert_eq!(header, r#"{"type":"publish","room":"r","event":"e"}"#);
        assert_eq!(payload, &[0, 159, 255, 10]);
        let empty = envelope("{}", &[]);
        let (header, payload) = split_envelope(&empty).unwrap();
        assert_eq!((header, payload), ("{}", &[][..]));
    }

    #[test]
    fn broken_envelopes_say_why() {
        assert_eq!(split_envelope(&[0, 0, 1]), Err(EnvelopeError::TooShort(3)));
        assert_eq!(
            split_envelope(&[0xff, 0xff, 0xff, 0xff, b'{']),
            Err(EnvelopeError::HeaderPastEnd { header: u32::MAX.into(), available: 1 })
        );
        assert_eq!(split_envelope(&[0, 0, 0, 2, 0xc3, 0x28]), Err(EnvelopeError::HeaderNotUtf8));
        for err in [EnvelopeError::TooShort(0), EnvelopeError::HeaderNotUtf8] {
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn base64_is_the_padded_standard_alphabet_and_nothing_else() {
        assert_eq!(to_base64(&[0xfb, 0xff, 0x00, 0x61]), "+/8AYQ==");
        assert_eq!(from_base64("+/8AYQ=="), Some(vec![0xfb, 0xff, 0x00, 0x61]));
        for bad in ["+/8AYQ", "-_8AYQ==", "+/8A YQ==", "a", "====", "+/8AYR=="] {
            assert_eq!(from_base64(bad), None, "{bad}");
        }
        assert_eq!(from_base64(""), Some(vec![]));
    }
}
