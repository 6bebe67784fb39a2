//! History: every room and every user's inbox is a stream of messages with
//! consecutive offsets, kept for a while so a client can catch up.
//!
//! A [`HistoryStore`] assigns offsets and keeps the bounded history of each
//! stream; [`MemoryStore`] is the default and [`DiskStore`] keeps history
//! across restarts on one machine. Each stream has an epoch that changes
//! whenever its history is lost (a restart of the memory store, an idle
//! stream evicted), so a client's old offsets are never mistaken for new ones.
//!
//! The store knows nothing of sockets or locks between streams: the memory
//! engine's broker (`engine/memory/broker.rs`) serializes appends per
//! stream and does the fan-out.

mod disk;
mod memory;
mod writer;

pub use disk::DiskStore;
pub use memory::MemoryStore;
pub use writer::Writer;
pub(crate) use writer::{Job, Then};

use switchboard_protocol::Position;
use tungstenite::Utf8Bytes;

use crate::config::HistoryLimits;
pub use crate::stream::{Replay, Stored, StreamKey};

/// A failure of the store's backend.
#[derive(Debug, Clone, thiserror::Error)]
#[error("history store: {0}")]
pub struct StoreError(pub String);

/// Keeps streams: offsets, epochs and bounded history.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends a message with the next offset; `encode` builds its frame
    /// for the stream's epoch and that offset. Trims the stream to
    /// `limits`. Returns the stored message.
    fn append(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
        encode: &mut dyn FnMut(&str, u64) -> Utf8Bytes,
    ) -> Result<Stored, StoreError>;

    /// The stream's epoch and last offset (creating the stream if needed);
    /// counts as a use of the stream for the idle sweep.
    fn position(&self, key: &StreamKey) -> Result<Position, StoreError>;

    /// The stream's position when a read alone can tell it; `None` when
    /// finding it needs a write (the stream is new, or its time of use is
    /// due), which [`HistoryStore::position`] then does. The default says
    /// `None`: a store without a [`HistoryStore::writer`] is asked
    /// [`HistoryStore::position`] directly.
    fn read_position(&self, _key: &StreamKey) -> Result<Option<Position>, StoreError> {
        Ok(None)
    }

    /// Everything after `since`, if the stream still holds all of it.
    fn since(
        &self,
        key: &StreamKey,
        since: &Position,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Replay), StoreError>;

    /// Up to `limit` messages after offset `after` (from the oldest kept when
    /// `None`), oldest first, leaving out those past the TTL in `limits`.
    /// A read: it never creates a stream (`None` for one that does not
    /// exist), so reading random names cannot grow the store.
    fn page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<Option<(Position, Vec<Stored>)>, StoreError>;

    /// How many streams the store holds.
    fn stream_count(&self) -> Result<usize, StoreError>;

    /// Records that a connection of the inbox's user received everything up
    /// to `offset`.
    fn mark_delivered(&self, key: &StreamKey, offset: u64) -> Result<(), StoreError>;

    /// The messages after the last one marked delivered, which are then
    /// marked delivered; the stream's position.
    fn undelivered(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Vec<Stored>), StoreError>;

    /// Periodic upkeep: drops every stored message past its stream's TTL
    /// (`limits` gives each stream's limits), so expired history leaves the
    /// store even in streams nobody uses again; then drops streams idle for
    /// longer than `idle_ms` with nothing left and no follower (`followed`
    /// says which streams a connection follows), so the store does not grow
    /// with every room ever used, and a stream stays while anyone follows
    /// it, however quiet: its epoch and offsets must not change under them.
    fn sweep(
        &self,
        now_ms: u64,
        idle_ms: u64,
        limits: &dyn Fn(&StreamKey) -> HistoryLimits,
        followed: &dyn Fn(&StreamKey) -> bool,
    );

    /// Makes everything appended so far durable (no-op in memory).
    fn flush(&self) -> Result<(), StoreError>;

    /// The writer that groups the broker's steps into transactions, for a
    /// store whose calls block (the disk store's): the steps that queue up
    /// while one transaction runs share the next, and only one task at a
    /// time waits on the store. `None`, the default, for a store whose
    /// calls return at once: the broker then calls it directly.
    fn writer(&self) -> Option<&Writer> {
        None
    }
}

/// An empty stream that nobody follows, untouched this long, is dropped
/// (its epoch with it).
pub(crate) const STREAM_IDLE_MS: u64 = 10 * 60 * 1000;
