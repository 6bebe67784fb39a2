//! [`Streams`]: publishing into a stream and resuming from one, with the
//! ordering that makes recovery exact.
//!
//! Every room and every user's inbox is a stream. Publishing assigns the
//! next offset, stores the message and hands it to the broker while holding
//! that stream's lock, so connections receive a stream's messages in offset
//! order. A resuming connection is registered as a recipient first and reads
//! the history second, under the same lock: every message is then either in
//! the replay or in its live queue, possibly both, never neither. The session
//! drops a live message whose offset the replay already covered, so none
//! arrives twice.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use switchboard_protocol::{Message, Position, ServerFrame};
use tokio::sync::{Mutex, MutexGuard};

use crate::broker::{Broker, BrokerError, Delivery, DeliveryKind, Target};
use crate::config::{HistoryConfig, HistoryLimits};
use crate::policy::patterns::RoomPatterns;
use crate::store::{HistoryStore, Replay, StoreError, Stored, StreamKey};
use crate::transport::wire::{encode, now_ms};

/// How many locks streams share; two streams hashing alike only wait for
/// each other briefly.
const STRIPES: usize = 256;

/// Appends to streams and replays them.
pub(crate) struct Streams {
    store: Arc<dyn HistoryStore>,
    config: HistoryConfig,
    /// `config.rules`, compiled once: limits are looked up on every publish.
    rules: RoomPatterns<HistoryLimits>,
    stripes: Box<[Mutex<()>]>,
}

/// A publish that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// A published message: where it landed and how many connections got it now.
pub(crate) struct Published {
    pub(crate) stored: Stored,
    pub(crate) reached: usize,
}

impl Streams {
    pub(crate) fn new(store: Arc<dyn HistoryStore>, config: HistoryConfig) -> Streams {
        let rules = config.patterns();
        Streams { store, config, rules, stripes: (0..STRIPES).map(|_| Mutex::new(())).collect() }
    }

    pub(crate) fn store(&self) -> &dyn HistoryStore {
        &*self.store
    }

    pub(crate) fn max_page(&self) -> usize {
        self.config.max_page
    }

    /// Periodic upkeep of the store: expired history out, idle empty
    /// streams dropped.
    pub(crate) fn sweep(&self, now_ms: u64, idle_ms: u64) {
        self.store.sweep(now_ms, idle_ms, &|key| self.limits(key).clone());
    }

    pub(crate) fn limits(&self, key: &StreamKey) -> &HistoryLimits {
        match key {
            StreamKey::Room(room) => self.rules.first(room).unwrap_or(&self.config.default),
            StreamKey::Inbox(_) => &self.config.inbox,
        }
    }

    /// Holds `key`'s stream still: no publish to it proceeds meanwhile.
    pub(crate) async fn lock(&self, key: &StreamKey) -> MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.stripes[hasher.finish() as usize % STRIPES].lock().await
    }

    /// Stores `message` as the stream's next one and fans it out to `target`.
    pub(crate) async fn publish(
        &self,
        broker: &dyn Broker,
        key: StreamKey,
        target: Target,
        message: Message,
    ) -> Result<Published, PublishError> {
        let limits = self.limits(&key).clone();
        let _order = self.lock(&key).await;
        let mut frame = ServerFrame::Message(message);
        let stored = self.store.append(&key, &limits, now_ms(), &mut |offset| {
            if let ServerFrame::Message(message) = &mut frame {
                message.offset = Some(offset);
            }
            encode(&frame)
        })?;
        let delivery = Delivery {
            target,
            frame: stored.frame.clone(),
            kind: DeliveryKind::Message,
            offset: Some(stored.offset),
        };
        let reached = broker.publish(delivery).await?;
        if reached > 0 {
            if let StreamKey::Inbox(_) = key {
                self.store.mark_delivered(&key, stored.offset)?;
            }
        }
        Ok(Published { stored, reached })
    }

    /// Runs `register` (which makes the caller a live recipient of `key`)
    /// and reads where the stream stands, both under the stream's lock.
    /// With `since`, also returns what the caller missed.
    pub(crate) async fn resume<T>(
        &self,
        key: &StreamKey,
        since: Option<&Position>,
        register: impl FnOnce() -> T,
    ) -> Result<(T, Position, Option<Replay>), StoreError> {
        let limits = self.limits(key).clone();
        let _order = self.lock(key).await;
        let registered = register();
        match since {
            Some(since) => {
                let (position, replay) = self.store.since(key, since, &limits, now_ms())?;
                Ok((registered, position, Some(replay)))
            }
            None => Ok((registered, self.store.position(key)?, None)),
        }
    }

    /// For a connection that did not say where it stopped: the inbox
    /// messages no connection of the user has received yet, now marked
    /// delivered. Runs `register` first, under the inbox's lock.
    pub(crate) async fn undelivered<T>(
        &self,
        key: &StreamKey,
        register: impl FnOnce() -> T,
    ) -> Result<(T, Position, Vec<Stored>), StoreError> {
        let limits = self.limits(key).clone();
        let _order = self.lock(key).await;
        let registered = register();
        let (position, pending) = self.store.undelivered(key, &limits, now_ms())?;
        Ok((registered, position, pending))
    }
}

/// Decodes stored frames back into messages (for history reads).
pub(crate) fn messages(stored: &[Stored]) -> Vec<Message> {
    stored
        .iter()
        .filter_map(|s| match serde_json::from_str::<ServerFrame>(&s.frame) {
            Ok(ServerFrame::Message(message)) => Some(message),
            _ => None,
        })
        .collect()
}
