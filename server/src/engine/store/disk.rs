//! [`DiskStore`]: history in an embedded redb database file, so a restarted
//! node keeps its streams, epochs and inboxes and clients recover across the
//! restart.
//!
//! Why redb: pure Rust (no C/C++ build), actively maintained, ACID with
//! crash-safe commits in a single file, and ordered keys, which suit
//! "stream, offset" range reads. Commits skip the fsync and a durable commit
//! follows at most every second and on shutdown, so a crash loses at most
//! about a second of history while the file always stays consistent.
//!
//! The broker's steps go through the store's [`Writer`]: the steps that
//! queue up while one transaction runs share the next (group commit), and
//! only the task whose turn it is to write waits on the file, while the
//! others' steps wait without holding a worker. Direct calls (tests, the
//! history API's reads) each use a transaction of their own.
//!
//! A stream's record (epoch, offsets, counts) is forgotten by the sweep once
//! its history is empty, nobody follows it and it has not been used for the
//! idle time, as the memory store forgets it: a client that joins random
//! room names does not grow the file. Records are written when a stream is
//! used; a read of a record older than [`USE_GRANULARITY_MS`] writes the time
//! of use back, so a stream in use is never idle.
//!
//! A file of an earlier version (records without a time of use) is moved
//! to the current tables when opened; going back to an earlier version
//! with such a file is not supported (it would see no records, start every
//! stream over under new epochs, and a later upgrade would overwrite the
//! newer records).

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableHandle, WriteTransaction,
};
use switchboard_protocol::Position;
use tungstenite::Utf8Bytes;

use super::writer::{Batching, Writer};
use super::{HistoryStore, Replay, StoreError, Stored, StreamKey};
use crate::config::HistoryLimits;
use crate::stream::new_epoch;

/// A stream's record: epoch, last offset, delivered offset (inboxes), kept
/// count, kept bytes, last used (Unix ms).
type Row<'a> = (&'a str, u64, u64, u64, u64, u64);
/// Per stream, its [`Row`].
const META: TableDefinition<&str, Row<'static>> = TableDefinition::new("streams_v2");
/// The records of files written before streams had a time of use: moved to
/// [`META`] when such a file is opened.
const META_V1: TableDefinition<&str, (&str, u64, u64, u64, u64)> = TableDefinition::new("streams");
/// Per message, keyed by stream and offset: accepted at (Unix ms), frame.
const MESSAGES: TableDefinition<(&str, u64), (u64, &str)> = TableDefinition::new("messages");

type MetaTable<'t> = redb::Table<'t, &'static str, Row<'static>>;
type MessageTable<'t> = redb::Table<'t, (&'static str, u64), (u64, &'static str)>;

/// How often a commit makes everything before it durable.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How stale a stream's time of use may get before a read writes it back.
pub(crate) const USE_GRANULARITY_MS: u64 = 60_000;
/// How many stream records one transaction of the sweep looks at, so that
/// the sweep never holds the writer up for long.
const SWEEP_CHUNK: usize = 1_000;

/// Distinguishes databases in one process, for [`BATCH`].
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The transaction the thread whose turn it is to write (see
    /// [`Writer`]) has open, with its database's id: that database's calls
    /// on this thread use it.
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// A transaction several steps share.
struct Batch {
    /// Whose database.
    id: u64,
    txn: WriteTransaction,
    /// A step failed half-way: nothing of the batch may be kept.
    failed: bool,
}

/// The on-disk store.
pub struct DiskStore {
    db: Arc<Db>,
    writer: Writer,
}

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore").finish_non_exhaustive()
    }
}

/// The database, shared by the store and its writer.
struct Db {
    db: Database,
    id: u64,
    last_sync: Mutex<Instant>,
    commits: AtomicU64,
}

#[derive(Debug, Clone, PartialEq)]
struct Meta {
    epoch: String,
    last: u64,
    delivered: u64,
    count: u64,
    bytes: u64,
    used_ms: u64,
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
        migrate(&txn, crate::wire::now_ms())?;
        txn.open_table(META).map_err(err)?;
        txn.open_table(MESSAGES).map_err(err)?;
        txn.commit().map_err(err)?;
        let db = Arc::new(Db {
            db,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            last_sync: Mutex::new(Instant::now()),
            commits: AtomicU64::new(0),
        });
        let writer = Writer::new(db.clone());
        Ok(DiskStore { db, writer })
    }

    /// How many transactions have committed (for tests of the grouping).
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.db.commits.load(Ordering::Relaxed)
    }

    /// A step that fails, as one would on a full disk (for tests).
    #[cfg(test)]
    pub(crate) fn fail_a_step(&self) -> Result<(), StoreError> {
        self.db.write(|_, _| Err(StoreError("the disk is full".into())))
    }
}

