//! Counters the HTTP API reports: totals since start, kept with atomics so
//! that counting never takes a lock on the message path.

use serde::Serialize;

pub use super::rates::Rates;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of this node since it started.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    connections_total: AtomicU64,
    messages_total: AtomicU64,
    deliveries_total: AtomicU64,
    slow_consumers_total: AtomicU64,
    rate_limited_total: AtomicU64,
    /// Refused upgrades by error code. A map behind a lock: it changes once
    /// per refusal, never on the message path.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// Ended sessions by how they ended (`close_4000`, `client_closed`, …).
    ended: Mutex<BTreeMap<String, u64>>,
    /// Frames queued to connections and their bytes, by [`DELIVERY_KINDS`].
    frames_out: [AtomicU64; DELIVERY_KINDS.len()],
    bytes_out: [AtomicU64; DELIVERY_KINDS.len()],
    /// Client frames read, by [`FRAME_TYPES`] (the last: undecodable).
    frames_in: [AtomicU64; FRAME_TYPES.len()],
    /// How long requests take, by type.
    pub(crate) latency: super::latency::Latency<{ super::latency::KINDS.len() }>,
}

/// The `kind` label of deliveries: what the hub queues to connections.
pub(crate) const DELIVERY_KINDS: [&str; 3] = ["message", "presence", "occupancy"];

/// The `type` label of client frames read (`invalid`: not decodable).
pub(crate) const FRAME_TYPES: [&str; 10] =
    ["join", "leave", "publish", "send", "history", "members", "auth", "rpc", "ping", "invalid"];

impl Counters {
    pub(crate) fn connection_opened(&self) {
        self.connections_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn message_accepted(&self) {
        self.messages_total.fetch_add(1, Ordering::Relaxed);
    }

    /// `frames` frames of `bytes` bytes each were queued to connections.
    pub(crate) fn delivered(&self, kind: crate::hub::DeliveryKind, frames: u64, bytes: u64) {
        use crate::hub::DeliveryKind;
        let slot = match kind {
            DeliveryKind::Message => 0,
            DeliveryKind::Presence => 1,
            DeliveryKind::Occupancy => 2,
            // Orders to connections, not frames.
            DeliveryKind::Join | DeliveryKind::Leave | DeliveryKind::Reset => return,
        };
        self.deliveries_total.fetch_add(frames, Ordering::Relaxed);
        self.frames_out[slot].fetch_add(frames, Ordering::Relaxed);
        self.bytes_out[slot].fetch_add(frames.saturating_mul(bytes), Ordering::Relaxed);
    }

    /// A client frame of type `slot` (an index into [`FRAME_TYPES`]) was read.
    pub(crate) fn frame_in(&self, slot: usize) {
        if let Some(counter) = self.frames_in.get(slot) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Frames and bytes queued to connections so far, by kind.
    pub(crate) fn out_by_kind(&self) -> impl Iterator<Item = (&'static str, u64, u64)> + '_ {
        DELIVERY_KINDS.iter().enumerate().map(|(i, kind)| {
            let frames = self.frames_out[i].load(Ordering::Relaxed);
            (*kind, frames, self.bytes_out[i].load(Ordering::Relaxed))
        })
    }

    /// Client frames read so far, by type.
    pub(crate) fn in_by_type(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        FRAME_TYPES.iter().zip(&self.frames_in).map(|(t, n)| (*t, n.load(Ordering::Relaxed)))
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumers_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, code: &'static str) {
        *lock(&self.refused).entry(code).or_default() += 1;
    }

    pub(crate) fn ended(&self, how: String) {
        *lock(&self.ended).entry(how).or_default() += 1;
    }

    pub(crate) fn rate_limited_total(&self) -> u64 {
        self.rate_limited_total.load(Ordering::Relaxed)
    }

    /// Refused upgrades so far, by error code.
    pub(crate) fn refusals(&self) -> Vec<(&'static str, u64)> {
        lock(&self.refused).iter().map(|(code, n)| (*code, *n)).collect()
    }

    /// Ended sessions so far, by how they ended.
    pub(crate) fn endings(&self) -> Vec<(String, u64)> {
        lock(&self.ended).iter().map(|(how, n)| (how.clone(), *n)).collect()
    }

    pub(crate) fn connections_total(&self) -> u64 {
        self.connections_total.load(Ordering::Relaxed)
    }

    pub(crate) fn messages_total(&self) -> u64 {
        self.messages_total.load(Ordering::Relaxed)
    }

    pub(crate) fn deliveries_total(&self) -> u64 {
        self.deliveries_total.load(Ordering::Relaxed)
    }

    pub(crate) fn slow_consumers_total(&self) -> u64 {
        self.slow_consumers_total.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A snapshot of the hub, as `GET /api/stats` returns it. Every figure but
/// `cluster` is this node's.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Open WebSocket connections now.
    pub connections: u64,
    /// Distinct users connected now.
    pub users: u64,
    /// Rooms with at least one member now.
    pub rooms: u64,
    /// Streams (rooms and inboxes) the history store holds now; `null` when
    /// the store cannot say (it failed).
    pub streams: Option<u64>,
    /// Messages accepted since start (room publishes, private sends, API
    /// sends and broadcasts), each counted once whatever its recipients.
    pub messages_total: u64,
    /// Frames queued to connections since start (one per recipient).
    pub deliveries_total: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Connections closed as slow consumers since start.
    pub slow_consumers_total: u64,
    /// Milliseconds since the hub started.
    pub uptime_ms: u64,
    /// Messages, connections and deliveries per second over the last minute.
    pub rates: Rates,
    /// In multi-node mode, the whole cluster's figures; absent on a single
    /// node (where the figures above are the hub's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterStats>,
}

/// The cluster's figures, as the nodes last reported them (each node
/// reports every third of `redis.node_ttl_ms`) and as Redis counts them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClusterStats {
    /// This node's id.
    pub node: String,
    /// Nodes alive (heartbeat within `redis.node_ttl_ms`).
    pub nodes: u64,
    /// Open connections on every node, as last reported.
    pub connections: u64,
    /// Distinct users connected anywhere, now.
    pub users: u64,
    /// Rooms with members anywhere, now.
    pub rooms: u64,
    /// Messages accepted by every node since each started, as last reported.
    pub messages_total: u64,
}
