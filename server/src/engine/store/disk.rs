//! [`DiskStore`]: history in an embedded redb database file, so a restarted
//! node keeps its streams, epochs and inboxes and clients recover across the
//! restart.
//!
//! Why redb: pure Rust (no C/C++ build), actively maintained, ACID with
//! crash-safe commits in a single file, and ordered keys, which suit
//! "stream, offset" range reads. Appends commit without an fsync and a
//! durable commit follows at most every second and on shutdown, so a crash
//! loses at most about a second of history while the file always stays
//! consistent.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use switchboard_protocol::Position;
use tungstenite::Utf8Bytes;

use super::{HistoryStore, Replay, StoreError, Stored, StreamKey};
use crate::config::HistoryLimits;
use crate::stream::new_epoch;

/// Per stream: epoch, last offset, delivered offset (inboxes), kept count, kept bytes.
const META: TableDefinition<&str, (&str, u64, u64, u64, u64)> = TableDefinition::new("streams");
/// Per message, keyed by stream and offset: accepted at (Unix ms), frame.
const MESSAGES: TableDefinition<(&str, u64), (u64, &str)> = TableDefinition::new("messages");

/// How often an append makes everything before it durable.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// The on-disk store.
pub struct DiskStore {
    db: Database,
    last_sync: Mutex<Instant>,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Meta {
    epoch: String,
    last: u64,
    delivered: u64,
    count: u64,
    bytes: u64,
}

fn err(error: impl std::fmt::Display) -> StoreError {
    StoreError(error.to_string())
}

impl DiskStore {
    /// Opens (or creates) the database file at `path`, creating its folder.
    pub fn open(path: &Path) -> Result<DiskStore, StoreError> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(err)?;
        }
        let db = Database::create(path).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.open_table(MESSAGES).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(DiskStore { db, last_sync: Mutex::new(Instant::now()) })
    }

    /// Runs `f` in one write transaction, durable when a sync is due.
    fn write<T>(
        &self,
        f: impl FnOnce(
            &mut redb::Table<&str, (&str, u64, u64, u64, u64)>,
            &mut redb::Table<(&str, u64), (u64, &str)>,
        ) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        let sync = {
            let mut last = self.last_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() >= SYNC_EVERY {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        let durability = if sync { Durability::Immediate } else { Durability::None };
        txn.set_durability(durability).map_err(err)?;
        let value = {
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut messages = txn.open_table(MESSAGES).map_err(err)?;
            f(&mut meta, &mut messages)?
        };
        txn.commit().map_err(err)?;
        Ok(value)
    }
}

fn load(
    meta: &impl ReadableTable<&'static str, (&'static str, u64, u64, u64, u64)>,
    key: &str,
) -> Result<Option<Meta>, StoreError> {
    Ok(meta.get(key).map_err(err)?.map(|value| from_row(value.value())))
}

/// A `META` row as [`Meta`].
fn from_row((epoch, last, delivered, count, bytes): (&str, u64, u64, u64, u64)) -> Meta {
    Meta { epoch: epoch.to_owned(), last, delivered, count, bytes }
}

fn save(
    meta: &mut redb::Table<&str, (&str, u64, u64, u64, u64)>,
    key: &str,
    m: &Meta,
) -> Result<(), StoreError> {
    meta.insert(key, (m.epoch.as_str(), m.last, m.delivered, m.count, m.bytes)).map_err(err)?;
    Ok(())
}

fn fresh() -> Meta {
    Meta { epoch: new_epoch(), last: 0, delivered: 0, count: 0, bytes: 0 }
}

/// Drops the oldest messages past the limits.
fn trim(
    messages: &mut redb::Table<(&str, u64), (u64, &str)>,
    key: &str,
    m: &mut Meta,
    limits: &HistoryLimits,
    now_ms: u64,
) -> Result<(), StoreError> {
    let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
    while m.count > 0 {
        let front = {
            let mut range = messages.range((key, 0)..=(key, u64::MAX)).map_err(err)?;
            match range.next() {
                Some(entry) => {
                    let (k, v) = entry.map_err(err)?;
                    let (ts, frame) = v.value();
                    Some((k.value().1, ts, frame.len() as u64))
                }
                None => None,
            }
        };
        let Some((offset, ts, len)) = front else {
            m.count = 0;
            m.bytes = 0;
            break;
        };
        let too_many = m.count as usize > limits.size;
        let too_big = m.bytes as usize > limits.max_bytes;
        if !(too_many || too_big || ts < oldest_kept) {
            break;
        }
        messages.remove((key, offset)).map_err(err)?;
        m.count -= 1;
        m.bytes = m.bytes.saturating_sub(len);
    }
    Ok(())
}

