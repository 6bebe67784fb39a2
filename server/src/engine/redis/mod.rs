//! The Redis engine: several hub processes sharing one Redis behave as one
//! hub. This module owns everything the hub keeps in Redis and the
//! connections each node holds to it; nothing outside it speaks Redis.
//!
//! - `broker.rs`: streams. Publishing runs one Lua script (request id,
//!   next offset, `XADD` with trimming and TTL, `PUBLISH`), so offsets are
//!   assigned in one place, atomically with the history, the id's record
//!   and the fan-out, whichever node publishes.
//! - `subscriber.rs`: the node's pub/sub connection. Every node hears every
//!   delivery on one channel and hands it to its hub; for each stream it
//!   follows (`followers.rs`) it watches the offsets: a jump is repaired
//!   from the stream's history (in a task of its own, so other streams
//!   keep flowing), a new epoch is announced to the followers first.
//! - `presence.rs`: who is online and in which room, counted per node so
//!   that a dead node's entries can be removed by the survivors. One task
//!   per node writes this node's counts as the hub holds them.
//! - `node.rs`: heartbeats, dead nodes, orders for sessions and users on
//!   any node, surveys (`survey.rs`), the cluster's figures.
//! - `catalog.rs`: the managed rooms, one hash.
//! - `keys.rs`: every key's name; `scripts.rs`: the Lua scripts; `wire.rs`:
//!   the pub/sub message format; `shards.rs`: which Redis holds which key
//!   (one, or several with `redis.shards`), and pipelines across them.
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
//! `/health`, and the connection manager reconnects with backoff.

pub(crate) mod broker;
pub(crate) mod catalog;
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
    /// The Redis servers, in the order configured; keys are spread over
    /// them by their tags (`shards.rs`).
    pub(crate) shards: Vec<Shard>,
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
        Ok(Redis {
            node: uuid::Uuid::new_v4().simple().to_string(),
            keys: Keys::new(&config.prefix),
            shards,
            timeout,
            node_ttl: Duration::from_millis(config.node_ttl_ms),
            coalesce: Duration::from_micros(config.coalesce_us),
            up: AtomicBool::new(true),
            counters: Counters::default(),
            surveys: survey::Surveys::default(),
        })
    }

    /// The shard that holds `key` (by its tag).
    pub(crate) fn shard_of_key(&self, key: &str) -> usize {
        shards::shard_of(shards::tag_of(key), self.shards.len())
    }

    /// The shard of `key`'s stream: its keys, its followers' presence, and
    /// the channel its messages go through.
    pub(crate) fn shard_of_stream(&self, key: &StreamKey) -> usize {
        self.shard_of_key(&self.keys.meta(key))
    }

    /// A handle on the command connection of the shard that holds the
    /// registry, the figures and the catalog.
    pub(crate) fn home(&self) -> ConnectionManager {
        self.shards[0].commands.clone()
    }

    /// Resolves once this node is subscribed to every shard.
    pub(crate) async fn subscribed(&self) {
        for shard in &self.shards {
            shard.subscribed.cancelled().await;
        }
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
            } else {
                tracing::warn!(%what, err = err.unwrap_or(""), "redis unreachable; requests that need it fail with `unavailable` until it is back");
            }
        }
    }

    /// Whether Redis answered the last request.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Publishes `payload` on `shard`'s channel (orders, surveys and
    /// answers go through the first shard's).
    pub(crate) async fn publish(
        &self,
        what: &'static str,
        shard: usize,
        payload: String,
    ) -> Result<(), EngineError> {
        let mut connection = self.shards[shard].commands.clone();
        self.call(
            what,
            ::redis::cmd("PUBLISH")
                .arg(self.keys.channel())
                .arg(payload)
                .query_async::<()>(&mut connection),
        )
        .await
    }

    /// A `PUBLISH` of `payload` on the cluster's channel, to add to a
    /// [`Batch`](shards::Batch).
    pub(crate) fn publish_cmd(&self, payload: String) -> ::redis::Cmd {
        let mut cmd = ::redis::cmd("PUBLISH");
        cmd.arg(self.keys.channel()).arg(payload);
        cmd
    }
}
