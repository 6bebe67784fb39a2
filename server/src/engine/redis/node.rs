//! [`RedisNode`]: this node among the others on Redis. Its tasks (the
//! subscription, the presence writer, the heartbeat), the registry of live
//! nodes by heartbeat, the burial of dead ones, orders for users and
//! sessions on any node, surveys, and the cluster's figures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use switchboard_protocol::CloseCode;
use tokio_util::sync::CancellationToken;

use super::followers::Followers;
use super::presence::RedisPresence;
use super::scripts::HEARTBEAT;
use super::shards::Batch;
use super::subscriber::Subscriber;
use super::{Redis, wire};
use crate::Hub;
use crate::engine::node::{ConnectionsQuery, Node, SessionOrder, Surveyed};
use crate::engine::{EngineError, EngineFuture, HistoryRules};
use crate::hub::stats::ClusterStats;

/// What a heartbeat learned.
struct Beat {
    /// This node was not registered: its entries may be gone.
    was_unknown: bool,
    /// Nodes whose heartbeat is older than the TTL.
    dead: Vec<String>,
}

/// A node of a cluster.
pub(crate) struct RedisNode {
    redis: Arc<Redis>,
    hub: Arc<Hub>,
    followers: Arc<Followers>,
    rules: HistoryRules,
    presence: Arc<RedisPresence>,
}

impl RedisNode {
    pub(crate) fn new(
        redis: Arc<Redis>,
        hub: Arc<Hub>,
        followers: Arc<Followers>,
        rules: HistoryRules,
        presence: Arc<RedisPresence>,
    ) -> RedisNode {
        RedisNode { redis, hub, followers, rules, presence }
    }

    /// Says this node is alive, with its figures; lists the dead nodes.
    async fn heartbeat(&self, figures: &str) -> Result<Beat, EngineError> {
        let redis = &self.redis;
        let mut batch = Batch::new();
        batch
            .script(redis, &HEARTBEAT, &[redis.keys.nodes(), redis.keys.stats()])
            .arg(&redis.node)
            .arg(figures)
            .arg(redis.node_ttl.as_millis() as u64);
        let (beat,): (Vec<::redis::Value>,) = batch.query(redis, "heartbeat").await?;
        let mut beat = beat.into_iter();
        let was_unknown = beat
            .next()
            .and_then(|v| ::redis::from_redis_value::<i64>(v).ok())
            .is_some_and(|new| new == 1);
        let dead = beat
            .filter_map(|v| ::redis::from_redis_value::<String>(v).ok())
            .filter(|node| *node != self.redis.node)
            .collect();
        Ok(Beat { was_unknown, dead })
    }

    /// One beat: alive, with the node's figures; its presence rewritten
    /// when Redis did not know it (a restart, or others declared it dead);
    /// dead nodes buried and their users' leaves announced.
    async fn beat(&self, first: bool) {
        let figures = serde_json::json!({
            "connections": self.hub.connection_count(),
            "users": self.hub.user_count(),
            "rooms": self.hub.room_count(),
            "messages_total": self.hub.counters.messages_total(),
            "deliveries_total": self.hub.counters.deliveries_total(),
        })
        .to_string();
        let Ok(beat) = self.heartbeat(&figures).await else { return };
        if beat.was_unknown && !first {
            tracing::info!("redis did not know this node: its presence is rewritten");
            self.presence.rewrite();
        } else if self.redis.presence_lost.swap(false, std::sync::atomic::Ordering::Relaxed) {
            // A shard (or a cluster's master) may have restarted without
            // the registry's: what it held of this node is put back.
            tracing::info!("a redis subscription was lost: this node's presence is rewritten");
            self.presence.rewrite();
        }
        for node in beat.dead {
            match self.presence.bury(&node).await {
                Ok(left) => {
                    tracing::info!(%node, users = left.len(), "a node stopped beating: its presence is removed");
                    self.presence.announce_gone(left).await;
                }
                Err(err) => tracing::warn!(%node, %err, "dead node not removed"),
            }
        }
    }
}

