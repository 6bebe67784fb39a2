//! The Redis engine: several hub processes sharing Redis (one server,
//! several independent ones, or a Redis Cluster) behave as one hub. This module owns everything the hub keeps in Redis and the
//! connections each node holds to it; nothing outside it speaks Redis.
//!
//! - `broker.rs`: streams. Publishing runs one Lua script (request id,
//!   next offset, `XADD` with trimming and TTL, `PUBLISH`), so offsets are
//!   assigned in one place, atomically with the history, the id's record
//!   and the fan-out, whichever node publishes.
//! - `subscriber.rs`: the node's pub/sub connections (one per shard; on a
//!   cluster, the slots' channels). A node hears the deliveries of the
//!   streams it follows and hands them to its hub; for each stream it
//!   follows (`followers.rs`) it watches the offsets: a jump is repaired
//!   from the stream's history (in a task of its own, so other streams
//!   keep flowing), a new epoch is announced to the followers first.
//! - `presence/`: who is online and in which room, counted per node so
//!   that a dead node's entries can be removed by the survivors (each node
//!   indexes where it has entries). One task per node writes this node's
//!   counts as the hub holds them.
//! - `node.rs`: heartbeats, dead nodes, orders for sessions and users on
//!   any node, surveys (`survey.rs`), the cluster's figures.
//! - `catalog.rs`: the managed rooms, one hash.
//! - `keys.rs`: every key's name; `scripts.rs`: the Lua scripts; `wire.rs`:
//!   the pub/sub message format; `shards.rs`: which Redis holds which key
//!   (one, several with `redis.shards`, or a Redis Cluster's slots with
//!   `redis.cluster`: `cluster.rs`), and pipelines across them.
//!
//! A stream's metadata (epoch, last offset) never expires while anyone
//! follows the stream: the presence script takes the expiry off when the
//! stream's first follower arrives anywhere and puts it back when the last
//! leaves, and publishing and reading keep it off while followed.
//!
//! Every request goes through [`Redis::call`], which bounds it by
//! `redis.timeout_ms` and keeps the node's view of Redis's health: a
//! failure fails that one request with `unavailable` (nothing is
//! acknowledged that was not stored), is logged once per outage, shows in
//! `/health`, and the connection manager reconnects with backoff. Requests
//! that touch several keys go as a [`Batch`](shards::Batch): one pipeline
//! per shard (or slot), all at once.

pub(crate) mod broker;
pub(crate) mod catalog;
pub(crate) mod cluster;
pub(crate) mod followers;
pub(crate) mod keys;
pub(crate) mod node;
pub(crate) mod presence;
mod scripts;
pub(crate) mod shards;
pub(crate) mod subscriber;
pub(crate) mod survey;
pub(crate) mod wire;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use super::catalog::Catalog;
use super::{Engine, EngineError, HistoryRules, Parts};
use crate::config::{Config, RedisConfig};
use crate::stream::StreamKey;
use keys::Keys;
use shards::Shard;

impl From<::redis::RedisError> for EngineError {
    fn from(err: ::redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
        {
            EngineError::Unavailable(format!("redis unavailable: {err}"))
        } else {
            EngineError::Failed(format!("redis error: {err}"))
        }
    }
}

/// A node's engine on the Redis at `redis.url` (or the several of
/// `redis.shards`). Connects lazily: the node starts while Redis is down,
/// and says so in `/health`.
pub(crate) fn engine(config: &Config, parts: Parts) -> Result<Engine, EngineError> {
    let redis = Arc::new(Redis::new(&config.redis)?);
    let rules = HistoryRules::new(config.history.clone());
    let followers = Arc::new(followers::Followers::default());
    let broker = broker::RedisBroker::new(
        redis.clone(),
        rules.clone(),
        followers.clone(),
        parts.hub.clone(),
        Duration::from_secs(config.delivery.id_window_secs),
    );
    let presence = Arc::new(presence::RedisPresence::new(
        redis.clone(),
        parts.hub.clone(),
        parts.events,
        &config.rooms,
        &rules,
    ));
    let catalog = Catalog::new(&config.rooms, Box::new(catalog::RedisCatalog::new(redis.clone())));
    let node = node::RedisNode::new(redis, parts.hub, followers, rules.clone(), presence.clone());
    Ok(Engine::new(
        Box::new(broker),
        Box::new(presence::Shared(presence)),
        catalog,
        Box::new(node),
        rules,
    ))
}

