//! [`MemoryBroker`]: streams in this process's [`HistoryStore`], delivered
//! straight to this node's hub.
//!
//! A stream's step (a publish: the request id's lookup, the append, its
//! record, the fan-out; a resume; an inbox's undelivered messages) holds
//! the stream's lock (one of [`STRIPES`], by the key's hash) and has no
//! wait inside, so it happens whole and in order with the stream's other
//! steps: connections receive a stream's messages in offset order, a
//! request cancelled before its step leaves nothing behind (its retry is
//! carried out), and one cancelled after is complete.
//!
//! A store whose calls return at once (memory) is called directly. One
//! whose calls block (disk) is called through its
//! [`Writer`](crate::engine::store::Writer) ([`HistoryStore::writer`]):
//! the step joins the steps of other streams that queue up meanwhile in
//! one transaction (group commit), run by the task that finds nobody
//! writing, while the others wait without holding a worker; the fan-out
//! follows the commit. A step the store could not keep is answered with
//! an error and its request id forgotten, so its retry is carried out.
//!
//! Resuming is exact because the caller registered its connection with the
//! hub before it asks: a message appended before the read is in it, and one
//! appended after is delivered live (a publish delivers after its append
//! is visible to reads); the connection drops what both carry by its
//! offset. Reads take the stream's turn all the same, because a store may
//! read in several steps.
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
use crate::engine::store::{HistoryStore, Job, STREAM_IDLE_MS, Then, Writer};
use crate::engine::{EngineError, EngineFuture, HistoryRules};
use crate::hub::{Delivery, Target};
use crate::stream::{Stored, StreamKey, epoch_tag};
use crate::wire::{encode, now_ms};

/// How many locks streams share; two streams hashing alike only wait for
/// each other briefly.
const STRIPES: usize = 256;

/// Streams of a single node.
pub(crate) struct MemoryBroker {
    shared: Arc<Shared>,
    stripes: Box<[Mutex<()>]>,
}

/// What a step needs, shared with whichever task runs it (see [`Writer`]).
struct Shared {
    store: Arc<dyn HistoryStore>,
    rules: HistoryRules,
    ids: IdWindow,
    hub: Arc<Hub>,
}

/// A publish appended (or found carried out before), not yet fanned out.
struct Appended {
    target: Target,
    key: StreamKey,
    stored: Option<(Stored, u64)>,
    published: Published,
    /// The request id this append recorded, if it recorded one.
    recorded: Option<(Arc<str>, String)>,
}

impl MemoryBroker {
    pub(crate) fn new(
        store: Arc<dyn HistoryStore>,
        rules: HistoryRules,
        ids: IdWindow,
        hub: Arc<Hub>,
    ) -> MemoryBroker {
        let stripes = (0..STRIPES).map(|_| Mutex::new(())).collect();
        MemoryBroker { shared: Arc::new(Shared { store, rules, ids, hub }), stripes }
    }

    /// Which of the locks `key`'s stream shares.
    fn stripe_index(&self, key: &StreamKey) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish() as usize % STRIPES
    }

    /// Holds `key`'s stream still: no publish to it proceeds meanwhile.
    async fn lock(&self, key: &StreamKey) -> tokio::sync::MutexGuard<'_, ()> {
        self.stripes[self.stripe_index(key)].lock().await
    }

    /// Runs a step of `key`'s stream under the stream's lock: `first` with
    /// the store, then `then` once what `first` wrote is committed.
    ///
    /// A store whose calls block ([`HistoryStore::writer`]) gets the step
    /// through its writer: in one transaction with the steps of other
    /// streams that queue up meanwhile, run by this task when nobody else
    /// is writing and by the task that is otherwise (this one then waits
    /// without holding a worker). Once offered, the step runs whole, its
    /// fan-out included, even if this task goes away.
    async fn step<A, T>(
        &self,
        key: &StreamKey,
        first: impl FnOnce(&Shared) -> Result<A, EngineError> + Send + 'static,
        then: impl FnOnce(&Shared, A) -> Result<T, EngineError> + Send + 'static,
        undo: fn(&Shared, A),
    ) -> Result<T, EngineError>
    where
        A: Send + 'static,
        T: Send + 'static,
    {
        let _order = self.lock(key).await;
        let Some(writer) = self.shared.store.writer() else {
            let done = first(&self.shared)?;
            return then(&self.shared, done);
        };
        let answer = offer(writer, &self.shared, vec![(first, then)], undo).pop();
        match answer {
            Some(answer) => answer.await.unwrap_or_else(|_| Err(stopped())),
            None => Err(stopped()),
        }
    }
}

