//! [`ClusterLink`]: a node's link to a Redis Cluster (`redis.cluster`).
//!
//! Commands go through one cluster connection (redis-rs), which sends each
//! to the master of its key's hash slot and follows the cluster as slots
//! move. A pipeline must stay inside one slot there, so a
//! [`Batch`](super::shards::Batch) sends one pipeline per slot.
//!
//! Deliveries use sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): a
//! message goes only to the master (and replicas) of its channel's slot,
//! not to the whole cluster. Each slot has one channel, named with a tag
//! of that slot, so the publish script, which runs on the stream's slot,
//! may publish on it. A node subscribes to a slot's channel before it
//! first reads a stream of that slot (a join, a connection's inbox), and
//! keeps it for its life (at most 16,384 channels): a subscription given
//! up while another join takes it again could otherwise land after it.
//! The `home` slot's channel (broadcasts to all, orders, surveys) is
//! subscribed at start.
//!
//! The connection is made at the first request, not at start: a node
//! starts while the cluster is unreachable, and says so in `/health`.
//! When a connection to the cluster drops, the node subscribes to every
//! slot it listens to again (redis-rs tries too, but not after every kind
//! of recovery: a cluster made anew on the same addresses, say), with
//! backoff until the cluster answers; each confirmation reaches the
//! subscriber, which then reads the slot's followed streams from their
//! last delivered offsets, as after a lost subscription on a single Redis.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{PushInfo, RedisResult};
use tokio::sync::{Notify, OnceCell, mpsc};
use tokio_util::sync::CancellationToken;

use super::shards::{HOME, tag_of};
use crate::engine::EngineError;

/// Hash slots of a Redis Cluster.
pub(crate) const SLOTS: usize = 16_384;

/// The hash slot of a tag (CRC16/XMODEM modulo 16,384, as Redis computes it).
pub(crate) fn slot_of(tag: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(tag.as_bytes())) % SLOTS
}

/// For each slot, a tag that hashes to it: its channel is named with it.
static SLOT_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut tags = vec![String::new(); SLOTS];
    let mut left = SLOTS;
    let mut n = 0u64;
    while left > 0 {
        let tag = format!("c{n}");
        let slot = slot_of(&tag);
        if tags[slot].is_empty() {
            tags[slot] = tag;
            left -= 1;
        }
        n += 1;
    }
    tags
});

/// A node's link to a Redis Cluster.
pub(crate) struct ClusterLink {
    client: ::redis::cluster::ClusterClient,
    connection: OnceCell<ClusterConnection>,
    /// Where redis-rs hands the pushes (messages, subscription
    /// confirmations); the subscriber takes it.
    pushes: Mutex<Option<mpsc::UnboundedReceiver<PushInfo>>>,
    /// The slots this node subscribed to, each once.
    listening: Mutex<HashMap<usize, Arc<OnceCell<()>>>>,
    prefix: String,
    /// Cancelled once the home slot's channel is subscribed.
    pub(crate) subscribed: CancellationToken,
    /// Set when a connection dropped: every slot is subscribed again.
    lost: AtomicBool,
    /// Wakes whoever subscribes again.
    wake: Notify,
}