/// This node's link to Redis: its id, its connections, and what it knows
/// of Redis's health.
pub(crate) struct Redis {
    /// This node's id, fresh at every start (32 hex digits).
    pub(crate) node: String,
    pub(crate) keys: Keys,
    /// The Redis servers; keys are spread over them by their tags
    /// (`shards.rs`).
    pub(crate) servers: Servers,
    pub(crate) timeout: Duration,
    pub(crate) node_ttl: Duration,
    /// How long a delivery from another node may wait for company
    /// (`redis.coalesce_us`).
    pub(crate) coalesce: Duration,
    /// Whether the last request (or heartbeat) reached Redis.
    up: AtomicBool,
    /// What `/metrics` reports of this node's life with Redis.
    pub(crate) counters: Counters,
    /// Surveys this node is waiting on.
    pub(crate) surveys: survey::Surveys,
    /// Set when a server may have lost what it held of this node's
    /// presence (its subscription dropped: it may have restarted); the
    /// heartbeat has the presence rewritten.
    pub(crate) presence_lost: AtomicBool,
}

/// Where the keys live.
pub(crate) enum Servers {
    /// One Redis, or several independent ones (`redis.shards`), in the
    /// order configured.
    Independent(Vec<Shard>),
    /// A Redis Cluster (`redis.cluster`).
    Cluster(Box<cluster::ClusterLink>),
}

/// Counts of this node's dealings with Redis, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Failed requests, by operation.
    errors: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Subscriptions re-established after one was lost.
    pub(crate) resubscribes: std::sync::atomic::AtomicU64,
    /// Gaps filled from a stream's history.
    pub(crate) gaps_repaired: std::sync::atomic::AtomicU64,
    /// Gaps the history no longer held (followers closed with 4005).
    pub(crate) gaps_resumed: std::sync::atomic::AtomicU64,
    /// Streams that started a new epoch under their followers.
    pub(crate) resets: std::sync::atomic::AtomicU64,
}

impl Counters {
    fn failed(&self, what: &'static str) {
        *self.errors.lock().unwrap_or_else(PoisonError::into_inner).entry(what).or_default() += 1;
    }

