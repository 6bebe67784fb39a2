//! Binary payloads in the hub: [`Payload`] (what the in-process API
//! publishes), a client's binary message read as the request it carries,
//! the check on base64 text, and a message frame's binary form
//! ([`Enveloped`]) for connections that speak binary.
//!
//! The hub keeps one form of every message: its JSON frame, where bytes are
//! base64 text in `data` beside `"encoding":"base64"` (the wire format is
//! in `switchboard_protocol::binary` and docs/PROTOCOL.md). History, Redis,
//! SSE, hooks and webhooks carry that form. A connection that asked for
//! binary (`?binary=1`) gets a binary message its envelope instead: made
//! from the JSON once per delivery, shared by every such member like the
//! compressed form, and made per connection only for replays.

use std::sync::OnceLock;

use serde_json::Value;
pub use switchboard_protocol::Payload;
use switchboard_protocol::binary::{
    BINARY_MESSAGE_PREFIX, envelope, from_base64, split_envelope, to_base64,
};
use switchboard_protocol::{ClientFrame, DecodeError, Encoding, ErrorCode};

use crate::deflate::{Compressor, Deflated};

/// Why `data` does not match its `encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DataError {
    /// `"encoding":"base64"` with `data` that is not a string.
    #[error("with `\"encoding\": \"base64\"`, `data` must be a string")]
    NotText,
    /// `"encoding":"base64"` with a string that is not base64.
    #[error(
        "`data` is not base64 text (padded, standard alphabet), as `\"encoding\": \"base64\"` says"
    )]
    NotBase64,
}

/// The bytes `data` stands for under `encoding`: `None` for JSON, or why
/// it does not match.
pub(crate) fn bytes_of(
    data: &Value,
    encoding: Option<Encoding>,
) -> Result<Option<Vec<u8>>, DataError> {
    match encoding {
        None => Ok(None),
        Some(Encoding::Base64) => {
            let text = data.as_str().ok_or(DataError::NotText)?;
            from_base64(text).map(Some).ok_or(DataError::NotBase64)
        }
    }
}

/// Refuses `data` that does not match its `encoding`.
pub(crate) fn check_data(data: &Value, encoding: Option<Encoding>) -> Result<(), DataError> {
    bytes_of(data, encoding).map(drop)
}

/// A JSON body (a webhook's, an event's) with `"encoding"` beside its
/// `data`, when the payload is bytes.
pub(crate) fn with_encoding(mut body: Value, encoding: Option<Encoding>) -> Value {
    if let (Some(encoding), Some(fields)) = (encoding, body.as_object_mut()) {
        fields.insert("encoding".to_owned(), serde_json::json!(encoding));
    }
    body
}

/// The length of the base64 text of `len` bytes.
fn base64_len(len: usize) -> usize {
    len.div_ceil(3).saturating_mul(4)
}

/// A client's binary message as the request it carries: an envelope whose
/// header is a `publish` or `send` without `data`, the payload its bytes.
/// Refused: a broken envelope ([`ErrorCode::MALFORMED`]), a header that is
/// not a frame (the codes of [`ClientFrame::decode`]), or that is another
/// frame or brings `data` of its own ([`ErrorCode::INVALID_FRAME`]), and
/// bytes whose base64 form, the one the hub keeps, would not fit a frame of
/// `max_bytes` ([`ErrorCode::LIMIT_EXCEEDED`]): the queues, history and
/// JSON-only clients are sized by that limit.
pub(crate) fn request_of(
    message: &[u8],
    max_depth: usize,
    max_bytes: usize,
) -> Result<ClientFrame, DecodeError> {
    let (header, payload) = split_envelope(message).map_err(|err| DecodeError {
        code: ErrorCode::MALFORMED,
        message: format!("not a binary envelope: {err}"),
        id: None,
    })?;
    let mut frame = ClientFrame::decode_limited(header, max_depth)?;
    let refused = |code, id: Option<&str>, message: String| DecodeError {
        code,
        message,
        id: id.map(str::to_owned),
    };
    let (ClientFrame::Publish { id, data, encoding, .. }
    | ClientFrame::Send { id, data, encoding, .. }) = &mut frame
    else {
        let id = frame.id().map(str::to_owned);
        let why = "a binary message carries a `publish` or a `send`; send other frames as text";
        return Err(refused(ErrorCode::INVALID_FRAME, id.as_deref(), why.to_owned()));
    };
    if !data.is_null() || encoding.is_some() {
        let why = "the header of a binary message has no `data` or `encoding`: the bytes after it are the data";
        return Err(refused(ErrorCode::INVALID_FRAME, id.as_deref(), why.to_owned()));
    }
    if header.len().saturating_add(base64_len(payload.len())) > max_bytes {
        let why = format!(
            "{} bytes take {} as base64 text, the form the hub keeps: over limits.max_message_bytes ({max_bytes})",
            payload.len(),
            base64_len(payload.len())
        );
        return Err(refused(ErrorCode::LIMIT_EXCEEDED, id.as_deref(), why));
    }
    *data = Value::String(to_base64(payload));
    *encoding = Some(Encoding::Base64);
    Ok(frame)
}