impl MemoryBroker {
    /// A stream's position read at once on an async worker, when the store
    /// can tell it without a write. Under the stream's lock no step of the
    /// stream is under way, except one whose caller went away after
    /// offering it: its append may be missing from the read, and the
    /// connection, registered before the read, gets it live. Spares a join
    /// a turn at the store's writer.
    async fn read_position(&self, key: &StreamKey) -> Result<Option<Position>, EngineError> {
        if self.shared.store.writer().is_none() {
            return Ok(None);
        }
        let _order = self.lock(key).await;
        Ok(self.shared.store.read_position(key)?)
    }
}

impl Shared {
    /// How many connections here a target has.
    fn connections(&self, target: &Target) -> usize {
        match target {
            Target::Room(room) => self.hub.room_connections(room),
            Target::RoomExcept(room_except) => self.hub.room_connections(&room_except.0),
            Target::User(user) => self.hub.connections_of(user),
            Target::All => self.hub.connection_count(),
        }
    }

    /// A publish's append: nothing in here waits. The request id is
    /// recorded here, before any later step of the stream looks it up.
    fn append(&self, publication: Publication) -> Result<Appended, EngineError> {
        let Publication { key, target, message, request } = publication;
        let limits = self.rules.of(&key);
        let kept = limits.size > 0;
        let request = request.map(|(user, id)| (user, crate::engine::ids::in_stream(&key, &id)));
        if let Some((user, id)) = &request {
            if let Some(offset) = self.ids.get(user, id) {
                tracing::info!(stream = %key.encode(), offset, "a retried request was carried out before: not again");
                let reached = self.connections(&target);
                let published = Published { offset, reached, kept, repeated: true };
                return Ok(Appended { target, key, stored: None, published, recorded: None });
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
        if let Some((user, id)) = &request {
            self.ids.record(user, id, stored.offset);
        }
        let published = Published { offset: stored.offset, reached: 0, kept, repeated: false };
        Ok(Appended { target, key, stored: Some((stored, tag)), published, recorded: request })
    }

    /// A publish the store could not keep after all: its request id is
    /// forgotten, so that its retry is carried out.
    fn forget(&self, appended: Appended) {
        if let Some((user, id)) = appended.recorded {
            self.ids.forget(&user, &id);
        }
    }

    /// A publish's fan-out, and an inbox's delivery mark.
    fn fan_out(&self, appended: Appended) -> Result<Published, EngineError> {
        let Appended { target, key, stored, mut published, .. } = appended;
        let Some((stored, tag)) = stored else { return Ok(published) };
        let offset = stored.offset;
        published.reached = self.hub.deliver(Delivery::message(target, stored.frame, tag, offset));
        if published.reached > 0 {
            if let StreamKey::Inbox(_) = key {
                match self.store.writer() {
                    // Nothing waits for the mark: it joins the store's
                    // next transaction.
                    Some(writer) => {
                        let store = self.store.clone();
                        writer.enqueue(Box::new(move || {
                            if let Err(error) = store.mark_delivered(&key, offset) {
                                tracing::warn!(%error, "an inbox's delivery mark was not written");
                            }
                            None
                        }));
                    }
                    None => self.store.mark_delivered(&key, offset)?,
                }
            }
        }
        Ok(published)
    }
}

/// The store could not answer (it was dropped mid-step: the hub stops).
fn stopped() -> EngineError {
    EngineError::Failed("the history store has stopped".to_owned())
}

/// Offers `steps` to `writer` (see [`MemoryBroker::step`]); their answers,
/// in order.
fn offer<A, T, F, G>(
    writer: &Writer,
    shared: &Arc<Shared>,
    steps: Vec<(F, G)>,
    undo: fn(&Shared, A),
) -> Vec<tokio::sync::oneshot::Receiver<Result<T, EngineError>>>
where
    A: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&Shared) -> Result<A, EngineError> + Send + 'static,
    G: FnOnce(&Shared, A) -> Result<T, EngineError> + Send + 'static,
{
    let mut answers = Vec::with_capacity(steps.len());
    let jobs: Vec<Job> = steps
        .into_iter()
        .map(|(first, then)| {
            let (answer, answered) = tokio::sync::oneshot::channel();
            answers.push(answered);
            let shared = shared.clone();
            Box::new(move || {
                let done = first(&shared);
                Some(Box::new(move |committed: bool| {
                    let result = match done {
                        Ok(done) if committed => then(&shared, done),
                        Ok(done) => {
                            undo(&shared, done);
                            Err(EngineError::Failed(
                                "the history store could not keep this step".to_owned(),
                            ))
                        }
                        Err(err) => Err(err),
                    };
                    let _ = answer.send(result);
                }) as Then)
            }) as Job
        })
        .collect();
    if writer.offer(jobs) {
        hand_on(shared);
    }
    answers
}

/// Runs what a turn at the writer left over, from a task of its own (or
/// here, outside a runtime), so that no offered step waits for a caller
/// that may never come.
fn hand_on(shared: &Arc<Shared>) {
    let store = shared.store.clone();
    let run = move || {
        if let Some(writer) = store.writer() {
            while writer.offer([]) {}
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move { run() });
        }
        Err(_) => run(),
    }
}

