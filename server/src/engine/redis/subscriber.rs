//! The node's pub/sub connections: one per shard, or on a Redis Cluster
//! the pushes of the slots' channels this node listens to. Every delivery
//! for a stream this node follows arrives here once, through the shard (or
//! slot) of its room or user, and goes to this node's [`Hub`].
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

use super::Redis;
use super::broker::{Reading, add_read, entries_of};
use super::followers::{Followed, Followers};
use super::shards::Batch;
use super::wire::{Envelope, Incoming, decode};
use crate::Hub;
use crate::engine::{EngineError, HistoryRules};
use crate::hub::wakes::WakeBatch;
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
/// Reads of a gap tried again (50, 100, 150 ms apart) before its followers
/// are made to resume.
const READ_TRIES: u64 = 3;

/// Delivers the deliveries of one shard to this node's hub.
#[derive(Clone)]
pub(crate) struct Subscriber {
    pub(crate) redis: Arc<Redis>,
    /// The shard whose channel this subscriber listens to.
    pub(crate) shard: usize,
    pub(crate) hub: Weak<Hub>,
    pub(crate) rules: HistoryRules,
    pub(crate) followers: Arc<Followers>,
}

/// A gap to fill: `key`'s messages after `after` (up to `upto`, or the
/// head) of epoch `epoch`, for the record of `generation`.
struct Repair {
    key: StreamKey,
    epoch: String,
    after: u64,
    upto: Option<u64>,
    generation: u64,
}

/// Deliveries stream in when the last batch went out less than this many
/// coalescing windows ago. Measured: with a window of 2 ms, a lookback of
/// one window almost never waited (a batch's members take longer than that
/// to write it, so the next message came later), and twenty made the
/// members of a 2,000-member room write several messages per wake: CPU per
/// delivery of a node on Redis went from about 2.5× that of a node alone to
/// about 1.05× (docs/PERFORMANCE.md).
const STREAMING: u32 = 20;

/// Members are woken after at most this many messages of a batch.
const WAKE_EVERY: usize = 64;

/// At most this many pub/sub messages go to the hub as one batch.
const MAX_BATCH: usize = 1024;

/// How handing over a subscription's messages ended.
enum Ended {
    /// The node shuts down.
    Shutdown,
    /// The subscription was lost.
    Lost,
}

/// How gathering a batch ended.
enum Gathered {
    /// The subscription is still there.
    Open,
    /// The subscription was lost (after the messages gathered).
    Lost,
}

/// What a subscription hands the subscriber.
pub(crate) enum Arrived {
    /// A message on a shard's channel.
    Message(::redis::Msg),
    /// A message pushed by a Redis Cluster (a shard channel's payload).
    Pushed(Vec<u8>),
    /// A Redis Cluster confirmed a subscription to a slot's channel (at
    /// first, or again after a reconnection).
    Subscribed(usize),
    /// A connection to a Redis Cluster dropped.
    Dropped,
    /// A Redis Cluster unsubscribed this node from a slot's channel (the
    /// slot moved to another master).
    Unsubscribed,
    /// Anything else pushed.
    Other,
}

impl Arrived {
    /// What a Redis Cluster pushed.
    fn of_push(push: ::redis::PushInfo) -> Arrived {
        let mut data = push.data.into_iter();
        match push.kind {
            ::redis::PushKind::SMessage => match (data.next(), data.next()) {
                (_, Some(::redis::Value::BulkString(payload))) => Arrived::Pushed(payload),
                _ => Arrived::Other,
            },
            ::redis::PushKind::SSubscribe => match data.next() {
                Some(::redis::Value::BulkString(channel)) => {
                    super::cluster::ClusterLink::slot_of_channel(&channel)
                        .map_or(Arrived::Other, Arrived::Subscribed)
                }
                _ => Arrived::Other,
            },
            ::redis::PushKind::Disconnection => Arrived::Dropped,
            ::redis::PushKind::SUnsubscribe => Arrived::Unsubscribed,
            _ => Arrived::Other,
        }
    }
}

