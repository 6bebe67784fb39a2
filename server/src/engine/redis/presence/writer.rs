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
use crate::engine::redis::keys::{ONLINE, room_scope};
use crate::engine::redis::scripts::{BURY, PRESENCE, RECONCILE, evalsha};
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

    /// Writes a batch of counts in one pipeline, then announces and answers.
    async fn write(&self, entries: HashMap<Entry, Vec<Waiter>>) -> Result<(), EngineError> {
        let entries: Vec<(Entry, Vec<Waiter>)> = entries.into_iter().collect();
        let mut counts = Vec::with_capacity(entries.len());
        let mut pipe = ::redis::pipe();
        for ((scope, user), waiters) in &entries {
            let count = self.count(scope, user);
            counts.push(count);
            let (mut keys, name) = self.scope_keys(scope);
            let (room, stream) = match scope {
                Scope::Online => (String::new(), StreamKey::Inbox(user.clone())),
                Scope::Room(room) => (room.to_string(), StreamKey::Room(room.clone())),
            };
            keys.push(self.redis.keys.meta(&stream));
            let mut cmd = evalsha(&PRESENCE, &keys);
            cmd.arg(&self.redis.node)
                .arg(&**user)
                .arg(count)
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
        let answers: Result<Vec<::redis::Value>, EngineError> = if self.stop.is_cancelled() {
            // The node is being buried: nothing of it is written any more.
            Err(EngineError::Unavailable("the node is stopping".to_owned()))
        } else {
            self.redis.run_scripts("presence", &[&PRESENCE], &pipe).await
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
                    .arg(crate::engine::redis::wire::encode(&delivery))
                    .ignore();
            }
        }
    }

    /// Rewrites all of this node's entries, scope by scope (one script call
    /// each, in one pipeline), as the writer last wrote them, and removes
    /// those of scopes it wrote nobody in: Redis lost them, or a write
    /// failed half way. What changed since is marked and written after,
    /// with its announcements, so the rewrite itself announces nothing.
    async fn rewrite_all(&self) -> Result<(), EngineError> {
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
        let mut scopes = self.written.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for name in listed {
            let scope = match name.strip_prefix("r:") {
                Some(room) => Scope::Room(room.into()),
                None => Scope::Online,
            };
            scopes.entry(scope).or_default();
        }
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
            pipe.add_command(cmd).ignore();
        }
        if self.stop.is_cancelled() {
            return Err(EngineError::Unavailable("the node is stopping".to_owned()));
        }
        self.redis.run_scripts::<()>("presence", &[&RECONCILE], &pipe).await?;
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
}
