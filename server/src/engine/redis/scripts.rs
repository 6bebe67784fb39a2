//! The Lua scripts the hub runs in Redis. Each is one atomic step, so no
//! other node sees half of it; `redis::Script` sends each by its SHA and
//! loads it again after a Redis restart.
//!
//! Scripts name some keys they build from the prefix rather than in `KEYS`:
//! the hub supports a single Redis server (or a primary with replicas),
//! not Redis Cluster's hash slots.

use std::sync::LazyLock;

use ::redis::{Cmd, Script};

/// `SCRIPT LOAD` of `source`: run at the head of a pipeline of its calls,
/// so that none of them finds the script missing.
pub(crate) fn script_load(source: &str) -> Cmd {
    let mut cmd = ::redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(source);
    cmd
}

/// A call of `script` with `keys`, as a command to add to a pipeline
/// (redis-rs invokes scripts one at a time only); the caller adds the
/// arguments. Run through [`Redis::run_scripts`](super::Redis::run_scripts),
/// which loads the script when Redis lost it.
pub(crate) fn evalsha(script: &Script, keys: &[String]) -> Cmd {
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// Appends a message to a stream and publishes it, in one step.
///
/// KEYS: 1 meta hash, 2 history stream, 3 the presence hash (`…:u`) of the
/// target's scope, 4 the connection count (`…:n`) of the target's scope,
/// 5 the request id's key (any key when there is no id).
/// ARGV: 1 channel, 2 the frame without its closing `}`, 3 ts (ms),
/// 4 history size, 5 history TTL (s), 6 history max bytes, 7 metadata TTL
/// (s), 8 a fresh epoch (used if the stream is new), 9 the target
/// (`r:<room>` / `u:<user>`), 10 the user of an inbox ('' for a room),
/// 11 `1` when the request has an id, 12 the id window (ms).
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
pub(crate) static PUBLISH: LazyLock<Script> = LazyLock::new(|| Script::new(PUBLISH_LUA));

/// The source of [`PUBLISH`], for `SCRIPT LOAD` in a pipeline ([`script_load`]).
pub(crate) const PUBLISH_LUA: &str = r#"
local meta, stream = KEYS[1], KEYS[2]
local connections
if ARGV[10] ~= '' then
  connections = tonumber(redis.call('HGET', KEYS[3], ARGV[10]) or '0')
else
  connections = tonumber(redis.call('GET', KEYS[4]) or '0')
end
if ARGV[11] == '1' then
  local prior = redis.call('GET', KEYS[5])
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
if ARGV[11] == '1' then
  redis.call('SET', KEYS[5], 'o:' .. epoch .. ':' .. offset, 'PX', ARGV[12])
end
redis.call('PUBLISH', ARGV[1], 'm\n' .. ARGV[9] .. '\n' .. epoch .. '\n' .. offset .. '\n' .. frame)
return {epoch, offset, connections, 0}
"#;

/// Reads where a stream stands and part of its history.
///
/// KEYS: 1 meta hash, 2 history stream, 3 the presence hash (`…:u`) of the
/// stream's scope, 4 its connection count (`…:n`).
/// ARGV: 1 create the stream if missing (`1`/`0`), 2 a fresh epoch, 3
/// metadata TTL (s), 4 read after this offset (or `delivered`: after the
/// inbox's delivered mark), 5 at most this many entries, 6 mark everything
/// delivered (`1`/`0`), 7 the user of an inbox ('' for a room).
///
/// The metadata's expiry is renewed, or kept off while the stream has
/// followers (as in `PUBLISH`).
///
/// Returns `{epoch, last, delivered, entries}` (entries as `XRANGE` gives
/// them), or nil for a missing stream that was not to be created.
pub(crate) static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local meta, stream = KEYS[1], KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  if ARGV[1] ~= '1' then return false end
  epoch = ARGV[2]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'epoch', epoch, 'last', 0, 'bytes', 0, 'delivered', 0)
