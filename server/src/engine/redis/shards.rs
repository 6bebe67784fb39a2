//! Where each key lives, and requests that span several Redis servers.
//!
//! A deployment runs on one Redis (`redis.url`) or on several independent
//! ones (`redis.shards`). Every key the hub keeps names a *tag*, the part
//! between its first `{` and the next `}` (as Redis Cluster reads it): a
//! room's keys share `r:<room>`, a user's `u:<user>`, a node's index
//! `n:<node>`, and what every node reads (the node registry, the figures,
//! the catalog) `home`. Every script touches the keys of one tag only, so
//! one tag is always on one server.
//!
//! A tag's shard is chosen by jump consistent hashing (Lamping and Veach,
//! 2014) of its 64-bit XXH3 hash: the same on every node whatever it was
//! built with, and when a shard is added at the end of the list, only the
//! tags that move to the new shard move (about 1 in n+1), none between the
//! old ones. `home` is always the first shard, so adding shards never moves
//! the registry.
//!
//! On a Redis Cluster (`cluster.rs`), the cluster places the tags by hash
//! slot itself.
//!
//! [`Batch`] is a pipeline over the shards (or slots): its commands go to
//! their shards' connections as one pipeline each, all at once, and the
//! answers come back in the order the commands were added. Commands to one
//! shard keep their order; commands to different shards have none between
//! them.

use ::redis::aio::ConnectionManager;
use ::redis::{Cmd, FromRedisValue, Value};
use tokio_util::sync::CancellationToken;

use super::scripts::Lua;
use super::{Redis, Servers};
use crate::engine::EngineError;

/// The tag of the keys every node reads: always on the first shard.
pub(crate) const HOME: &str = "home";

/// One Redis server of the deployment.
pub(crate) struct Shard {
    pub(crate) client: ::redis::Client,
    pub(crate) commands: ConnectionManager,
    /// Cancelled once this node's subscription to the shard is in place.
    pub(crate) subscribed: CancellationToken,
}

