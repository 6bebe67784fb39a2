//! [`RedisPresence`]: who is online and who is in which room, across nodes,
//! counted per node so that the entries of a node that dies can be removed
//! by the nodes that survive it.
//!
//! The hub is the truth about this node's connections; Redis holds each
//! node's copy of it. One task per node, the writer, keeps that copy: a
//! change marks the (scope, user) it touched, and the writer sets, in one
//! pipeline per batch, each marked user's count as the hub holds it at
//! that moment (the `ROOM_PRESENCE` and `ONLINE` scripts), and keeps the
//! node's index of where it has entries (`keys.rs`: this module owns it,
//! and reads the live nodes' indexes for who is online and which rooms
//! have members), then announces what the cluster
//! saw change: a user who arrived in a room for the first time anywhere,
//! or left it everywhere; a large room's count is due instead. So:
//! - nothing here adds or subtracts: a write that failed is written again
//!   with whatever the hub holds then, and a rewrite of everything (after
//!   Redis lost this node's entries, or a write failed) cannot count a
//!   join twice or lose a leave, whatever joins and leaves go on meanwhile;
//!   they are only marked, and written after it, by the same task;
//! - a caller that is cancelled cannot leave half a change behind: leaves
//!   and disconnects only mark, and a join's mark stands whether or not its
//!   caller is still waiting for the answer.
//!
//! The writer is `writer.rs`; this file holds what presence is made of and
//! what it reads.
//!
//! Each node says it is alive every third of `redis.node_ttl_ms`
//! (`node.rs`). A node whose heartbeat is older than the TTL is dead: the
//! first survivor to notice removes its entries and announces the leaves
//! of users who were present only through it. A dead node's users
//! therefore leave within the TTL plus one heartbeat interval (13.3 s with
//! the defaults).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

mod writer;

use super::Redis;
use super::keys;
use super::shards::Batch;
use crate::Hub;
use crate::config::RoomsConfig;
use crate::engine::presence::Presence;
use crate::engine::{EngineError, EngineFuture, HistoryRules};
use crate::hub::room::MembersPage;
use crate::hub::{Departure, Joined, Left, ManagedFields, RoomDetail, RoomSummary};
use crate::policy::events::Events;
use crate::stream::StreamKey;

/// The longest wait before writing again after a failed write.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Where a count is kept: who is online, or who is in a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Online,
    Room(Arc<str>),
}

/// What the live nodes' indexes say: each scope's connections, summed
/// over the nodes.
#[derive(Debug, Default)]
struct Indexed {
    users: std::collections::BTreeMap<String, u64>,
    rooms: std::collections::BTreeMap<String, u64>,
}

/// What writing one user's count changed across the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// 1: the user is now present for the first time anywhere; -1: gone
    /// everywhere; 0: neither.
    change: i64,
    /// The scope's users.
    users: usize,
    /// Whether the room is large.
    large: bool,
    /// The first users, for a join's ack.
    page: Option<MembersPage>,
}

type Waiter = oneshot::Sender<Result<Outcome, EngineError>>;

/// A user's count in a scope.
type Entry = (Scope, Arc<str>);

/// Counts marked for the writer, with whoever waits for their outcome.
#[derive(Default)]
struct Marked {
    entries: HashMap<Entry, Vec<Waiter>>,
    /// Set when this node's whole copy must be rewritten.
    rewrite: bool,
    /// Set once the writer has ended: a mark is answered at once.
    stopped: bool,
}

/// Presence of a node of a cluster.
pub(crate) struct RedisPresence {
    redis: Arc<Redis>,
    hub: Arc<Hub>,
    events: Option<Arc<Events>>,
    rules: HistoryRules,
    large_room: usize,
    ack_members: usize,
    marked: Mutex<Marked>,
    /// Wakes the writer.
    wake: Notify,
    /// Set while the writer has nothing marked and nothing under way.
    idle: AtomicBool,
    /// Signalled each time the writer becomes idle.
    settled: Notify,
    /// Stops the writer: cancelled as the node drains.
    stop: CancellationToken,
    /// Cancelled once the writer has ended.
    finished: CancellationToken,
    /// What the writer last wrote for each user of each scope, to write
    /// again when Redis lost it (changes since are marked, and written
    /// after with their announcements).
    written: Mutex<HashMap<Scope, HashMap<Arc<str>, usize>>>,
}

