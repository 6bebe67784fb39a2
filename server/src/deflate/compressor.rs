//! [`Compressor`]: one hub's compression settings, and the counters
//! `/metrics` reads.

use std::sync::atomic::{AtomicU64, Ordering};

use super::codec;

/// How frames are compressed, and what compression did, for one hub.
#[derive(Debug)]
pub(crate) struct Compressor {
    /// zlib level, 1 to 9.
    pub(crate) level: u32,
    /// Frames shorter than this go uncompressed.
    pub(crate) threshold: usize,
    /// Payload bytes of the frames written to connections that negotiated
    /// the extension, before compression.
    before: AtomicU64,
    /// The same frames' payload bytes as written.
    after: AtomicU64,
    /// Connections that negotiated the extension.
    connections: AtomicU64,
    /// Frames compressed, whether or not that made them smaller (a shared
    /// frame once, whatever its recipients).
    compressed: AtomicU64,
    /// Client messages inflated.
    inflated: AtomicU64,
}

/// What [`Compressor::totals`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) before: u64,
    pub(crate) after: u64,
    pub(crate) connections: u64,
    pub(crate) compressed: u64,
    pub(crate) inflated: u64,
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
            compressed: AtomicU64::new(0),
            inflated: AtomicU64::new(0),
        }
    }

    /// `text` compressed, when it is long enough and compressing it gains.
    pub(crate) fn deflate(&self, text: &[u8]) -> Option<Box<[u8]>> {
        if text.len() < self.threshold {
            return None;
        }
        self.compressed.fetch_add(1, Ordering::Relaxed);
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

    /// Counts a client message inflated.
    pub(crate) fn inflated(&self) {
        self.inflated.fetch_add(1, Ordering::Relaxed);
    }

    /// Everything counted since the start.
    pub(crate) fn totals(&self) -> Totals {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Totals {
            before: read(&self.before),
            after: read(&self.after),
            connections: read(&self.connections),
            compressed: read(&self.compressed),
            inflated: read(&self.inflated),
        }
    }
}