/// A step with nothing to do after the commit but answer.
fn answer<T>(_: &Shared, value: T) -> Result<T, EngineError> {
    Ok(value)
}

/// A step with nothing to take back when the store could not keep it.
fn nothing<T>(_: &Shared, _: T) {}

impl Broker for MemoryBroker {
    fn publish(&self, publication: Publication) -> EngineFuture<'_, Published> {
        Box::pin(async move {
            let key = publication.key.clone();
            let append = move |shared: &Shared| shared.append(publication);
            self.step(&key, append, Shared::fan_out, Shared::forget).await
        })
    }

    /// On a store with a writer, the publishes are offered together (one
    /// transaction, mostly) and fan out back to back, so members find the
    /// messages queued together and write them in one go; otherwise one
    /// after the other.
    fn publish_all(
        &self,
        publications: Vec<Publication>,
    ) -> EngineFuture<'_, Vec<Result<Published, EngineError>>> {
        Box::pin(async move {
            let Some(writer) = self.shared.store.writer() else {
                let mut answers = Vec::with_capacity(publications.len());
                for publication in publications {
                    answers.push(self.publish(publication).await);
                }
                return Ok(answers);
            };
            // Every stream's lock, taken in one order (the stripes'), so
            // that two such batches never wait for each other in a circle.
            let mut stripes: Vec<usize> =
                publications.iter().map(|p| self.stripe_index(&p.key)).collect();
            stripes.sort_unstable();
            stripes.dedup();
            let mut held = Vec::with_capacity(stripes.len());
            for at in stripes {
                held.push(self.stripes[at].lock().await);
            }
            let steps: Vec<_> = publications
                .into_iter()
                .map(|publication| {
                    (move |shared: &Shared| shared.append(publication), Shared::fan_out)
                })
                .collect();
            let mut answers = Vec::with_capacity(steps.len());
            for answer in offer(writer, &self.shared, steps, Shared::forget) {
                answers.push(answer.await.unwrap_or_else(|_| Err(stopped())));
            }
            Ok(answers)
        })
    }

    // Reads take the stream's turn too: a store may read in several steps
    // (the disk store's transactions), and an append between them must not
    // be written over by a stale read.
    fn resume<'a>(
        &'a self,
        key: &'a StreamKey,
        since: Option<&'a Position>,
    ) -> EngineFuture<'a, Resumed> {
        let (owned, since) = (key.clone(), since.cloned());
        Box::pin(async move {
            if since.is_none() {
                if let Some(position) = self.read_position(key).await? {
                    return Ok(Resumed { position, replay: None });
                }
            }
            self.step(
                key,
                move |shared| {
                    let resumed = match since {
                        Some(since) => {
                            let limits = shared.rules.of(&owned);
                            shared.store.since(&owned, &since, limits, now_ms()).map(
                                |(position, replay)| Resumed { position, replay: Some(replay) },
                            )
                        }
                        None => shared
                            .store
                            .position(&owned)
                            .map(|position| Resumed { position, replay: None }),
                    };
                    Ok(resumed?)
                },
                answer,
                nothing,
            )
            .await
        })
    }

    fn undelivered<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, (Position, Vec<Stored>)> {
        let owned = key.clone();
        Box::pin(self.step(
            key,
            move |shared| {
                Ok(shared.store.undelivered(&owned, shared.rules.of(&owned), now_ms())?)
            },
            answer,
            nothing,
        ))
    }

    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, offset: u64) -> EngineFuture<'a, ()> {
        let owned = key.clone();
        Box::pin(self.step(
            key,
            move |shared| Ok(shared.store.mark_delivered(&owned, offset)?),
            answer,
            nothing,
        ))
    }

    fn page<'a>(
        &'a self,
        key: &'a StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> EngineFuture<'a, Option<(Position, Vec<Stored>)>> {
        let limits = self.shared.rules.of(key);
        let page =
            self.shared.store.page(key, after, limit, limits, now_ms()).map_err(EngineError::from);
        Box::pin(std::future::ready(page))
    }

    fn deliver(&self, delivery: Delivery) -> EngineFuture<'_, usize> {
        let reached = self.shared.hub.deliver(delivery);
        Box::pin(std::future::ready(Ok(reached)))
    }

    fn head<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, Position> {
        let owned = key.clone();
        Box::pin(async move {
            if let Some(position) = self.read_position(key).await? {
                return Ok(position);
            }
            let position = move |shared: &Shared| Ok(shared.store.position(&owned)?);
            self.step(key, position, answer, nothing).await
        })
    }

    // The sweep asks the hub who follows what: nothing to record.
    fn unfollow(&self, _key: &StreamKey) {}

    fn maintain(&self, now_ms: u64) -> EngineFuture<'_, ()> {
        self.shared.ids.sweep();
        Box::pin(async move {
            // Who follows what, before the sweep: a connection that follows a
            // stream from after this snapshot read the stream after it, and
            // a read counts as a use, so the sweep does not find it idle.
            let followed = self.shared.hub.followed_streams();
            let (store, rules) = (self.shared.store.clone(), self.shared.rules.clone());
            // A disk store's sweep is a series of write transactions over
            // every stream: kept off the async workers.
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
        Ok(self.shared.store.flush()?)
    }

    fn stream_count(&self) -> Option<usize> {
        self.shared.store.stream_count().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HistoryConfig;
    use crate::engine::store::{DiskStore, MemoryStore};
    use crate::hub::connections::ConnectionInfo;
    use crate::hub::outbound::{self, OutboundQueue};
    use switchboard_protocol::Message;

    fn broker(hub: &Arc<Hub>) -> MemoryBroker {
        broker_on(hub, Arc::new(MemoryStore::new()))
    }

    fn broker_on(hub: &Arc<Hub>, store: Arc<dyn HistoryStore>) -> MemoryBroker {
        let ids = IdWindow::new(std::time::Duration::from_secs(300), 100);
        let rules = HistoryRules::new(HistoryConfig::default());
        MemoryBroker::new(store, rules, ids, hub.clone())
    }

    /// A disk store in a fresh folder (removed when the guard drops).
    fn disk(name: &str) -> (Arc<DiskStore>, TempDir) {
        let dir = std::env::temp_dir().join(format!("switchboard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (Arc::new(DiskStore::open(&dir.join("history.redb")).unwrap()), TempDir(dir))
    }

    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
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
            encoding: None,
            room: Some(room.into()),
            to: None,
            from: "alice".into(),
            event: "e".into(),
            data: serde_json::Value::Null,
            ts: 0,
            offset: None,
            binary: None,
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
    async fn an_id_used_again_for_another_room_is_another_request() {
        let hub = Arc::new(Hub::new());
        let broker = broker(&hub);
        let (_, mut queue) = member(&hub, "bob", "b");
        broker.publish(publication("a", Some("c1"))).await.unwrap();
        let other = broker.publish(publication("b", Some("c1"))).await.unwrap();
        assert_eq!((other.offset, other.repeated), (1, false), "carried out in its room");
        assert!(queue.try_recv().is_some(), "and delivered there");
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

    /// Holds the disk store's writer busy on another thread until the
    /// returned sender sends (or drops).
    fn slow_write(
        store: &Arc<DiskStore>,
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let store = store.clone();
        let slow = std::thread::spawn(move || {
            store.writer().unwrap().run([Box::new(move || {
                started.send(()).unwrap();
                let _ = held.recv();
                None
            }) as crate::engine::store::Job]);
        });
        running.recv().unwrap();
        (release, slow)
    }

    /// Waits (on this runtime: it must not be blocked) until `count` steps
    /// wait for the disk store's writer.
    async fn queued_up(store: &DiskStore, count: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.writer().unwrap().queued() < count {
            assert!(std::time::Instant::now() < deadline, "the steps never queued up");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_disk_store_steps_that_queue_up_share_a_commit_and_keep_their_order() {
        let hub = Arc::new(Hub::new());
        let (store, _dir) = disk("group-commit");
        let broker = Arc::new(broker_on(&hub, store.clone()));
        let (_, mut queue) = member(&hub, "bob", "busy");
        let before = store.commits();
        // While a write takes long, 100 publishes to one room and one to
        // each of 100 others arrive.
        let (release, slow) = slow_write(&store);
        let rooms = (0..200).map(|n| if n % 2 == 0 { "busy".to_owned() } else { format!("r{n}") });
        let publishes: Vec<_> = rooms
            .enumerate()
            .map(|(n, room)| {
                let broker = broker.clone();
                tokio::spawn(async move {
                    let published = broker.publish(publication(&room, Some(&format!("p{n}"))));
                    (room.clone(), published.await.unwrap().offset)
                })
            })
            .collect();
        queued_up(&store, 50).await;
        release.send(()).unwrap();
        let mut offsets = Vec::new();
        for publish in futures::future::join_all(publishes).await {
            let (room, offset) = publish.unwrap();
            if room == "busy" {
                offsets.push(offset);
            } else {
                assert_eq!(offset, 1);
            }
        }
        slow.join().unwrap();
        offsets.sort_unstable();
        assert_eq!(offsets, (1..=100).collect::<Vec<_>>(), "each publish its own offset");
        // One stream's steps follow each other; the others' that queued up
        // shared a transaction.
        let commits = store.commits() - before;
        assert!(commits < 150, "{commits} commits for 200 publishes that queued up together");
        let mut delivered = Vec::new();
        while let Some(delivery) = queue.try_recv() {
            delivered.push(delivery.offset.unwrap());
        }
        assert_eq!(delivered, (1..=100).collect::<Vec<_>>(), "fanned out in offset order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_disk_store_a_publish_waits_without_holding_up_the_other_tasks() {
        let hub = Arc::new(Hub::new());
        let (store, _dir) = disk("off-worker");
        let broker = Arc::new(broker_on(&hub, store.clone()));
        let (_, mut queue) = member(&hub, "bob", "r");
        // Another thread is writing, and takes long (a slow disk).
        let (release, slow) = slow_write(&store);
        let publishers: Vec<_> = (0..2)
            .map(|n| {
                let broker = broker.clone();
                let room = format!("r{n}");
                tokio::spawn(async move { broker.publish(publication(&room, None)).await })
            })
            .collect();
        // Both publishes wait for the store; the runtime still runs
        // everything else (here, this task and its timer).
        queued_up(&store, 2).await;
        assert!(publishers.iter().all(|p| !p.is_finished()), "waiting behind the slow write");
        release.send(()).unwrap();
        for publisher in publishers {
            assert_eq!(publisher.await.unwrap().unwrap().offset, 1);
        }
        slow.join().unwrap();
        broker.publish(publication("r", None)).await.unwrap();
        assert_eq!(queue.try_recv().and_then(|d| d.offset), Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_disk_store_a_batch_that_fails_keeps_nothing_and_its_retries_are_carried_out() {
        let hub = Arc::new(Hub::new());
        let (store, _dir) = disk("failed-batch");
        let broker = Arc::new(broker_on(&hub, store.clone()));
        let (_, mut queue) = member(&hub, "bob", "r");
        let (release, slow) = slow_write(&store);
        // A publish, then a step that fails, queue up for the same
        // transaction.
        let publish = {
            let broker = broker.clone();
            tokio::spawn(async move { broker.publish(publication("r", Some("c1"))).await })
        };
        queued_up(&store, 1).await;
        let failing = store.clone();
        store.writer().unwrap().enqueue(Box::new(move || {
            assert!(failing.fail_a_step().is_err());
            None
        }));
        release.send(()).unwrap();
        slow.join().unwrap();
        assert!(publish.await.unwrap().is_err(), "not kept: the publisher hears so");
        assert!(queue.try_recv().is_none(), "and nobody received it");
        // Its retry is carried out, at the offset the failed one did not keep.
        let retried = broker.publish(publication("r", Some("c1"))).await.unwrap();
        assert_eq!((retried.offset, retried.repeated), (1, false));
        assert_eq!(queue.try_recv().and_then(|d| d.offset), Some(1));
    }
}
