//! The presence writer: marks, then one pipeline per batch that sets each
//! marked user's count as the hub holds it, and the announcements of what
//! the cluster saw change; the rewrite of all of this node's entries; the
//! burial of a node's entries.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use switchboard_protocol::PresenceAction;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Entry, MAX_RETRY, Marked, Outcome, RedisPresence, Scope, Waiter};
use crate::engine::EngineError;
use crate::engine::redis::broker::meta_ttl_secs;
use crate::engine::redis::keys::{self, ALL_CONNECTIONS};
use crate::engine::redis::scripts::{BURY_ROOM, ONLINE, RECONCILE, ROOM_PRESENCE};
use crate::engine::redis::shards::Batch;
use crate::hub::room::MembersPage;
use crate::stream::StreamKey;

/// A user who was present only through a node that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gone {
    /// The room; `None` for the online scope.
    pub(crate) room: Option<String>,
    pub(crate) user: String,
    /// Whether the room was large (its leaves are counted, not named).
    pub(crate) large: bool,
}

impl RedisPresence {
    fn marked(&self) -> std::sync::MutexGuard<'_, Marked> {
        self.marked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a user's count in a scope for the writer; `waiter` hears the
    /// outcome.
    pub(super) fn mark(&self, scope: Scope, user: &Arc<str>, waiter: Option<Waiter>) {
        let mut marked = self.marked();
        if marked.stopped {
            if let Some(waiter) = waiter {
                let stopped = "the node is stopping: presence not counted";
                let _ = waiter.send(Err(EngineError::Unavailable(stopped.to_owned())));
            }
            return;
        }
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
    pub(super) async fn written(
        &self,
        scope: Scope,
        user: &Arc<str>,
    ) -> Result<Outcome, EngineError> {
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
            if self.stop.is_cancelled() {
                break;
            }
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
            let written = if rewrite { self.rewrite_all().await } else { Ok(()) };
            let written = match written {
                Ok(()) => self.write(entries).await,
                // Keep the marks: written after the rewrite that is still due.
                Err(err) => Err(self.retry(entries, err)),
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
        // Whoever still waits hears that the count will not be written,
        // and so does whoever marks from now on.
        let mut marked = self.marked();
        marked.stopped = true;
        marked.entries.clear();
        self.idle.store(true, Ordering::Relaxed);
        drop(marked);
        self.settled.notify_waiters();
        self.finished.cancel();
    }

    /// Ends the writer and waits (at most `within`) until it has: after
    /// this, nothing of this node is written to Redis any more.
    pub(crate) async fn stop(&self, within: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(within, self.finished.cancelled()).await;
    }

    /// This node's connections of `user` in `scope`, as the hub holds them now.
    fn count(&self, scope: &Scope, user: &str) -> usize {
        match scope {
            Scope::Online => self.hub.connections_of(user),
            Scope::Room(room) => self.hub.user_connections_in(room, user),
        }
    }

    /// The keys of a room's scope, as its scripts name them: `…:z`,
    /// `…:u`, `…:c`, `…:n`, `…:l`, the room stream's metadata.
    fn room_keys(&self, room: &str) -> Vec<String> {
        let keys = &self.redis.keys;
        let scope = keys::Scope::Room(room);
        let mut names: Vec<String> =
            ["z", "u", "c", "n", "l"].iter().map(|suffix| keys.scope(&scope, suffix)).collect();
        names.push(keys.meta(&StreamKey::Room(room.into())));
        names
    }

    /// The keys of a user's scope, as [`ONLINE`] names them: `…:c`, `…:n`,
    /// the inbox's metadata.
    fn user_keys(&self, user: &str) -> Vec<String> {
        let keys = &self.redis.keys;
        let scope = keys::Scope::User(user);
        vec![
            keys.scope(&scope, "c"),
            keys.scope(&scope, "n"),
            keys.meta(&StreamKey::Inbox(user.into())),
        ]
    }

    /// Adds the call that sets this node's `count` of `user` in `scope`.
    fn add_count(&self, batch: &mut Batch, scope: &Scope, user: &str, count: usize) {
        let redis = &self.redis;
        match scope {
            Scope::Online => {
                let ttl = meta_ttl_secs(self.rules.of(&StreamKey::Inbox(user.into())));
                batch
                    .script(redis, &ONLINE, &self.user_keys(user))
                    .arg(&redis.node)
                    .arg(count)
                    .arg(ttl);
            }
            Scope::Room(room) => {
                let ttl = meta_ttl_secs(self.rules.of(&StreamKey::Room(room.clone())));
                batch
                    .script(redis, &ROOM_PRESENCE, &self.room_keys(room))
                    .arg(&redis.node)
                    .arg(user)
                    .arg(count)
                    .arg(self.large_room)
                    .arg(ttl);
            }
        }
    }

    /// Adds the index entries of `scopes` (this node's connections in
    /// each), and of all its connections, to `batch`.
    fn add_index(&self, batch: &mut Batch, scopes: &[(String, usize)]) {
        let redis = &self.redis;
        let index = redis.keys.node_index(&redis.node);
        let mut hset = ::redis::cmd("HSET");
        hset.arg(&index).arg(ALL_CONNECTIONS).arg(self.hub.connection_count());
        for (name, count) in scopes {
            hset.arg(name).arg(*count);
        }
        batch.keyed(redis, &index, hset).ignore();
    }

    /// Removes `names` from this node's index.
    async fn unindex(&self, names: &[String]) -> Result<(), EngineError> {
        if names.is_empty() {
            return Ok(());
        }
        let redis = &self.redis;
        let index = redis.keys.node_index(&redis.node);
        let mut batch = Batch::new();
        batch.keyed(redis, &index, ::redis::cmd("HDEL").arg(&index).arg(names).to_owned()).ignore();
        batch.query::<()>(redis, "presence").await
    }

    /// Marks `entries` again for the next attempt, after a rewrite of what
    /// was written before; who waited hears `err` now (a join is refused
    /// and undone). Returns `err`.
    fn retry(
        &self,
        entries: impl IntoIterator<Item = (Entry, Vec<Waiter>)>,
        err: EngineError,
    ) -> EngineError {
        let mut marked = self.marked();
        marked.rewrite = true;
        for (entry, waiters) in entries {
            for waiter in waiters {
                let _ = waiter.send(Err(err.clone()));
            }
            marked.entries.entry(entry).or_default();
        }
        err
    }

    /// Writes a batch of counts in one pipeline per shard, then announces
    /// and answers.
    ///
    /// This node's index lists every scope it has entries in, so that
    /// whoever buries the node finds them: a scope new to the node is
    /// indexed before its entry is written, and one it no longer has
    /// entries in is unindexed after (on several shards, the two are
    /// separate requests that keep no order between them otherwise).
    async fn write(&self, entries: HashMap<Entry, Vec<Waiter>>) -> Result<(), EngineError> {
        let entries: Vec<(Entry, Vec<Waiter>)> = entries.into_iter().collect();
        let counts: Vec<usize> =
            entries.iter().map(|((scope, user), _)| self.count(scope, user)).collect();
        // What this node holds of each scope touched, once written.
        let indexed = {
            let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            let mut after: HashMap<&Scope, HashMap<&str, usize>> = HashMap::new();
            for (((scope, user), _), count) in entries.iter().zip(&counts) {
                if *scope == Scope::Online {
                    continue;
                }
                let users = after.entry(scope).or_insert_with(|| {
                    written
                        .get(scope)
                        .map(|users| users.iter().map(|(u, c)| (&**u, *c)).collect())
                        .unwrap_or_default()
                });
                users.insert(user, *count);
            }
            let mut indexed = Vec::new();
            let mut new = Vec::new();
            let mut emptied = Vec::new();
            for (scope, users) in after {
                match scope {
                    // Each user is a scope of their own: only those of the
                    // batch change (not every user of the node).
                    Scope::Online => {}
                    Scope::Room(room) => {
                        let name = keys::Scope::Room(room).name();
                        let total: usize = users.values().sum();
                        match (total, written.contains_key(scope)) {
                            (0, true) => emptied.push(name),
                            (0, false) => {}
                            (_, false) => new.push((name, total)),
                            (_, true) => indexed.push((name, total)),
                        }
                    }
                }
            }
            for (((scope, user), _), count) in entries.iter().zip(&counts) {
                if *scope != Scope::Online {
                    continue;
                }
                let name = keys::Scope::User(user).name();
                let before = written.get(scope).is_some_and(|w| w.contains_key(user));
                match (*count, before) {
                    (0, true) => emptied.push(name),
                    (0, false) => {}
                    (count, false) => new.push((name, count)),
                    (count, true) => indexed.push((name, count)),
                }
            }
            (new, indexed, emptied)
        };
        let (new, indexed, emptied) = indexed;
        if !new.is_empty() {
            let mut first = Batch::new();
            self.add_index(&mut first, &new);
            if self.stop.is_cancelled() {
                let err = EngineError::Unavailable("the node is stopping".to_owned());
                return Err(self.retry(entries, err));
            }
            if let Err(err) = first.query::<()>(&self.redis, "presence").await {
                return Err(self.retry(entries, err));
            }
        }
        let mut batch = Batch::new();
        for (((scope, user), waiters), count) in entries.iter().zip(&counts) {
            self.add_count(&mut batch, scope, user, *count);
            // A join's ack lists the room's first users: read in the same
            // round trip.
            if let (Scope::Room(room), false) = (scope, waiters.is_empty()) {
                let z = self.redis.keys.scope(&keys::Scope::Room(room), "z");
                let mut range = ::redis::cmd("ZRANGE");
                range.arg(&z).arg("-").arg("+").arg("BYLEX").arg("LIMIT").arg(0);
                range.arg(self.ack_members + 1);
                batch.keyed(&self.redis, &z, range);
            }
        }
        self.add_index(&mut batch, &indexed);
        let answers: Result<Vec<::redis::Value>, EngineError> = if self.stop.is_cancelled() {
            // The node is being buried: nothing of it is written any more.
            Err(EngineError::Unavailable("the node is stopping".to_owned()))
        } else {
            batch.query(&self.redis, "presence").await
        };
        let answers = match answers {
            Ok(answers) => answers,
            // The pipeline may have run all the same (its answer lost to a
            // timeout): what was written before is put back first, so that
            // the retry sees, and announces, the real change.
            Err(err) => return Err(self.retry(entries, err)),
        };
        {
            // Written: what a rewrite puts back if Redis loses it.
            let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
            for (((scope, user), _), count) in entries.iter().zip(&counts) {
                let users = written.entry(scope.clone()).or_default();
                if *count == 0 {
                    users.remove(user);
                } else {
                    users.insert(user.clone(), *count);
                }
            }
            written.retain(|_, users| !users.is_empty());
        }
        if let Err(err) = self.unindex(&emptied).await {
            // Left in the index, it would count a user who left: the
            // rewrite due now removes it.
            tracing::debug!(%err, "presence index not trimmed; rewriting");
            self.rewrite();
        }
        let mut answers = answers.into_iter();
        let mut announce = Batch::new();
        for ((scope, user), waiters) in entries {
            let Some(script) = answers.next() else { break };
            let (change, users, large): (i64, u64, u8) = match scope {
                Scope::Online => ::redis::from_redis_value::<(i64, u64)>(script)
                    .map(|(change, connections)| (change, connections, 0))
                    .unwrap_or((0, 0, 0)),
                Scope::Room(_) => ::redis::from_redis_value(script).unwrap_or((0, 0, 0)),
            };
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
            if let Err(err) = announce.query::<()>(&self.redis, "announce").await {
                tracing::warn!(%err, "presence changes not announced");
            }
        }
        Ok(())
    }

    /// What an outcome tells the others: a join or leave by name, a large
    /// room's count due, an online or offline event.
    fn announced(&self, scope: &Scope, user: &str, outcome: &Outcome, batch: &mut Batch) {
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
                let payload = crate::engine::redis::wire::encode(&delivery);
                // Through the room's shard, in order with its messages.
                let meta = self.redis.keys.meta(&StreamKey::Room(room.clone()));
                batch.publish(&self.redis, &meta, payload);
            }
        }
    }

