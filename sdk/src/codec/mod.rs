//! Frames to and from JSON text: one [`decode`] and one [`encode`] per
//! target, with the same results.
//!
//! - `native.rs` uses serde_json through the protocol crate's own serde
//!   implementations.
//! - `web.rs` lets the browser do the JSON (`JSON.parse`, `JSON.stringify`)
//!   and reads or builds the frame's fields from the resulting JavaScript
//!   values. serde's generated decoders and serde_json's parser and number
//!   formatting were about half of the browser package; the browser already
//!   has a fast JSON engine, so the package leaves them out. `json_value.rs`
//!   converts application data (`serde_json::Value`) to and from JavaScript
//!   values, `js_object.rs` reads and builds objects by field; both are
//!   public as [`js`] for `switchboard-js`.
//!
//! Both follow the protocol's rules for server frames: unknown fields are
//! ignored, a frame whose `type` this version does not know is skipped
//! (`Ok(None)`), a known type with missing or mistyped fields is an error.
//! The wasm tests decode every frame the hub sends with both and compare.
//!
//! This module, `transport/` and `runtime.rs` are the only places that
//! look at `target_arch`.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{decode, encode};

#[cfg(target_arch = "wasm32")]
mod js_object;
#[cfg(target_arch = "wasm32")]
mod json_value;
#[cfg(target_arch = "wasm32")]
mod web;

/// JavaScript values for bindings such as `switchboard-js` (wasm32 only):
/// application data to and from `serde_json::Value`, and objects read and
/// built field by field with the codec's own error messages.
#[cfg(target_arch = "wasm32")]
pub mod js {
    pub use super::js_object::{Fields, ObjectBuilder, mistyped};
    pub use super::json_value::{value_from_js, value_to_js};
}
#[cfg(target_arch = "wasm32")]
pub(crate) use web::{decode, encode};

#[cfg(all(test, target_arch = "wasm32"))]
mod web_tests;
