//! [`RedisBroker`]: streams in Redis, shared by every node. Publishing is
//! one script (request id, offset, history, `PUBLISH`); reading is one
//! script (position and history, optionally the inbox's undelivered
//! messages). Deliveries outside any stream go on the cluster's channel,
//! so that every node's subscriber hands them to its hub, this node's
//! included.
//!
//! History entries have the offset as their id (`<offset>-0`), so reading
//! after an offset is one `XRANGE`. A stream's `max_bytes` and `size` are
//! kept exactly by the publish script; its `ttl_secs` expires the whole
//! history key after the last publish, and reads leave out single entries
//! older than the TTL, as the in-memory store does. Its metadata (epoch,
//! offsets) keeps no expiry while anyone follows the stream.

use std::sync::Arc;
use std::time::Duration;

use switchboard_protocol::Position;
use tungstenite::Utf8Bytes;

use super::Redis;
use super::followers::Followers;
use super::keys::ALL_CONNECTIONS;
use super::scripts::{MARK_DELIVERED, PUBLISH, READ};
use super::shards::Batch;
use crate::Hub;
use crate::config::HistoryLimits;
use crate::engine::broker::{Broker, Publication, Published, Resumed, replay_of};
use crate::engine::store::STREAM_IDLE_MS;
use crate::engine::{EngineError, EngineFuture, HistoryRules};
use crate::hub::{Delivery, Target};
use crate::stream::{Stored, StreamKey, new_epoch};
use crate::wire::now_ms;

/// Where a stream stands, and the entries read from it.
pub(crate) struct Read {
    pub(crate) position: Position,
    pub(crate) entries: Vec<Stored>,
}

/// Where a read starts.
pub(crate) enum After {
    Offset(u64),
    /// After the inbox's delivered mark.
    Delivered,
}

/// What a read asks for.
pub(crate) struct Reading {
    /// Create a missing stream (with a fresh epoch); without, a missing
    /// stream reads as `None`.
    pub(crate) create: bool,
    pub(crate) after: After,
    /// At most this many entries.
    pub(crate) count: usize,
    /// Move the inbox's delivered mark to the head.
    pub(crate) mark: bool,
}

impl Reading {
    /// Where the stream stands, and nothing of its history; creates it.
    pub(crate) fn head() -> Reading {
        Reading { create: true, after: After::Offset(0), count: 0, mark: false }
    }

    /// Up to `count` entries after `after`, without creating the stream.
    pub(crate) fn page(after: u64, count: usize) -> Reading {
        Reading { create: false, after: After::Offset(after), count, mark: false }
    }
}

/// History entries as `XRANGE` gives them.
pub(crate) type RawEntries = Vec<(String, Vec<String>)>;

/// How long a stream's metadata outlives its last use once nobody follows
/// it: the history's TTL, and at least as long as the memory engine keeps
/// an idle stream.
pub(crate) fn meta_ttl_secs(limits: &HistoryLimits) -> u64 {
    limits.ttl_secs.max(STREAM_IDLE_MS / 1000)
}

/// Adds the `READ` script's call for `reading` of `key` to `batch`.
pub(crate) fn add_read(
    batch: &mut Batch,
    redis: &Redis,
    key: &StreamKey,
    limits: &HistoryLimits,
    reading: &Reading,
) {
    let keys = [redis.keys.meta(key), redis.keys.history(key), redis.keys.followers(key)];
    batch
        .script(redis, &READ, &keys)
        .arg(if reading.create { "1" } else { "0" })
        .arg(new_epoch())
        .arg(meta_ttl_secs(limits))
        .arg(match reading.after {
            After::Offset(offset) => offset.to_string(),
            After::Delivered => "delivered".to_owned(),
        })
        .arg(reading.count)
        .arg(if reading.mark { "1" } else { "0" });
}

/// The answer to a publish the script carried out.
fn published(
    key: &StreamKey,
    limits: &HistoryLimits,
    offset: u64,
    connections: u64,
    repeated: u8,
) -> Published {
    if repeated == 1 {
        tracing::info!(stream = %key.encode(), offset, "a retried request was appended before: not again");
    }
    Published {
        offset,
        reached: connections as usize,
        kept: limits.size > 0,
        repeated: repeated == 1,
    }
}