/// The tag of `key`: between its first `{` and the next `}`, or the whole
/// key when it has none (Redis Cluster's rule).
pub(crate) fn tag_of(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The shard of `tag` among `shards`.
pub(crate) fn shard_of(tag: &str, shards: usize) -> usize {
    if tag == HOME || shards <= 1 {
        return 0;
    }
    jump(xxhash_rust::xxh3::xxh3_64(tag.as_bytes()), shards)
}

/// Jump consistent hash: a bucket in `0..buckets` for `key`, such that
/// going from n to n+1 buckets moves a key only to the new bucket.
fn jump(mut key: u64, buckets: usize) -> usize {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as usize
}

/// Commands for several shards, answered in the order they were added.
#[derive(Default)]
pub(crate) struct Batch {
    /// The commands of each route (shard, or slot), in the order routes
    /// first appear.
    routes: Vec<Route>,
    /// For each command, its route and whether its answer is dropped.
    commands: Vec<(usize, bool)>,
    /// Set when a script was given keys of several tags: the batch fails.
    mixed: Option<String>,
}

/// The commands of one route.
struct Route {
    route: usize,
    commands: Vec<(Cmd, bool)>,
    /// The scripts its commands call, and how many calls there are.
    scripts: Vec<&'static Lua>,
    calls: usize,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch::default()
    }

    /// The commands of `route`, made if new.
    fn route(&mut self, route: usize) -> usize {
        // Batches span few routes: a search beats a map.
        match self.routes.iter().position(|r| r.route == route) {
            Some(at) => at,
            None => {
                let new = Route { route, commands: Vec::new(), scripts: Vec::new(), calls: 0 };
                self.routes.push(new);
                self.routes.len() - 1
            }
        }
    }

    /// Adds `cmd` for the shard of `key`'s tag.
    pub(crate) fn keyed(&mut self, redis: &Redis, key: &str, cmd: Cmd) -> &mut Batch {
        let at = self.route(redis.route_of_key(key));
        self.routes[at].commands.push((cmd, false));
        self.commands.push((at, false));
        self
    }

    /// Adds the publication of `payload` through the channel of `key`'s
    /// tag (its answer ignored): the nodes that follow the tag's streams
    /// hear it in order with their messages.
    pub(crate) fn publish(&mut self, redis: &Redis, key: &str, payload: String) -> &mut Batch {
        let (channel, command) = redis.channel_near(key);
        let mut cmd = ::redis::cmd(command);
        cmd.arg(channel).arg(payload);
        self.keyed(redis, key, cmd).ignore()
    }

    /// Adds a call of `script` on the keys' shard (every key of a script
    /// must share one tag), to which the caller adds the arguments.
    ///
    /// A route with several script calls loads its scripts at the head of
    /// its pipeline: a Redis that restarted knows none, and a pipeline
    /// where some calls fail and run again later would reorder them. A
    /// route with one call sends it alone and, when Redis lacks the
    /// script, runs again with it loaded, whole: what goes beside a single
    /// call must be safe to repeat (reads, counts set as numbers).
    pub(crate) fn script(
        &mut self,
        redis: &Redis,
        script: &'static Lua,
        keys: &[String],
    ) -> &mut Cmd {
        let tag = keys.first().map_or("", |key| tag_of(key));
        if keys.iter().any(|key| tag_of(key) != tag) {
            self.mixed = Some(format!("a script's keys span several tags: {keys:?}"));
        }
        let at = self.route(keys.first().map_or(0, |key| redis.route_of_key(key)));
        let route = &mut self.routes[at];
        if !route.scripts.iter().any(|known| std::ptr::eq(*known, script)) {
            route.scripts.push(script);
        }
        route.calls += 1;
        route.commands.push((script.call(keys), false));
        self.commands.push((at, false));
        &mut self.routes[at].commands.last_mut().expect("just pushed").0
    }

    /// Drops the answer of the last command added.
    pub(crate) fn ignore(&mut self) -> &mut Batch {
        if let Some((at, ignored)) = self.commands.last_mut() {
            *ignored = true;
            if let Some(last) = self.routes[*at].commands.last_mut() {
                last.1 = true;
            }
        }
        self
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Runs the batch: one pipeline per shard, all at once, within
    /// `redis.timeout_ms`. `T` reads the answers that are not ignored, in
    /// the order their commands were added (as an array).
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        redis: &Redis,
        what: &'static str,
    ) -> Result<T, EngineError> {
        if let Some(mixed) = &self.mixed {
            return Err(EngineError::Failed(format!("redis: {what}: {mixed}")));
        }
        let runs = self.routes.iter().map(|route| route.run(redis, false));
        let answered = match self.routes.len() {
            // The common case on one Redis: no join.
            1 => vec![redis.call(what, runs.into_iter().next().expect("one")).await?],
            _ => redis.call(what, futures::future::try_join_all(runs)).await?,
        };
        let mut by_route: Vec<std::vec::IntoIter<Value>> =
            answered.into_iter().map(Vec::into_iter).collect();
        let mut answers = Vec::with_capacity(self.commands.len());
        for (at, ignored) in &self.commands {
            if !ignored {
                let answer = by_route[*at].next().ok_or_else(|| {
                    EngineError::Failed(format!("redis: {what}: fewer answers than commands"))
                })?;
                answers.push(answer);
            }
        }
        ::redis::from_redis_value(Value::Array(answers))
            .map_err(|err| EngineError::Failed(format!("redis: {what}: unexpected answer: {err}")))
    }
}

impl Batch {
    /// Runs the batch as [`Batch::query`] does, but answers each command
    /// that is not ignored on its own: a shard that fails, or a command
    /// Redis refuses, fails only its commands; the others' answers stand
    /// (a publication stored on a healthy shard is not reported failed,
    /// so its retry without an id does not append it twice).
    pub(crate) async fn query_each(
        &self,
        redis: &Redis,
        what: &'static str,
    ) -> Result<Vec<Result<Value, EngineError>>, EngineError> {
        if let Some(mixed) = &self.mixed {
            return Err(EngineError::Failed(format!("redis: {what}: {mixed}")));
        }
        let runs = self.routes.iter().map(|route| redis.call(what, route.run(redis, true)));
        let mut by_route: Vec<Result<std::vec::IntoIter<Value>, EngineError>> =
            futures::future::join_all(runs)
                .await
                .into_iter()
                .map(|answers| answers.map(Vec::into_iter))
                .collect();
        let mut answers = Vec::with_capacity(self.commands.len());
        for (at, ignored) in &self.commands {
            if *ignored {
                continue;
            }
            answers.push(match &mut by_route[*at] {
                Err(err) => Err(err.clone()),
                Ok(values) => match values.next() {
                    Some(Value::ServerError(err)) => {
                        Err(EngineError::from(::redis::RedisError::from(err)))
                    }
                    Some(value) => Ok(value),
                    None => Err(EngineError::Failed(format!(
                        "redis: {what}: fewer answers than commands"
                    ))),
                },
            });
        }
        Ok(answers)
    }
}

