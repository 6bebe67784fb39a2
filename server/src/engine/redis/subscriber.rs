//! The node's pub/sub connection: every delivery published anywhere in the
//! cluster arrives here once and goes to this node's [`Hub`].
//!
//! Redis pub/sub is at-most-once: a message published while the connection
//! is down, or dropped because the connection fell behind, is simply gone.
//! So for each stream this node follows ([`Followers`]) the subscriber
//! compares every message with the last one it delivered:
//! - the next offset goes out;
//! - one at or below the last (a repair sent it already) is dropped;
//! - one that jumps past the next is held, with everything of that stream
//!   that follows it, while a task of its own reads the missing ones from
//!   the stream's history; then all go out in order. Other streams keep
//!   flowing meanwhile: the subscriber never waits on Redis between
//!   deliveries;
//! - one of another epoch means the stream started over (Redis lost it
//!   while it had followers): the followers here get a `reset` first
//!   (a [`DeliveryKind::Reset`] order), then the new epoch from offset 1;
//! - after the subscription is lost and re-established, every followed
//!   stream is read from its last delivered offset to its head (one
//!   pipeline per batch of streams).
//!
//! When the history no longer holds a gap (trimmed, expired), the node
//! cannot vouch for the stream any more: it closes the local connections
//! that follow it with 4005 (`resume`), and each reconnects and resumes
//! from its own position, which either recovers the gap or says
//! `recovered: false`. Nobody misses a message silently.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use switchboard_protocol::{CloseCode, ServerFrame, StreamReset};
use tokio_util::sync::CancellationToken;

use super::broker::{Reading, entries_of, read_cmd};
use super::followers::{Followed, Followers};
use super::wire::{Envelope, Incoming, decode};
use super::{Redis, scripts};
use crate::Hub;
use crate::engine::{EngineError, HistoryRules};
use crate::hub::{Delivery, DeliveryKind, Target};
use crate::stream::{Stored, StreamKey, epoch_tag};
use crate::wire::{encode, now_ms};

/// The longest wait between two attempts to subscribe again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The reason sent with 4005.
const RESUME_REASON: &str = "messages lost between nodes: reconnect and resume";
/// At most this many deliveries of one stream wait for its repair; past
/// that its followers here resume instead.
const MAX_HELD: usize = 10_000;
/// Streams read in one pipeline after a lost subscription.
const REPAIR_BATCH: usize = 256;

/// Delivers the cluster's deliveries to this node's hub.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) redis: Arc<Redis>,
    pub(crate) hub: Weak<Hub>,
    pub(crate) rules: HistoryRules,
    pub(crate) followers: Arc<Followers>,
}

/// A gap to fill: `key`'s messages after `after` (up to `upto`, or the
/// head) of epoch `epoch`.
struct Repair {
    key: StreamKey,
    epoch: String,
    after: u64,
    upto: Option<u64>,
}