/// The request id of a client's binary message, read from its header
/// alone (for a refusal that names the request without decoding its
/// bytes).
pub(crate) fn request_id(message: &[u8], max_depth: usize) -> Option<String> {
    let (header, _) = split_envelope(message).ok()?;
    ClientFrame::decode_limited(header, max_depth).ok()?.id().map(str::to_owned)
}

/// The binary form of a `message` frame the hub serialized, when its
/// payload is bytes: an envelope of its header (the frame's own fields, in
/// their order, but `data` and `encoding`) and the bytes. `None` for any
/// other frame.
pub(crate) fn envelope_of(frame: &str) -> Option<Vec<u8>> {
    if !frame.starts_with(BINARY_MESSAGE_PREFIX) {
        return None;
    }
    // The frame as it is (serde_json keeps the order of its fields), so
    // the header carries whatever fields a message has, now or later.
    let mut fields: serde_json::Map<String, Value> = serde_json::from_str(frame).ok()?;
    fields.shift_remove("encoding")?;
    let bytes = from_base64(fields.shift_remove("data")?.as_str()?)?;
    let header = serde_json::to_string(&fields).ok()?;
    Some(envelope(&header, &bytes))
}

/// A shared `message` frame's binary form, made the first time a
/// connection that speaks binary writes it, and that form compressed,
/// made the first time one that also negotiated permessage-deflate does.
/// Two words while empty (a pointer and the lock's state): most
/// deliveries never need it. Like [`Deflated`], a clone starts empty.
#[derive(Default)]
pub(crate) struct Enveloped(OnceLock<Option<Box<Form>>>);

/// The binary form and its compressed form.
struct Form {
    bytes: Box<[u8]>,
    deflated: Deflated,
}

impl Enveloped {
    fn form(&self, frame: &str) -> Option<&Form> {
        if !frame.starts_with(BINARY_MESSAGE_PREFIX) {
            return None;
        }
        let made = || {
            let bytes = envelope_of(frame)?.into_boxed_slice();
            Some(Box::new(Form { bytes, deflated: Deflated::default() }))
        };
        self.0.get_or_init(made).as_deref()
    }

    /// The binary form of `frame` (the frame this belongs to), or `None`
    /// when it is not a binary message. A frame that is not one costs a
    /// comparison of its first bytes, and nothing is kept for it.
    pub(crate) fn get(&self, frame: &str) -> Option<&[u8]> {
        self.form(frame).map(|form| &*form.bytes)
    }

    /// The binary form compressed, when compressing gains.
    pub(crate) fn deflated(&self, frame: &str, compressor: &Compressor) -> Option<&[u8]> {
        let form = self.form(frame)?;
        form.deflated.get(&form.bytes, compressor)
    }
}

impl Clone for Enveloped {
    fn clone(&self) -> Self {
        Enveloped::default()
    }
}