/// The nodes whose last heartbeat is within `redis.node_ttl_ms`, by
/// Redis's clock.
pub(crate) async fn live_nodes(redis: &Redis) -> Result<Vec<String>, EngineError> {
    let nodes = redis.keys.nodes();
    let mut batch = Batch::new();
    batch.keyed(
        redis,
        &nodes,
        ::redis::cmd("ZRANGE").arg(&nodes).arg(0).arg(-1).arg("WITHSCORES").to_owned(),
    );
    // Redis's clock, on the same server as the registry.
    batch.keyed(redis, &nodes, ::redis::cmd("TIME"));
    let (nodes, (secs, micros)): (Vec<(String, f64)>, (u64, u64)) =
        batch.query(redis, "live_nodes").await?;
    Ok(alive(redis, nodes, secs * 1000 + micros / 1000))
}

/// Of `(node, last heartbeat)`, the nodes alive at `now_ms`.
fn alive(redis: &Redis, nodes: Vec<(String, f64)>, now_ms: u64) -> Vec<String> {
    let ttl_ms = redis.node_ttl.as_millis() as f64;
    nodes
        .into_iter()
        .filter(|(_, beat)| now_ms as f64 - beat <= ttl_ms)
        .map(|(node, _)| node)
        .collect()
}

impl Node for RedisNode {
    fn id(&self) -> Option<&str> {
        Some(&self.redis.node)
    }

    fn healthy(&self) -> Option<bool> {
        Some(self.redis.is_up())
    }

