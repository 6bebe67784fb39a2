//! Frames through serde_json.

use switchboard_protocol::{ClientFrame, ServerFrame};

/// Decodes a frame from the hub; `Ok(None)` for a type this version does
/// not know; the reason when it is not a valid frame.
pub(crate) fn decode(text: &str) -> Result<Option<ServerFrame>, String> {
    ServerFrame::decode(text).map_err(|err| err.to_string())
}

/// Encodes a frame for the hub.
pub(crate) fn encode(frame: &ClientFrame) -> String {
    // Client frames hold only strings, integers and `serde_json::Value`s,
    // which always serialize.
    serde_json::to_string(frame).expect("client frames always serialize")
}