    /// Rewrites all of this node's entries, scope by scope (one script call
    /// each, one pipeline per shard), as the writer last wrote them, and
    /// removes those of scopes it wrote nobody in: Redis lost them, or a
    /// write failed half way. What changed since is marked and written
    /// after, with its announcements, so the rewrite itself announces
    /// nothing.
    async fn rewrite_all(&self) -> Result<(), EngineError> {
        let redis = &self.redis;
        let index = redis.keys.node_index(&redis.node);
        let mut read = Batch::new();
        read.keyed(redis, &index, ::redis::cmd("HKEYS").arg(&index).to_owned());
        let (listed,): (Vec<String>,) = read.query(redis, "presence").await?;
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut rooms: HashMap<Arc<str>, HashMap<Arc<str>, usize>> = HashMap::new();
        let mut users: HashMap<Arc<str>, usize> = HashMap::new();
        for (scope, counts) in &written {
            match scope {
                Scope::Online => users.extend(counts.iter().map(|(u, c)| (u.clone(), *c))),
                Scope::Room(room) => {
                    rooms.insert(room.clone(), counts.clone());
                }
            }
        }
        let mut stale = Vec::new();
        let mut entries = Vec::new();
        for name in &listed {
            match keys::Scope::parse(name) {
                Some(keys::Scope::Room(room)) if !rooms.contains_key(room) => {
                    rooms.insert(room.into(), HashMap::new());
                    stale.push(name.clone());
                }
                Some(keys::Scope::User(user)) if !users.contains_key(user) => {
                    users.insert(user.into(), 0);
                    stale.push(name.clone());
                }
                _ => {}
            }
        }
        // Indexed first: a burial must find every scope written below.
        for (room, counts) in &rooms {
            let total: usize = counts.values().sum();
            if total > 0 {
                entries.push((keys::Scope::Room(room).name(), total));
            }
        }
        for (user, count) in &users {
            if *count > 0 {
                entries.push((keys::Scope::User(user).name(), *count));
            }
        }
        let mut first = Batch::new();
        self.add_index(&mut first, &entries);
        let unfollowed_ttl = meta_ttl_secs(&self.rules.longest());
        let mut batch = Batch::new();
        for (room, counts) in &rooms {
            let cmd = batch
                .script(redis, &RECONCILE, &self.room_keys(room))
                .arg(&redis.node)
                .arg(self.large_room)
                .arg(unfollowed_ttl);
            for (user, count) in counts {
                cmd.arg(&**user).arg(*count);
            }
            batch.ignore();
        }
        for (user, count) in &users {
            self.add_count(&mut batch, &Scope::Online, user, *count);
            batch.ignore();
        }
        if self.stop.is_cancelled() {
            return Err(EngineError::Unavailable("the node is stopping".to_owned()));
        }
        first.query::<()>(redis, "presence").await?;
        batch.query::<()>(redis, "presence").await?;
        self.unindex(&stale).await?;
        tracing::info!(
            rooms = rooms.len(),
            users = users.len(),
            "this node's presence rewritten in redis"
        );
        Ok(())
    }

