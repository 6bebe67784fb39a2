//! The node's pub/sub connection: every delivery published anywhere in the
//! cluster arrives here once and goes to this node's [`Hub`].
//!
//! Redis pub/sub is at-most-once: a message published while the connection
//! is down, or dropped because the connection fell behind, is simply gone.
//! So the subscriber remembers, for each stream with recipients on this
//! node, the last offset it delivered ([`Cluster::delivered`]), and:
//! - a message whose offset jumps past the next one is preceded by the
//!   missing ones, read from the stream's history;
//! - a message at or below the last one (a repair already sent it) is
//!   dropped;
//! - after the subscription is lost and re-established, every remembered
//!   stream is read from its last delivered offset to its head.
//!
//! When the history no longer holds a gap (trimmed, expired, or the stream
//! was recreated), the node cannot vouch for the stream any more: it closes
//! the local connections that follow it with 4005 (`resume`), and each
//! reconnects and resumes from its own position, which either recovers the
//! gap or says `recovered: false`. Nobody misses a message silently.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use switchboard_protocol::CloseCode;
use tokio_util::sync::CancellationToken;

use super::streams::Reading;
use super::wire::{Envelope, Incoming, decode};
use super::{Cluster, ClusterError};
use crate::Hub;
use crate::broker::{Delivery, DeliveryKind, Target};
use crate::hub::streams::HistoryRules;
use crate::store::StreamKey;
use crate::transport::wire::now_ms;

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The reason sent with 4005.
const RESUME_REASON: &str = "messages lost between nodes: reconnect and resume";

/// Delivers the cluster's deliveries to this node's hub.
pub(crate) struct Subscriber {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) hub: Weak<Hub>,
    pub(crate) rules: HistoryRules,
}

impl Subscriber {
    /// Subscribes, and subscribes again whenever the connection is lost,
    /// until `shutdown`. `ready` is cancelled once the first subscription
    /// is in place.
    pub(crate) async fn run(self, shutdown: CancellationToken, ready: CancellationToken) {
        let mut failures: u32 = 0;
        let mut subscribed_before = false;
        loop {
            let connected = tokio::select! {
                () = shutdown.cancelled() => return,
                connected = self.subscribe() => connected,
            };
            let mut messages = match connected {
                Ok(messages) => messages,
                Err(err) => {
                    self.cluster.mark(false, "subscribe", Some(&err.to_string()));
                    failures = failures.saturating_add(1);
                    // Full jitter: nodes that lost Redis together do not
                    // come back together.
                    let cap = Duration::from_millis(100u64 << failures.min(6)).min(MAX_BACKOFF);
                    let wait = cap.mul_f64(fastrand::f64());
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
            };
            failures = 0;
            ready.cancel();
            if subscribed_before {
                self.cluster.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis subscription restored; repairing the streams followed here");
            }
            // Also on the first subscription: a connection that started
            // while Redis's pub/sub was out of reach follows a stream already.
            self.repair_all().await;
            subscribed_before = true;
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                self.on_message(message.get_payload_bytes()).await;
                // What has already arrived goes out before this task yields,
                // so a member woken by the first message finds the next ones
                // queued too and writes them in one go.
                let mut lost = false;
                while let Some(next) = messages.next().now_or_never() {
                    match next {
                        Some(message) => self.on_message(message.get_payload_bytes()).await,
                        None => {
                            lost = true;
                            break;
                        }
                    }
                }
                if lost {
                    break;
                }
            }
            tracing::warn!("redis subscription lost; subscribing again");
        }
    }

    async fn subscribe(&self) -> Result<redis::aio::PubSubStream, ClusterError> {
        let timeout = self.cluster.timeout;
        let subscribe = async {
            let mut pubsub = self.cluster.client.get_async_pubsub().await?;
            pubsub.subscribe(self.cluster.keys.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(timeout, subscribe).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ClusterError::Unavailable("subscribe: no answer".to_owned())),
        }
    }

