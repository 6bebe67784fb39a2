//! permessage-deflate (RFC 7692): what the hub needs to compress what it
//! sends and inflate what clients send, with no zlib state per connection.
//!
//! - [`offer`]: reading a client's offers and answering them;
//! - [`codec`]: raw deflate and inflate on the worker thread's zlib state;
//! - [`inflating`]: the read side, a layer under tungstenite's frame reader;
//! - [`Compressor`] and [`Deflated`] (here): the write side's settings and
//!   counters, and a frame's compressed form, made once and shared.
//!
//! The write side frames compressed messages itself
//! (`session/frames.rs`): a room's message is compressed at most once, by
//! whichever member's writer needs it first, and every member that
//! negotiated the extension gets the same bytes.
//!
//! A leaf: it knows nothing of the hub, sessions or configuration.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) mod codec;
pub(crate) mod inflating;
pub(crate) mod offer;

pub(crate) use codec::InflateError;

/// How frames are compressed, and what compressing them saved, for one hub.
#[derive(Debug)]
pub(crate) struct Compressor {
    /// zlib level, 0 (stored) to 9.
    pub(crate) level: u32,
    /// Frames shorter than this go uncompressed.
    pub(crate) threshold: usize,
    /// Payload bytes of messages written to connections that negotiated
    /// the extension, before compression.
    before: AtomicU64,
    /// The same messages' payload bytes as written.
    after: AtomicU64,
    /// Connections that negotiated the extension.
    connections: AtomicU64,
}

impl Compressor {
    /// Compresses at `level` what is at least `threshold` bytes long.
    pub(crate) fn new(level: u32, threshold: usize) -> Compressor {
        Compressor {
            level,
            threshold,
            before: AtomicU64::new(0),
            after: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    /// `text` compressed, when it is long enough and compressing it gains.
    pub(crate) fn deflate(&self, text: &[u8]) -> Option<Box<[u8]>> {
        if text.len() < self.threshold {
            return None;
        }
        codec::deflate(text, self.level)
    }

    /// Counts one write's payload bytes, before and after compression.
    pub(crate) fn count(&self, before: usize, after: usize) {
        self.before.fetch_add(before as u64, Ordering::Relaxed);
        self.after.fetch_add(after as u64, Ordering::Relaxed);
    }

    /// Counts a connection that negotiated the extension.
    pub(crate) fn negotiated(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// Payload bytes before and after compression, and the connections
    /// that negotiated it, since the start.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        (
            self.before.load(Ordering::Relaxed),
            self.after.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
        )
    }
}

/// A shared frame's compressed form: made the first time a connection that
/// negotiated the extension writes the frame, then shared by all the others.
#[derive(Debug, Default)]
pub(crate) struct Deflated(OnceLock<Option<Box<[u8]>>>);

impl Deflated {
    /// The compressed form of `text` (the frame this belongs to), or `None`
    /// when it goes uncompressed.
    pub(crate) fn get(&self, text: &[u8], compressor: &Compressor) -> Option<&[u8]> {
        self.0.get_or_init(|| compressor.deflate(text)).as_deref()
    }
}

impl Clone for Deflated {
    /// A copy starts empty: a delivery is cloned to be changed, and its
    /// frame with it.
    fn clone(&self) -> Self {
        Deflated::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_compressed_once_above_the_threshold() {
        let compressor = Compressor::new(6, 100);
        let text = "abc".repeat(100);
        let cache = Deflated::default();
        let first = cache.get(text.as_bytes(), &compressor).unwrap().as_ptr();
        let again = cache.get(text.as_bytes(), &compressor).unwrap().as_ptr();
        assert_eq!(first, again, "the same bytes, not compressed again");
        assert_eq!(Deflated::default().get(&text.as_bytes()[..99], &compressor), None);
        compressor.count(300, 20);
        compressor.negotiated();
        assert_eq!(compressor.totals(), (300, 20, 1));
    }
}
