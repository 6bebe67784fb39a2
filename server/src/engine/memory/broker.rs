//! [`MemoryBroker`]: streams in this process's [`HistoryStore`], delivered
//! straight to this node's hub.
//!
//! Publishing holds the stream's lock (one of [`STRIPES`], by the key's
//! hash) from the request id's lookup to its record: the lookup, the
//! append, the fan-out and the record are one step with no wait inside, so
//! connections receive a stream's messages in offset order, and a request
//! cancelled before that step leaves nothing behind (its retry is carried
//! out), while one cancelled after it is complete.
//!
//! Resuming is exact because the caller registered its connection with the
//! hub before it asks: a message appended before the read is in it, and one
//! appended after is delivered live (a publish delivers after its append);
//! the connection drops what both carry by its offset. Reads take the
//! stream's lock all the same, because a store may read in several steps.
//!
//! A stream that a connection follows is never swept, however long it
//! stays quiet ([`HistoryStore::sweep`] asks the hub), so its epoch and
//! offsets hold for as long as anyone counts on them; only its history
//! expires.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use switchboard_protocol::{Position, ServerFrame};
use tokio::sync::Mutex;

use crate::Hub;
use crate::engine::broker::{Broker, Publication, Published, Resumed};
use crate::engine::ids::IdWindow;
use crate::engine::store::{HistoryStore, STREAM_IDLE_MS};
use crate::engine::{EngineError, EngineFuture, HistoryRules};
use crate::hub::{Delivery, Target};
use crate::stream::{Stored, StreamKey, epoch_tag};
use crate::wire::{encode, now_ms};

/// How many locks streams share; two streams hashing alike only wait for
/// each other briefly.
const STRIPES: usize = 256;

/// Streams of a single node.
pub(crate) struct MemoryBroker {
    store: Arc<dyn HistoryStore>,
    stripes: Box<[Mutex<()>]>,
    rules: HistoryRules,
    ids: IdWindow,
    hub: Arc<Hub>,
}

impl MemoryBroker {
    pub(crate) fn new(
        store: Arc<dyn HistoryStore>,
        rules: HistoryRules,
        ids: IdWindow,
        hub: Arc<Hub>,
    ) -> MemoryBroker {
        let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
        MemoryBroker { store, stripes, rules, ids, hub }
    }

