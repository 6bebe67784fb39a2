//! The Lua scripts the hub runs in Redis. Each is one atomic step, so no
//! other node sees half of it. Every script touches the keys of one tag
//! only (a room's, a user's: see `keys.rs`), all named in `KEYS`, so each
//! runs whole on the one server that holds its tag, on one Redis or on
//! several (`shards.rs`).

use std::sync::OnceLock;

use ::redis::{Cmd, Script};

/// A script: its source, and its SHA1 as Redis knows it.
pub(crate) struct Lua {
    source: &'static str,
    hash: OnceLock<String>,
}

impl Lua {
    const fn new(source: &'static str) -> Lua {
        Lua { source, hash: OnceLock::new() }
    }

    fn hash(&self) -> &str {
        self.hash.get_or_init(|| Script::new(self.source).get_hash().to_owned())
    }

    /// `EVALSHA` of the script on `keys`; the caller adds the arguments.
    /// Run through a [`Batch`](super::shards::Batch), which loads the
    /// script first.
    pub(crate) fn call(&self, keys: &[String]) -> Cmd {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(self.hash()).arg(keys.len()).arg(keys);
        cmd
    }

    /// `SCRIPT LOAD` of the script.
    pub(crate) fn load(&self) -> Cmd {
        let mut cmd = ::redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(self.source);
        cmd
    }
}

/// Appends a message to a stream and publishes it, in one step.
///
/// KEYS: 1 meta hash, 2 history stream, 3 the connection count (`…:n`) of
/// the stream's followers (the room's, or the user's), 4 the request id's
/// key (the meta hash when there is no id).
/// ARGV: 1 channel, 2 the frame without its closing `}`, 3 ts (ms),
/// 4 history size, 5 history TTL (s), 6 history max bytes, 7 metadata TTL
/// (s), 8 a fresh epoch (used if the stream is new), 9 the target
/// (`r:<room>` / `u:<user>`), 10 `1` when the request has an id, 11 the id
/// window (ms), 12 the command that publishes on the channel (`PUBLISH`,
/// or `SPUBLISH` on a Redis Cluster, where the channel is of the stream's
/// slot).
///
/// With an id, the script records `o:<epoch>:<offset>` under it, and a
/// request whose id already holds such a record is not appended again:
/// its first offset comes back. So a retry after an answer lost on the way
/// (a timeout after Redis did the work) takes effect once.
///
/// The metadata keeps no expiry while the target has connections anywhere
/// (the stream's followers): its epoch and offsets must outlive any quiet
/// spell of theirs. A history whose key expired starts its byte count over.
///
/// Returns `{epoch, offset, connections, repeated}`: `connections` is how
/// many connections the target has across the cluster; `repeated` is 1 for
/// a request carried out before.
pub(crate) static PUBLISH: Lua = Lua::new(
    r#"
local meta, stream = KEYS[1], KEYS[2]
local connections = tonumber(redis.call('GET', KEYS[3]) or '0')
if ARGV[10] == '1' then
  local prior = redis.call('GET', KEYS[4])
  if prior and string.sub(prior, 1, 2) == 'o:' then
    local split = string.find(prior, ':', 3, true)
    return {string.sub(prior, 3, split - 1), tonumber(string.sub(prior, split + 1)), connections, 1}
  end
end
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[8]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0, 'bytes', 0, 'delivered', 0)
end
local offset = redis.call('HINCRBY', meta, 'last', 1)
local frame = ARGV[2] .. ',"offset":' .. offset .. '}'
local size = tonumber(ARGV[4])
if size > 0 then
  if redis.call('EXISTS', stream) == 0 then redis.call('HSET', meta, 'bytes', 0) end
  redis.call('XADD', stream, offset .. '-0', 'ts', ARGV[3], 'f', frame)
  local bytes = redis.call('HINCRBY', meta, 'bytes', #frame)
  local max_bytes = tonumber(ARGV[6])
  local len = redis.call('XLEN', stream)
  while len > 0 and (len > size or bytes > max_bytes) do
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', stream, first[1])
    bytes = redis.call('HINCRBY', meta, 'bytes', -#first[2][4])
    len = len - 1
  end
  redis.call('EXPIRE', stream, math.max(tonumber(ARGV[5]), 1))
end
if connections > 0 then redis.call('PERSIST', meta) else redis.call('EXPIRE', meta, ARGV[7]) end
if ARGV[10] == '1' then
  redis.call('SET', KEYS[4], 'o:' .. epoch .. ':' .. offset, 'PX', ARGV[11])
end
redis.call(ARGV[12], ARGV[1], 'm\n' .. ARGV[9] .. '\n' .. epoch .. '\n' .. offset .. '\n' .. frame)
return {epoch, offset, connections, 0}
"#,
);

/// Reads where a stream stands and part of its history.
///
/// KEYS: 1 meta hash, 2 history stream, 3 the connection count (`…:n`) of
/// the stream's followers.
/// ARGV: 1 create the stream if missing (`1`/`0`), 2 a fresh epoch, 3
/// metadata TTL (s), 4 read after this offset (or `delivered`: after the
/// inbox's delivered mark), 5 at most this many entries, 6 mark everything
/// delivered (`1`/`0`).
///
/// The metadata's expiry is renewed, or kept off while the stream has
/// followers (as in `PUBLISH`).
///
/// Returns `{epoch, last, delivered, entries}` (entries as `XRANGE` gives
/// them), or nil for a missing stream that was not to be created.
pub(crate) static READ: Lua = Lua::new(
    r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  if ARGV[1] ~= '1' then return false end
  epoch = ARGV[2]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0, 'bytes', 0, 'delivered', 0)
end
local followers = tonumber(redis.call('GET', KEYS[3]) or '0')
if followers > 0 then redis.call('PERSIST', meta) else redis.call('EXPIRE', meta, ARGV[3]) end
local last = redis.call('HGET', meta, 'last')
local delivered = redis.call('HGET', meta, 'delivered') or '0'
local after = ARGV[4]
if after == 'delivered' then after = delivered end
local entries = {}
if tonumber(ARGV[5]) > 0 and tonumber(after) < tonumber(last) then
  entries = redis.call('XRANGE', stream, '(' .. after .. '-0', last .. '-0', 'COUNT', ARGV[5])
end
if ARGV[6] == '1' then redis.call('HSET', meta, 'delivered', last) end
return {epoch, tonumber(last), tonumber(delivered), entries}
"#,
);

