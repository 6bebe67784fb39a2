//! [`MemoryStore`]: history in this process's memory; lost (and every epoch
//! renewed) on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use switchboard_protocol::Position;
use tungstenite::Utf8Bytes;

use super::{HistoryStore, Replay, StoreError, Stored, StreamKey};
use crate::config::HistoryLimits;
use crate::stream::new_epoch;

/// The default store.
#[derive(Debug, Default)]
pub struct MemoryStore {
    streams: Mutex<HashMap<StreamKey, Stream>>,
}

/// One stream in memory.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) epoch: String,
    /// Offset of the last message appended (0 before any).
    pub(crate) last: u64,
    pub(crate) entries: VecDeque<Stored>,
    pub(crate) bytes: usize,
    pub(crate) touched_ms: u64,
    /// Inboxes: the last offset some connection of the user received.
    pub(crate) delivered: u64,
}

impl Stream {
    pub(crate) fn new(now_ms: u64) -> Stream {
        Stream {
            epoch: new_epoch(),
            last: 0,
            entries: VecDeque::new(),
            bytes: 0,
            touched_ms: now_ms,
            delivered: 0,
        }
    }

    pub(crate) fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), offset: self.last }
    }

    /// Drops what is too old, too many or too big.
    pub(crate) fn trim(&mut self, limits: &HistoryLimits, now_ms: u64) {
        let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
        while let Some(front) = self.entries.front() {
            let too_many = self.entries.len() > limits.size;
            let too_big = self.bytes > limits.max_bytes;
            if too_many || too_big || front.ts < oldest_kept {
                self.bytes -= front.frame.len();
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    pub(crate) fn push(&mut self, stored: Stored, limits: &HistoryLimits, now_ms: u64) {
        self.last = stored.offset;
        self.touched_ms = now_ms;
        if limits.size > 0 {
            self.bytes += stored.frame.len();
            self.entries.push_back(stored);
        }
        self.trim(limits, now_ms);
    }

    /// Everything after `since`, or [`Replay::Lost`] if any of it is gone.
    pub(crate) fn replay(&self, since: &Position) -> Replay {
        if since.epoch != self.epoch || since.offset > self.last {
            return Replay::Lost;
        }
        if since.offset == self.last {
            return Replay::Complete(Vec::new());
        }
        // The first message after `since` must still be here.
        match self.entries.front() {
            Some(front) if front.offset <= since.offset + 1 => Replay::Complete(
                self.entries.iter().filter(|e| e.offset > since.offset).cloned().collect(),
            ),
            _ => Replay::Lost,
        }
    }

    pub(crate) fn page(&self, after: Option<u64>, limit: usize) -> Vec<Stored> {
        let after = after.unwrap_or(0);
        self.entries.iter().filter(|e| e.offset > after).take(limit).cloned().collect()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, key: &StreamKey, now_ms: u64, f: impl FnOnce(&mut Stream) -> T) -> T {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let stream = streams.entry(key.clone()).or_insert_with(|| Stream::new(now_ms));
        f(stream)
    }
}

impl HistoryStore for MemoryStore {
    fn append(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
        encode: &mut dyn FnMut(&str, u64) -> Utf8Bytes,
    ) -> Result<Stored, StoreError> {
        Ok(self.with(key, now_ms, |stream| {
            let offset = stream.last + 1;
            let stored = Stored { offset, ts: now_ms, frame: encode(&stream.epoch, offset) };
            stream.push(stored.clone(), limits, now_ms);
            stored
        }))
    }

    fn position(&self, key: &StreamKey) -> Result<Position, StoreError> {
        let now_ms = crate::wire::now_ms();
        Ok(self.with(key, now_ms, |stream| {
            stream.touched_ms = now_ms;
            stream.position()
        }))
    }

    fn since(
        &self,
        key: &StreamKey,
        since: &Position,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Replay), StoreError> {
        Ok(self.with(key, now_ms, |stream| {
            stream.trim(limits, now_ms);
            stream.touched_ms = now_ms;
            (stream.position(), stream.replay(since))
        }))
    }

    fn page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<Option<(Position, Vec<Stored>)>, StoreError> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(streams.get_mut(key).map(|stream| {
            stream.trim(limits, now_ms);
            (stream.position(), stream.page(after, limit))
        }))
    }

    fn stream_count(&self) -> Result<usize, StoreError> {
        Ok(self.streams.lock().unwrap_or_else(PoisonError::into_inner).len())
    }

    fn mark_delivered(&self, key: &StreamKey, offset: u64) -> Result<(), StoreError> {
        let now_ms = crate::wire::now_ms();
        self.with(key, now_ms, |stream| {
            stream.touched_ms = now_ms;
            stream.delivered = stream.delivered.max(offset)
        });
        Ok(())
    }

    fn undelivered(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Vec<Stored>), StoreError> {
        Ok(self.with(key, now_ms, |stream| {
            stream.trim(limits, now_ms);
            stream.touched_ms = now_ms;
            let pending = stream.page(Some(stream.delivered), usize::MAX);
            stream.delivered = stream.last;
            (stream.position(), pending)
        }))
    }

    fn sweep(
        &self,
        now_ms: u64,
        idle_ms: u64,
        limits: &dyn Fn(&StreamKey) -> HistoryLimits,
        followed: &dyn Fn(&StreamKey) -> bool,
    ) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|key, stream| {
            stream.trim(&limits(key), now_ms);
            !stream.entries.is_empty()
                || now_ms.saturating_sub(stream.touched_ms) < idle_ms
                || followed(key)
        });
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, ttl_secs: u64) -> HistoryLimits {
        HistoryLimits { size, ttl_secs, max_bytes: 1 << 20 }
    }

    fn append(store: &MemoryStore, key: &StreamKey, limits: &HistoryLimits, now: u64) -> u64 {
        store.append(key, limits, now, &mut |_, o| Utf8Bytes::from(format!("m{o}"))).unwrap().offset
    }

    #[test]
    fn offsets_are_consecutive_and_replay_fills_the_gap() {
        let store = MemoryStore::new();
        let key = StreamKey::Room("r".into());
        let l = limits(100, 3600);
        let start = store.position(&key).unwrap();
        assert_eq!(start.offset, 0);
        for expected in 1..=5 {
            assert_eq!(append(&store, &key, &l, 1_000), expected);
        }
        let since = Position { epoch: start.epoch.clone(), offset: 2 };
        let (now, replay) = store.since(&key, &since, &l, 1_000).unwrap();
        assert_eq!(now.offset, 5);
        let Replay::Complete(missed) = replay else { panic!("lost") };
        assert_eq!(missed.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![3, 4, 5]);
        let at_head = Position { epoch: start.epoch, offset: 5 };
        assert_eq!(store.since(&key, &at_head, &l, 1_000).unwrap().1, Replay::Complete(vec![]));
    }

    #[test]
    fn size_and_ttl_trim_and_a_trimmed_gap_is_lost() {
        let store = MemoryStore::new();
        let key = StreamKey::Room("r".into());
        let epoch = store.position(&key).unwrap().epoch;
        let small = limits(3, 3600);
        for _ in 0..5 {
            append(&store, &key, &small, 1_000);
        }
        let (_, kept) = store.page(&key, None, 100, &small, 1_000).unwrap().unwrap();
        assert_eq!(kept.iter().map(|m| m.offset).collect::<Vec<_>>(), vec![3, 4, 5]);
        let lost = Position { epoch: epoch.clone(), offset: 1 };
        assert_eq!(store.since(&key, &lost, &small, 1_000).unwrap().1, Replay::Lost);
        let fine = Position { epoch: epoch.clone(), offset: 2 };
        assert!(
            matches!(store.since(&key, &fine, &small, 1_000).unwrap().1, Replay::Complete(m) if m.len() == 3)
        );

        // Ten seconds later with a 5 s TTL, everything is gone.
        let short = limits(3, 5);
        let (_, kept) = store.page(&key, None, 100, &short, 11_000).unwrap().unwrap();
        assert!(kept.is_empty());
        assert_eq!(store.since(&key, &fine, &short, 11_000).unwrap().1, Replay::Lost);
        // Offsets go on regardless.
        assert_eq!(append(&store, &key, &short, 11_000), 6);
    }

    #[test]
    fn another_epoch_or_a_future_offset_is_lost() {
        let store = MemoryStore::new();
        let key = StreamKey::Inbox("u".into());
        let l = limits(10, 60);
        append(&store, &key, &l, 0);
        let epoch = store.position(&key).unwrap().epoch;
        let other = Position { epoch: "other".into(), offset: 0 };
        assert_eq!(store.since(&key, &other, &l, 0).unwrap().1, Replay::Lost);
        let future = Position { epoch, offset: 9 };
        assert_eq!(store.since(&key, &future, &l, 0).unwrap().1, Replay::Lost);
    }

    #[test]
    fn a_room_without_history_still_counts_offsets() {
        let store = MemoryStore::new();
        let key = StreamKey::Room("ticker".into());
        let none = limits(0, 0);
        let epoch = store.position(&key).unwrap().epoch;
        append(&store, &key, &none, 0);
        append(&store, &key, &none, 0);
        let behind = Position { epoch: epoch.clone(), offset: 1 };
        assert_eq!(store.since(&key, &behind, &none, 0).unwrap().1, Replay::Lost);
        let caught_up = Position { epoch, offset: 2 };
        assert_eq!(store.since(&key, &caught_up, &none, 0).unwrap().1, Replay::Complete(vec![]));
    }

    #[test]
    fn reading_streams_that_do_not_exist_creates_nothing() {
        let store = MemoryStore::new();
        for n in 0..10_000 {
            let key = StreamKey::Room(format!("ghost-{n}").into());
            assert_eq!(store.page(&key, Some(3), 100, &limits(10, 60), 0).unwrap(), None);
        }
        assert_eq!(store.stream_count().unwrap(), 0);
        assert!(store.streams.lock().unwrap().is_empty());
    }

    #[test]
    fn idle_empty_streams_nobody_follows_are_swept_with_their_epoch() {
        let store = MemoryStore::new();
        let key = StreamKey::Room("gone".into());
        let epoch = store.position(&key).unwrap().epoch;
        let later = crate::wire::now_ms() + 10_000;
        store.sweep(later, 1_000, &|_| limits(10, 60), &|_| true);
        assert_eq!(store.position(&key).unwrap().epoch, epoch, "a followed stream stays");
        store.sweep(later, 1_000, &|_| limits(10, 60), &|_| false);
        assert_ne!(store.position(&key).unwrap().epoch, epoch, "a new stream, a new epoch");
    }

    #[test]
    fn reading_an_inbox_counts_as_a_use_for_the_sweep() {
        let store = MemoryStore::new();
        let inbox = StreamKey::Inbox("u".into());
        let l = limits(10, 60);
        store.undelivered(&inbox, &l, 1_000).unwrap();
        let epoch = store.streams.lock().unwrap()[&inbox].epoch.clone();
        // Read again just before it would be idle, swept just after.
        store.undelivered(&inbox, &l, 1_000 + 9_000).unwrap();
        store.sweep(1_000 + 12_000, 10_000, &|_| l.clone(), &|_| false);
        let streams = store.streams.lock().unwrap();
        assert_eq!(streams.get(&inbox).map(|s| s.epoch.clone()), Some(epoch), "kept: just read");
    }

    #[test]
    fn the_sweep_drops_expired_history_of_streams_nobody_uses() {
        let store = MemoryStore::new();
        let short = StreamKey::Room("short".into());
        let long = StreamKey::Room("long".into());
        let rules = |key: &StreamKey| match key {
            StreamKey::Room(room) if &**room == "short" => limits(10, 1),
            _ => limits(10, 3600),
        };
        append(&store, &short, &rules(&short), 1_000);
        append(&store, &short, &rules(&short), 5_000);
        append(&store, &long, &rules(&long), 1_000);
        // Nothing reads the streams again; only the sweep sees them.
        store.sweep(5_500, 3_600_000, &rules, &|_| false);
        let streams = store.streams.lock().unwrap();
        let kept =
            |key: &StreamKey| streams[key].entries.iter().map(|e| e.offset).collect::<Vec<_>>();
        assert_eq!(kept(&short), [2], "the message past its 1 s TTL is gone");
        assert_eq!(kept(&long), [1], "a 1 h TTL keeps it");
    }
}
