//! [`RedisPresence`]: who is online and who is in which room, across nodes,
//! counted per node so that the entries of a node that dies can be removed
//! by the nodes that survive it.
//!
//! The hub is the truth about this node's connections; Redis holds each
//! node's copy of it. One task per node, the writer, keeps that copy: a
//! change marks the (scope, user) it touched, and the writer sets, in one
//! pipeline per batch, each marked user's count as the hub holds it at
//! that moment (the `PRESENCE` script), then announces what the cluster
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
//! Each node says it is alive every third of `redis.node_ttl_ms`
//! (`node.rs`). A node whose heartbeat is older than the TTL is dead: the
//! first survivor to notice removes its entries and announces the leaves
//! of users who were present only through it. A dead node's users
//! therefore leave within the TTL plus one heartbeat interval (13.3 s with
//! the defaults).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use switchboard_protocol::PresenceAction;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use super::Redis;
use super::broker::meta_ttl_secs;
use super::keys::{ONLINE, room_scope};
use super::scripts::{BURY, PRESENCE, RECONCILE, evalsha};
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

/// Each user of a scope with this node's connections of them.
type Counts = Vec<(Arc<str>, usize)>;

/// A user who was present only through a node that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gone {
    /// The room; `None` for the online scope.
    pub(crate) room: Option<String>,
    pub(crate) user: String,
    /// Whether the room was large (its leaves are counted, not named).
    pub(crate) large: bool,
}

