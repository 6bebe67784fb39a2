//! [`Streams`]: publishing into a stream and resuming from one, with the
//! ordering that makes recovery exact.
//!
//! Every room and every user's inbox is a stream. On a single node,
//! publishing assigns the next offset, stores the message and hands it to
//! the broker while holding that stream's lock, so connections receive a
//! stream's messages in offset order. A resuming connection is registered
//! as a recipient first and reads the history second, under the same lock:
//! every message is then either in the replay or in its live queue,
//! possibly both, never neither. The session drops a live message whose
//! offset the replay already covered, so none arrives twice.
//!
//! In multi-node mode the stream lives in Redis (`cluster/streams.rs`):
//! one script assigns the offset, appends and publishes, and every node
//! hears every publish on a subscription that is in place before any
//! connection registers. Registering first and reading second then gives
//! the same guarantee without a lock: what the read missed is still on its
//! way to the new recipient, and what both carry is dropped by its offset.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use switchboard_protocol::{Message, Position, ServerFrame};
use tokio::sync::Mutex;

use crate::Hub;
use crate::broker::{Broker, BrokerError, Delivery, DeliveryKind, Target};
use crate::cluster::streams::{After, Reading};
use crate::cluster::{Cluster, ClusterError};
use crate::config::{HistoryConfig, HistoryLimits};
use crate::hub::latency::{Latency, STORE_OPS};
use crate::policy::patterns::RoomPatterns;
use crate::store::{HistoryStore, Replay, StoreError, Stored, StreamKey};
use crate::transport::wire::{encode, now_ms};

/// How many locks streams share; two streams hashing alike only wait for
/// each other briefly.
const STRIPES: usize = 256;

/// Appends to streams and replays them.
pub(crate) struct Streams {
    rules: HistoryRules,
    backing: Backing,
    /// How long appends and reads take (`/metrics`).
    pub(crate) latency: Latency<{ STORE_OPS.len() }>,
}

/// Indexes into [`STORE_OPS`].
const APPEND: usize = 0;
const READ: usize = 1;

/// Where streams live.
enum Backing {
    /// In this process's [`HistoryStore`], one lock per stripe of streams.
    Local { store: Arc<dyn HistoryStore>, stripes: Box<[Mutex<()>]> },
    /// In Redis, shared by every node; the hub says who follows a stream
    /// here, for the subscriber's gap detection.
    Cluster { cluster: Arc<Cluster>, hub: Arc<Hub>, window: std::time::Duration },
}

/// Each stream's history limits: `history.rules` by room pattern, compiled
/// once (limits are looked up on every publish).
#[derive(Clone)]
pub(crate) struct HistoryRules {
    config: HistoryConfig,
    rules: RoomPatterns<HistoryLimits>,
}

impl HistoryRules {
    pub(crate) fn new(config: HistoryConfig) -> HistoryRules {
        HistoryRules { rules: config.patterns(), config }
    }

    /// The limits of `key`'s stream.
    pub(crate) fn of(&self, key: &StreamKey) -> &HistoryLimits {
        match key {
            StreamKey::Room(room) => self.rules.first(room).unwrap_or(&self.config.default),
            StreamKey::Inbox(_) => &self.config.inbox,
        }
    }
}

/// A publish that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

impl From<ClusterError> for StoreError {
    fn from(err: ClusterError) -> Self {
        StoreError(err.to_string())
    }
}

impl From<ClusterError> for PublishError {
    fn from(err: ClusterError) -> Self {
        PublishError::Store(err.into())
    }
}

/// A published message: where it landed and how many connections got it
/// now (in multi-node mode: how many the target has across the cluster).
pub(crate) struct Published {
    pub(crate) stored: Stored,
    pub(crate) reached: usize,
}

impl Streams {
    /// Streams kept by `store` in this process.
    pub(crate) fn local(store: Arc<dyn HistoryStore>, config: HistoryConfig) -> Streams {
        let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
        let backing = Backing::Local { store, stripes };
        Streams { rules: HistoryRules::new(config), backing, latency: Latency::default() }
    }

    /// Streams kept in Redis, shared with the other nodes.
    /// Streams kept in Redis, shared with the other nodes; request ids are
    /// remembered for `window`.
    pub(crate) fn cluster(
        cluster: Arc<Cluster>,
        hub: Arc<Hub>,
        config: HistoryConfig,
        window: std::time::Duration,
    ) -> Streams {
        let backing = Backing::Cluster { cluster, hub, window };
        Streams { rules: HistoryRules::new(config), backing, latency: Latency::default() }
    }

    pub(crate) fn rules(&self) -> &HistoryRules {
        &self.rules
    }

    pub(crate) fn max_page(&self) -> usize {
        self.rules.config.max_page
    }