impl Subscriber {
    /// Subscribes, and subscribes again whenever the connection is lost,
    /// until `shutdown`. The node's `subscribed` token is cancelled once
    /// the first subscription is in place.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
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
                    self.redis.mark(false, "subscribe", Some(&err.to_string()));
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
            self.redis.subscribed.cancel();
            if subscribed_before {
                self.redis.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis subscription restored; repairing the streams followed here");
            }
            // Also on the first subscription: a connection that started
            // while Redis's pub/sub was out of reach follows a stream already.
            self.repair_all();
            subscribed_before = true;
            loop {
                let message = tokio::select! {
                    () = shutdown.cancelled() => return,
                    message = messages.next() => message,
                };
                let Some(message) = message else { break };
                self.on_message(message.get_payload_bytes());
                // What has already arrived goes out before this task yields,
                // so a member woken by the first message finds the next ones
                // queued too and writes them in one go.
                let mut lost = false;
                while let Some(next) = messages.next().now_or_never() {
                    match next {
                        Some(message) => self.on_message(message.get_payload_bytes()),
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

    async fn subscribe(&self) -> Result<::redis::aio::PubSubStream, EngineError> {
        let timeout = self.redis.timeout;
        let subscribe = async {
            let mut pubsub = self.redis.client.get_async_pubsub().await?;
            pubsub.subscribe(self.redis.keys.channel()).await?;
            Ok::<_, ::redis::RedisError>(pubsub.into_on_message())
        };
        match tokio::time::timeout(timeout, subscribe).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                Err(EngineError::Unavailable("redis unavailable: subscribe: no answer".to_owned()))
            }
        }
    }

    /// One message from the channel. Never waits.
    pub(crate) fn on_message(&self, payload: &[u8]) {
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
                    hub.push_to(&outbound, frame);
                }
                return;
            }
            Incoming::Survey { id, from, query } => {
                // The asking node answers for itself.
                if from != self.redis.node {
                    super::survey::answer(&self.redis, &hub, id, from, query);
                }
                return;
            }
            Incoming::Answer { id, to, node, answer } => {
                if to == self.redis.node {
                    match serde_json::from_str(&answer) {
                        Ok(page) => self.redis.surveys.answer(&id, &node, page),
                        Err(err) => tracing::warn!(%err, node, "unreadable survey answer"),
                    }
                }
                return;
            }
        };
        let Some((key, _, _)) = envelope.stream() else {
            hub.deliver(&envelope.delivery);
            return;
        };
        let repair = {
            let mut streams = self.followers.lock();
            match streams.get_mut(&key) {
                Some(followed) => self.apply(&hub, &key, followed, envelope),
                None => {
                    // Not followed here as far as the record goes: a
                    // connection may have registered a moment ago.
                    let (epoch, offset) = match envelope.stream() {
                        Some((_, epoch, offset)) => (epoch.to_owned(), offset),
                        None => return,
                    };
                    if self.deliver(&hub, &key, envelope.delivery) > 0 {
                        streams.insert(key.clone(), Followed { epoch, last: offset, held: None });
                    }
                    None
                }
            }
        };
        if let Some(repair) = repair {
            self.spawn_repair(repair);
        }
    }

    /// One stream message against what this node delivered of its stream:
    /// delivered, dropped, or held while a gap is repaired (the repair to
    /// start is returned). Called with the followers' lock held, so the
    /// subscriber and the repairs deliver a stream's messages one at a time.
    fn apply(
        &self,
        hub: &Hub,
        key: &StreamKey,
        followed: &mut Followed,
        envelope: Envelope,
    ) -> Option<Repair> {
        if let Some(held) = &mut followed.held {
            if held.len() >= MAX_HELD {
                followed.held = None;
                self.give_up(hub, key);
                return None;
            }
            held.push(envelope);
            return None;
        }
        let (_, epoch, offset) = envelope.stream()?;
        if epoch != followed.epoch {
            // The stream started over: the followers here move to the new
            // epoch before its first message reaches them.
            self.reset(hub, key, epoch);
            followed.epoch = epoch.to_owned();
            followed.last = 0;
        }
        if offset <= followed.last {
            return None; // a repair delivered it already
        }
        if offset > followed.last + 1 {
            let repair = Repair {
                key: key.clone(),
                epoch: followed.epoch.clone(),
                after: followed.last,
                upto: Some(offset - 1),
            };
            followed.held = Some(vec![envelope]);
            return Some(repair);
        }
        followed.last = offset;
        self.deliver(hub, key, envelope.delivery);
        None
    }

    /// Hands a stream message to the hub; an inbox's delivered mark moves.
    fn deliver(&self, hub: &Hub, key: &StreamKey, delivery: Delivery) -> usize {
        let offset = delivery.offset.unwrap_or_default();
        let reached = hub.deliver(&delivery);
        if let (StreamKey::Inbox(_), true) = (key, reached > 0) {
            // Off the delivery path: the mark only moves forward, so the
            // order in which these land does not matter.
            let redis = self.redis.clone();
            let key = key.clone();
            tokio::spawn(async move {
                if let Err(err) = super::broker::mark_delivered(&redis, &key, offset).await {
                    tracing::debug!(%err, "inbox delivered mark not moved");
                }
            });
        }
        reached
    }

    /// Tells the stream's followers here that it started over under `epoch`.
    fn reset(&self, hub: &Hub, key: &StreamKey, epoch: &str) {
        self.redis.counters.resets.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %key.encode(), epoch, "a followed stream started over: its followers here are reset");
        let room = match key {
            StreamKey::Room(room) => Some(room.to_string()),
            StreamKey::Inbox(_) => None,
        };
        let frame =
            encode(&ServerFrame::Reset(StreamReset { room, epoch: epoch.to_owned(), offset: 0 }));
        let mut delivery = Delivery::new(Target::of(key), frame, DeliveryKind::Reset);
        delivery.offset = Some(0);
        delivery.epoch = epoch_tag(epoch);
        hub.deliver(&delivery);
    }

    /// Reads what a gap misses in a task of its own, then delivers it and
    /// what was held meanwhile.
    fn spawn_repair(&self, repair: Repair) {
        let subscriber = self.clone();
        tokio::spawn(async move {
            let read = subscriber.read_gap(&repair).await;
            subscriber.finish_repair(repair, read);
        });
    }

    /// The messages a gap misses, if the history still holds all of them.
    async fn read_gap(&self, repair: &Repair) -> Option<Vec<Stored>> {
        let limits = self.rules.of(&repair.key);
        let count = repair.upto.map_or(limits.size + 1, |upto| (upto - repair.after) as usize);
        let reading = Reading::page(repair.after, count);
        let read = super::broker::read(&self.redis, &repair.key, limits, reading, now_ms()).await;
        match read {
            Ok(Some(read)) if read.position.epoch == repair.epoch => {
                let end = repair.upto.unwrap_or(read.position.offset);
                let missing: Vec<Stored> =
                    read.entries.into_iter().filter(|e| e.offset <= end).collect();
                let complete = missing.len() as u64 == end - repair.after
                    && missing.iter().zip(repair.after + 1..).all(|(e, n)| e.offset == n);
                complete.then_some(missing)
            }
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(stream = %repair.key.encode(), %err, "cannot repair a gap");
                None
            }
        }
    }

    /// Delivers a repaired gap and what was held meanwhile, or gives the
    /// stream up when the gap could not be read.
    fn finish_repair(&self, repair: Repair, missing: Option<Vec<Stored>>) {
        let Some(hub) = self.hub.upgrade() else { return };
        let next = {
            let mut streams = self.followers.lock();
            let Some(followed) = streams.get_mut(&repair.key) else { return };
            let held = followed.held.take().unwrap_or_default();
            let Some(missing) = missing else {
                streams.remove(&repair.key);
                drop(streams);
                self.give_up(&hub, &repair.key);
                return;
            };
            if !missing.is_empty() {
                self.redis.counters.gaps_repaired.fetch_add(1, Ordering::Relaxed);
                tracing::info!(stream = %repair.key.encode(), after = repair.after, upto = ?repair.upto, "repaired a gap from the stream's history");
            }
            let tag = epoch_tag(&repair.epoch);
            for stored in missing {
                if stored.offset <= followed.last {
                    continue;
                }
                followed.last = stored.offset;
                let delivery =
                    Delivery::message(Target::of(&repair.key), stored.frame, tag, stored.offset);
                self.deliver(&hub, &repair.key, delivery);
            }
            // What arrived meanwhile, in order; another gap among it holds
            // the rest again.
            let mut next = None;
            let mut held = held.into_iter();
            for envelope in held.by_ref() {
                next = self.apply(&hub, &repair.key, followed, envelope);
                if next.is_some() {
                    break;
                }
            }
            if let Some(again) = &mut followed.held {
                again.extend(held);
            }
            next
        };
        if let Some(next) = next {
            self.spawn_repair(next);
        }
    }

    /// After the subscription was (re-)established: brings every stream
    /// followed here up to its head, a pipeline per batch of streams.
    fn repair_all(&self) {
        let repairs: Vec<Repair> = {
            let mut streams = self.followers.lock();
            streams
                .iter_mut()
                .filter(|(_, followed)| followed.held.is_none())
                .map(|(key, followed)| {
                    followed.held = Some(Vec::new());
                    Repair {
                        key: key.clone(),
                        epoch: followed.epoch.clone(),
                        after: followed.last,
                        upto: None,
                    }
                })
                .collect()
        };
        if repairs.is_empty() {
            return;
        }
        let subscriber = self.clone();
        tokio::spawn(async move {
            let mut repairs = repairs.into_iter().peekable();
            while repairs.peek().is_some() {
                let batch: Vec<Repair> = repairs.by_ref().take(REPAIR_BATCH).collect();
                let reads = subscriber.read_heads(&batch).await;
                for (repair, missing) in batch.into_iter().zip(reads) {
                    subscriber.finish_repair(repair, missing);
                }
            }
        });
    }

    /// What each stream misses after its last delivered offset, read in one
    /// pipeline; `None` for a stream whose history does not hold it all.
    async fn read_heads(&self, batch: &[Repair]) -> Vec<Option<Vec<Stored>>> {
        let mut pipe = ::redis::pipe();
        for repair in batch {
            let limits = self.rules.of(&repair.key);
            let reading = Reading::page(repair.after, limits.size + 1);
            pipe.add_command(read_cmd(&self.redis, &repair.key, limits, &reading));
        }
        type Answer = Vec<Option<(String, u64, u64, super::broker::RawEntries)>>;
        let answers: Result<Answer, _> =
            self.redis.run_scripts("repair", &[&scripts::READ], &pipe).await;
        let Ok(answers) = answers else {
            // Redis gone again: every stream of the batch resumes.
            return batch.iter().map(|_| None).collect();
        };
        let now = now_ms();
        batch
            .iter()
            .zip(answers)
            .map(|(repair, answer)| {
                let (epoch, last, _, raw) = answer?;
                if epoch != repair.epoch {
                    return None;
                }
                let limits = self.rules.of(&repair.key);
                let entries = entries_of(raw, limits, now).ok()?;
                let complete = entries.len() as u64 == last.saturating_sub(repair.after)
                    && entries.iter().zip(repair.after + 1..).all(|(e, n)| e.offset == n);
                complete.then_some(entries)
            })
            .collect()
    }

    /// The gap cannot be filled: the stream's local followers resume.
    fn give_up(&self, hub: &Hub, key: &StreamKey) {
        self.redis.counters.gaps_resumed.fetch_add(1, Ordering::Relaxed);
        let closed = match key {
            StreamKey::Room(room) => hub.close_room(room, CloseCode::RESUME, RESUME_REASON),
            StreamKey::Inbox(user) => hub.close_user(user, CloseCode::RESUME, RESUME_REASON),
        };
        tracing::warn!(stream = %key.encode(), closed, "gap not in the history: its connections here resume");
    }
}