/// Moves the records of a file written before streams had a time of use;
/// they count as used now.
fn migrate(txn: &WriteTransaction, now_ms: u64) -> Result<(), StoreError> {
    if !txn.list_tables().map_err(err)?.any(|table| table.name() == META_V1.name()) {
        return Ok(());
    }
    {
        let old = txn.open_table(META_V1).map_err(err)?;
        let mut new = txn.open_table(META).map_err(err)?;
        for entry in old.iter().map_err(err)? {
            let (key, value) = entry.map_err(err)?;
            let (epoch, last, delivered, count, bytes) = value.value();
            new.insert(key.value(), (epoch, last, delivered, count, bytes, now_ms)).map_err(err)?;
        }
    }
    txn.delete_table(META_V1).map_err(err)?;
    Ok(())
}

impl Batching for Db {
    fn begin(&self) -> bool {
        let Ok(mut txn) = self.db.begin_write() else { return false };
        if txn.set_durability(self.durability()).is_err() {
            return false;
        }
        BATCH.with(|batch| *batch.borrow_mut() = Some(Batch { id: self.id, txn, failed: false }));
        true
    }

    fn commit(&self) -> bool {
        let Some(batch) = BATCH.with(|batch| batch.borrow_mut().take()) else { return true };
        if batch.failed {
            tracing::warn!("a history step failed: its transaction is dropped");
            let _ = batch.txn.abort();
            return false;
        }
        match batch.txn.commit() {
            Ok(()) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(error) => {
                tracing::error!(%error, "a history transaction did not commit");
                false
            }
        }
    }

    fn abort(&self) {
        if let Some(batch) = BATCH.with(|batch| batch.borrow_mut().take()) {
            let _ = batch.txn.abort();
        }
    }
}

impl Db {
    /// Whether a commit now should be durable (one a second).
    fn durability(&self) -> Durability {
        let mut last = self.last_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.elapsed() >= SYNC_EVERY {
            *last = Instant::now();
            Durability::Immediate
        } else {
            Durability::None
        }
    }

    /// Whether this thread has a transaction of this database open.
    fn in_batch(&self) -> bool {
        BATCH.with(|batch| batch.borrow().as_ref().is_some_and(|batch| batch.id == self.id))
    }

    /// Runs `f` in this thread's batch, or in a write transaction of its own.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut MetaTable<'_>, &mut MessageTable<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.in_batch() {
            let done = BATCH.with(|batch| {
                let batch = batch.borrow();
                let txn = &batch.as_ref().expect("checked above").txn;
                let mut meta = txn.open_table(META).map_err(err)?;
                let mut messages = txn.open_table(MESSAGES).map_err(err)?;
                f(&mut meta, &mut messages)
            });
            // A step that failed may have written half of what it meant
            // to: the batch is not kept (the others' callers retry).
            if done.is_err() {
                BATCH.with(|batch| {
                    if let Some(batch) = batch.borrow_mut().as_mut() {
                        batch.failed = true;
                    }
                });
            }
            return done;
        }
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(self.durability()).map_err(err)?;
        let value = {
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut messages = txn.open_table(MESSAGES).map_err(err)?;
            f(&mut meta, &mut messages)?
        };
        txn.commit().map_err(err)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Runs a read: in this thread's batch (which sees its own writes), or
    /// in a read transaction, which never blocks the writer.
    fn read<T>(&self, f: impl ReadFn<T>) -> Result<T, StoreError> {
        if self.in_batch() {
            return self.write(|meta, messages| f.call(meta, messages));
        }
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let messages = txn.open_table(MESSAGES).map_err(err)?;
        f.call(&meta, &messages)
    }
}

/// A read over either kind of table (a batch's or a read transaction's).
trait ReadFn<T> {
    fn call(
        self,
        meta: &impl ReadableTable<&'static str, Row<'static>>,
        messages: &impl ReadableTable<(&'static str, u64), (u64, &'static str)>,
    ) -> Result<T, StoreError>;
}

fn load(
    meta: &impl ReadableTable<&'static str, Row<'static>>,
    key: &str,
) -> Result<Option<Meta>, StoreError> {
    Ok(meta.get(key).map_err(err)?.map(|value| from_row(value.value())))
}