impl DiskStore {
    fn read_range(&self, key: &str, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let messages = txn.open_table(MESSAGES).map_err(err)?;
        let mut out = Vec::new();
        for entry in messages.range((key, after + 1)..=(key, u64::MAX)).map_err(err)?.take(limit) {
            let (k, v) = entry.map_err(err)?;
            let (ts, frame) = v.value();
            out.push(Stored { offset: k.value().1, ts, frame: Utf8Bytes::from(frame.to_owned()) });
        }
        Ok(out)
    }

    /// Trims a stream and returns its metadata, creating it if needed.
    fn trimmed(&self, key: &str, limits: &HistoryLimits, now_ms: u64) -> Result<Meta, StoreError> {
        self.write(|meta, messages| {
            let mut m = load(meta, key)?.unwrap_or_else(fresh);
            trim(messages, key, &mut m, limits, now_ms)?;
            save(meta, key, &m)?;
            Ok(m)
        })
    }
}

impl HistoryStore for DiskStore {
    fn append(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
        encode: &mut dyn FnMut(&str, u64) -> Utf8Bytes,
    ) -> Result<Stored, StoreError> {
        let key = key.encode();
        self.write(|meta, messages| {
            let mut m = load(meta, &key)?.unwrap_or_else(fresh);
            let offset = m.last + 1;
            let stored = Stored { offset, ts: now_ms, frame: encode(&m.epoch, offset) };
            m.last = offset;
            if limits.size > 0 {
                messages
                    .insert((key.as_str(), offset), (now_ms, stored.frame.as_str()))
                    .map_err(err)?;
                m.count += 1;
                m.bytes += stored.frame.len() as u64;
            }
            trim(messages, &key, &mut m, limits, now_ms)?;
            save(meta, &key, &m)?;
            Ok(stored)
        })
    }

    fn position(&self, key: &StreamKey) -> Result<Position, StoreError> {
        let key = key.encode();
        {
            let txn = self.db.begin_read().map_err(err)?;
            let meta = txn.open_table(META).map_err(err)?;
            if let Some(m) = load(&meta, &key)? {
                return Ok(Position { epoch: m.epoch, offset: m.last });
            }
        }
        self.write(|meta, _| {
            let m = load(meta, &key)?.unwrap_or_else(fresh);
            save(meta, &key, &m)?;
            Ok(Position { epoch: m.epoch, offset: m.last })
        })
    }

    fn since(
        &self,
        key: &StreamKey,
        since: &Position,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Replay), StoreError> {
        let key = key.encode();
        let m = self.trimmed(&key, limits, now_ms)?;
        let position = Position { epoch: m.epoch.clone(), offset: m.last };
        if since.epoch != m.epoch || since.offset > m.last {
            return Ok((position, Replay::Lost));
        }
        if since.offset == m.last {
            return Ok((position, Replay::Complete(Vec::new())));
        }
        let missed = self.read_range(&key, since.offset, usize::MAX)?;
        match missed.first() {
            Some(first) if first.offset == since.offset + 1 => {
                Ok((position, Replay::Complete(missed)))
            }
            _ => Ok((position, Replay::Lost)),
        }
    }