/// Counts marked for the writer, with whoever waits for their outcome.
#[derive(Default)]
struct Marked {
    entries: HashMap<Entry, Vec<Waiter>>,
    /// Set when this node's whole copy must be rewritten.
    rewrite: bool,
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
    /// Stops the writer: cancelled once the node has drained.
    stop: CancellationToken,
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
        }
    }

    fn marked(&self) -> std::sync::MutexGuard<'_, Marked> {
        self.marked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a user's count in a scope for the writer; `waiter` hears the
    /// outcome.
    fn mark(&self, scope: Scope, user: &Arc<str>, waiter: Option<Waiter>) {
        let mut marked = self.marked();
        marked.entries.entry((scope, user.clone())).or_default().extend(waiter);
        self.idle.store(false, Ordering::Relaxed);
        drop(marked);
        self.wake.notify_one();
    }

    /// Asks for this node's whole copy to be rewritten from the hub (Redis
    /// lost it, or a write failed).
    pub(crate) fn rewrite(&self) {
        let mut marked = self.marked();
        marked.rewrite = true;
        self.idle.store(false, Ordering::Relaxed);
        drop(marked);
        self.wake.notify_one();
    }

    /// Marks a count and waits for the writer to write it.
    async fn written(&self, scope: Scope, user: &Arc<str>) -> Result<Outcome, EngineError> {
        let (waiter, outcome) = oneshot::channel();
        self.mark(scope, user, Some(waiter));
        outcome.await.unwrap_or_else(|_| {
            Err(EngineError::Unavailable("the node is stopping: presence not counted".to_owned()))
        })
    }

    /// Waits (at most `within`) until everything marked so far is written,
    /// or the writer gave up on it for now.
    pub(crate) async fn settle(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let settled = self.settled.notified();
                let mut settled = std::pin::pin!(settled);
                settled.as_mut().enable();
                if self.idle.load(Ordering::Relaxed) {
                    return;
                }
                settled.await;
            }
        })
        .await;
    }

    /// The writer: writes what is marked, batch after batch, until the node
    /// has drained ([`RedisPresence::stop`]). After `shutdown` it goes on
    /// while sessions close and count themselves out, and ends once idle
    /// for a while if nobody drains the node.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        let idle_after_shutdown = self.redis.timeout * 4;
        loop {
            let (entries, rewrite) = {
                let mut marked = self.marked();
                (std::mem::take(&mut marked.entries), std::mem::take(&mut marked.rewrite))
            };
            if entries.is_empty() && !rewrite {
                // A mark after the take above stored a permit: `woken`
                // completes at once.
                let woken = self.wake.notified();
                {
                    let marked = self.marked();
                    if !marked.entries.is_empty() || marked.rewrite {
                        continue;
                    }
                    // Under the lock, as `mark` clears it.
                    self.idle.store(true, Ordering::Relaxed);
                }
                self.settled.notify_waiters();
                let stopping = shutdown.is_cancelled();
                tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = woken => continue,
                    () = shutdown.cancelled(), if !stopping => continue,
                    () = tokio::time::sleep(idle_after_shutdown), if stopping => break,
                }
            }
            let written = if rewrite { self.rewrite_all(&entries).await } else { Ok(()) };
            let written = match written {
                Ok(()) => self.write(entries).await,
                Err(err) => {
                    // Keep the marks: written after the rewrite that is still due.
                    let mut marked = self.marked();
                    marked.rewrite = true;
                    for (entry, waiters) in entries {
                        for waiter in waiters {
                            let _ = waiter.send(Err(err.clone()));
                        }
                        marked.entries.entry(entry).or_default();
                    }
                    Err(err)
                }
            };
            match written {
                Ok(()) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(%err, "presence not written; trying again");
                    let cap = (Duration::from_millis(50) * (1 << failures.min(6))).min(MAX_RETRY);
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = tokio::time::sleep(cap.mul_f64(0.5 + fastrand::f64() / 2.0)) => {}
                    }
                }
            }
        }
        // Whoever still waits hears that the count will not be written.
        self.marked().entries.clear();
        self.idle.store(true, Ordering::Relaxed);
        self.settled.notify_waiters();
    }

    /// Ends the writer (the node has drained).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// This node's connections of `user` in `scope`, as the hub holds them now.
    fn count(&self, scope: &Scope, user: &str) -> usize {
        match scope {
            Scope::Online => self.hub.connections_of(user),
            Scope::Room(room) => self.hub.user_connections_in(room, user),
        }
    }

    /// The keys of a scope (`…:z`, `…:u`, `…:c`, `…:n`, the node's scope
    /// set, the rooms set, `…:l`) and its name.
    fn scope_keys(&self, scope: &Scope) -> (Vec<String>, String) {
        let name = match scope {
            Scope::Online => ONLINE.to_owned(),
            Scope::Room(room) => room_scope(room),
        };
        let base = self.redis.keys.scope(&name);
        let keys = vec![
            format!("{base}:z"),
            format!("{base}:u"),
            format!("{base}:c"),
            format!("{base}:n"),
            self.redis.keys.node_scopes(&self.redis.node),
            self.redis.keys.rooms(),
            format!("{base}:l"),
        ];
        (keys, name)
    }

    /// Writes a batch of counts in one pipeline, then announces and answers.
    async fn write(&self, entries: HashMap<Entry, Vec<Waiter>>) -> Result<(), EngineError> {
        let entries: Vec<(Entry, Vec<Waiter>)> = entries.into_iter().collect();
        let mut pipe = ::redis::pipe();
        for ((scope, user), waiters) in &entries {
            let (mut keys, name) = self.scope_keys(scope);
            let (room, stream) = match scope {
                Scope::Online => (String::new(), StreamKey::Inbox(user.clone())),
                Scope::Room(room) => (room.to_string(), StreamKey::Room(room.clone())),
            };
            keys.push(self.redis.keys.meta(&stream));
            let mut cmd = evalsha(&PRESENCE, &keys);
            cmd.arg(&self.redis.node)
                .arg(&**user)
                .arg(self.count(scope, user))
                .arg(&name)
                .arg(&room)
                .arg(self.large_room)
                .arg(meta_ttl_secs(self.rules.of(&stream)));
            pipe.add_command(cmd);
            // A join's ack lists the room's first users: read in the same
            // round trip.
            if let (Scope::Room(_), false) = (scope, waiters.is_empty()) {
                pipe.cmd("ZRANGE")
                    .arg(&keys[0])
                    .arg("-")
                    .arg("+")
                    .arg("BYLEX")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(self.ack_members + 1);
            }
        }
        let answers: Result<Vec<::redis::Value>, EngineError> =
            self.redis.run_scripts("presence", &[&PRESENCE], &pipe).await;
        let answers = match answers {
            Ok(answers) => answers,
            Err(err) => {
                // Marked again, for the next attempt; who waited hears the
                // failure now (a join is refused and undone).
                let mut marked = self.marked();
                for (entry, waiters) in entries {
                    for waiter in waiters {
                        let _ = waiter.send(Err(err.clone()));
                    }
                    marked.entries.entry(entry).or_default();
                }
                return Err(err);
            }
        };
        let mut answers = answers.into_iter();
        let mut announce = ::redis::pipe();
        for ((scope, user), waiters) in entries {
            let Some(script) = answers.next() else { break };
            let (change, users, large): (i64, u64, u8) =
                ::redis::from_redis_value(script).unwrap_or((0, 0, 0));
            let page = match (&scope, waiters.is_empty()) {
                (Scope::Room(_), false) => {
                    let mut members: Vec<String> = answers
                        .next()
                        .and_then(|v| ::redis::from_redis_value(v).ok())
                        .unwrap_or_default();
                    let cursor = (members.len() > self.ack_members).then(|| {
                        members.truncate(self.ack_members);
                        members.last().cloned()
                    });
                    Some(MembersPage { members, count: users as usize, cursor: cursor.flatten() })
                }
                _ => None,
            };
            let outcome = Outcome { change, users: users as usize, large: large == 1, page };
            self.announced(&scope, &user, &outcome, &mut announce);
            for waiter in waiters {
                let _ = waiter.send(Ok(outcome.clone()));
            }
        }
        if !announce.is_empty() {
            let mut connection = self.redis.connection();
            let sent = self.redis.call("announce", announce.query_async::<()>(&mut connection));
            if let Err(err) = sent.await {
                tracing::warn!(%err, "presence changes not announced");
            }
        }
        Ok(())
    }

    /// What an outcome tells the others: a join or leave by name, a large
    /// room's count due, an online or offline event.
    fn announced(
        &self,
        scope: &Scope,
        user: &str,
        outcome: &Outcome,
        pipe: &mut ::redis::Pipeline,
    ) {
        if outcome.change == 0 {
            return;
        }
        match scope {
            Scope::Online => {
                if let Some(events) = &self.events {
                    events.presence(user, outcome.change > 0);
                }
            }
            Scope::Room(room) if outcome.large => self.hub.mark_occupancy_due(room),
            Scope::Room(room) => {
                let action =
                    if outcome.change > 0 { PresenceAction::Join } else { PresenceAction::Leave };
                let delivery = crate::hub::presence_frame(room, user, action);
                pipe.cmd("PUBLISH")
                    .arg(self.redis.keys.channel())
                    .arg(super::wire::encode(&delivery))
                    .ignore();
            }
        }
    }

    /// Rewrites all of this node's entries from the hub, scope by scope
    /// (one script call each, in one pipeline), and removes those of
    /// scopes where the hub has nobody any more. Announces only what it
    /// changed for the users of `marked` (they did come or go); for the
    /// others it corrects counts Redis lost or got wrong, silently.
    async fn rewrite_all(&self, marked: &HashMap<Entry, Vec<Waiter>>) -> Result<(), EngineError> {
        let mut connection = self.redis.connection();
        let listed: Vec<String> = self
            .redis
            .call(
                "presence",
                ::redis::cmd("SMEMBERS")
                    .arg(self.redis.keys.node_scopes(&self.redis.node))
                    .query_async(&mut connection),
            )
            .await?;
        let snapshot = self.hub.presence_snapshot();
        let mut scopes: HashMap<Scope, Counts> = HashMap::new();
        scopes.insert(Scope::Online, snapshot.users);
        for (room, user, count) in snapshot.rooms {
            scopes.entry(Scope::Room(room)).or_default().push((user, count));
        }
        for name in listed {
            let scope = match name.strip_prefix("r:") {
                Some(room) => Scope::Room(room.into()),
                None => Scope::Online,
            };
            scopes.entry(scope).or_default();
        }
        for (scope, _) in marked.keys() {
            scopes.entry(scope.clone()).or_default();
        }
        let scopes: Vec<(Scope, Counts)> = scopes.into_iter().collect();
        let unfollowed_ttl = meta_ttl_secs(&self.rules.longest());
        let mut pipe = ::redis::pipe();
        for (scope, users) in &scopes {
            let (keys, name) = self.scope_keys(scope);
            let room = match scope {
                Scope::Online => String::new(),
                Scope::Room(room) => room.to_string(),
            };
            let mut cmd = evalsha(&RECONCILE, &keys);
            cmd.arg(&self.redis.node)
                .arg(&name)
                .arg(&room)
                .arg(self.large_room)
                .arg(&self.redis.keys.prefix)
                .arg(unfollowed_ttl);
            for (user, count) in users {
                cmd.arg(&**user).arg(*count);
            }
            pipe.add_command(cmd);
        }
        let answers: Vec<::redis::Value> =
            self.redis.run_scripts("presence", &[&RECONCILE], &pipe).await?;
        let mut announce = ::redis::pipe();
        for ((scope, _), answer) in scopes.iter().zip(answers) {
            let Ok(flat) = ::redis::from_redis_value::<Vec<::redis::Value>>(answer) else {
                continue;
            };
            let mut flat = flat.into_iter();
            let number = |v: Option<::redis::Value>| {
                v.and_then(|v| ::redis::from_redis_value::<i64>(v).ok()).unwrap_or(0)
            };
            let users = number(flat.next()).max(0) as usize;
            let large = number(flat.next()) == 1;
            while let (Some(user), Some(change)) = (flat.next(), flat.next()) {
                let Ok(user) = ::redis::from_redis_value::<String>(user) else { continue };
                let user: Arc<str> = user.into();
                if !marked.contains_key(&(scope.clone(), user.clone())) {
                    continue;
                }
                let change = number(Some(change));
                let outcome = Outcome { change, users, large, page: None };
                self.announced(scope, &user, &outcome, &mut announce);
            }
        }
        if !announce.is_empty() {
            let sent = self.redis.call("announce", announce.query_async::<()>(&mut connection));
            if let Err(err) = sent.await {
                tracing::warn!(%err, "presence changes not announced");
            }
        }
        tracing::info!(scopes = scopes.len(), "this node's presence rewritten in redis");
        Ok(())
    }

    /// Removes a node's entries (a dead node's, or this one's as it
    /// leaves); returns who was present only through it: the room (`None`:
    /// online), the user, and whether the room was large.
    pub(crate) async fn bury(&self, node: &str) -> Result<Vec<Gone>, EngineError> {
        let keys = &self.redis.keys;
        let mut invocation = BURY.prepare_invoke();
        invocation
            .key(keys.nodes())
            .key(keys.stats())
            .key(keys.node_scopes(node))
            .key(keys.rooms())
            .arg(&keys.prefix)
            .arg(node)
            .arg(meta_ttl_secs(&self.rules.longest()));
        let mut connection = self.redis.connection();
        let flat: Vec<String> =
            self.redis.call("bury", invocation.invoke_async(&mut connection)).await?;
        Ok(flat
            .chunks(3)
            .filter_map(|triple| match triple {
                [scope, user, large] => {
                    let room = scope.strip_prefix("r:").map(str::to_owned);
                    Some(Gone { room, user: user.clone(), large: large == "1" })
                }
                _ => None,
            })
            .collect())
    }

    /// Announces the leaves of users who were present only through a node
    /// that is gone.
    pub(crate) async fn announce_gone(&self, left: Vec<Gone>) {
        let mut pipe = ::redis::pipe();
        for Gone { room, user, large } in left {
            match room {
                Some(room) => {
                    let room: Arc<str> = room.into();
                    let outcome = Outcome { change: -1, users: 0, large, page: None };
                    self.announced(&Scope::Room(room), &user, &outcome, &mut pipe);
                }
                None => {
                    if let Some(events) = &self.events {
                        events.presence(&user, false);
                    }
                }
            }
        }
        if !pipe.is_empty() {
            let mut connection = self.redis.connection();
            if let Err(err) =
                self.redis.call("announce", pipe.query_async::<()>(&mut connection)).await
            {
                tracing::warn!(%err, "leaves of a dead node's users not announced");
            }
        }
    }

    async fn page(
        &self,
        room: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<MembersPage, EngineError> {
        let scope = room.map_or_else(|| ONLINE.to_owned(), room_scope);
        let key = format!("{}:z", self.redis.keys.scope(&scope));
        let start = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZRANGE").arg(&key).arg(start).arg("+").arg("BYLEX").arg("LIMIT").arg(0);
        pipe.arg(limit + 1).cmd("ZCARD").arg(&key);
        let mut connection = self.redis.connection();
        let (mut members, count): (Vec<String>, u64) =
            self.redis.call("members", pipe.query_async(&mut connection)).await?;
        let cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().cloned()
        } else {
            None
        };
        Ok(MembersPage { members, count: count as usize, cursor })
    }

    /// Every room with members anywhere, with its figures (users,
    /// connections, messages, large), sorted by name; only `only` when given.
    async fn figures(&self, only: Option<&str>) -> Result<Vec<(RoomSummary, bool)>, EngineError> {
        let mut connection = self.redis.connection();
        let mut names: Vec<String> = match only {
            Some(room) => vec![room.to_owned()],
            None => {
                self.redis
                    .call(
                        "rooms",
                        ::redis::cmd("SMEMBERS")
                            .arg(self.redis.keys.rooms())
                            .query_async(&mut connection),
                    )
                    .await?
            }
        };
        names.sort_unstable();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for room in &names {
            let base = self.redis.keys.scope(&room_scope(room));
            let stream = StreamKey::Room(room.as_str().into());
            pipe.cmd("ZCARD").arg(format!("{base}:z"));
            pipe.cmd("GET").arg(format!("{base}:n"));
            pipe.cmd("HGET").arg(self.redis.keys.meta(&stream)).arg("last");
            pipe.cmd("EXISTS").arg(format!("{base}:l"));
        }
        let flat: Vec<::redis::Value> =
            self.redis.call("rooms", pipe.query_async(&mut connection)).await?;
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
        let mut pipe = ::redis::pipe();
        for room in &due {
            pipe.cmd("ZCARD").arg(format!("{}:z", self.redis.keys.scope(&room_scope(room))));
        }
        let mut connection = self.redis.connection();
        let counts: Vec<u64> =
            self.redis.call("occupancy", pipe.query_async(&mut connection)).await?;
        let mut send = ::redis::pipe();
        for (room, count) in due.iter().zip(counts) {
            if count > 0 {
                let delivery = crate::hub::occupancy(room, count as usize);
                send.cmd("PUBLISH")
                    .arg(self.redis.keys.channel())
                    .arg(super::wire::encode(&delivery))
                    .ignore();
            }
        }
        if !send.is_empty() {
            self.redis.call("occupancy", send.query_async::<()>(&mut connection)).await?;
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
            let page = self.0.page(Some(room), cursor, limit).await?;
            Ok((page.count > 0).then_some(page))
        })
    }

    fn online(&self) -> EngineFuture<'_, Vec<(String, usize)>> {
        Box::pin(async move {
            let presence = &self.0;
            let key = format!("{}:u", presence.redis.keys.scope(ONLINE));
            let mut connection = presence.redis.connection();
            let mut users: Vec<(String, usize)> = presence
                .redis
                .call("online", ::redis::cmd("HGETALL").arg(key).query_async(&mut connection))
                .await?;
            users.retain(|(_, count)| *count > 0);
            users.sort_unstable();
            Ok(users)
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
            let first = presence.page(Some(room), None, presence.ack_members).await?;
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