/// Moves an inbox's delivered mark forward (never back).
///
/// KEYS: 1 meta hash. ARGV: 1 the offset.
pub(crate) static MARK_DELIVERED: Lua = Lua::new(
    r#"
local delivered = redis.call('HGET', KEYS[1], 'delivered')
if delivered and tonumber(delivered) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'delivered', ARGV[1])
end
return 1
"#,
);

/// Sets how many connections of a user this node has in a room, as the
/// hub holds them: written as a number, not added as a change, so a write
/// repeated, or lost and written again later, lands on the same state.
///
/// KEYS: 1 `…:z`, 2 `…:u`, 3 `…:c`, 4 `…:n`, 5 the room's large flag
/// (`…:l`), 6 the room stream's metadata.
/// ARGV: 1 node, 2 user, 3 this node's connections of the user in the
/// room, 4 the large room threshold (users), 5 the stream metadata's TTL
/// (s) once nobody follows it.
///
/// Returns `{change, users, large}`: change 1 when the user is now in the
/// room for the first time across the cluster, -1 when they left it
/// everywhere, 0 otherwise; `users` is the room's user count; `large` is 1
/// while the room is large (past the threshold since it last emptied).
pub(crate) static ROOM_PRESENCE: Lua = Lua::new(
    r#"
local field = ARGV[1] .. '|' .. ARGV[2]
local old = tonumber(redis.call('HGET', KEYS[3], field) or '0')
local new = tonumber(ARGV[3])
local delta = new - old
local change = 0
if delta ~= 0 then
  if new <= 0 then redis.call('HDEL', KEYS[3], field) else redis.call('HSET', KEYS[3], field, new) end
  local total = redis.call('HINCRBY', KEYS[2], ARGV[2], delta)
  local connections = redis.call('INCRBY', KEYS[4], delta)
  if connections <= 0 then redis.call('DEL', KEYS[4]) end
  if total <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then change = -1 end
  elseif redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[2]) == 1 then
    change = 1
  end
  if connections > 0 and connections - delta <= 0 then redis.call('PERSIST', KEYS[6])
  elseif connections <= 0 and connections - delta > 0 then redis.call('EXPIRE', KEYS[6], ARGV[5]) end
end
local users = redis.call('ZCARD', KEYS[1])
if users == 0 then redis.call('DEL', KEYS[5])
elseif users > tonumber(ARGV[4]) then redis.call('SET', KEYS[5], 1) end
return {change, users, redis.call('EXISTS', KEYS[5])}
"#,
);

/// Sets how many connections of a user this node has, as the hub holds
/// them (as [`ROOM_PRESENCE`] does for a room). Also how a node's count of
/// a user is rewritten, and removed when the node is gone (count 0).
///
/// KEYS: 1 the user's connections by node (`…:c`), 2 their connections
/// on all nodes (`…:n`), 3 the user's inbox metadata.
/// ARGV: 1 node, 2 this node's connections of the user, 3 the inbox
/// metadata's TTL (s) once the user is offline.
///
/// Returns `{change, connections}`: change 1 when the user is now online
/// for the first time across the cluster, -1 when they are offline
/// everywhere, 0 otherwise.
pub(crate) static ONLINE: Lua = Lua::new(
    r#"
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local new = tonumber(ARGV[2])
local delta = new - old
if delta == 0 then return {0, tonumber(redis.call('GET', KEYS[2]) or '0')} end
if new <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], new) end
local connections = redis.call('INCRBY', KEYS[2], delta)
local change = 0
if connections <= 0 then
  redis.call('DEL', KEYS[2])
  if connections - delta > 0 then
    change = -1
    redis.call('EXPIRE', KEYS[3], ARGV[3])
  end
