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

use serde::Serialize;
use serde_json::Value;
pub use switchboard_protocol::Payload;
use switchboard_protocol::binary::{
    BINARY_MESSAGE_PREFIX, envelope, from_base64, split_envelope, to_base64,
};
use switchboard_protocol::{ClientFrame, DecodeError, Encoding, ErrorCode, Message};

use crate::deflate::{Compressor, Deflated};

/// Why `data` does not match its `encoding`: with `base64`, it must be
/// base64 text.
pub(crate) fn check_data(data: &Value, encoding: Option<Encoding>) -> Result<(), String> {
    match encoding {
        None => Ok(()),
        Some(Encoding::Base64) => match data.as_str() {
            Some(text) if from_base64(text).is_some() => Ok(()),
            Some(_) => Err("`data` is not base64 text (padded, standard alphabet), \
                            as `\"encoding\": \"base64\"` says"
                .to_owned()),
            None => Err("with `\"encoding\": \"base64\"`, `data` must be a string".to_owned()),
        },
    }
}

/// A client's binary message as the request it carries: an envelope whose
/// header is a `publish` or `send` without `data`, the payload its bytes.
/// Refused: a broken envelope ([`ErrorCode::MALFORMED`]), a header that is
/// not a frame (the codes of [`ClientFrame::decode`]), or that is another
/// frame or brings `data` of its own ([`ErrorCode::INVALID_FRAME`]).
pub(crate) fn request_of(message: &[u8], max_depth: usize) -> Result<ClientFrame, DecodeError> {
    let (header, payload) = split_envelope(message).map_err(|err| DecodeError {
        code: ErrorCode::MALFORMED,
        message: format!("not a binary envelope: {err}"),
        id: None,
    })?;
    let mut frame = ClientFrame::decode_limited(header, max_depth)?;
    let invalid = |id: Option<&str>, message: &str| DecodeError {
        code: ErrorCode::INVALID_FRAME,
        message: message.to_owned(),
        id: id.map(str::to_owned),
    };
    let (ClientFrame::Publish { id, data, encoding, .. }
    | ClientFrame::Send { id, data, encoding, .. }) = &mut frame
    else {
        let id = frame.id().map(str::to_owned);
        return Err(invalid(
            id.as_deref(),
            "a binary message carries a `publish` or a `send`; send other frames as text",
        ));
    };
    if !data.is_null() || encoding.is_some() {
        return Err(invalid(
            id.as_deref(),
            "the header of a binary message has no `data` or `encoding`: the bytes after it are the data",
        ));
    }
    *data = Value::String(to_base64(payload));
    *encoding = Some(Encoding::Base64);
    Ok(frame)
}

/// The header of a binary `message`: the frame's fields but `data` and
/// `encoding`, in the order of [`Message`].
#[derive(Serialize)]
struct Header<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: &'a Option<String>,
    from: &'a str,
    event: &'a str,
    ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

/// The binary form of a `message` frame the hub serialized, when its
/// payload is bytes: an envelope of its header and the bytes. `None` for
/// any other frame.
pub(crate) fn envelope_of(frame: &str) -> Option<Vec<u8>> {
    if !frame.starts_with(BINARY_MESSAGE_PREFIX) {
        return None;
    }
    // The frame's `type` is not a field of `Message`, which ignores it.
    let message: Message = serde_json::from_str(frame).ok()?;
    let bytes = from_base64(message.data.as_str()?)?;
    let header = Header {
        kind: "message",
        room: &message.room,
        to: &message.to,
        from: &message.from,
        event: &message.event,
        ts: message.ts,
        offset: message.offset,
    };
    let header = serde_json::to_string(&header).ok()?;
    Some(envelope(&header, &bytes))
}

/// A shared `message` frame's binary form, made the first time a
/// connection that speaks binary writes it, and that form compressed,
/// made the first time one that also negotiated permessage-deflate does.
/// One pointer wide while empty: most deliveries never need it. Like
/// [`Deflated`], a clone starts empty.
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
    use switchboard_protocol::ServerFrame;

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
        let ClientFrame::Publish { data, encoding, .. } = request_of(&made, 32).unwrap() else {
            panic!("not a publish")
        };
        assert_eq!((data, encoding), (Value::String("AGhp".into()), Some(Encoding::Base64)));
        let made = envelope(r#"{"type":"send","to":"bob","event":"e"}"#, b"");
        assert!(matches!(request_of(&made, 32), Ok(ClientFrame::Send { .. })));
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
            let err = request_of(&message, 32).unwrap_err();
            assert_eq!((err.code, err.id.as_deref()), (code, id), "{}", err.message);
        }
    }

    #[test]
    fn base64_data_is_checked_when_the_encoding_says_so() {
        assert!(check_data(&Value::String("AGhp".into()), Some(Encoding::Base64)).is_ok());
        assert!(check_data(&Value::String("AGh".into()), Some(Encoding::Base64)).is_err());
        assert!(check_data(&serde_json::json!(5), Some(Encoding::Base64)).is_err());
        assert!(check_data(&serde_json::json!(5), None).is_ok());
    }
}