/// Reads where `key`'s stream stands and the entries `reading` asks for,
/// leaving out those past the TTL.
pub(crate) async fn read(
    redis: &Redis,
    key: &StreamKey,
    limits: &HistoryLimits,
    reading: Reading,
    now_ms: u64,
) -> Result<Option<Read>, EngineError> {
    let mut batch = Batch::new();
    add_read(&mut batch, redis, key, limits, &reading);
    let (read,): (Option<(String, u64, u64, RawEntries)>,) = batch.query(redis, "read").await?;
    let Some((epoch, last, _delivered, raw)) = read else { return Ok(None) };
    let entries = entries_of(raw, limits, now_ms)?;
    Ok(Some(Read { position: Position { epoch, offset: last }, entries }))
}

/// Entries read back, leaving out those past the TTL.
pub(crate) fn entries_of(
    raw: RawEntries,
    limits: &HistoryLimits,
    now_ms: u64,
) -> Result<Vec<Stored>, EngineError> {
    let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
    let mut entries = Vec::with_capacity(raw.len());
    for (id, fields) in raw {
        let stored = entry(&id, fields)
            .ok_or_else(|| EngineError::Failed(format!("unreadable history entry {id}")))?;
        if stored.ts >= oldest_kept {
            entries.push(stored);
        }
    }
    Ok(entries)
}

/// Moves an inbox's delivered mark forward to `offset`.
pub(crate) async fn mark_delivered(
    redis: &Redis,
    key: &StreamKey,
    offset: u64,
) -> Result<(), EngineError> {
    let mut batch = Batch::new();
    batch.script(redis, &MARK_DELIVERED, &[redis.keys.meta(key)]).arg(offset);
    let _: (i64,) = batch.query(redis, "mark delivered").await?;
    Ok(())
}

/// A history entry: id `<offset>-0`, fields `ts` and `f`.
fn entry(id: &str, fields: Vec<String>) -> Option<Stored> {
    let offset = id.split_once('-')?.0.parse().ok()?;
    let mut ts = None;
    let mut frame = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_str() {
            "ts" => ts = value.parse().ok(),
            "f" => frame = Some(value),
            _ => {}
        }
    }
    Some(Stored { offset, ts: ts?, frame: Utf8Bytes::from(frame?) })
}

/// Every connection of the live nodes, as their indexes say.
pub(crate) async fn all_connections(redis: &Redis) -> Result<usize, EngineError> {
    let nodes = super::node::live_nodes(redis).await?;
    let mut batch = Batch::new();
    for node in &nodes {
        let index = redis.keys.node_index(node);
        batch.keyed(
            redis,
            &index,
            ::redis::cmd("HGET").arg(&index).arg(ALL_CONNECTIONS).to_owned(),
        );
    }
    let counts: Vec<Option<u64>> = batch.query(redis, "connections").await?;
    Ok(counts.into_iter().flatten().sum::<u64>() as usize)
}

/// Streams of a node of a cluster.
pub(crate) struct RedisBroker {
    redis: Arc<Redis>,
    rules: HistoryRules,
    followers: Arc<Followers>,
    hub: Arc<Hub>,
    /// How long request ids are remembered.
    window: Duration,
}

impl RedisBroker {
    pub(crate) fn new(
        redis: Arc<Redis>,
        rules: HistoryRules,
        followers: Arc<Followers>,
        hub: Arc<Hub>,
        window: Duration,
    ) -> RedisBroker {
        RedisBroker { redis, rules, followers, hub, window }
    }