end
local followers
if ARGV[7] ~= '' then
  followers = tonumber(redis.call('HGET', KEYS[3], ARGV[7]) or '0')
else
  followers = tonumber(redis.call('GET', KEYS[4]) or '0')
end
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
    )
});

/// Moves an inbox's delivered mark forward (never back).
///
/// KEYS: 1 meta hash. ARGV: 1 the offset.
pub(crate) static MARK_DELIVERED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local delivered = redis.call('HGET', KEYS[1], 'delivered')
if delivered and tonumber(delivered) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'delivered', ARGV[1])
end
return 1
"#,
    )
});

/// Sets how many connections of a user this node has in a scope (online,
/// or a room), as the hub holds them: written as a number, not added as a
/// change, so a write repeated, or lost and written again later, lands on
/// the same state.
///
/// KEYS: 1 `…:z`, 2 `…:u`, 3 `…:c`, 4 `…:n`, 5 the node's scope set,
/// 6 the set of rooms with members, 7 the room's large flag (`…:l`, any
/// key for the online scope), 8 the metadata of the scope's stream (the
/// room's, or the user's inbox).
/// ARGV: 1 node, 2 user, 3 this node's connections of the user in the
/// scope, 4 the scope, 5 the room ('' for the online scope), 6 the large
/// room threshold (users), 7 the stream metadata's TTL (s) once nobody
/// follows it.
///
/// Returns `{change, users, large}`: change 1 when the user is now present
/// for the first time across the cluster, -1 when they left everywhere, 0
/// otherwise; `users` is the scope's user count; `large` is 1 while the
/// room is large (past the threshold since it last emptied).
pub(crate) static PRESENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local field = ARGV[1] .. '|' .. ARGV[2]
local old = tonumber(redis.call('HGET', KEYS[3], field) or '0')
local new = tonumber(ARGV[3])
local delta = new - old
local change = 0
if delta ~= 0 then
  if new <= 0 then redis.call('HDEL', KEYS[3], field)
  else redis.call('HSET', KEYS[3], field, new); redis.call('SADD', KEYS[5], ARGV[4]) end
  local total = redis.call('HINCRBY', KEYS[2], ARGV[2], delta)
  local connections = redis.call('INCRBY', KEYS[4], delta)
  if connections <= 0 then redis.call('DEL', KEYS[4]) end
  if total <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    if redis.call('ZREM', KEYS[1], ARGV[2]) == 1 then change = -1 end
  elseif redis.call('ZADD', KEYS[1], 'NX', 0, ARGV[2]) == 1 then
    change = 1
  end
  local followers = total
  if ARGV[5] ~= '' then followers = connections end
  if followers > 0 and followers - delta <= 0 then redis.call('PERSIST', KEYS[8])
  elseif followers <= 0 and followers - delta > 0 then redis.call('EXPIRE', KEYS[8], ARGV[7]) end
end
local users = redis.call('ZCARD', KEYS[1])
local large = 0
if ARGV[5] ~= '' then
  if users > 0 then redis.call('SADD', KEYS[6], ARGV[5]) else redis.call('SREM', KEYS[6], ARGV[5]) end
  if users == 0 then redis.call('DEL', KEYS[7])
  elseif users > tonumber(ARGV[6]) then redis.call('SET', KEYS[7], 1) end
  large = redis.call('EXISTS', KEYS[7])
end
return {change, users, large}
"#,
    )
});

/// Rewrites all of this node's entries in one scope: sets each listed
/// user's count and removes this node's entries of users not listed. Puts
/// back what Redis lost; announces nothing (the users did not come or go).
///
/// KEYS: 1 `…:z`, 2 `…:u`, 3 `…:c`, 4 `…:n`, 5 the node's scope set,
/// 6 the set of rooms with members, 7 the room's large flag.
/// ARGV: 1 node, 2 the scope, 3 the room ('' for the online scope), 4 the
/// large room threshold, 5 the key prefix, 6 the stream metadata's TTL (s)
/// once nobody follows it, then pairs of user and count.
///
/// Returns the scope's user count.
pub(crate) static RECONCILE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local node, scope, room, prefix = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local wanted = {}
for i = 7, #ARGV, 2 do wanted[ARGV[i]] = tonumber(ARGV[i + 1]) end
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
  if room == '' then
    local meta = prefix .. ':s:u:' .. user .. ':m'
    if total > 0 then redis.call('PERSIST', meta) else redis.call('EXPIRE', meta, ARGV[6]) end
  end
