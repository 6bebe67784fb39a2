//! Turning server frames into the shared text that goes on the wire, and the
//! hub's clock for message timestamps: the bottom layer every other uses.

use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_protocol::ServerFrame;
use tungstenite::Utf8Bytes;

/// Serializes a frame once; the result is shared by every recipient.
pub(crate) fn encode(frame: &ServerFrame) -> Utf8Bytes {
    // Server frames hold only strings, integers and `serde_json::Value`s,
    // none of which can fail to serialize.
    Utf8Bytes::from(serde_json::to_string(frame).expect("server frames always serialize"))
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