/// A [`RedisPresence`] shared with the node's tasks.
pub(crate) struct Shared(pub(crate) Arc<RedisPresence>);

impl RedisPresence {
    pub(crate) fn new(
        redis: Arc<Redis>,
        hub: Arc<Hub>,
        events: Option<Arc<Events>>,
        rooms: &RoomsConfig,
        rules: &HistoryRules,
    ) -> RedisPresence {
        RedisPresence {
            redis,
            hub,
            events,
            rules: rules.clone(),
            large_room: rooms.large_room,
            ack_members: rooms.join_ack_members,
            marked: Mutex::new(Marked::default()),
            wake: Notify::new(),
            idle: AtomicBool::new(true),
            settled: Notify::new(),
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
            written: Mutex::new(HashMap::new()),
        }
    }

    // What the writer does is in `writer.rs`.

    async fn page(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, EngineError> {
        let redis = &self.redis;
        let key = redis.keys.scope(&keys::Scope::Room(room), "z");
        let start = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let mut range = ::redis::cmd("ZRANGE");
        range.arg(&key).arg(start).arg("+").arg("BYLEX").arg("LIMIT").arg(0).arg(limit + 1);
        let mut batch = Batch::new();
        batch.keyed(redis, &key, range);
        batch.keyed(redis, &key, ::redis::cmd("ZCARD").arg(&key).to_owned());
        let (mut members, count): (Vec<String>, u64) = batch.query(redis, "members").await?;
        let cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().cloned()
        } else {
            None
        };
        Ok(MembersPage { members, count: count as usize, cursor })
    }

    /// The live nodes' indexes, summed: who is online anywhere, and which
    /// rooms have connections anywhere.
    async fn indexed(&self) -> Result<Indexed, EngineError> {
        let redis = &self.redis;
        let nodes = crate::engine::redis::node::live_nodes(redis).await?;
        let mut batch = Batch::new();
        for node in &nodes {
            let index = redis.keys.node_index(node);
            batch.keyed(redis, &index, ::redis::cmd("HGETALL").arg(&index).to_owned());
        }
        let indexes: Vec<Vec<(String, u64)>> = batch.query(redis, "index").await?;
        let mut indexed = Indexed::default();
        for (name, count) in indexes.into_iter().flatten() {
            match keys::Scope::parse(&name) {
                Some(keys::Scope::User(user)) => {
                    *indexed.users.entry(user.to_owned()).or_default() += count;
                }
                Some(keys::Scope::Room(room)) => {
                    *indexed.rooms.entry(room.to_owned()).or_default() += count;
                }
                None => {}
            }
        }
        indexed.users.retain(|_, count| *count > 0);
        indexed.rooms.retain(|_, count| *count > 0);
        Ok(indexed)
    }

    /// How many users are online and how many rooms have members, across
    /// the cluster.
    pub(crate) async fn counts(&self) -> Result<(u64, u64), EngineError> {
        let indexed = self.indexed().await?;
        Ok((indexed.users.len() as u64, indexed.rooms.len() as u64))
    }