    /// Removes a node's entries (a dead node's, or this one's as it
    /// leaves), scope by scope as its index lists them, then the node;
    /// returns who was present only through it: the room (`None`: online),
    /// the user, and whether the room was large. Several nodes may bury
    /// the same node at once: each entry is removed once, and announced by
    /// whoever removed it.
    pub(crate) async fn bury(&self, node: &str) -> Result<Vec<Gone>, EngineError> {
        let redis = &self.redis;
        let keys = &redis.keys;
        let index = keys.node_index(node);
        let mut read = Batch::new();
        read.keyed(redis, &index, ::redis::cmd("HKEYS").arg(&index).to_owned());
        let (listed,): (Vec<String>,) = read.query(redis, "bury").await?;
        let unfollowed_ttl = meta_ttl_secs(&self.rules.longest());
        let mut scopes = Vec::new();
        let mut batch = Batch::new();
        for name in &listed {
            match keys::Scope::parse(name) {
                Some(keys::Scope::Room(room)) => {
                    batch
                        .script(redis, &BURY_ROOM, &self.room_keys(room))
                        .arg(node)
                        .arg(unfollowed_ttl);
                    scopes.push(keys::Scope::Room(room));
                }
                Some(keys::Scope::User(user)) => {
                    batch
                        .script(redis, &ONLINE, &self.user_keys(user))
                        .arg(node)
                        .arg(0)
                        .arg(unfollowed_ttl);
                    scopes.push(keys::Scope::User(user));
                }
                None => {}
            }
        }
        let answers: Vec<::redis::Value> = batch.query(redis, "bury").await?;
        let mut gone = Vec::new();
        // Each answer is its scope's, in order (the index's other field,
        // `#`, has no call).
        for (scope, answer) in scopes.into_iter().zip(answers) {
            match scope {
                keys::Scope::Room(room) => {
                    let left: Vec<::redis::Value> =
                        ::redis::from_redis_value(answer).unwrap_or_default();
                    let mut left = left.into_iter();
                    let large = left
                        .next()
                        .and_then(|v| ::redis::from_redis_value::<i64>(v).ok())
                        .is_some_and(|large| large == 1);
                    for user in left.filter_map(|v| ::redis::from_redis_value::<String>(v).ok()) {
                        gone.push(Gone { room: Some(room.to_owned()), user, large });
                    }
                }
                keys::Scope::User(user) => {
                    let (change, _): (i64, u64) =
                        ::redis::from_redis_value(answer).unwrap_or((0, 0));
                    if change == -1 {
                        gone.push(Gone { room: None, user: user.to_owned(), large: false });
                    }
                }
            }
        }
        let mut end = Batch::new();
        end.keyed(redis, &index, ::redis::cmd("DEL").arg(&index).to_owned()).ignore();
        let nodes = keys.nodes();
        end.keyed(redis, &nodes, ::redis::cmd("ZREM").arg(&nodes).arg(node).to_owned()).ignore();
        let stats = keys.stats();
        end.keyed(redis, &stats, ::redis::cmd("HDEL").arg(&stats).arg(node).to_owned()).ignore();
        end.query::<()>(redis, "bury").await?;
        Ok(gone)
    }

    /// Announces the leaves of users who were present only through a node
    /// that is gone.
    pub(crate) async fn announce_gone(&self, left: Vec<Gone>) {
        let mut batch = Batch::new();
        for Gone { room, user, large } in left {
            match room {
                Some(room) => {
                    let room: Arc<str> = room.into();
                    let outcome = Outcome { change: -1, users: 0, large, page: None };
                    self.announced(&Scope::Room(room), &user, &outcome, &mut batch);
                }
                None => {
                    if let Some(events) = &self.events {
                        events.presence(&user, false);
                    }
                }
            }
        }
        if !batch.is_empty() {
            if let Err(err) = batch.query::<()>(&self.redis, "announce").await {
                tracing::warn!(%err, "leaves of a dead node's users not announced");
            }
        }
    }
}
