//! Multi-node mode: several hub processes sharing one Redis behave as one
//! hub. This module owns everything the hub keeps in Redis and the one
//! connection pair each node holds to it; nothing outside it speaks Redis.
//!
//! - `streams.rs`: a stream's offsets, epoch and history. Publishing runs
//!   one Lua script (next offset, `XADD` with trimming and TTL, `PUBLISH`),
//!   so offsets are assigned in one place, atomically with the history and
//!   the fan-out, whichever node publishes.
//! - `subscriber.rs`: the node's pub/sub connection. Every node hears every
//!   delivery on one channel, hands it to its [`Hub`](crate::Hub), and
//!   watches each stream's offsets: a jump, or a lost and re-established
//!   subscription, is repaired from the stream before anything newer goes out.
//! - `presence.rs`: who is in which room and who is online, cluster-wide,
//!   counted per node so that a dead node's entries can be removed by the
//!   survivors; node heartbeats.
//! - Request ids: the publish script records each id with its offset in
//!   the same step as the append, so a retry on another node (or after a
//!   timeout) gets the first offset instead of a second append.
//! - `survey.rs`: asking every live node at once and gathering the answers
//!   (the cluster-wide connection listing).
//! - `keys.rs`: every key's name; `scripts.rs`: the Lua scripts; `wire.rs`:
//!   the pub/sub message format.
//!
//! Every request goes through [`Cluster::call`], which bounds it by
//! `redis.timeout_ms` and keeps the node's view of Redis's health: a
//! failure fails that one request with `unavailable` (nothing is
//! acknowledged that was not stored), is logged once per outage, shows in
//! `/health`, and the connection manager reconnects with backoff.

pub(crate) mod keys;
pub(crate) mod presence;
mod scripts;
pub(crate) mod streams;
pub(crate) mod subscriber;
pub(crate) mod survey;
pub(crate) mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::store::StreamKey;
use keys::Keys;

/// A Redis request that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// Redis did not answer within `redis.timeout_ms`, or could not be reached.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error or with something this hub cannot read.
    #[error("redis error: {0}")]
    Redis(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_unrecoverable_error()
        {
            ClusterError::Unavailable(err.to_string())
        } else {
            ClusterError::Redis(err.to_string())
        }
    }
}

/// This node's link to the cluster: its id, its Redis connections, and what
/// it knows of each stream it delivers.
pub(crate) struct Cluster {
    /// This node's id, fresh at every start (32 hex digits).
    pub(crate) node: String,
    pub(crate) keys: Keys,
    pub(crate) client: redis::Client,
    commands: ConnectionManager,
    pub(crate) timeout: Duration,
    pub(crate) node_ttl: Duration,
    /// Whether the last request (or heartbeat) reached Redis.
    up: AtomicBool,
    /// The last offset (and its epoch) delivered on this node, per stream
    /// with local recipients: what gap detection compares against.
    pub(crate) delivered: Mutex<HashMap<StreamKey, (String, u64)>>,
    /// What `/metrics` reports of this node's life with Redis.
    pub(crate) counters: ClusterCounters,
    /// Surveys this node is waiting on.
    pub(crate) surveys: survey::Surveys,
}

/// Counts of this node's dealings with Redis, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ClusterCounters {
    /// Failed requests, by operation.
    errors: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Subscriptions re-established after one was lost.
    pub(crate) resubscribes: std::sync::atomic::AtomicU64,
    /// Gaps filled from a stream's history.
    pub(crate) gaps_repaired: std::sync::atomic::AtomicU64,
    /// Gaps the history no longer held (followers closed with 4005).
    pub(crate) gaps_resumed: std::sync::atomic::AtomicU64,
}

impl ClusterCounters {
    fn failed(&self, what: &'static str) {
        *self.errors.lock().unwrap_or_else(PoisonError::into_inner).entry(what).or_default() += 1;
    }

    /// Failed requests so far, by operation.
    pub(crate) fn errors(&self) -> Vec<(&'static str, u64)> {
        let errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        errors.iter().map(|(what, n)| (*what, *n)).collect()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish_non_exhaustive()
    }
}

impl Cluster {
    /// Prepares the connections; nothing is sent until the first request,
    /// so a node starts even while Redis is down (and says so in `/health`).
    pub(crate) fn new(config: &RedisConfig) -> Result<Cluster, ClusterError> {
        let url = config.url.as_deref().unwrap_or_default();
        let client = redis::Client::open(url)
            .map_err(|err| ClusterError::Redis(format!("redis.url: {err}")))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Few retries inside one request: a request fails fast while
            // Redis is down, and the next one tries to reconnect again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager)?;
        Ok(Cluster {
            node: uuid::Uuid::new_v4().simple().to_string(),
            keys: Keys::new(&config.prefix),
            client,
            commands,
            timeout,
            node_ttl: Duration::from_millis(config.node_ttl_ms),
            up: AtomicBool::new(true),
            delivered: Mutex::new(HashMap::new()),
            counters: ClusterCounters::default(),
            surveys: survey::Surveys::default(),
        })
    }

    /// A handle on the shared command connection.
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.commands.clone()
    }

    /// Runs one Redis request within `redis.timeout_ms`, and records
    /// whether Redis answered.
    pub(crate) async fn call<T>(
        &self,
        what: &'static str,
        request: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        let result = match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(ClusterError::from(err)),
            Err(_) => Err(ClusterError::Unavailable(format!(
                "{what}: no answer within {} ms",
                self.timeout.as_millis()
            ))),
        };
        match &result {
            Ok(_) => self.mark(true, what, None),
            Err(ClusterError::Unavailable(err)) => {
                self.counters.failed(what);
                self.mark(false, what, Some(err));
            }
            Err(ClusterError::Redis(err)) => {
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

    /// The last offset delivered here for each stream, under its lock.
    pub(crate) fn delivered(&self) -> std::sync::MutexGuard<'_, HashMap<StreamKey, (String, u64)>> {
        self.delivered.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