    /// Every room with members anywhere, with its figures (users,
    /// connections, messages, large), sorted by name; only `only` when given.
    async fn figures(&self, only: Option<&str>) -> Result<Vec<(RoomSummary, bool)>, EngineError> {
        let redis = &self.redis;
        let names: Vec<String> = match only {
            Some(room) => vec![room.to_owned()],
            None => self.indexed().await?.rooms.into_keys().collect(),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut batch = Batch::new();
        for room in &names {
            let scope = keys::Scope::Room(room);
            let stream = StreamKey::Room(room.as_str().into());
            let z = redis.keys.scope(&scope, "z");
            batch.keyed(redis, &z, ::redis::cmd("ZCARD").arg(&z).to_owned());
            let n = redis.keys.scope(&scope, "n");
            batch.keyed(redis, &n, ::redis::cmd("GET").arg(&n).to_owned());
            let meta = redis.keys.meta(&stream);
            batch.keyed(redis, &meta, ::redis::cmd("HGET").arg(&meta).arg("last").to_owned());
            let l = redis.keys.scope(&scope, "l");
            batch.keyed(redis, &l, ::redis::cmd("EXISTS").arg(&l).to_owned());
        }
        let flat: Vec<::redis::Value> = batch.query(redis, "rooms").await?;
        let number = |v: &::redis::Value| {
            ::redis::from_redis_value::<Option<u64>>(v.clone()).ok().flatten().unwrap_or(0)
        };
        Ok(names
            .into_iter()
            .zip(flat.chunks(4))
            .filter(|(_, figures)| number(&figures[0]) > 0)
            .map(|(id, figures)| {
                let summary = RoomSummary {
                    id,
                    members: number(&figures[0]) as usize,
                    connections: number(&figures[1]) as usize,
                    messages: number(&figures[2]),
                    managed: ManagedFields::default(),
                };
                (summary, number(&figures[3]) == 1)
            })
            .collect())
    }

    /// Sends each large room whose count changed its count, through the
    /// channel to every node's members.
    async fn occupancy(&self) -> Result<(), EngineError> {
        let due = self.hub.take_occupancy_due();
        if due.is_empty() {
            return Ok(());
        }
        let redis = &self.redis;
        let mut batch = Batch::new();
        for room in &due {
            let z = redis.keys.scope(&keys::Scope::Room(room), "z");
            batch.keyed(redis, &z, ::redis::cmd("ZCARD").arg(&z).to_owned());
        }
        let counts: Vec<u64> = batch.query(redis, "occupancy").await?;
        let mut send = Batch::new();
        for (room, count) in due.iter().zip(counts) {
            if count > 0 {
                let delivery = crate::hub::occupancy(room, count as usize);
                let z = redis.keys.scope(&keys::Scope::Room(room), "z");
                send.publish(redis, &z, super::wire::encode(&delivery));
            }
        }
        if !send.is_empty() {
            send.query::<()>(redis, "occupancy").await?;
        }
        Ok(())
    }
}

impl Presence for Shared {
    fn connected<'a>(&'a self, user: &'a Arc<str>, _first: bool) -> EngineFuture<'a, ()> {
        Box::pin(async move { self.0.written(Scope::Online, user).await.map(|_| ()) })
    }

    fn disconnected(&self, user: &Arc<str>, departure: &Departure) {
        for (room, _) in &departure.rooms {
            self.0.mark(Scope::Room(room.clone()), user, None);
        }
        self.0.mark(Scope::Online, user, None);
    }

    fn joined<'a>(
        &'a self,
        room: &'a Arc<str>,
        user: &'a Arc<str>,
        local: Joined,
    ) -> EngineFuture<'a, Joined> {
        Box::pin(async move {
            let outcome = self.0.written(Scope::Room(room.clone()), user).await?;
            let members = outcome.page.unwrap_or(MembersPage {
                members: Vec::new(),
                count: outcome.users,
                cursor: None,
            });
            Ok(Joined {
                newly: local.newly,
                announce: outcome.change > 0 && !outcome.large,
                members,
                large: outcome.large,
            })
        })
    }

    fn left(&self, room: &Arc<str>, user: &Arc<str>, _local: Left, _announce: bool) {
        self.0.mark(Scope::Room(room.clone()), user, None);
    }

    fn members<'a>(
        &'a self,
        room: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> EngineFuture<'a, Option<MembersPage>> {
        Box::pin(async move {
            let page = self.0.page(room, cursor, limit).await?;
            Ok((page.count > 0).then_some(page))
        })
    }

    fn online(&self) -> EngineFuture<'_, Vec<(String, usize)>> {
        Box::pin(async move {
            let indexed = self.0.indexed().await?;
            Ok(indexed.users.into_iter().map(|(user, count)| (user, count as usize)).collect())
        })
    }

    fn rooms(&self) -> EngineFuture<'_, Vec<RoomSummary>> {
        Box::pin(async move {
            Ok(self.0.figures(None).await?.into_iter().map(|(summary, _)| summary).collect())
        })
    }

    fn room<'a>(&'a self, room: &'a str) -> EngineFuture<'a, Option<RoomDetail>> {
        Box::pin(async move {
            let presence = &self.0;
            let Some((summary, large)) = presence.figures(Some(room)).await?.into_iter().next()
            else {
                return Ok(None);
            };
            let first = presence.page(room, None, presence.ack_members).await?;
            Ok(Some(RoomDetail {
                id: summary.id,
                members: first.members,
                member_count: first.count,
                cursor: first.cursor,
                large,
                connections: summary.connections,
                messages: summary.messages,
                managed: ManagedFields::default(),
            }))
        })
    }

    fn send_occupancy(&self) -> EngineFuture<'_, ()> {
        Box::pin(self.0.occupancy())
    }
}