    fn start(&self, shutdown: CancellationToken) {
        let subscribers = match &self.redis.servers {
            super::Servers::Independent(shards) => shards.len(),
            super::Servers::Cluster(_) => 1,
        };
        for shard in 0..subscribers {
            let subscriber = Subscriber {
                redis: self.redis.clone(),
                shard,
                hub: Arc::downgrade(&self.hub),
                rules: self.rules.clone(),
                followers: self.followers.clone(),
            };
            tokio::spawn(subscriber.run(shutdown.clone()));
        }
        tokio::spawn(self.presence.clone().run(shutdown.clone()));
        let node = RedisNode {
            redis: self.redis.clone(),
            hub: self.hub.clone(),
            followers: self.followers.clone(),
            rules: self.rules.clone(),
            presence: self.presence.clone(),
        };
        let every = self.redis.node_ttl / 3;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                node.beat(first).await;
                first = false;
            }
        });
    }

    fn ready(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.redis.subscribed())
    }

    fn drain(&self) -> EngineFuture<'_, ()> {
        Box::pin(async move {
            // Sessions counted themselves out as they closed: their leaves
            // go out first; what is left of this node (its heartbeat, its
            // figures) goes now rather than when the survivors notice it
            // stopped.
            self.presence.settle(self.redis.timeout * 2).await;
            // Nothing of this node may be written after its burial: the
            // writer ends first (what it did not get to is buried with the
            // rest, and the leaves announced below).
            self.presence.stop(self.redis.timeout * 2).await;
            let buried = self.presence.bury(&self.redis.node).await;
            if let Ok(left) = &buried {
                // Whoever was here only (a count the writer did not get to,
                // or a node that drained before its sessions all closed).
                self.presence.announce_gone(left.clone()).await;
            }
            buried.map(|_| ())
        })
    }

    fn close_user<'a>(
        &'a self,
        user: &'a str,
        code: CloseCode,
        reason: &'a str,
    ) -> EngineFuture<'a, usize> {
        Box::pin(async move {
            let redis = &self.redis;
            let order = wire::encode_close(user, code, reason);
            let count = redis.keys.followers(&crate::stream::StreamKey::Inbox(user.into()));
            let mut batch = Batch::new();
            batch.publish(redis, &count, order);
            batch.keyed(redis, &count, ::redis::cmd("GET").arg(&count).to_owned());
            let (connections,): (Option<u64>,) = batch.query(redis, "disconnect").await?;
            Ok(connections.unwrap_or(0) as usize)
        })
    }

    fn forward<'a>(
        &'a self,
        session: &'a uuid::Uuid,
        order: SessionOrder,
    ) -> EngineFuture<'a, bool> {
        Box::pin(async move {
            let order = match order {
                SessionOrder::Write(frame) => wire::encode_to_session(session, &frame),
                SessionOrder::Close(code, reason) => {
                    wire::encode_close_session(session, code, &reason)
                }
            };
            self.redis.publish("order", order).await?;
            Ok(true)
        })
    }

    fn survey<'a>(&'a self, query: &'a ConnectionsQuery) -> EngineFuture<'a, Surveyed> {
        Box::pin(super::survey::survey(&self.redis, query))
    }

    fn stats(&self) -> EngineFuture<'_, Option<ClusterStats>> {
        Box::pin(async move {
            let redis = &self.redis;
            let (nodes, stats) = (redis.keys.nodes(), redis.keys.stats());
            let mut batch = Batch::new();
            let range =
                ::redis::cmd("ZRANGE").arg(&nodes).arg(0).arg(-1).arg("WITHSCORES").to_owned();
            batch.keyed(redis, &nodes, range);
            batch.keyed(redis, &stats, ::redis::cmd("HGETALL").arg(&stats).to_owned());
            batch.keyed(redis, &nodes, ::redis::cmd("TIME"));
            type Answer = (Vec<(String, f64)>, Vec<(String, String)>, (u64, u64));
            let (nodes, figures, (secs, micros)): Answer = batch.query(redis, "stats").await?;
            let (users, rooms) = self.presence.counts().await?;
            let live = alive(redis, nodes, secs * 1000 + micros / 1000);
            let (mut connections, mut messages_total) = (0, 0);
            for (node, json) in &figures {
                if !live.contains(node) {
                    continue;
                }
                let figures: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                connections += figures["connections"].as_u64().unwrap_or(0);
                messages_total += figures["messages_total"].as_u64().unwrap_or(0);
            }
            Ok(Some(ClusterStats {
                node: redis.node.clone(),
                nodes: live.len() as u64,
                connections,
                users,
                rooms,
                messages_total,
            }))
        })
    }

    fn metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        type Labels = Vec<(&'static str, String)>;
        let counters = &self.redis.counters;
        let up = Gauge::<i64>::default();
        up.set(i64::from(self.redis.is_up()));
        registry.register("redis_up", "1 when the last Redis request succeeded", up);
        let errors = Family::<Labels, Counter>::default();
        for (operation, n) in counters.errors() {
            errors.get_or_create(&vec![("operation", operation.to_owned())]).inc_by(n);
        }
        registry.register("redis_errors", "Redis requests that failed, by operation", errors);
        let resubscribes = Counter::<u64>::default();
        resubscribes.inc_by(counters.resubscribes.load(Ordering::Relaxed));
        registry.register(
            "redis_resubscribes",
            "Redis subscriptions re-established after one was lost",
            resubscribes,
        );
        let gaps = Family::<Labels, Counter>::default();
        let repaired = counters.gaps_repaired.load(Ordering::Relaxed);
        gaps.get_or_create(&vec![("outcome", "repaired".to_owned())]).inc_by(repaired);
        let resumed = counters.gaps_resumed.load(Ordering::Relaxed);
        gaps.get_or_create(&vec![("outcome", "resumed".to_owned())]).inc_by(resumed);
        registry.register(
            "stream_gaps",
            "Messages lost between nodes: repaired from the history, or followers told to resume (4005)",
            gaps,
        );
        let resets = Counter::<u64>::default();
        resets.inc_by(counters.resets.load(Ordering::Relaxed));
        registry.register(
            "stream_resets",
            "Followed streams that started over under a new epoch (Redis lost them); followers were sent `reset`",
            resets,
        );
        if let super::Servers::Cluster(link) = &self.redis.servers {
            let slots = Gauge::<i64>::default();
            slots.set(i64::try_from(link.listening()).unwrap_or(i64::MAX));
            registry.register(
                "redis_cluster_slots_listened",
                "Redis Cluster hash slots whose channel this node subscribed to",
                slots,
            );
        }
        let followed = Gauge::<i64>::default();
        followed.set(i64::try_from(self.followers.len()).unwrap_or(i64::MAX));
        registry.register("followed_streams", "Streams this node follows", followed);
    }
}