    /// Adds the call of [`PUBLISH`] for a publication to `batch`; returns
    /// its stream's limits.
    fn add_publish(&self, batch: &mut Batch, publication: &Publication) -> HistoryLimits {
        let Publication { key, target, message, request } = publication;
        let limits = self.rules.of(key);
        let open = super::wire::open_frame(message);
        let keys = &self.redis.keys;
        let meta = keys.meta(key);
        let id_key =
            request.as_ref().map_or_else(|| meta.clone(), |(u, id)| keys.request_id(key, u, id));
        let (channel, command) = self.redis.channel_near(&meta);
        let script_keys = [meta, keys.history(key), keys.followers(key), id_key];
        batch
            .script(&self.redis, &PUBLISH, &script_keys)
            .arg(channel)
            .arg(&open)
            .arg(message.ts)
            .arg(limits.size)
            .arg(limits.ttl_secs)
            .arg(limits.max_bytes)
            .arg(meta_ttl_secs(limits))
            .arg(new_epoch())
            .arg(match (key, target) {
                (StreamKey::Room(room), Target::RoomExcept(room_except)) => {
                    super::wire::except_target(room, &room_except.1)
                }
                _ => super::wire::target_of(key),
            })
            .arg(if request.is_some() { "1" } else { "0" })
            // `SET … PX 0` is an error, after the append: at least 1 ms.
            .arg((self.window.as_millis() as u64).max(1))
            .arg(command);
        limits.clone()
    }

    async fn append(&self, publication: Publication) -> Result<Published, EngineError> {
        let mut batch = Batch::new();
        let limits = self.add_publish(&mut batch, &publication);
        let ((_epoch, offset, connections, repeated),): ((String, u64, u64, u8),) =
            batch.query(&self.redis, "publish").await?;
        Ok(published(&publication.key, &limits, offset, connections, repeated))
    }

    /// Several publications in one round trip per shard, each stream's in
    /// their order (the batch loads the script first: were it missing,
    /// some calls would fail and be run again after later ones had
    /// succeeded, out of order).
    async fn append_all(
        &self,
        publications: Vec<Publication>,
    ) -> Result<Vec<Result<Published, EngineError>>, EngineError> {
        let mut batch = Batch::new();
        let limits: Vec<HistoryLimits> = publications
            .iter()
            .map(|publication| self.add_publish(&mut batch, publication))
            .collect();
        // Each its own answer: over several shards, one that fails fails
        // only its streams' publications.
        let answers = batch.query_each(&self.redis, "publish").await?;
        Ok(publications
            .iter()
            .zip(&limits)
            .zip(answers)
            .map(|((publication, limits), answer)| {
                let (_epoch, offset, connections, repeated): (String, u64, u64, u8) =
                    ::redis::from_redis_value(answer?).map_err(|err| {
                        EngineError::Failed(format!("redis: publish: unexpected answer: {err}"))
                    })?;
                Ok(published(&publication.key, limits, offset, connections, repeated))
            })
            .collect())
    }

    /// Counts the connection as about to follow `key` until the returned
    /// guard drops, which the caller does after [`RedisBroker::follow`].
    fn expect(&self, key: &StreamKey) -> super::followers::Pending {
        self.followers.expect(key)
    }

    /// A connection here follows `key` from what it read.
    fn follow(&self, key: &StreamKey, position: &Position) {
        let alone = match key {
            StreamKey::Room(room) => self.hub.room_connections(room) <= 1,
            StreamKey::Inbox(user) => self.hub.connections_of(user) <= 1,
        };
        self.followers.follow(key, position, alone);
    }