    /// Holds `key`'s stream still: no publish to it proceeds meanwhile.
    async fn lock(&self, key: &StreamKey) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        self.stripes[hasher.finish() as usize % STRIPES].lock().await
    }

    /// How many connections here a target has.
    fn connections(&self, target: &Target) -> usize {
        match target {
            Target::Room(room) => self.hub.room_connections(room),
            Target::RoomExcept(room_except) => self.hub.room_connections(&room_except.0),
            Target::User(user) => self.hub.connections_of(user),
            Target::All => self.hub.connection_count(),
        }
    }

    /// The publish itself, with the stream's lock held: nothing in here
    /// waits, so it happens whole or not at all.
    fn append(&self, publication: Publication) -> Result<Published, EngineError> {
        let Publication { key, target, message, request } = publication;
        let limits = self.rules.of(&key);
        let kept = limits.size > 0;
        if let Some((user, id)) = &request {
            if let Some(offset) = self.ids.get(user, id) {
                tracing::info!(stream = %key.encode(), offset, "a retried request was carried out before: not again");
                let reached = self.connections(&target);
                return Ok(Published { offset, reached, kept, repeated: true });
            }
        }
        let mut frame = ServerFrame::Message(message);
        let mut tag = 0;
        let stored = self.store.append(&key, limits, now_ms(), &mut |epoch, offset| {
            tag = epoch_tag(epoch);
            if let ServerFrame::Message(message) = &mut frame {
                message.offset = Some(offset);
            }
            encode(&frame)
        })?;
        let reached = self.hub.deliver(Delivery::message(target, stored.frame, tag, stored.offset));
        if let Some((user, id)) = &request {
            self.ids.record(user, id, stored.offset);
        }
        if reached > 0 {
            if let StreamKey::Inbox(_) = key {
                self.store.mark_delivered(&key, stored.offset)?;
            }
        }
        Ok(Published { offset: stored.offset, reached, kept, repeated: false })
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, publication: Publication) -> EngineFuture<'_, Published> {
        Box::pin(async move {
            let _order = self.lock(&publication.key).await;
            self.append(publication)
        })
    }

    // Reads take the stream's lock too: a store may read in several steps
    // (the disk store's transactions), and an append between them must not
    // be written over by a stale read.
    fn resume<'a>(
        &'a self,
        key: &'a StreamKey,
        since: Option<&'a Position>,
    ) -> EngineFuture<'a, Resumed> {
        Box::pin(async move {
            let _order = self.lock(key).await;
            let resumed = match since {
                Some(since) => {
                    let limits = self.rules.of(key);
                    self.store
                        .since(key, since, limits, now_ms())
                        .map(|(position, replay)| Resumed { position, replay: Some(replay) })
                }
                None => self.store.position(key).map(|position| Resumed { position, replay: None }),
            };
            Ok(resumed?)
        })
    }

    fn undelivered<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, (Position, Vec<Stored>)> {
        Box::pin(async move {
            let _order = self.lock(key).await;
            Ok(self.store.undelivered(key, self.rules.of(key), now_ms())?)
        })
    }

    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, offset: u64) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            let _order = self.lock(key).await;
            Ok(self.store.mark_delivered(key, offset)?)
        })
    }

    fn page<'a>(
        &'a self,
        key: &'a StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> EngineFuture<'a, Option<(Position, Vec<Stored>)>> {
        let limits = self.rules.of(key);
        let page = self.store.page(key, after, limit, limits, now_ms()).map_err(EngineError::from);
        Box::pin(std::future::ready(page))
    }

    fn deliver(&self, delivery: Delivery) -> EngineFuture<'_, usize> {
        let reached = self.hub.deliver(delivery);
        Box::pin(std::future::ready(Ok(reached)))
    }

    fn head<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, Position> {
        Box::pin(async move {
            let _order = self.lock(key).await;
            Ok(self.store.position(key)?)
        })
    }

    // The sweep asks the hub who follows what: nothing to record.
    fn unfollow(&self, _key: &StreamKey) {}

    fn maintain(&self, now_ms: u64) -> EngineFuture<'_, ()> {
        self.ids.sweep();
        Box::pin(async move {
            // Who follows what, before the sweep: a connection that follows a
            // stream from after this snapshot read the stream after it, and
            // a read counts as a use, so the sweep does not find it idle.
            let followed = self.hub.followed_streams();
            let (store, rules) = (self.store.clone(), self.rules.clone());
            // A disk store's sweep is one write transaction over every
            // stream: kept off the async workers.
            let sweep = move || {
                store.sweep(now_ms, STREAM_IDLE_MS, &|key| rules.of(key).clone(), &|key| {
                    followed.contains(key)
                });
            };
            tokio::task::spawn_blocking(sweep)
                .await
                .map_err(|err| EngineError::Failed(format!("the history sweep failed: {err}")))
        })
    }

    fn flush(&self) -> Result<(), EngineError> {
        Ok(self.store.flush()?)
    }

    fn stream_count(&self) -> Option<usize> {
        self.store.stream_count().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryConfig;
    use crate::engine::store::MemoryStore;
    use crate::hub::connections::ConnectionInfo;
    use crate::hub::outbound::{self, OutboundQueue};
    use switchboard_protocol::Message;

    fn broker(hub: &Arc<Hub>) -> MemoryBroker {
        let ids = IdWindow::new(std::time::Duration::from_secs(300), 100);
        let rules = HistoryRules::new(HistoryConfig::default());
        MemoryBroker::new(Arc::new(MemoryStore::new()), rules, ids, hub.clone())
    }

    fn member(hub: &Hub, user: &str, room: &str) -> (u64, OutboundQueue) {
        let key = hub.next_key();
        let (outbound, queue) = outbound::channel(key, user.into(), 1_000, 1 << 20);
        hub.register(Arc::new(outbound), ConnectionInfo::test());
        hub.join(key, room, true).unwrap();
        (key, queue)
    }

    fn publication(room: &str, request: Option<&str>) -> Publication {
        let message = Message {
            room: Some(room.into()),
            to: None,
            from: "alice".into(),
            event: "e".into(),
            data: serde_json::Value::Null,
            ts: 0,
            offset: None,
        };
        Publication {
            key: StreamKey::Room(room.into()),
            target: Target::Room(room.into()),
            message,
            request: request.map(|id| (Arc::from("alice"), id.to_owned())),
        }
    }

    #[tokio::test]
    async fn a_quiet_room_keeps_its_epoch_and_offsets_while_anyone_follows_it() {
        let hub = Arc::new(Hub::new());
        let broker = broker(&hub);
        let (bob, mut queue) = member(&hub, "bob", "quiet");
        let key = StreamKey::Room("quiet".into());
        let start = broker.resume(&key, None).await.unwrap().position;
        for _ in 0..50 {
            broker.publish(publication("quiet", None)).await.unwrap();
        }
        while queue.try_recv().is_some() {}
        // A day later (history TTL and the idle time long past), bob still
        // connected and in the room.
        let day_later = now_ms() + 24 * 3_600_000;
        broker.maintain(day_later).await.unwrap();
        let published = broker.publish(publication("quiet", None)).await.unwrap();
        assert_eq!(published.offset, 51, "offsets go on");
        let delivery = queue.try_recv().expect("bob gets it");
        assert_eq!((delivery.offset, delivery.epoch), (Some(51), epoch_tag(&start.epoch)));
        // Once nobody follows it, an idle empty stream goes (a new epoch).
        hub.unregister(bob);
        broker.maintain(day_later).await.unwrap();
        broker.maintain(now_ms() + 48 * 3_600_000).await.unwrap();
        let after = broker.resume(&key, None).await.unwrap().position;
        assert_ne!(after.epoch, start.epoch);
    }

    #[tokio::test]
    async fn a_request_id_takes_effect_once() {
        let hub = Arc::new(Hub::new());
        let broker = broker(&hub);
        let (_, mut queue) = member(&hub, "bob", "r");
        let first = broker.publish(publication("r", Some("c1"))).await.unwrap();
        let again = broker.publish(publication("r", Some("c1"))).await.unwrap();
        assert_eq!((first.offset, first.repeated), (1, false));
        assert_eq!((again.offset, again.repeated), (1, true));
        assert!(queue.try_recv().is_some());
        assert!(queue.try_recv().is_none(), "delivered once");
    }

    #[tokio::test]
    async fn a_publish_cancelled_before_its_append_leaves_its_id_free() {
        let hub = Arc::new(Hub::new());
        let broker = broker(&hub);
        let key = StreamKey::Room("r".into());
        // Another publish holds the stream: this one waits for the lock and
        // is dropped there, as a closing connection drops its request.
        let held = broker.lock(&key).await;
        let waiting = broker.publish(publication("r", Some("c1")));
        let timed_out = tokio::time::timeout(std::time::Duration::from_millis(10), waiting).await;
        assert!(timed_out.is_err());
        drop(held);
        let retried = broker.publish(publication("r", Some("c1"))).await.unwrap();
        assert_eq!((retried.offset, retried.repeated), (1, false), "carried out on retry");
    }
}