/// Adds to `batch` what has arrived already and, when `streaming`, what
/// arrives within `window`, up to [`MAX_BATCH`] messages.
async fn gather<S: futures::Stream<Item = Arrived> + Unpin>(
    messages: &mut S,
    batch: &mut Vec<Arrived>,
    streaming: bool,
    window: Duration,
) -> Gathered {
    let drain = |messages: &mut S, batch: &mut Vec<Arrived>| {
        while batch.len() < MAX_BATCH {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message),
                Some(None) => return Gathered::Lost,
                None => break,
            }
        }
        Gathered::Open
    };
    if let Gathered::Lost = drain(messages, batch) {
        return Gathered::Lost;
    }
    if !streaming || window.is_zero() {
        return Gathered::Open;
    }
    let deadline = tokio::time::Instant::now() + window;
    while batch.len() < MAX_BATCH {
        tokio::select! {
            biased;
            message = messages.next() => match message {
                Some(message) => batch.push(message),
                None => return Gathered::Lost,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
        if let Gathered::Lost = drain(messages, batch) {
            return Gathered::Lost;
        }
    }
    Gathered::Open
}

/// What reading a gap found.
enum Gap {
    /// Every missing message, in order.
    Filled(Vec<Stored>),
    /// The history no longer holds them all: the followers resume.
    Lost,
    /// The stream started over under this epoch.
    Restarted(String),
    /// The stream does not exist (any more): its next message starts an
    /// epoch, which the followers are reset to then.
    Gone,
}

/// What one stream message does to its stream's record.
enum Step {
    /// Delivered, dropped or held: nothing more to do.
    Done,
    /// A gap to read first.
    Repair(Repair),
    /// Too much held behind a repair: the followers here resume.
    GiveUp,
}

impl Subscriber {
    /// Listens until `shutdown`: to the shard's channel on independent
    /// servers, to the slots' channels on a Redis Cluster.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        match &self.redis.servers {
            super::Servers::Independent(_) => self.run_shard(shutdown).await,
            super::Servers::Cluster(_) => self.run_cluster(shutdown).await,
        }
    }

    /// Subscribes to the shard's channel, and subscribes again whenever
    /// the connection is lost, until `shutdown`. The shard's `subscribed`
    /// token is cancelled once the first subscription is in place.
    async fn run_shard(self, shutdown: CancellationToken) {
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
            if let super::Servers::Independent(shards) = &self.redis.servers {
                shards[self.shard].subscribed.cancel();
            }
            if subscribed_before {
                self.redis.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                tracing::info!("redis subscription restored; repairing the streams followed here");
            }
            // Also on the first subscription: a connection that started
            // while Redis's pub/sub was out of reach follows a stream already.
            self.repair_all(None);
            // What this shard held of this node's presence may be gone too
            // (a restart): the heartbeat has it rewritten.
            if subscribed_before {
                self.redis.presence_lost.store(true, Ordering::Relaxed);
            }
            subscribed_before = true;
            if let Ended::Shutdown = self.deliver_all(&mut messages, &shutdown).await {
                return;
            }
            tracing::warn!("redis subscription lost; subscribing again");
        }
    }

    /// Listens to a Redis Cluster: subscribes to the home slot's channel
    /// (trying again with backoff until it is in place), then hands over
    /// what the cluster pushes, in batches as [`Subscriber::run_shard`]
    /// does. redis-rs subscribes again after a reconnection; each slot it
    /// confirms has its followed streams read up to their heads.
    async fn run_cluster(self, shutdown: CancellationToken) {
        let super::Servers::Cluster(link) = &self.redis.servers else { return };
        let Some(mut pushes) = link.take_pushes() else { return };
        let mut failures: u32 = 0;
        loop {
            let home = super::cluster::ClusterLink::home_slot();
            let listened = tokio::select! {
                () = shutdown.cancelled() => return,
                listened = self.redis.call("subscribe", link.listen(home)) => listened,
            };
            if listened.is_ok() {
                break;
            }
            failures = failures.saturating_add(1);
            let cap = Duration::from_millis(100u64 << failures.min(6)).min(MAX_BACKOFF);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(cap.mul_f64(fastrand::f64())) => {}
            }
        }
        link.subscribed.cancel();
        let redis = self.redis.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let super::Servers::Cluster(link) = &redis.servers {
                link.resubscribe(redis.timeout, stop).await;
            }
        });
        let mut messages =
            futures::stream::poll_fn(move |cx| pushes.poll_recv(cx)).map(Arrived::of_push);
        if let Ended::Lost = self.deliver_all(&mut messages, &shutdown).await {
            tracing::error!(
                "the redis cluster connection closed its pushes: this node hears nothing more"
            );
        }
    }

    /// Hands what arrives to the hub, batch after batch, until the
    /// subscription ends or `shutdown`.
    async fn deliver_all<S: futures::Stream<Item = Arrived> + Unpin>(
        &self,
        messages: &mut S,
        shutdown: &CancellationToken,
    ) -> Ended {
        let mut batch = Vec::new();
        let mut handed_over = tokio::time::Instant::now();
        let mut last_batch = 0;
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ended::Shutdown,
                message = messages.next() => message,
            };
            let Some(first) = first else { return Ended::Lost };
            batch.push(first);
            // While deliveries stream in (the last batch held several and
            // went out within STREAMING windows), one waits for company;
            // one after a quiet spell, or in a trickle that never gathers,
            // goes at once.
            let streaming =
                last_batch > 1 && handed_over.elapsed() < self.redis.coalesce * STREAMING;
            let gathered = gather(messages, &mut batch, streaming, self.redis.coalesce);
            let gathered = tokio::select! {
                () = shutdown.cancelled() => return Ended::Shutdown,
                gathered = gathered => gathered,
            };
            last_batch = batch.len();
            self.hand_over(&mut batch);
            handed_over = tokio::time::Instant::now();
            if let Gathered::Lost = gathered {
                return Ended::Lost;
            }
        }
    }

    async fn subscribe(&self) -> Result<impl futures::Stream<Item = Arrived> + Unpin, EngineError> {
        let super::Servers::Independent(shards) = &self.redis.servers else {
            return Err(EngineError::Failed("not on independent servers".to_owned()));
        };
        let timeout = self.redis.timeout;
        let subscribe = async {
            let mut pubsub = shards[self.shard].client.get_async_pubsub().await?;
            pubsub.subscribe(self.redis.keys.channel()).await?;
            Ok::<_, ::redis::RedisError>(pubsub.into_on_message().map(Arrived::Message))
        };
        match tokio::time::timeout(timeout, subscribe).await {
            Ok(result) => Ok(result?),
            Err(_) => {
                Err(EngineError::Unavailable("redis unavailable: subscribe: no answer".to_owned()))
            }
        }
    }

    /// Hands a batch of messages to the hub, each member woken once for
    /// all of them.
    /// The wakes go every [`WAKE_EVERY`] messages, so that members of a
    /// big room start writing before a long batch is all queued.
    fn hand_over(&self, batch: &mut Vec<Arrived>) {
        let mut confirmed = std::collections::HashSet::new();
        for chunk in batch.chunks(WAKE_EVERY) {
            let _wakes = WakeBatch::begin();
            for arrived in chunk {
                match arrived {
                    Arrived::Message(message) => self.on_message(message.get_payload_bytes()),
                    Arrived::Pushed(payload) => self.on_message(payload),
                    Arrived::Subscribed(slot) => {
                        confirmed.insert(*slot);
                    }
                    Arrived::Unsubscribed => {
                        if let super::Servers::Cluster(link) = &self.redis.servers {
                            tracing::info!("a redis cluster slot moved; subscribing again");
                            link.lost();
                        }
                    }
                    Arrived::Dropped => {
                        if let super::Servers::Cluster(link) = &self.redis.servers {
                            self.redis.counters.resubscribes.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("a redis cluster connection dropped; subscribing again");
                            link.lost();
                            self.redis.presence_lost.store(true, Ordering::Relaxed);
                        }
                    }
                    Arrived::Other => {}
                }
            }
        }
        batch.clear();
        if !confirmed.is_empty() {
            // Messages may have gone by while the slots were not subscribed
            // (a reconnection, a slot that moved): their followed streams
            // are read to the head, in one pass over the followed streams.
            self.repair_all(Some(&confirmed));
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
            hub.deliver(envelope.delivery);
            return;
        };
        let step = {
            let mut streams = self.followers.lock();
            let pending = streams.is_pending(&key);
            match streams.get_mut(&key) {
                Some(followed) => {
                    let step = self.apply(&hub, &key, followed, pending, envelope);
                    if let Step::GiveUp = step {
                        streams.remove(&key);
                    }
                    step
                }
                None => {
                    // Not followed here as far as the record goes: a
                    // connection may have registered a moment ago. An
                    // inbox's delivered mark stays where it is: that
                    // connection's own read of what it missed moves it, and
                    // moved from here first, it would hide the messages
                    // before this one from that read.
                    let Some((_, epoch, offset)) = envelope.stream() else { return };
                    let record = self.followers.record(epoch, offset);
                    if hub.deliver(envelope.delivery) > 0 {
                        streams.insert(key.clone(), record);
                    }
                    Step::Done
                }
            }
        };
        match step {
            Step::Done => {}
            Step::Repair(repair) => self.spawn_repair(repair),
            Step::GiveUp => self.give_up(&hub, &key),
        }
    }

    /// One stream message against what this node delivered of its stream:
    /// delivered, dropped, or held while a gap is repaired. Called with the
    /// followers' lock held, so the subscriber and the repairs deliver a
    /// stream's messages one at a time. `pending`: a connection here is
    /// about to follow the stream, and may need what was delivered already.
    fn apply(
        &self,
        hub: &Hub,
        key: &StreamKey,
        followed: &mut Followed,
        pending: bool,
        envelope: Envelope,
    ) -> Step {
        if let Some(held) = &mut followed.held {
            if held.len() >= MAX_HELD {
                return Step::GiveUp;
            }
            held.push(envelope);
            return Step::Done;
        }
        let Some((_, epoch, offset)) = envelope.stream() else { return Step::Done };
        if followed.dead.as_deref() == Some(epoch) {
            return Step::Done; // late, of an epoch that is over
        }
        if epoch != followed.epoch {
            // Another epoch: the stream started over, or this is a late
            // message of one that is over (epochs have no order). Which
            // one, the stream's head says: it is read before anything of
            // the stream goes out, and a restart resets the followers.
            let repair = Repair {
                key: key.clone(),
                epoch: followed.epoch.clone(),
                after: followed.last,
                upto: None,
                generation: followed.generation,
            };
            followed.held = Some(vec![envelope]);
            return Step::Repair(repair);
        }
        if offset <= followed.last {
            // Delivered here already (by a repair, say); but a connection
            // that read the stream before this offset and has not followed
            // it yet may not have it: its floor drops it if it does.
            if pending {
                self.deliver(hub, key, envelope.delivery);
            }
            return Step::Done;
        }
        if offset > followed.last + 1 {
            let repair = Repair {
                key: key.clone(),
                epoch: followed.epoch.clone(),
                after: followed.last,
                upto: Some(offset - 1),
                generation: followed.generation,
            };
            followed.held = Some(vec![envelope]);
            return Step::Repair(repair);
        }
        followed.last = offset;
        self.deliver(hub, key, envelope.delivery);
        Step::Done
    }

    /// Hands a stream message to the hub; an inbox's delivered mark moves.
    fn deliver(&self, hub: &Hub, key: &StreamKey, delivery: Delivery) -> usize {
        let offset = delivery.offset.unwrap_or_default();
        let reached = hub.deliver(delivery);
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
        hub.deliver(delivery);
    }

    /// Reads what a gap misses in a task of its own, then delivers it and
    /// what was held meanwhile.
    fn spawn_repair(&self, repair: Repair) {
        let subscriber = self.clone();
        let mut guard = Unfinished { subscriber: self.clone(), repair: Some(repair) };
        tokio::spawn(async move {
            let Some(repair) = guard.repair.as_ref() else { return };
            let gap = subscriber.read_gap(repair).await;
            if let Some(repair) = guard.repair.take() {
                subscriber.finish_repair(repair, gap);
            }
        });
    }

    /// What a gap misses, read from the stream's history.
    async fn read_gap(&self, repair: &Repair) -> Gap {
        let limits = self.rules.of(&repair.key);
        let count = repair.upto.map_or(limits.size + 1, |upto| (upto - repair.after) as usize);
        let reading = Reading::page(repair.after, count);
        let mut read =
            super::broker::read(&self.redis, &repair.key, limits, reading, now_ms()).await;
        // A connection to Redis fails once after Redis came back: a few
        // tries before the followers are made to resume.
        for attempt in 1..=READ_TRIES {
            if read.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            let reading = Reading::page(repair.after, count);
            read = super::broker::read(&self.redis, &repair.key, limits, reading, now_ms()).await;
        }
        match read {
            Ok(Some(read)) => {
                gap_of(repair, &read.position.epoch, read.position.offset, read.entries)
            }
            Ok(None) => Gap::Gone,
            Err(err) => {
                tracing::warn!(stream = %repair.key.encode(), %err, "cannot repair a gap");
                Gap::Lost
            }
        }
    }

    /// Delivers a repaired gap and what was held meanwhile, follows a
    /// stream that started over, or gives it up when the gap is lost.
    fn finish_repair(&self, repair: Repair, gap: Gap) {
        let Some(hub) = self.hub.upgrade() else { return };
        let next = {
            let mut streams = self.followers.lock();
            let pending = streams.is_pending(&repair.key);
            let Some(followed) = streams.get_mut(&repair.key) else { return };
            if followed.generation != repair.generation {
                return; // dropped and followed again meanwhile: not this repair's record
            }
            let mut held = followed.held.take().unwrap_or_default();
            match gap {
                Gap::Lost => {
                    streams.remove(&repair.key);
                    drop(streams);
                    self.give_up(&hub, &repair.key);
                    return;
                }
                Gap::Filled(missing) => {
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
                        let target = Target::of(&repair.key);
                        let delivery = Delivery::message(target, stored.frame, tag, stored.offset);
                        self.deliver(&hub, &repair.key, delivery);
                    }
                }
                Gap::Restarted(epoch) => {
                    // Redis lost the stream and it started over: the
                    // followers move to the new epoch, whose messages are
                    // then read from its start; what was held of the old
                    // one is over.
                    self.reset(&hub, &repair.key, &epoch);
                    held.retain(|envelope| !of_epoch(envelope, &repair.epoch));
                    followed.dead = Some(std::mem::replace(&mut followed.epoch, epoch));
                    followed.last = 0;
                    followed.catch_up = true;
                }
                // The stream is gone: its next message starts an epoch,
                // which resets the followers as it goes out; what was held
                // of the old one is over.
                Gap::Gone => {
                    held.retain(|envelope| !of_epoch(envelope, &repair.epoch));
                    followed.dead = Some(repair.epoch.clone());
                }
            }
            // Read up to the head, the stream's epoch is known: what was
            // held of any other is stale (a newer epoch's messages are in
            // its history, read when it comes).
            if repair.upto.is_none() {
                held.retain(|envelope| of_epoch(envelope, &followed.epoch));
            }
            // What arrived meanwhile, in order; another gap among it holds
            // the rest again.
            let mut step = Step::Done;
            let mut held = held.into_iter();
            for envelope in held.by_ref() {
                step = self.apply(&hub, &repair.key, followed, pending, envelope);
                if !matches!(step, Step::Done) {
                    break;
                }
            }
            if let Some(again) = &mut followed.held {
                again.extend(held);
            }
            match step {
                Step::Done if std::mem::take(&mut followed.catch_up) => {
                    // The subscription was lost during this repair: read on
                    // to the head.
                    followed.held = Some(Vec::new());
                    Step::Repair(Repair {
                        key: repair.key.clone(),
                        epoch: followed.epoch.clone(),
                        after: followed.last,
                        upto: None,
                        generation: followed.generation,
                    })
                }
                Step::GiveUp => {
                    streams.remove(&repair.key);
                    Step::GiveUp
                }
                step => step,
            }
        };
        match next {
            Step::Done => {}
            Step::Repair(next) => self.spawn_repair(next),
            Step::GiveUp => self.give_up(&hub, &repair.key),
        }
    }

    /// After the subscription was (re-)established: brings every stream
    /// followed here up to its head, a pipeline per batch of streams. A
    /// stream whose repair is under way is read on once that ends. The
    /// streams are this subscriber's shard's, or with `slots`, those of
    /// these Redis Cluster slots.
    fn repair_all(&self, slots: Option<&std::collections::HashSet<usize>>) {
        let repairs: Vec<Repair> = {
            let mut streams = self.followers.lock();
            streams
                .iter_mut()
                .filter(|(key, _)| {
                    let route = self.redis.route_of_key(&self.redis.keys.meta(key));
                    slots.map_or(route == self.shard, |slots| slots.contains(&route))
                })
                .filter_map(|(key, followed)| {
                    if followed.held.is_some() {
                        followed.catch_up = true;
                        return None;
                    }
                    followed.held = Some(Vec::new());
                    Some(Repair {
                        key: key.clone(),
                        epoch: followed.epoch.clone(),
                        after: followed.last,
                        upto: None,
                        generation: followed.generation,
                    })
                })
                .collect()
        };
        if repairs.is_empty() {
            return;
        }
        let subscriber = self.clone();
        let mut guards: Vec<Unfinished> = repairs
            .into_iter()
            .map(|repair| Unfinished { subscriber: self.clone(), repair: Some(repair) })
            .collect();
        tokio::spawn(async move {
            for batch in guards.chunks_mut(REPAIR_BATCH) {
                let repairs: Vec<&Repair> =
                    batch.iter().filter_map(|guard| guard.repair.as_ref()).collect();
                let gaps = subscriber.read_heads(&repairs).await;
                // Taken from their guards only once read: a task that ends
                // during the read leaves them to the guards.
                let repairs = batch.iter_mut().filter_map(|guard| guard.repair.take());
                for (repair, gap) in repairs.zip(gaps) {
                    subscriber.finish_repair(repair, gap);
                }
            }
        });
    }

    /// What each stream misses after its last delivered offset, read in one
    /// pipeline.
    async fn read_heads(&self, batch: &[&Repair]) -> Vec<Gap> {
        let mut reads = Batch::new();
        for repair in batch {
            let limits = self.rules.of(&repair.key);
            let reading = Reading::page(repair.after, limits.size + 1);
            add_read(&mut reads, &self.redis, &repair.key, limits, &reading);
        }
        type Answer = Vec<Option<(String, u64, u64, super::broker::RawEntries)>>;
        let mut answers: Result<Answer, _> = reads.query(&self.redis, "repair").await;
        // A connection to Redis fails once after Redis came back: a few
        // tries before the followers are made to resume.
        for attempt in 1..=READ_TRIES {
            if answers.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            answers = reads.query(&self.redis, "repair").await;
        }
        let Ok(answers) = answers else {
            // Redis gone again: every stream of the batch resumes.
            return batch.iter().map(|_| Gap::Lost).collect();
        };
        let now = now_ms();
        batch
            .iter()
            .zip(answers)
            .map(|(repair, answer)| {
                let Some((epoch, last, _, raw)) = answer else { return Gap::Gone };
                let limits = self.rules.of(&repair.key);
                match entries_of(raw, limits, now) {
                    Ok(entries) => gap_of(repair, &epoch, last, entries),
                    Err(_) => Gap::Lost,
                }
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

/// A repair under way: if its task ends without finishing it (a panic, a
/// runtime shutting down), the stream is given up rather than left holding
/// its deliveries for good.
struct Unfinished {
    subscriber: Subscriber,
    repair: Option<Repair>,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(repair) = self.repair.take() {
            self.subscriber.finish_repair(repair, Gap::Lost);
        }
    }
}

/// Whether a held delivery is of `epoch`.
fn of_epoch(envelope: &Envelope, epoch: &str) -> bool {
    envelope.epoch.as_deref() == Some(epoch)
}

/// What a read of a stream at `epoch`, `head` with `entries` (after the
/// repair's `after`) says of the repair's gap.
fn gap_of(repair: &Repair, epoch: &str, head: u64, entries: Vec<Stored>) -> Gap {
    if epoch != repair.epoch {
        return Gap::Restarted(epoch.to_owned());
    }
    let end = repair.upto.unwrap_or(head);
    if end < repair.after {
        return Gap::Lost;
    }
    let missing: Vec<Stored> = entries.into_iter().filter(|e| e.offset <= end).collect();
    let complete = missing.len() as u64 == end - repair.after
        && missing.iter().zip(repair.after + 1..).all(|(e, n)| e.offset == n);
    if complete { Gap::Filled(missing) } else { Gap::Lost }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Utf8Bytes;

    fn repair(after: u64, upto: Option<u64>) -> Repair {
        let key = StreamKey::Room("r".into());
        Repair { key, epoch: "e".into(), after, upto, generation: 0 }
    }

    fn entries(offsets: &[u64]) -> Vec<Stored> {
        offsets
            .iter()
            .map(|&offset| Stored { offset, ts: 1, frame: Utf8Bytes::from("{}") })
            .collect()
    }

    /// A subscriber on a Redis it never reaches (the connection is lazy)
    /// and a hub with one member of room `r`, whose queue is returned.
    fn subscriber() -> (Subscriber, Arc<Hub>, crate::hub::outbound::OutboundQueue) {
        let config = crate::config::RedisConfig {
            url: Some("redis://127.0.0.1:1".into()),
            ..Default::default()
        };
        let redis = Arc::new(Redis::new(&config).unwrap());
        let hub = Arc::new(Hub::new());
        let (outbound, queue) =
            crate::hub::outbound::channel(hub.next_key(), "m".into(), 64, 1 << 20);
        let key = outbound.key;
        hub.register(Arc::new(outbound), crate::hub::connections::ConnectionInfo::test());
        hub.join(key, "r", true).unwrap();
        let rules = HistoryRules::new(crate::config::HistoryConfig::default());
        let followers = Arc::new(Followers::default());
        let subscriber =
            Subscriber { redis, shard: 0, hub: Arc::downgrade(&hub), rules, followers };
        (subscriber, hub, queue)
    }

    fn envelope(epoch: &str, offset: u64) -> Envelope {
        let frame = Utf8Bytes::from(format!("{epoch}{offset}"));
        let delivery = Delivery::message(Target::Room("r".into()), frame, epoch_tag(epoch), offset);
        Envelope { delivery, epoch: Some(epoch.to_owned()) }
    }

    fn frames(queue: &mut crate::hub::outbound::OutboundQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_recv()).map(|d| d.frame.to_string()).collect()
    }

    #[tokio::test]
    async fn a_follower_about_to_follow_gets_what_was_delivered_here_already() {
        let (subscriber, hub, mut queue) = subscriber();
        let key = StreamKey::Room("r".into());
        let mut followed = subscriber.followers.record("e", 9);
        assert!(matches!(
            subscriber.apply(&hub, &key, &mut followed, false, envelope("e", 8)),
            Step::Done
        ));
        assert!(frames(&mut queue).is_empty(), "delivered here already, nobody pending: dropped");
        assert!(matches!(
            subscriber.apply(&hub, &key, &mut followed, true, envelope("e", 8)),
            Step::Done
        ));
        assert_eq!(frames(&mut queue), ["e8"], "someone may still need it");
        assert_eq!(followed.last, 9, "what counts as delivered does not move back");
    }

    #[tokio::test]
    async fn another_epoch_is_checked_against_the_head_and_a_dead_one_never_comes_back() {
        let (subscriber, hub, mut queue) = subscriber();
        let key = StreamKey::Room("r".into());
        let record = subscriber.followers.record("old", 5);
        let generation = record.generation;
        subscriber.followers.lock().insert(key.clone(), record);
        // A message of another epoch is held while the head is read.
        let step = {
            let mut streams = subscriber.followers.lock();
            let followed = streams.get_mut(&key).unwrap();
            subscriber.apply(&hub, &key, followed, false, envelope("new", 1))
        };
        let Step::Repair(repair) = step else { panic!("a read of the head") };
        assert_eq!((repair.after, repair.upto, repair.generation), (5, None, generation));
        assert!(frames(&mut queue).is_empty(), "nothing goes out before the read");
        // The head says the stream started over: reset, then the message.
        subscriber.finish_repair(repair, Gap::Restarted("new".into()));
        let out = frames(&mut queue);
        assert_eq!(out.len(), 2, "a reset, then the message: {out:?}");
        assert!(
            out[0].contains("\"type\":\"reset\"") && out[0].contains("\"epoch\":\"new\""),
            "{out:?}"
        );
        assert_eq!(out[1], "new1");
        // A late message of the epoch that is over: dropped, no read, no reset.
        let mut streams = subscriber.followers.lock();
        let followed = streams.get_mut(&key).unwrap();
        followed.held = None; // the catch-up read to the head, as if done
        assert!(matches!(
            subscriber.apply(&hub, &key, followed, false, envelope("old", 6)),
            Step::Done
        ));
        assert!(frames(&mut queue).is_empty());
        assert_eq!((followed.epoch.as_str(), followed.last), ("new", 1));
        // A late message of an epoch the head does not confirm is dropped
        // after the read, and the record stays where the head is.
        let Step::Repair(repair) =
            subscriber.apply(&hub, &key, followed, false, envelope("older", 1))
        else {
            panic!("a read of the head")
        };
        drop(streams);
        subscriber.finish_repair(repair, Gap::Filled(Vec::new()));
        assert!(frames(&mut queue).is_empty(), "a stale epoch's message is not written");
        let streams = subscriber.followers.lock();
        assert_eq!((streams[&key].epoch.as_str(), streams[&key].held.is_none()), ("new", true));
    }

    #[test]
    fn a_read_fills_a_gap_only_when_nothing_is_missing() {
        assert!(
            matches!(gap_of(&repair(3, Some(5)), "e", 9, entries(&[4, 5, 6])), Gap::Filled(m) if m.len() == 2)
        );
        assert!(
            matches!(gap_of(&repair(3, None), "e", 5, entries(&[4, 5])), Gap::Filled(m) if m.len() == 2)
        );
        assert!(matches!(gap_of(&repair(5, None), "e", 5, vec![]), Gap::Filled(m) if m.is_empty()));
        assert!(
            matches!(gap_of(&repair(3, Some(5)), "e", 9, entries(&[5])), Gap::Lost),
            "4 was trimmed"
        );
        assert!(
            matches!(gap_of(&repair(3, None), "f", 2, entries(&[1, 2])), Gap::Restarted(e) if e == "f")
        );
        assert!(matches!(gap_of(&repair(7, None), "e", 2, vec![]), Gap::Lost), "behind the head");
    }
}
