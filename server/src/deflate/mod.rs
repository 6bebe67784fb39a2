//! permessage-deflate (RFC 7692): what the hub needs to compress what it
//! sends and inflate what clients send, with no zlib state per connection.
//!
//! - [`offer`]: reading a client's offers and answering them;
//! - [`codec`]: raw deflate and inflate on the worker thread's zlib state;
//! - [`inflating`]: the read side, a layer under tungstenite's frame reader;
//! - [`Compressor`]: one hub's settings and counters;
//! - [`Deflated`]: a shared frame's compressed form, made once;
//! - [`InflateError`]: why a client's compressed message was refused.
//!
//! The write side frames compressed messages itself
//! (`session/frames.rs`): a room's message is compressed at most once on a
//! node, by whichever member's writer needs it first, and every member that
//! negotiated the extension gets the same bytes.
//!
//! A leaf: it knows nothing of the hub, sessions or configuration.

pub(crate) mod codec;
mod compressor;
mod error;
pub(crate) mod inflating;
pub(crate) mod offer;
mod shared;

pub(crate) use compressor::Compressor;
pub(crate) use error::{FramingError, InflateError};
pub(crate) use shared::Deflated;