end
for user, count in pairs(wanted) do set(user, count) end
for user, _ in pairs(old) do
  if wanted[user] == nil then set(user, 0) end
end
if next(wanted) ~= nil then redis.call('SADD', KEYS[5], scope) end
local users = redis.call('ZCARD', KEYS[1])
if room ~= '' then
  local meta = prefix .. ':s:r:' .. room .. ':m'
  if tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then redis.call('PERSIST', meta)
  else redis.call('EXPIRE', meta, ARGV[6]) end
  if users > 0 then redis.call('SADD', KEYS[6], room) else redis.call('SREM', KEYS[6], room) end
  if users == 0 then redis.call('DEL', KEYS[7])
  elseif users > tonumber(ARGV[4]) then redis.call('SET', KEYS[7], 1) end
end
return users
"#,
    )
});

/// A node's heartbeat: records it (by Redis's clock, so nodes' clocks need
/// not agree) with its figures, and lists the nodes whose heartbeat is
/// older than the TTL.
///
/// KEYS: 1 nodes sorted set, 2 stats hash.
/// ARGV: 1 node, 2 its figures (JSON), 3 node TTL (ms).
///
/// Returns `{new, dead...}`: `new` is 1 when this node was not registered
/// (first beat, or Redis lost it, or others declared it dead).
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
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
    )
});

/// Removes a dead node's presence entries.
///
/// KEYS: 1 nodes sorted set, 2 stats hash, 3 the node's scope set, 4 the
/// set of rooms with members.
/// ARGV: 1 key prefix, 2 the dead node, 3 the stream metadata's TTL (s)
/// for streams nobody follows any more.
///
/// Returns the `(scope, user, large)` triples, flattened, of users who
/// were present only through that node and are now gone (`large`: 1 when
/// the room was large before).
pub(crate) static BURY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix, node = ARGV[1], ARGV[2]
local left = {}
for _, scope in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local base = prefix .. ':p:' .. scope
  local large = redis.call('EXISTS', base .. ':l')
  local cursor = '0'
  repeat
    local page = redis.call('HSCAN', base .. ':c', cursor, 'MATCH', node .. '|*', 'COUNT', 1000)
    cursor = page[1]
    local fields = page[2]
    for i = 1, #fields, 2 do
      local field, count = fields[i], tonumber(fields[i + 1])
      local user = string.sub(field, #node + 2)
      redis.call('HDEL', base .. ':c', field)
      if redis.call('INCRBY', base .. ':n', -count) <= 0 then redis.call('DEL', base .. ':n') end
      if redis.call('HINCRBY', base .. ':u', user, -count) <= 0 then
        redis.call('HDEL', base .. ':u', user)
        if scope == 'online' then redis.call('EXPIRE', prefix .. ':s:u:' .. user .. ':m', ARGV[3]) end
        if redis.call('ZREM', base .. ':z', user) == 1 then
          table.insert(left, scope)
          table.insert(left, user)
          table.insert(left, large)
        end
      end
    end
  until cursor == '0'
  if string.sub(scope, 1, 2) == 'r:' then
    local room = string.sub(scope, 3)
    if tonumber(redis.call('GET', base .. ':n') or '0') <= 0 then
      redis.call('EXPIRE', prefix .. ':s:r:' .. room .. ':m', ARGV[3])
    end
    if redis.call('ZCARD', base .. ':z') == 0 then
      redis.call('SREM', KEYS[4], room)
      redis.call('DEL', base .. ':l')
    end
  end
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[1], node)
redis.call('HDEL', KEYS[2], node)
return left
"#,
    )
});