fn from_row((epoch, last, delivered, count, bytes, used_ms): Row<'_>) -> Meta {
    Meta { epoch: epoch.to_owned(), last, delivered, count, bytes, used_ms }
}

fn save(meta: &mut MetaTable<'_>, key: &str, m: &Meta) -> Result<(), StoreError> {
    let row = (m.epoch.as_str(), m.last, m.delivered, m.count, m.bytes, m.used_ms);
    meta.insert(key, row).map_err(err)?;
    Ok(())
}

fn fresh(now_ms: u64) -> Meta {
    Meta { epoch: new_epoch(), last: 0, delivered: 0, count: 0, bytes: 0, used_ms: now_ms }
}

/// Marks a record used at `now_ms`; whether that is news worth a write.
fn touch(m: &mut Meta, now_ms: u64) -> bool {
    let stale = now_ms.saturating_sub(m.used_ms) >= USE_GRANULARITY_MS;
    if stale {
        m.used_ms = now_ms;
    }
    stale
}

/// Drops the oldest messages past the limits.
fn trim(
    messages: &mut MessageTable<'_>,
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

/// The messages of `key` after offset `after`, at most `limit`, leaving out
/// those sent before `oldest_kept` (expired, not swept yet).
fn range(
    messages: &impl ReadableTable<(&'static str, u64), (u64, &'static str)>,
    key: &str,
    after: u64,
    limit: usize,
    oldest_kept: u64,
) -> Result<Vec<Stored>, StoreError> {
    let mut out = Vec::new();
    for entry in messages.range((key, after.saturating_add(1))..=(key, u64::MAX)).map_err(err)? {
        if out.len() >= limit {
            break;
        }
        let (k, v) = entry.map_err(err)?;
        let (ts, frame) = v.value();
        if ts >= oldest_kept {
            out.push(Stored { offset: k.value().1, ts, frame: Utf8Bytes::from(frame.to_owned()) });
        }
    }
    Ok(out)
}

impl DiskStore {
    /// Trims a stream, marks it used and returns its record, creating it
    /// if needed; writes only what changed.
    fn trimmed(&self, key: &str, limits: &HistoryLimits, now_ms: u64) -> Result<Meta, StoreError> {
        self.db.write(|meta, messages| {
            let loaded = load(meta, key)?;
            let mut m = loaded.clone().unwrap_or_else(|| fresh(now_ms));
            trim(messages, key, &mut m, limits, now_ms)?;
            let touched = touch(&mut m, now_ms);
            if touched || loaded.as_ref() != Some(&m) {
                save(meta, key, &m)?;
            }
            Ok(m)
        })
    }

    /// The position of a stream whose record exists and was used lately.
    fn fresh_position(&self, key: &str, now_ms: u64) -> Result<Option<Position>, StoreError> {
        struct Current<'k>(&'k str);
        impl ReadFn<Option<Meta>> for Current<'_> {
            fn call(
                self,
                meta: &impl ReadableTable<&'static str, Row<'static>>,
                _: &impl ReadableTable<(&'static str, u64), (u64, &'static str)>,
            ) -> Result<Option<Meta>, StoreError> {
                load(meta, self.0)
            }
        }
        Ok(self
            .db
            .read(Current(key))?
            .filter(|m| now_ms.saturating_sub(m.used_ms) < USE_GRANULARITY_MS)
            .map(|m| Position { epoch: m.epoch, offset: m.last }))
    }

    /// Trims every stream holding messages, and forgets the records of
    /// empty streams unused for `idle_ms` that nobody follows, a chunk of
    /// records per transaction.
    fn sweep_records(
        &self,
        now_ms: u64,
        idle_ms: u64,
        limits: &dyn Fn(&StreamKey) -> HistoryLimits,
        followed: &dyn Fn(&StreamKey) -> bool,
    ) -> Result<(), StoreError> {
        let mut from: Option<String> = None;
        loop {
            let next = self.db.write(|meta, messages| {
                let mut rows = Vec::with_capacity(SWEEP_CHUNK);
                {
                    let iter = match &from {
                        None => meta.range::<&str>(..).map_err(err)?,
                        Some(from) => meta
                            .range::<&str>((
                                std::ops::Bound::Excluded(from.as_str()),
                                std::ops::Bound::Unbounded,
                            ))
                            .map_err(err)?,
                    };
                    for entry in iter.take(SWEEP_CHUNK) {
                        let (key, value) = entry.map_err(err)?;
                        rows.push((key.value().to_owned(), from_row(value.value())));
                    }
                }
                let last = rows.last().map(|(key, _)| key.clone());
                for (key, mut m) in rows {
                    let Some(stream) = StreamKey::decode(&key) else { continue };
                    if m.count > 0 {
                        let before = (m.count, m.bytes);
                        trim(messages, &key, &mut m, &limits(&stream), now_ms)?;
                        if (m.count, m.bytes) != before {
                            save(meta, &key, &m)?;
                        }
                    }
                    let idle = now_ms.saturating_sub(m.used_ms) >= idle_ms;
                    if m.count == 0 && idle && !followed(&stream) {
                        meta.remove(key.as_str()).map_err(err)?;
                    }
                }
                Ok(last)
            })?;
            match next {
                Some(last) => from = Some(last),
                None => return Ok(()),
            }
        }
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
        self.db.write(|meta, messages| {
            let mut m = load(meta, &key)?.unwrap_or_else(|| fresh(now_ms));
            let offset = m.last + 1;
            let stored = Stored { offset, ts: now_ms, frame: encode(&m.epoch, offset) };
            m.last = offset;
            m.used_ms = now_ms;
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
        let now_ms = crate::wire::now_ms();
        // A read, unless the record is missing or its time of use stale.
        if let Some(position) = self.fresh_position(&key, now_ms)? {
            return Ok(position);
        }
        self.db.write(|meta, _| {
            let mut m = load(meta, &key)?.unwrap_or_else(|| fresh(now_ms));
            m.used_ms = now_ms;
            save(meta, &key, &m)?;
            Ok(Position { epoch: m.epoch, offset: m.last })
        })
    }

    fn read_position(&self, key: &StreamKey) -> Result<Option<Position>, StoreError> {
        self.fresh_position(&key.encode(), crate::wire::now_ms())
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
        struct After<'k>(&'k str, u64);
        impl ReadFn<Vec<Stored>> for After<'_> {
            fn call(
                self,
                _: &impl ReadableTable<&'static str, Row<'static>>,
                messages: &impl ReadableTable<(&'static str, u64), (u64, &'static str)>,
            ) -> Result<Vec<Stored>, StoreError> {
                range(messages, self.0, self.1, usize::MAX, 0)
            }
        }
        let missed = self.db.read(After(&key, since.offset))?;
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
        // A read: it must not write (not even a trim), so a flood of reads
        // leaves the file as it was. Expired messages still in the file
        // (the sweep removes them) are left out.
        struct Page<'k>(&'k str, u64, usize, u64);
        impl ReadFn<Option<(Position, Vec<Stored>)>> for Page<'_> {
            fn call(
                self,
                meta: &impl ReadableTable<&'static str, Row<'static>>,
                messages: &impl ReadableTable<(&'static str, u64), (u64, &'static str)>,
            ) -> Result<Option<(Position, Vec<Stored>)>, StoreError> {
                let Some(m) = load(meta, self.0)? else { return Ok(None) };
                let page = range(messages, self.0, self.1, self.2, self.3)?;
                Ok(Some((Position { epoch: m.epoch, offset: m.last }, page)))
            }
        }
        let key = key.encode();
        let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
        self.db.read(Page(&key, after.unwrap_or(0), limit, oldest_kept))
    }

    fn stream_count(&self) -> Result<usize, StoreError> {
        let txn = self.db.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        Ok(meta.len().map_err(err)? as usize)
    }

    fn mark_delivered(&self, key: &StreamKey, offset: u64) -> Result<(), StoreError> {
        let key = key.encode();
        let now_ms = crate::wire::now_ms();
        self.db.write(|meta, _| {
            let mut m = load(meta, &key)?.unwrap_or_else(|| fresh(now_ms));
            if m.delivered >= offset && !touch(&mut m, now_ms) {
                return Ok(());
            }
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
        self.db.write(|meta, messages| {
            let loaded = load(meta, &key)?;
            let mut m = loaded.clone().unwrap_or_else(|| fresh(now_ms));
            trim(messages, &key, &mut m, limits, now_ms)?;
            let pending = range(messages, &key, m.delivered, usize::MAX, 0)?;
            m.delivered = m.last;
            let touched = touch(&mut m, now_ms);
            if touched || loaded.as_ref() != Some(&m) {
                save(meta, &key, &m)?;
            }
            Ok((Position { epoch: m.epoch.clone(), offset: m.last }, pending))
        })
    }

    fn sweep(
        &self,
        now_ms: u64,
        idle_ms: u64,
        limits: &dyn Fn(&StreamKey) -> HistoryLimits,
        followed: &dyn Fn(&StreamKey) -> bool,
    ) {
        if let Err(error) = self.sweep_records(now_ms, idle_ms, limits, followed) {
            tracing::warn!(%error, "history sweep failed; it is retried at the next one");
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // What was queued without a wait (delivery marks) first.
        self.writer.run([]);
        let mut txn = self.db.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate).map_err(err)?;
        txn.commit().map_err(err)?;
        *self.db.last_sync.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            Instant::now();
        Ok(())
    }

    fn writer(&self) -> Option<&Writer> {
        Some(&self.writer)
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
            let txn = store.db.db.begin_read().unwrap();
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
        assert_eq!(stored(&short).1, 1);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()))
    }

    #[test]
    fn a_flood_of_random_room_names_leaves_the_file_flat() {
        let dir = temp("flood");
        let path = dir.join("history.redb");
        let store = DiskStore::open(&path).unwrap();
        let real = StreamKey::Room("real".into());
        store
            .append(&real, &limits(5), 1_000, &mut |_, o| Utf8Bytes::from(format!("m{o}")))
            .unwrap();
        let idle = super::super::STREAM_IDLE_MS;
        let mut sizes = Vec::new();
        for round in 0..6u64 {
            // A client joins 2,000 names nobody uses again (a join reads
            // the stream's position, creating its record)…
            for n in 0..2_000 {
                store.position(&StreamKey::Room(format!("junk-{round}-{n}").into())).unwrap();
            }
            assert_eq!(store.stream_count().unwrap(), 2_001);
            // …and the sweep, once they are idle, forgets them; the real
            // room, followed, stays.
            let later = crate::wire::now_ms() + idle;
            store.sweep(later, idle, &|_| limits(5), &|key| *key == real);
            assert_eq!(store.stream_count().unwrap(), 1, "round {round}");
            store.flush().unwrap();
            sizes.push(std::fs::metadata(&path).unwrap().len());
        }
        // redb reuses the pages it freed: the file's size moves with which
        // commits happened to be durable, but does not grow with the rounds
        // (keeping the 12,000 records would have made it several times the
        // first round's).
        let settled = sizes[0].max(sizes[1]);
        assert!(
            sizes[2..].iter().all(|&size| size <= 2 * settled),
            "file sizes per round: {sizes:?}"
        );
        assert_eq!(store.position(&real).unwrap().offset, 1, "the followed room kept its offsets");
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_stream_in_use_is_not_forgotten_and_an_idle_one_is() {
        let dir = temp("idle");
        let store = DiskStore::open(&dir.join("history.redb")).unwrap();
        let room = StreamKey::Room("r".into());
        let epoch = store.position(&room).unwrap().epoch;
        let now = crate::wire::now_ms();
        // Used just now: kept, however idle the threshold says others are.
        store.sweep(now + 1_000, 60_000, &|_| limits(5), &|_| false);
        assert_eq!(store.position(&room).unwrap().epoch, epoch);
        // Unused past the idle time and followed by nobody: forgotten, so
        // the next use starts a new epoch (a resume reports the loss).
        store.sweep(now + 10 * 60_000, 60_000, &|_| limits(5), &|_| false);
        assert_eq!(store.stream_count().unwrap(), 0);
        assert_ne!(store.position(&room).unwrap().epoch, epoch);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn records_of_an_older_file_are_kept_when_it_is_opened() {
        let dir = temp("migrate");
        let path = dir.join("history.redb");
        std::fs::create_dir_all(&dir).unwrap();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META_V1).unwrap().insert("r:news", ("oldepoch", 7, 0, 0, 0)).unwrap();
            txn.open_table(MESSAGES).unwrap();
            txn.commit().unwrap();
        }
        let store = DiskStore::open(&path).unwrap();
        let news = StreamKey::decode("r:news").unwrap();
        assert_eq!(
            store.position(&news).unwrap(),
            Position { epoch: "oldepoch".into(), offset: 7 }
        );
        let txn = store.db.db.begin_read().unwrap();
        assert!(!txn.list_tables().unwrap().any(|table| table.name() == "streams"));
        drop(txn);
        drop(store);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