    async fn read_resume(
        &self,
        key: &StreamKey,
        since: Option<&Position>,
    ) -> Result<Resumed, EngineError> {
        let _pending = self.expect(key);
        self.redis.listen(key).await?;
        let limits = self.rules.of(key);
        let reading = match since {
            Some(since) => Reading { create: true, ..Reading::page(since.offset, limits.size + 1) },
            None => Reading::head(),
        };
        let read = read(&self.redis, key, limits, reading, now_ms())
            .await?
            .ok_or_else(|| EngineError::Failed("stream not created".to_owned()))?;
        self.follow(key, &read.position);
        let replay = since.map(|since| replay_of(&read.position, since, read.entries));
        Ok(Resumed { position: read.position, replay })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, publication: Publication) -> EngineFuture<'_, Published> {
        Box::pin(self.append(publication))
    }

    fn publish_all(
        &self,
        publications: Vec<Publication>,
    ) -> EngineFuture<'_, Vec<Result<Published, EngineError>>> {
        Box::pin(self.append_all(publications))
    }

    fn resume<'a>(
        &'a self,
        key: &'a StreamKey,
        since: Option<&'a Position>,
    ) -> EngineFuture<'a, Resumed> {
        Box::pin(self.read_resume(key, since))
    }

    fn undelivered<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, (Position, Vec<Stored>)> {
        Box::pin(async move {
            let _pending = self.expect(key);
            self.redis.listen(key).await?;
            let limits = self.rules.of(key);
            let reading = Reading {
                create: true,
                after: After::Delivered,
                count: limits.size + 1,
                mark: true,
            };
            let read = read(&self.redis, key, limits, reading, now_ms())
                .await?
                .ok_or_else(|| EngineError::Failed("stream not created".to_owned()))?;
            self.follow(key, &read.position);
            Ok((read.position, read.entries))
        })
    }

    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, offset: u64) -> EngineFuture<'a, ()> {
        Box::pin(mark_delivered(&self.redis, key, offset))
    }

    fn page<'a>(
        &'a self,
        key: &'a StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> EngineFuture<'a, Option<(Position, Vec<Stored>)>> {
        Box::pin(async move {
            let limits = self.rules.of(key);
            let reading = Reading::page(after.unwrap_or(0), limit);
            let read = read(&self.redis, key, limits, reading, now_ms()).await?;
            Ok(read.map(|read| (read.position, read.entries)))
        })
    }

    /// Resolves with the connections the target has across the cluster
    /// (every connection for a broadcast to all, 0 for rooms). A room's or
    /// a user's delivery goes through their shard's channel, with their
    /// messages; a broadcast to all through the first shard's.
    fn deliver(&self, delivery: Delivery) -> EngineFuture<'_, usize> {
        Box::pin(async move {
            let redis = &self.redis;
            let payload = super::wire::encode(&delivery);
            let Some(stream) = delivery.target.stream() else {
                redis.publish("publish", payload).await?;
                return all_connections(redis).await;
            };
            let count = redis.keys.followers(&stream);
            let mut batch = Batch::new();
            batch.publish(redis, &count, payload);
            if let StreamKey::Room(_) = stream {
                // How many connections a room has is not needed by any caller.
                return batch.query::<()>(redis, "publish").await.map(|()| 0);
            }
            batch.keyed(redis, &count, ::redis::cmd("GET").arg(&count).to_owned());
            let (reached,): (Option<u64>,) = batch.query(redis, "publish").await?;
            Ok(reached.unwrap_or(0) as usize)
        })
    }

    fn head<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, Position> {
        Box::pin(async move {
            let limits = self.rules.of(key);
            let read = read(&self.redis, key, limits, Reading::head(), now_ms())
                .await?
                .ok_or_else(|| EngineError::Failed("stream not created".to_owned()))?;
            Ok(read.position)
        })
    }

    fn unfollow(&self, key: &StreamKey) {
        let hub = &self.hub;
        self.followers.unfollow(key, |key| match key {
            StreamKey::Room(room) => hub.room_connections(room) > 0,
            StreamKey::Inbox(user) => hub.connections_of(user) > 0,
        });
    }

    fn maintain(&self, _now_ms: u64) -> EngineFuture<'_, ()> {
        // Redis expires keys itself; what is left here is the record of
        // streams nobody here follows any more, missed by `unfollow`.
        let hub = &self.hub;
        self.followers.retain(|key| match key {
            StreamKey::Room(room) => hub.room_connections(room) > 0,
            StreamKey::Inbox(user) => hub.connections_of(user) > 0,
        });
        Box::pin(std::future::ready(Ok(())))
    }

    fn flush(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn stream_count(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_from_their_id_and_fields() {
        let fields = vec!["ts".to_owned(), "12".to_owned(), "f".to_owned(), "{\"a\":1}".to_owned()];
        let stored = entry("7-0", fields).unwrap();
        assert_eq!((stored.offset, stored.ts, stored.frame.as_str()), (7, 12, "{\"a\":1}"));
        assert!(entry("x-0", vec![]).is_none());
        assert!(entry("7-0", vec!["ts".to_owned(), "1".to_owned()]).is_none());
    }
}
