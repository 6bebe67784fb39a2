//! Frames to and from JSON text: one [`decode`] and one [`encode`] per
//! target, with the same results.
//!
//! - `native.rs` uses the protocol crate's serde implementations: the
//!   fastest path, with a decoder generated per frame type.
//! - `frames.rs`, for the browser package, parses every frame into one
//!   generic `serde_json::Value` and reads its fields by hand (`fields.rs`),
//!   and writes frames the same way. The generated decoders, instantiated
//!   per type and per deserializer, and the float formatting their error
//!   messages pull in were about 40 KB of the 140 KB gzipped package;
//!   this way it carries serde_json's parser and writer once.
//!   It is plain Rust, so its tests run natively, against serde's.
//! - `js.rs` (wasm32) converts application data to and from JavaScript
//!   values through JSON text; with `fields.rs` it is public as [`js`] for
//!   `switchboard-js`.
//!
//! Both follow the protocol's rules for server frames: unknown fields are
//! ignored, a frame whose `type` this version does not know is skipped
//! (`Ok(None)`), a known type with missing or mistyped fields is an error.
//!
//! This module, `transport/` and `runtime.rs` are the only places that
//! look at `target_arch`.

// Natively these two exist only for their tests.
#[cfg(any(test, target_arch = "wasm32"))]
#[cfg_attr(not(target_arch = "wasm32"), allow(unreachable_pub, dead_code))]
mod fields;
#[cfg(any(test, target_arch = "wasm32"))]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
mod frames;
#[cfg(target_arch = "wasm32")]
mod js_data;
#[cfg(not(target_arch = "wasm32"))]
mod native;

#[cfg(target_arch = "wasm32")]
pub(crate) use frames::{decode, encode};
#[cfg(target_arch = "wasm32")]
use js_data::from_base64;
#[cfg(target_arch = "wasm32")]
pub(crate) use js_data::to_base64;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{decode, encode};
#[cfg(not(target_arch = "wasm32"))]
use switchboard_protocol::binary::from_base64;
/// The base64 text of `bytes` (always, natively).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn to_base64(bytes: &[u8]) -> Option<String> {
    Some(switchboard_protocol::binary::to_base64(bytes))
}

use switchboard_protocol::Message;

/// Moves a payload of bytes carried as base64 text (a history page, a hub
/// that was asked for text) into [`Message::binary`], as the SDK shows
/// bytes however they came: `data` null and `encoding` absent then. Data
/// that is not the base64 its encoding says is left as it is. In the
/// browser package the runtime's `atob` decodes, which costs the package
/// nothing.
pub(crate) fn take_base64(message: &mut Message) {
    if message.encoding.is_none() {
        return;
    }
    if let Some(bytes) = message.data.as_str().and_then(from_base64) {
        message.binary = Some(bytes);
        message.data = serde_json::Value::Null;
        message.encoding = None;
    }
}

/// For JavaScript bindings such as `switchboard-js` (wasm32 only):
/// application data to and from JavaScript values, and JSON objects read
/// and built field by field with the codec's own error messages.
#[cfg(target_arch = "wasm32")]
pub mod js {
    pub use super::fields::{Fields, ObjectWriter, json_array, mistyped};
    pub use super::js_data::{json_to_js, value_from_js, value_to_js};
}