impl ClusterLink {
    /// Prepares the link to the cluster `seed` belongs to; connects at the
    /// first request.
    pub(crate) fn new(
        seed: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<ClusterLink, EngineError> {
        let (pushed, pushes) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(vec![seed])
            .use_protocol(::redis::ProtocolVersion::RESP3)
            .push_sender(pushed)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(2)
            .build()
            .map_err(|err| EngineError::Failed(format!("redis.url: {err}")))?;
        Ok(ClusterLink {
            client,
            connection: OnceCell::new(),
            pushes: Mutex::new(Some(pushes)),
            listening: Mutex::new(HashMap::new()),
            prefix: prefix.to_owned(),
            subscribed: CancellationToken::new(),
            lost: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// The cluster connection, made now if it is not yet.
    pub(crate) async fn connection(&self) -> RedisResult<ClusterConnection> {
        let connection =
            self.connection.get_or_try_init(|| self.client.get_async_connection()).await?;
        Ok(connection.clone())
    }

    /// The pushes, for the subscriber (once).
    pub(crate) fn take_pushes(&self) -> Option<mpsc::UnboundedReceiver<PushInfo>> {
        self.pushes.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// The channel of `slot`.
    pub(crate) fn channel(&self, slot: usize) -> String {
        format!("{}:{{{}}}:fan", self.prefix, SLOT_TAGS[slot])
    }

    /// The slot a channel of [`ClusterLink::channel`] is of.
    pub(crate) fn slot_of_channel(channel: &[u8]) -> Option<usize> {
        let channel = std::str::from_utf8(channel).ok()?;
        Some(slot_of(tag_of(channel)))
    }

    /// The slot of the home tag.
    pub(crate) fn home_slot() -> usize {
        slot_of(HOME)
    }

    /// Subscribes to `slot`'s channel, unless this node did already;
    /// resolves once Redis confirmed it. Callers for the same slot wait
    /// for the same subscription; one that failed is tried again by the
    /// next caller.
    pub(crate) async fn listen(&self, slot: usize) -> RedisResult<()> {
        let once = {
            let mut listening = self.listening.lock().unwrap_or_else(PoisonError::into_inner);
            listening.entry(slot).or_default().clone()
        };
        once.get_or_try_init(|| async {
            let mut connection = self.connection().await?;
            connection.ssubscribe(self.channel(slot)).await
        })
        .await?;
        Ok(())
    }

    /// A connection to the cluster dropped: its subscriptions are to be
    /// made again.
    pub(crate) fn lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Subscribes again to every slot this node listens to, whenever a
    /// connection dropped, trying again with backoff until the cluster
    /// answers, until `shutdown`.
    pub(crate) async fn resubscribe(&self, timeout: Duration, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            if !self.lost.swap(false, Ordering::Relaxed) {
                failures = 0;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.wake.notified() => continue,
                }
            }
            let slots: Vec<usize> = {
                let listening = self.listening.lock().unwrap_or_else(PoisonError::into_inner);
                listening
                    .iter()
                    .filter(|(_, once)| once.initialized())
                    .map(|(slot, _)| *slot)
                    .collect()
            };
            let subscribed = tokio::time::timeout(timeout, async {
                let connection = self.connection().await?;
                let each = slots.iter().map(|slot| {
                    let mut connection = connection.clone();
                    let channel = self.channel(*slot);
                    async move { connection.ssubscribe(channel).await }
                });
                futures::future::try_join_all(each).await.map(|_| ())
            })
            .await;
            if let Ok(Ok(())) = subscribed {
                tracing::info!(slots = slots.len(), "redis cluster channels subscribed again");
                continue;
            }
            self.lost.store(true, Ordering::Relaxed);
            failures = failures.saturating_add(1);
            let cap = Duration::from_millis(100u64 << failures.min(6)).min(Duration::from_secs(5));
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(cap.mul_f64(0.5 + fastrand::f64() / 2.0)) => {}
            }
        }
    }

    /// How many slots this node listens to.
    pub(crate) fn listening(&self) -> usize {
        let listening = self.listening.lock().unwrap_or_else(PoisonError::into_inner);
        listening.values().filter(|once| once.initialized()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_redis_clusters() {
        // Known slots, from `CLUSTER KEYSLOT` of a Redis 7.
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("bar"), 5061);
        assert_eq!(slot_of("home"), slot_of(tag_of("sb:{home}:nodes")));
    }

    #[test]
    fn every_slot_has_a_channel_of_its_own() {
        let link = ClusterLink::new("redis://127.0.0.1:1", "sb", Duration::from_secs(1)).unwrap();
        for slot in [0, 1, 5061, 12182, SLOTS - 1] {
            let channel = link.channel(slot);
            assert_eq!(ClusterLink::slot_of_channel(channel.as_bytes()), Some(slot), "{channel}");
        }
    }
}
