//! `[redis]`: multi-node mode.

use serde::{Deserialize, Serialize};

/// Multi-node mode on Redis (7.0 or later). With `url` (or `shards`) set,
/// streams (offsets, history, inboxes), fan-out, presence and request ids
/// live in Redis, shared by every hub pointed at it; see
/// `docs/SCALING.md`.
///
/// ```toml
/// [redis]
/// url = "redis://127.0.0.1:6379"
/// prefix = "chat-prod"
/// ```
///
/// or, over several independent Redis servers:
///
/// ```toml
/// [redis]
/// shards = ["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; none for a single node
    /// (the default).
    pub url: Option<String>,
    /// Several independent Redis servers to spread the load over, instead
    /// of `url`: each room's keys and messages (and each user's) live on
    /// one of them, chosen by consistent hashing of its name; the node
    /// registry and the catalog on the first. Every node must list the
    /// same servers in the same order; adding one at the end moves about
    /// 1 in n+1 rooms and users to it (`docs/SCALING.md`). Env:
    /// `SWITCHBOARD_REDIS__SHARDS='["redis://a:6379","redis://b:6379"]'`.
    pub shards: Vec<String>,
    /// `url` names a seed node of a Redis Cluster (7.0 or later): keys are
    /// placed by hash slot (a room's and a user's each in one slot), and
    /// deliveries go through sharded pub/sub, so a message reaches only
    /// the nodes that follow its slot (`docs/SCALING.md`). Env:
    /// `SWITCHBOARD_REDIS__CLUSTER=true`.
    pub cluster: bool,
    /// Starts every key and channel the hub uses (default `"switchboard"`),
    /// so several deployments can share one Redis server.
    pub prefix: String,
    /// How long one Redis request may take before the client's request
    /// fails with `unavailable` (default 1000 ms). Also the connect timeout.
    pub timeout_ms: u64,
    /// A node that has not refreshed its heartbeat for this long is dead:
    /// another node removes its presence entries and announces its users'
    /// leaves (default 10,000 ms; heartbeats go every third of it).
    pub node_ttl_ms: u64,
    /// How long a delivery from another node may wait for others to go
    /// out with it, in microseconds (default 2,000; 0 hands each batch
    /// over as it arrives). It waits only while deliveries stream in (the
    /// previous batch held several and went out within twenty such
    /// windows); one after a quiet spell, or in a trickle, never waits. Every member then writes several messages
    /// in one go: on the cluster bench this halves the nodes' CPU per
    /// delivery, for at most this much more latency under load
    /// (`docs/SCALING.md`). At most 50,000.
    pub coalesce_us: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            shards: Vec::new(),
            cluster: false,
            prefix: "switchboard".to_owned(),
            timeout_ms: 1_000,
            node_ttl_ms: 10_000,
            coalesce_us: 2_000,
        }
    }
}

impl RedisConfig {
    /// Whether multi-node mode is on (`url` or `shards` set).
    pub fn enabled(&self) -> bool {
        self.url.is_some() || !self.shards.is_empty()
    }

    /// The Redis servers, in order: `url`, or the `shards`.
    pub fn urls(&self) -> Vec<&str> {
        match &self.url {
            Some(url) => vec![url.as_str()],
            None => self.shards.iter().map(String::as_str).collect(),
        }
    }
}