impl Route {
    /// Its pipeline, the scripts loaded first when `load`; with `each`,
    /// a command's error is its answer, not the pipeline's.
    fn pipeline(&self, load: bool, each: bool) -> ::redis::Pipeline {
        let mut pipe = ::redis::pipe();
        if each {
            pipe.ignore_errors();
        }
        if load {
            for script in &self.scripts {
                pipe.add_command(script.load()).ignore();
            }
        }
        for (cmd, ignored) in &self.commands {
            pipe.add_command(cmd.clone());
            if *ignored {
                pipe.ignore();
            }
        }
        pipe
    }

    /// Runs its pipeline on its server (see [`Batch::script`] for when the
    /// scripts are loaded).
    async fn run(&self, redis: &Redis, each: bool) -> ::redis::RedisResult<Vec<Value>> {
        let no_script = ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript);
        let answer = self.send(redis, &self.pipeline(self.calls > 1, each)).await;
        let lacked = match &answer {
            Err(err) => err.kind() == no_script,
            Ok(values) => values.iter().any(|value| {
                matches!(value, Value::ServerError(err)
                    if err.kind() == Some(::redis::ServerErrorKind::NoScript))
            }),
        };
        if lacked && self.calls == 1 {
            return self.send(redis, &self.pipeline(true, each)).await;
        }
        answer
    }

    async fn send(
        &self,
        redis: &Redis,
        pipe: &::redis::Pipeline,
    ) -> ::redis::RedisResult<Vec<Value>> {
        match &redis.servers {
            Servers::Independent(shards) => {
                let mut connection = shards[self.route].commands.clone();
                pipe.query_async(&mut connection).await
            }
            Servers::Cluster(link) => {
                let mut connection = link.connection().await?;
                pipe.query_async(&mut connection).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_read_as_redis_cluster_reads_it() {
        assert_eq!(tag_of("sb:{r:lobby}:m"), "r:lobby");
        assert_eq!(tag_of("sb:{r:a}b}:m"), "r:a");
        assert_eq!(tag_of("sb:{}:m"), "sb:{}:m");
        assert_eq!(tag_of("sb:fan"), "sb:fan");
    }

    #[test]
    fn adding_a_shard_moves_keys_only_to_the_new_one() {
        let tags: Vec<String> = (0..10_000).map(|i| format!("r:room-{i}")).collect();
        for n in 1..6 {
            let mut moved: usize = 0;
            for tag in &tags {
                let (before, after) = (shard_of(tag, n), shard_of(tag, n + 1));
                assert!(before < n && after <= n);
                if before != after {
                    assert_eq!(after, n, "{tag} moved between old shards");
                    moved += 1;
                }
            }
            // About 1 in n+1 moves.
            let expected = tags.len() / (n + 1);
            assert!(moved.abs_diff(expected) < expected / 5, "{n}: {moved} moved");
        }
        assert_eq!(shard_of(HOME, 5), 0);
    }

    #[test]
    fn shards_are_chosen_the_same_way_everywhere() {
        // Fixed answers: a node built with another compiler or on another
        // platform must route every tag the same way.
        let chosen: Vec<usize> = (0..12).map(|i| shard_of(&format!("r:room-{i}"), 3)).collect();
        assert_eq!(chosen, [0, 1, 1, 0, 2, 2, 1, 0, 2, 1, 1, 0]);
    }
}