elseif connections - delta <= 0 then
  change = 1
  redis.call('PERSIST', KEYS[3])
end
return {change, math.max(connections, 0)}
"#,
);

/// Rewrites all of this node's entries in one room: sets each listed
/// user's count and removes this node's entries of users not listed. Puts
/// back what Redis lost; announces nothing (the users did not come or go).
///
/// KEYS: as [`ROOM_PRESENCE`]'s.
/// ARGV: 1 node, 2 the large room threshold, 3 the stream metadata's TTL
/// (s) once nobody follows it, then pairs of user and count.
///
/// Returns the room's user count.
pub(crate) static RECONCILE: Lua = Lua::new(
    r#"
local node = ARGV[1]
local wanted = {}
for i = 4, #ARGV, 2 do wanted[ARGV[i]] = tonumber(ARGV[i + 1]) end
local old = {}
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[3], cursor, 'MATCH', node .. '|*', 'COUNT', 1000)
  cursor = page[1]
  for i = 1, #page[2], 2 do
    old[string.sub(page[2][i], #node + 2)] = tonumber(page[2][i + 1])
  end
until cursor == '0'
local function set(user, new)
  local delta = new - (old[user] or 0)
  if delta == 0 then return end
  local field = node .. '|' .. user
  if new <= 0 then redis.call('HDEL', KEYS[3], field) else redis.call('HSET', KEYS[3], field, new) end
  local total = redis.call('HINCRBY', KEYS[2], user, delta)
  if redis.call('INCRBY', KEYS[4], delta) <= 0 then redis.call('DEL', KEYS[4]) end
  if total <= 0 then
    redis.call('HDEL', KEYS[2], user)
    redis.call('ZREM', KEYS[1], user)
  else
    redis.call('ZADD', KEYS[1], 'NX', 0, user)
  end
end
for user, count in pairs(wanted) do set(user, count) end
for user, _ in pairs(old) do
  if wanted[user] == nil then set(user, 0) end
end
local users = redis.call('ZCARD', KEYS[1])
if tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then redis.call('PERSIST', KEYS[6])
else redis.call('EXPIRE', KEYS[6], ARGV[3]) end
if users == 0 then redis.call('DEL', KEYS[5])
elseif users > tonumber(ARGV[2]) then redis.call('SET', KEYS[5], 1) end
return users
"#,
);

/// A node's heartbeat: records it (by Redis's clock, so nodes' clocks need
/// not agree) with its figures, and lists the nodes whose heartbeat is
/// older than the TTL.
///
/// KEYS: 1 nodes sorted set, 2 stats hash.
/// ARGV: 1 node, 2 its figures (JSON), 3 node TTL (ms).
///
/// Returns `{new, dead...}`: `new` is 1 when this node was not registered
/// (first beat, or Redis lost it, or others declared it dead).
pub(crate) static HEARTBEAT: Lua = Lua::new(
    r#"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local new = redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local result = {new}
for _, node in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))) do
  table.insert(result, node)
end
return result
"#,
);

/// Removes a node's entries in one room (the node is gone).
///
/// KEYS: as [`ROOM_PRESENCE`]'s.
/// ARGV: 1 the node, 2 the stream metadata's TTL (s) once nobody follows
/// it.
///
/// Returns `{large, users...}`: whether the room was large, and the users
/// who were in it only through that node and are now gone.
pub(crate) static BURY_ROOM: Lua = Lua::new(
    r#"
local node = ARGV[1]
local result = {redis.call('EXISTS', KEYS[5])}
local cursor = '0'
repeat
  local page = redis.call('HSCAN', KEYS[3], cursor, 'MATCH', node .. '|*', 'COUNT', 1000)
  cursor = page[1]
  local fields = page[2]
  for i = 1, #fields, 2 do
    local field, count = fields[i], tonumber(fields[i + 1])
    local user = string.sub(field, #node + 2)
    redis.call('HDEL', KEYS[3], field)
    if redis.call('INCRBY', KEYS[4], -count) <= 0 then redis.call('DEL', KEYS[4]) end
    if redis.call('HINCRBY', KEYS[2], user, -count) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      if redis.call('ZREM', KEYS[1], user) == 1 then table.insert(result, user) end
    end
  end
until cursor == '0'
if tonumber(redis.call('GET', KEYS[4]) or '0') <= 0 then redis.call('EXPIRE', KEYS[6], ARGV[2]) end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[5]) end
return result
"#,
);