    pub(crate) fn limits(&self, key: &StreamKey) -> &HistoryLimits {
        self.rules.of(key)
    }

    /// Periodic upkeep of a local store: expired history out, idle empty
    /// streams dropped. Redis expires keys itself.
    pub(crate) fn sweep(&self, now_ms: u64, idle_ms: u64) {
        if let Backing::Local { store, .. } = &self.backing {
            store.sweep(now_ms, idle_ms, &|key| self.limits(key).clone());
        }
    }

    /// Makes a local store durable.
    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        match &self.backing {
            Backing::Local { store, .. } => store.flush(),
            Backing::Cluster { .. } => Ok(()),
        }
    }

    /// How many streams a local store holds; `None` in Redis (not counted).
    pub(crate) fn stream_count(&self) -> Option<usize> {
        match &self.backing {
            Backing::Local { store, .. } => store.stream_count().ok(),
            Backing::Cluster { .. } => None,
        }
    }

    /// Holds `key`'s local stream still: no publish to it proceeds meanwhile.
    async fn lock<'a>(
        stripes: &'a [Mutex<()>],
        key: &StreamKey,
    ) -> tokio::sync::MutexGuard<'a, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        stripes[hasher.finish() as usize % STRIPES].lock().await
    }

    /// Stores `message` as the stream's next one and fans it out to `target`.
    /// `request` (user, request id) makes it once per id in Redis, where an
    /// unanswered call may still have been carried out (on one node the
    /// session's id window is enough).
    pub(crate) async fn publish(
        &self,
        broker: &dyn Broker,
        key: StreamKey,
        target: Target,
        message: Message,
        request: Option<(&str, &str)>,
    ) -> Result<Published, PublishError> {
        let started = tokio::time::Instant::now();
        let published = self.append_and_publish(broker, key, target, message, request).await;
        self.latency.observe(APPEND, started.elapsed());
        published
    }

    async fn append_and_publish(
        &self,
        broker: &dyn Broker,
        key: StreamKey,
        target: Target,
        message: Message,
        request: Option<(&str, &str)>,
    ) -> Result<Published, PublishError> {
        let limits = self.limits(&key).clone();
        let (store, stripes) = match &self.backing {
            Backing::Local { store, stripes } => (store, stripes),
            Backing::Cluster { cluster, window, .. } => {
                let except = match &target {
                    Target::RoomExcept(room_except) => Some(&room_except.1),
                    _ => None,
                };
                let appended =
                    cluster.append(&key, &limits, &message, request, *window, except).await?;
                let stored = Stored {
                    offset: appended.position.offset,
                    ts: message.ts,
                    frame: appended.frame,
                };
                return Ok(Published { stored, reached: appended.connections });
            }
        };
        let _order = Streams::lock(stripes, &key).await;
        let mut frame = ServerFrame::Message(message);
        let stored = store.append(&key, &limits, now_ms(), &mut |offset| {
            if let ServerFrame::Message(message) = &mut frame {
                message.offset = Some(offset);
            }
            encode(&frame)
        })?;
        let delivery = Delivery {
            target,
            frame: stored.frame.clone(),
            kind: DeliveryKind::Message,
            offset: Some(stored.offset),
        };
        let reached = broker.publish(delivery).await?;
        if reached > 0 {
            if let StreamKey::Inbox(_) = key {
                store.mark_delivered(&key, stored.offset)?;
            }
        }
        Ok(Published { stored, reached })
    }

    /// Runs `register` (which makes the caller a live recipient of `key`)
    /// and reads where the stream stands, in that order (on one node both
    /// under the stream's lock). With `since`, also returns what the caller
    /// missed.
    pub(crate) async fn resume<T>(
        &self,
        key: &StreamKey,
        since: Option<&Position>,
        register: impl FnOnce() -> T,
    ) -> Result<(T, Position, Option<Replay>), StoreError> {
        let started = tokio::time::Instant::now();
        let resumed = self.read_resume(key, since, register).await;
        self.latency.observe(READ, started.elapsed());
        resumed
    }

    async fn read_resume<T>(
        &self,
        key: &StreamKey,
        since: Option<&Position>,
        register: impl FnOnce() -> T,
    ) -> Result<(T, Position, Option<Replay>), StoreError> {
        let limits = self.limits(key).clone();
        match &self.backing {
            Backing::Local { store, stripes } => {
                let _order = Streams::lock(stripes, key).await;
                let registered = register();
                match since {
                    Some(since) => {
                        let (position, replay) = store.since(key, since, &limits, now_ms())?;
                        Ok((registered, position, Some(replay)))
                    }
                    None => Ok((registered, store.position(key)?, None)),
                }
            }
            Backing::Cluster { cluster, hub, .. } => {
                let registered = register();
                let (position, replay) = match since {
                    Some(since) => {
                        let (position, replay) =
                            cluster.since(key, since, &limits, now_ms()).await?;
                        (position, Some(replay))
                    }
                    None => {
                        let read = cluster
                            .read(key, &limits, Reading::head(), now_ms())
                            .await?
                            .ok_or_else(|| StoreError("stream not created".to_owned()))?;
                        (read.position, None)
                    }
                };
                follow(cluster, hub, key, &position);
                Ok((registered, position, replay))
            }
        }
    }

    /// For a connection that did not say where it stopped: the inbox
    /// messages no connection of the user has received yet, now marked
    /// delivered. Runs `register` first (on one node under the inbox's lock).
    pub(crate) async fn undelivered<T>(
        &self,
        key: &StreamKey,
        register: impl FnOnce() -> T,
    ) -> Result<(T, Position, Vec<Stored>), StoreError> {
        let limits = self.limits(key).clone();
        match &self.backing {
            Backing::Local { store, stripes } => {
                let _order = Streams::lock(stripes, key).await;
                let registered = register();
                let (position, pending) = store.undelivered(key, &limits, now_ms())?;
                Ok((registered, position, pending))
            }
            Backing::Cluster { cluster, hub, .. } => {
                let registered = register();
                let count = limits.size + 1;
                let read = cluster
                    .read(
                        key,
                        &limits,
                        Reading { create: true, after: After::Delivered, count, mark: true },
                        now_ms(),
                    )
                    .await?
                    .ok_or_else(|| StoreError("stream not created".to_owned()))?;
                follow(cluster, hub, key, &read.position);
                Ok((registered, read.position, read.entries))
            }
        }
    }

    /// Records that a connection of the inbox's user received everything up
    /// to `offset`.
    pub(crate) async fn mark_delivered(
        &self,
        key: &StreamKey,
        offset: u64,
    ) -> Result<(), StoreError> {
        match &self.backing {
            Backing::Local { store, .. } => store.mark_delivered(key, offset),
            Backing::Cluster { cluster, .. } => Ok(cluster.mark_delivered(key, offset).await?),
        }
    }

    /// When the stream's newest kept message was accepted (Unix ms); `None`
    /// when it keeps none. Two reads: where the stream stands, then its
    /// last message.
    pub(crate) async fn last_message_ts(&self, key: &StreamKey) -> Result<Option<u64>, StoreError> {
        let Some((position, _)) = self.page(key, Some(u64::MAX - 1), 1).await? else {
            return Ok(None);
        };
        if position.offset == 0 {
            return Ok(None);
        }
        let last = self.page(key, Some(position.offset - 1), 1).await?;
        Ok(last.and_then(|(_, entries)| entries.first().map(|entry| entry.ts)))
    }

    /// Up to `limit` messages after offset `after` (from the oldest kept
    /// when `None`); `None` for a stream that does not exist.
    pub(crate) async fn page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<(Position, Vec<Stored>)>, StoreError> {
        let started = tokio::time::Instant::now();
        let page = self.read_page(key, after, limit).await;
        self.latency.observe(READ, started.elapsed());
        page
    }

    async fn read_page(
        &self,
        key: &StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Option<(Position, Vec<Stored>)>, StoreError> {
        let limits = self.limits(key);
        match &self.backing {
            Backing::Local { store, .. } => store.page(key, after, limit, limits, now_ms()),
            Backing::Cluster { cluster, .. } => {
                let reading = Reading::page(after.unwrap_or(0), limit);
                let read = cluster.read(key, limits, reading, now_ms()).await?;
                Ok(read.map(|read| (read.position, read.entries)))
            }
        }
    }
}

/// Tells the subscriber how far a newly followed stream stands: when the
/// connection just registered is the stream's only recipient here, nothing
/// was delivered to anyone here yet and the head is where gaps start to
/// count. Otherwise the subscriber's own record (from deliveries to the
/// others) is the truth, unless it is of another epoch.
fn follow(cluster: &Cluster, hub: &Hub, key: &StreamKey, position: &Position) {
    let recipients = match key {
        StreamKey::Room(room) => hub.room_connections(room),
        StreamKey::Inbox(user) => hub.connections_of(user),
    };
    let mut delivered = cluster.delivered();
    let keep =
        recipients > 1 && delivered.get(key).is_some_and(|(epoch, _)| *epoch == position.epoch);
    if !keep {
        delivered.insert(key.clone(), (position.epoch.clone(), position.offset));
    }
}

/// Decodes stored frames back into messages (for history reads).
pub(crate) fn messages(stored: &[Stored]) -> Vec<Message> {
    stored
        .iter()
        .filter_map(|s| match serde_json::from_str::<ServerFrame>(&s.frame) {
            Ok(ServerFrame::Message(message)) => Some(message),
            _ => None,
        })
        .collect()
}