    /// One delivery from the channel.
    pub(crate) async fn on_message(&self, payload: &[u8]) {
        let Some(incoming) = decode(payload) else {
            tracing::warn!(bytes = payload.len(), "unreadable delivery on the redis channel");
            return;
        };
        let Some(hub) = self.hub.upgrade() else { return };
        let envelope = match incoming {
            Incoming::Delivery(envelope) => envelope,
            Incoming::Close { user, code, reason } => {
                hub.close_user(&user, code, &reason);
                return;
            }
            Incoming::CloseSession { session, code, reason } => {
                if let Some(outbound) = hub.session(&session) {
                    outbound.close(code, &reason);
                }
                return;
            }
            Incoming::ToSession { session, frame } => {
                if let Some(outbound) = hub.session(&session) {
                    crate::hub::push_to(&hub, &outbound, frame);
                }
                return;
            }
            Incoming::Survey { id, from, query } => {
                // The asking node answers for itself.
                if from != self.cluster.node {
                    self.cluster.answer_survey(&hub, id, &from, &query);
                }
                return;
            }
            Incoming::Answer { id, to, node, answer } => {
                if to == self.cluster.node {
                    match serde_json::from_str(&answer) {
                        Ok(page) => self.cluster.surveys.answer(&id, &node, page),
                        Err(err) => tracing::warn!(%err, node, "unreadable survey answer"),
                    }
                }
                return;
            }
        };
        let Some((key, epoch, offset)) = envelope.stream() else {
            hub.deliver(&envelope.delivery);
            return;
        };
        let last = self.cluster.delivered().get(&key).cloned();
        if let Some((last_epoch, last)) = last {
            if last_epoch == epoch {
                if offset <= last {
                    return; // a repair delivered it already
                }
                if offset > last + 1
                    && !self.repair(&hub, &key, epoch, last, Some(offset - 1)).await
                {
                    self.give_up(&hub, &key);
                }
            }
        }
        let epoch = epoch.to_owned();
        self.deliver(&hub, key, epoch, envelope);
    }

    /// Delivers one stream message and remembers how far the stream got.
    fn deliver(&self, hub: &Hub, key: StreamKey, epoch: String, envelope: Envelope) {
        let Envelope { delivery, .. } = envelope;
        let offset = delivery.offset.unwrap_or_default();
        let reached = hub.deliver(&delivery);
        if reached == 0 {
            // Nobody here follows it: nothing to repair for later.
            self.cluster.delivered().remove(&key);
            return;
        }
        self.cluster.delivered().insert(key.clone(), (epoch, offset));
        if let StreamKey::Inbox(_) = key {
            // Off the delivery path: the mark only moves forward, so the
            // order in which these land does not matter.
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                if let Err(err) = cluster.mark_delivered(&key, offset).await {
                    tracing::debug!(%err, "inbox delivered mark not moved");
                }
            });
        }
    }

    /// Delivers `key`'s messages after `after` (up to `upto`, or the head)
    /// from its history; false when the history no longer holds them all.
    async fn repair(
        &self,
        hub: &Hub,
        key: &StreamKey,
        epoch: &str,
        after: u64,
        upto: Option<u64>,
    ) -> bool {
        let limits = self.rules.of(key);
        let count = upto.map_or(limits.size + 1, |upto| (upto - after) as usize);
        let read = self.cluster.read(key, limits, Reading::page(after, count), now_ms());
        let read = match read.await {
            Ok(Some(read)) if read.position.epoch == epoch => read,
            Ok(_) => return false,
            Err(err) => {
                tracing::warn!(stream = %key.encode(), %err, "cannot repair a gap");
                return false;
            }
        };
        let end = upto.unwrap_or(read.position.offset);
        let missing: Vec<_> = read.entries.into_iter().filter(|e| e.offset <= end).collect();
        let complete = missing.len() as u64 == end - after
            && missing.iter().zip(after + 1..).all(|(entry, expected)| entry.offset == expected);
        if !complete {
            return false;
        }
        if !missing.is_empty() {
            self.cluster.counters.gaps_repaired.fetch_add(1, Ordering::Relaxed);
            tracing::info!(stream = %key.encode(), after, end, "repaired a gap from the stream's history");
        }
        for stored in missing {
            let delivery = Delivery {
                target: target(key),
                frame: stored.frame,
                kind: DeliveryKind::Message,
                offset: Some(stored.offset),
            };
            let envelope = Envelope { delivery, epoch: Some(epoch.to_owned()) };
            self.deliver(hub, key.clone(), epoch.to_owned(), envelope);
        }
        true
    }

    /// After the subscription was lost: brings every stream followed here
    /// up to its head.
    async fn repair_all(&self) {
        let Some(hub) = self.hub.upgrade() else { return };
        let followed: Vec<(StreamKey, (String, u64))> =
            self.cluster.delivered().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (key, (epoch, last)) in followed {
            if !self.repair(&hub, &key, &epoch, last, None).await {
                self.give_up(&hub, &key);
            }
        }
    }

    /// The gap cannot be filled: the stream's local followers resume.
    fn give_up(&self, hub: &Hub, key: &StreamKey) {
        self.cluster.counters.gaps_resumed.fetch_add(1, Ordering::Relaxed);
        self.cluster.delivered().remove(key);
        let closed = match key {
            StreamKey::Room(room) => hub.close_room(room, CloseCode::RESUME, RESUME_REASON),
            StreamKey::Inbox(user) => hub.close_user(user, CloseCode::RESUME, RESUME_REASON),
        };
        tracing::warn!(stream = %key.encode(), closed, "gap not in the history: its connections here resume");
    }
}

fn target(key: &StreamKey) -> Target {
    match key {
        StreamKey::Room(room) => Target::Room(room.clone()),
        StreamKey::Inbox(user) => Target::User(user.clone()),
    }
}
