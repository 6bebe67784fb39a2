//! The Switchboard wire protocol, shared by the hub and every client SDK.
//!
//! This crate is pure data: the frames that travel over a WebSocket as JSON
//! text, the numeric codes carried by `error` frames and close frames, and the
//! naming rules both ends enforce. It has no I/O and depends only on `serde`,
//! `serde_json` and `base64`, so it builds for every target, `wasm32-unknown-unknown`
//! included.
//!
//! # Layout
//! - [`frame`]: [`ClientFrame`] (client to server) and [`ServerFrame`]
//!   (server to client), one JSON object per WebSocket text frame, selected by
//!   its `type` field.
//! - [`code`]: [`ErrorCode`] (in `error` frames; the connection stays open) and
//!   [`CloseCode`] (in WebSocket close frames), each with documented ranges and
//!   whether a client should reconnect.
//! - [`binary`]: the envelope of a binary WebSocket message (bytes beside
//!   a frame's JSON header), and the base64 form bytes take in JSON.
//! - [`name`]: the rules for room names, event names and user ids.
//! - `tag_first` (private): decodes [`ServerFrame`] reading `type` first,
//!   without serde's buffering of internally tagged enums.
//!
//! The protocol is documented for client authors in `docs/PROTOCOL.md`; golden
//! JSON fixtures under `fixtures/` pin the exact encoding.

// The browser package links this crate: slicing a `str` by index would
// bring in a panic path worth about 4 KB gzipped (see the SDK's lib.rs).
#![deny(clippy::string_slice)]

pub mod binary;
pub mod code;
pub mod frame;
pub mod name;
mod tag_first;

pub use binary::{Encoding, EnvelopeError, Payload};
pub use code::{CloseCode, ErrorCode};
pub use frame::{
    Ack, ClientFrame, DecodeError, ErrorFrame, MAX_ID_BYTES, MAX_MEMBERS_PAGE, Message, Occupancy,
    Position, Presence, PresenceAction, RoomInfo, RoomJoined, ServerFrame, StreamReset, Welcome,
};
pub use name::{NameError, validate_name};

/// The protocol version this crate speaks, announced in the `welcome` frame.
///
/// It changes only when a frame's existing fields change meaning; adding
/// fields or frame types keeps the version.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest WebSocket message the hub accepts by default (512 KiB).
///
/// A larger message closes the connection with [`CloseCode::MESSAGE_TOO_BIG`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 512 * 1024;