    fn page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<Option<(Position, Vec<Stored>)>, StoreError> {
        // One read transaction: a read must not write (not even a trim), so
        // a flood of reads leaves the file as it was. Expired messages still
        // in the file (the sweep removes them) are left out here.
        let key = key.encode();
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let Some(m) = load(&meta, &key)? else { return Ok(None) };
        let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
        let messages = txn.open_table(MESSAGES).map_err(err)?;
        let after = after.unwrap_or(0).saturating_add(1);
        let mut page = Vec::new();
        for entry in
            messages.range((key.as_str(), after)..=(key.as_str(), u64::MAX)).map_err(err)?
        {
            if page.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(err)?;
            let (ts, frame) = v.value();
            if ts >= oldest_kept {
                page.push(Stored {
                    offset: k.value().1,
                    ts,
                    frame: Utf8Bytes::from(frame.to_owned()),
                });
            }
        }
        Ok(Some((Position { epoch: m.epoch, offset: m.last }, page)))
    }

    fn stream_count(&self) -> Result<usize, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        Ok(meta.len().map_err(err)? as usize)
    }

    fn mark_delivered(&self, key: &StreamKey, offset: u64) -> Result<(), StoreError> {
        let key = key.encode();
        self.write(|meta, _| {
            let mut m = load(meta, &key)?.unwrap_or_else(fresh);
            m.delivered = m.delivered.max(offset);
            save(meta, &key, &m)
        })
    }

    fn undelivered(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Vec<Stored>), StoreError> {
        let key = key.encode();
        // One transaction: nothing appended or swept between the read and
        // the new mark is written over.
        self.write(|meta, messages| {
            let mut m = load(meta, &key)?.unwrap_or_else(fresh);
            trim(messages, &key, &mut m, limits, now_ms)?;
            let mut pending = Vec::new();
            for entry in messages
                .range((key.as_str(), m.delivered + 1)..=(key.as_str(), u64::MAX))
                .map_err(err)?
            {
                let (k, v) = entry.map_err(err)?;
                let (ts, frame) = v.value();
                let frame = Utf8Bytes::from(frame.to_owned());
                pending.push(Stored { offset: k.value().1, ts, frame });
            }
            m.delivered = m.last;
            save(meta, &key, &m)?;
            Ok((Position { epoch: m.epoch.clone(), offset: m.last }, pending))
        })
    }

    /// Trims every stream on disk to its limits in one transaction. Stream
    /// records themselves (epoch and offsets, a few dozen bytes) are kept:
    /// the file does not record when a stream was last used, and dropping an
    /// epoch would turn a later resume into `recovered: false`; so a
    /// followed stream is kept like any other.
    fn sweep(
        &self,
        now_ms: u64,
        _idle_ms: u64,
        limits: &dyn Fn(&StreamKey) -> HistoryLimits,
        _followed: &dyn Fn(&StreamKey) -> bool,
    ) {
        let swept = self.write(|meta, messages| {
            let mut holding = Vec::new();
            for entry in meta.iter().map_err(err)? {
                let (key, value) = entry.map_err(err)?;
                let m = from_row(value.value());
                // Only streams that still hold messages need a look.
                if m.count > 0 {
                    holding.push((key.value().to_owned(), m));
                }
            }
            for (key, mut m) in holding {
                let Some(stream) = StreamKey::decode(&key) else { continue };
                let before = (m.count, m.bytes);
                trim(messages, &key, &mut m, &limits(&stream), now_ms)?;
                if (m.count, m.bytes) != before {
                    save(meta, &key, &m)?;
                }
            }
            Ok(())
        });
        if let Err(error) = swept {
            tracing::warn!(%error, "history sweep failed; it is retried at the next one");
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate).map_err(err)?;
        txn.commit().map_err(err)?;
        *self.last_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize) -> HistoryLimits {
        HistoryLimits { size, ttl_secs: 3600, max_bytes: 1 << 20 }
    }

    #[test]
    fn history_epochs_and_inboxes_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("switchboard-disk-{}", std::process::id()));
        let path = dir.join("history.redb");
        let room = StreamKey::Room("general".into());
        let inbox = StreamKey::Inbox("alice".into());
        let epoch = {
            let store = DiskStore::open(&path).unwrap();
            for _ in 0..7 {
                store
                    .append(&room, &limits(5), 1_000, &mut |_, o| Utf8Bytes::from(format!("m{o}")))
                    .unwrap();
            }
            store
                .append(&inbox, &limits(5), 1_000, &mut |_, o| Utf8Bytes::from(format!("d{o}")))
                .unwrap();
            store.flush().unwrap();
            store.position(&room).unwrap().epoch
        };
        let store = DiskStore::open(&path).unwrap();
        let since = Position { epoch: epoch.clone(), offset: 4 };
        let (position, replay) = store.since(&room, &since, &limits(5), 2_000).unwrap();
        assert_eq!(position, Position { epoch, offset: 7 });
        let Replay::Complete(missed) = replay else { panic!("lost across reopening") };
        assert_eq!(
            missed.iter().map(|m| m.frame.to_string()).collect::<Vec<_>>(),
            ["m5", "m6", "m7"]
        );
        let too_old = Position { epoch: position.epoch.clone(), offset: 1 };
        assert_eq!(
            store.since(&room, &too_old, &limits(5), 2_000).unwrap().1,
            Replay::Lost,
            "trimmed to 5"
        );
        let (_, waiting) = store.undelivered(&inbox, &limits(5), 2_000).unwrap();
        assert_eq!(waiting.len(), 1);
        assert!(
            store.undelivered(&inbox, &limits(5), 2_000).unwrap().1.is_empty(),
            "delivered once"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn reading_streams_that_do_not_exist_leaves_the_file_as_it_was() {
        let dir = std::env::temp_dir().join(format!("switchboard-ghosts-{}", std::process::id()));
        let path = dir.join("history.redb");
        let store = DiskStore::open(&path).unwrap();
        let room = StreamKey::Room("real".into());
        store
            .append(&room, &limits(5), 1_000, &mut |_, o| Utf8Bytes::from(format!("m{o}")))
            .unwrap();
        // A few empty commits first: redb settles its own allocator state
        // on the first ones, which is not what this test is about.
        for _ in 0..3 {
            store.flush().unwrap();
        }
        let size = std::fs::metadata(&path).unwrap().len();
        for n in 0..2_000 {
            let ghost = StreamKey::Room(format!("ghost-{n}").into());
            assert_eq!(store.page(&ghost, None, 100, &limits(5), 2_000).unwrap(), None);
        }
        let (position, page) = store.page(&room, None, 100, &limits(5), 2_000).unwrap().unwrap();
        assert_eq!((position.offset, page.len()), (1, 1), "a real stream still reads");
        store.flush().unwrap();
        assert_eq!(store.stream_count().unwrap(), 1, "no stream record was created");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size, "the file did not grow");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_sweep_drops_expired_history_of_streams_nobody_uses() {
        let dir = std::env::temp_dir().join(format!("switchboard-sweep-{}", std::process::id()));
        let store = DiskStore::open(&dir.join("history.redb")).unwrap();
        let short = StreamKey::Room("short".into());
        let inbox = StreamKey::Inbox("bob".into());
        let rules = |key: &StreamKey| match key {
            StreamKey::Room(_) => HistoryLimits { size: 10, ttl_secs: 1, max_bytes: 1 << 20 },
            StreamKey::Inbox(_) => limits(10),
        };
        for (key, at) in [(&short, 1_000), (&short, 5_000), (&inbox, 1_000)] {
            store
                .append(key, &rules(key), at, &mut |_, o| Utf8Bytes::from(format!("m{o}")))
                .unwrap();
        }
        // Nothing reads the streams again; only the sweep sees them.
        store.sweep(5_500, 0, &rules, &|_| false);
        let stored = |key: &StreamKey| {
            let txn = store.db.begin_read().unwrap();
            let messages = txn.open_table(MESSAGES).unwrap();
            let key = key.encode();
            let offsets = messages
                .range((key.as_str(), 0)..=(key.as_str(), u64::MAX))
                .unwrap()
                .map(|entry| entry.unwrap().0.value().1)
                .collect::<Vec<_>>();
            let meta = txn.open_table(META).unwrap();
            (offsets, load(&meta, &key).unwrap().unwrap().count)
        };
        assert_eq!(stored(&short), (vec![2], 1), "the message past its 1 s TTL left the file");
        assert_eq!(stored(&inbox), (vec![1], 1), "the inbox keeps its own 1 h TTL");
        assert_eq!(store.position(&short).unwrap().offset, 2, "the stream record stays");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