impl std::fmt::Debug for Enveloped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get() {
            None => f.write_str("Enveloped(not yet)"),
            Some(None) => f.write_str("Enveloped(not binary)"),
            Some(Some(form)) => {
                write!(f, "Enveloped({} bytes, {:?})", form.bytes.len(), form.deflated)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode;
    use switchboard_protocol::{Message, ServerFrame};

    fn message(payload: Payload) -> Message {
        let (data, encoding) = payload.into_fields();
        Message {
            encoding,
            room: Some("r".into()),
            to: None,
            from: "ann".into(),
            event: "blob".into(),
            data,
            ts: 7,
            offset: Some(3),
            binary: None,
        }
    }

    #[test]
    fn a_binary_message_frame_begins_with_the_prefix_and_a_json_one_does_not() {
        let bytes = encode(&ServerFrame::Message(message(vec![0, 1, 255].into())));
        assert!(bytes.as_str().starts_with(BINARY_MESSAGE_PREFIX), "{}", bytes.as_str());
        assert!(bytes.as_str().contains(r#""data":"AAH/""#));
        // JSON data that looks like the prefix cannot come first.
        let tricky = serde_json::json!({"type": "message", "encoding": "base64"});
        let json = encode(&ServerFrame::Message(message(tricky.into())));
        assert!(!json.as_str().starts_with(BINARY_MESSAGE_PREFIX));
        assert_eq!(envelope_of(json.as_str()), None);
    }

    #[test]
    fn the_header_holds_every_field_of_the_frame_but_its_payload() {
        // Every field a message has, set: what the JSON form holds but the
        // payload is what the header holds, in the same order.
        let full = Message { to: Some("bob".into()), ..message(vec![1u8].into()) };
        let json = encode(&ServerFrame::Message(full));
        let form = envelope_of(json.as_str()).unwrap();
        let (header, _) = split_envelope(&form).unwrap();
        assert_eq!(
            header,
            r#"{"type":"message","room":"r","to":"bob","from":"ann","event":"blob","ts":7,"offset":3}"#
        );
    }

    #[test]
    fn the_binary_form_holds_the_header_and_the_raw_bytes() {
        let frame = encode(&ServerFrame::Message(message(vec![0, 1, 255].into())));
        let form = envelope_of(frame.as_str()).unwrap();
        let (header, payload) = split_envelope(&form).unwrap();
        assert_eq!(
            header,
            r#"{"type":"message","room":"r","from":"ann","event":"blob","ts":7,"offset":3}"#
        );
        assert_eq!(payload, &[0, 1, 255]);
        let cache = Enveloped::default();
        let first = cache.get(frame.as_str()).unwrap().as_ptr();
        assert_eq!(cache.get(frame.as_str()).unwrap().as_ptr(), first, "made once");
        assert_eq!(Enveloped::default().get(r#"{"type":"presence"}"#), None);
    }

    #[test]
    fn a_binary_request_becomes_its_frame_with_base64_data() {
        let made = envelope(r#"{"type":"publish","id":"1","room":"r","event":"e"}"#, b"\x00hi");
        assert_eq!(request_id(&made, 32).as_deref(), Some("1"));
        let ClientFrame::Publish { data, encoding, .. } = request_of(&made, 32, 1 << 20).unwrap()
        else {
            panic!("not a publish")
        };
        assert_eq!((data, encoding), (Value::String("AGhp".into()), Some(Encoding::Base64)));
        let made = envelope(r#"{"type":"send","to":"bob","event":"e"}"#, b"");
        assert!(matches!(request_of(&made, 32, 1 << 20), Ok(ClientFrame::Send { .. })));
        // Bytes whose base64 form would pass the limit: 300 bytes take 400.
        let header = r#"{"type":"send","id":"9","to":"bob","event":"e"}"#;
        let made = envelope(header, &[0; 300]);
        assert!(request_of(&made, 32, header.len() + 400).is_ok());
        let err = request_of(&made, 32, header.len() + 399).unwrap_err();
        assert_eq!((err.code, err.id.as_deref()), (ErrorCode::LIMIT_EXCEEDED, Some("9")));
    }

    #[test]
    fn broken_binary_requests_get_their_codes() {
        let cases: [(Vec<u8>, ErrorCode, Option<&str>); 6] = [
            (vec![0, 0], ErrorCode::MALFORMED, None),
            (vec![0, 0, 0, 9, b'{'], ErrorCode::MALFORMED, None),
            (envelope("not json", b"x"), ErrorCode::MALFORMED, None),
            (
                envelope(r#"{"type":"join","id":"2","room":"r"}"#, b""),
                ErrorCode::INVALID_FRAME,
                Some("2"),
            ),
            (
                envelope(r#"{"type":"publish","id":"3","room":"r","event":"e","data":1}"#, b""),
                ErrorCode::INVALID_FRAME,
                Some("3"),
            ),
            (envelope(r#"{"type":"nope","id":"4"}"#, b""), ErrorCode::UNKNOWN_TYPE, Some("4")),
        ];
        for (message, code, id) in cases {
            let err = request_of(&message, 32, 1 << 20).unwrap_err();
            assert_eq!((err.code, err.id.as_deref()), (code, id), "{}", err.message);
        }
    }

    #[test]
    fn base64_data_is_checked_when_the_encoding_says_so() {
        let base64 = Some(Encoding::Base64);
        assert_eq!(bytes_of(&Value::String("AGhp".into()), base64), Ok(Some(b"\x00hi".to_vec())));
        assert_eq!(check_data(&Value::String("AGh".into()), base64), Err(DataError::NotBase64));
        assert_eq!(check_data(&serde_json::json!(5), base64), Err(DataError::NotText));
        assert_eq!(bytes_of(&serde_json::json!(5), None), Ok(None));
        let body = with_encoding(serde_json::json!({"data": "AA=="}), base64);
        assert_eq!(body, serde_json::json!({"data": "AA==", "encoding": "base64"}));
    }
}