    /// Failed requests so far, by operation.
    pub(crate) fn errors(&self) -> Vec<(&'static str, u64)> {
        let errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        errors.iter().map(|(what, n)| (*what, *n)).collect()
    }
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Redis {
    /// Prepares the connections; nothing is sent until the first request,
    /// so a node starts even while Redis is down (and says so in `/health`).
    pub(crate) fn new(config: &RedisConfig) -> Result<Redis, EngineError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Few retries inside one request: a request fails fast while
            // Redis is down, and the next one tries to reconnect again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let servers = if config.cluster {
            let seed = config.urls().first().copied().unwrap_or_default();
            Servers::Cluster(Box::new(cluster::ClusterLink::new(seed, &config.prefix, timeout)?))
        } else {
            let mut shards = Vec::new();
            for url in config.urls() {
                let client = ::redis::Client::open(url)
                    .map_err(|err| EngineError::Failed(format!("redis: {err}")))?;
                let commands =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())?;
                shards.push(Shard { client, commands, subscribed: CancellationToken::new() });
            }
            if shards.is_empty() {
                return Err(EngineError::Failed("redis: no url".to_owned()));
            }
            Servers::Independent(shards)
        };
        Ok(Redis {
            node: uuid::Uuid::new_v4().simple().to_string(),
            keys: Keys::new(&config.prefix),
            servers,
            timeout,
            node_ttl: Duration::from_millis(config.node_ttl_ms),
            coalesce: Duration::from_micros(config.coalesce_us),
            up: AtomicBool::new(true),
            counters: Counters::default(),
            surveys: survey::Surveys::default(),
            presence_lost: AtomicBool::new(false),
        })
    }

    /// Where requests about `key` go: the index of its shard, or its
    /// hash slot on a cluster.
    pub(crate) fn route_of_key(&self, key: &str) -> usize {
        match &self.servers {
            Servers::Independent(shards) => shards::shard_of(shards::tag_of(key), shards.len()),
            Servers::Cluster(_) => cluster::slot_of(shards::tag_of(key)),
        }
    }

    /// The channel through which the deliveries of `key`'s tag go, and the
    /// command that publishes on it.
    pub(crate) fn channel_near(&self, key: &str) -> (String, &'static str) {
        match &self.servers {
            Servers::Independent(_) => (self.keys.channel(), "PUBLISH"),
            Servers::Cluster(link) => (link.channel(self.route_of_key(key)), "SPUBLISH"),
        }
    }

    /// Resolves once this node listens to the channels of every shard
    /// (on a cluster: of the home slot).
    pub(crate) async fn subscribed(&self) {
        match &self.servers {
            Servers::Independent(shards) => {
                for shard in shards {
                    shard.subscribed.cancelled().await;
                }
            }
            Servers::Cluster(link) => link.subscribed.cancelled().await,
        }
    }

    /// Makes sure this node hears the deliveries of `key`'s stream before
    /// it reads the stream: on a cluster, its slot's channel is subscribed
    /// (every node hears every shard's channel otherwise).
    pub(crate) async fn listen(&self, key: &StreamKey) -> Result<(), EngineError> {
        let Servers::Cluster(link) = &self.servers else { return Ok(()) };
        let slot = self.route_of_key(&self.keys.meta(key));
        self.call("subscribe", link.listen(slot)).await
    }

    /// Runs one Redis request within `redis.timeout_ms`, and records
    /// whether Redis answered.
    pub(crate) async fn call<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = ::redis::RedisResult<T>>,
    ) -> Result<T, EngineError> {
        let result = match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(EngineError::from(err)),
            Err(_) => Err(EngineError::Unavailable(format!(
                "redis unavailable: {what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &result {
            Ok(_) => self.mark(true, what, None),
            Err(EngineError::Unavailable(err)) => {
                self.counters.failed(what);
                self.mark(false, what, Some(err));
            }
            Err(EngineError::Failed(err)) => {
                self.counters.failed(what);
                tracing::error!(%what, %err, "redis refused a request");
            }
        }
        result
    }

    /// Records Redis's health; logs only the transitions, so an outage is
    /// one warning and one recovery line, not one per request.
    pub(crate) fn mark(&self, up: bool, what: &str, err: Option<&str>) {
        if self.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::info!("redis reachable again");
                // What was subscribed while it was not may have landed on
                // connections that are gone since.
                if let Servers::Cluster(link) = &self.servers {
                    link.lost();
                }
            } else {
                tracing::warn!(%what, err = err.unwrap_or(""), "redis unreachable; requests that need it fail with `unavailable` until it is back");
            }
        }
    }

    /// Whether Redis answered the last request.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Publishes `payload` to every node (orders, surveys and answers,
    /// broadcasts to all): through the home tag's channel.
    pub(crate) async fn publish(
        &self,
        what: &'static str,
        payload: String,
    ) -> Result<(), EngineError> {
        let mut batch = shards::Batch::new();
        batch.publish(self, &self.keys.nodes(), payload);
        batch.query::<()>(self, what).await
    }
}
