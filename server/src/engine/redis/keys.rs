//! [`Keys`]: the name of everything the hub keeps in Redis, in one place.
//!
//! With `prefix = "switchboard"`:
//!
//! | key | type | what | expires |
//! |---|---|---|---|
//! | `switchboard:fan` | channel | every delivery, to every node | — |
//! | `switchboard:s:r:<room>:m` | hash | a room stream's `epoch`, `last` offset, `bytes` kept | never while anyone follows the stream; else the history TTL, at least 10 min after the last use |
//! | `switchboard:s:r:<room>:x` | stream | its history, entry id `<offset>-0`, fields `ts`, `f` (the frame) | history TTL after the last publish |
//! | `switchboard:s:u:<user>:m` / `:x` | hash / stream | a user's inbox, the same, plus `delivered` | the same |
//! | `switchboard:id:<n>:<user>:<id>` | string | a request id's stream position (`o:<epoch>:<offset>`); `<n>` is the user id's length in bytes, so no user and id can spell another's | `delivery.id_window_secs` |
//! | `switchboard:p:<scope>:z` | sorted set | the users present (scope `online`, or `r:<room>`), by name | when empty |
//! | `switchboard:p:<scope>:u` | hash | user → their connections in the scope, all nodes | when empty |
//! | `switchboard:p:<scope>:c` | hash | `<node>\|<user>` → connections on that node | when empty |
//! | `switchboard:p:<scope>:n` | string | connections in the scope, all nodes | when empty |
//! | `switchboard:p:r:<room>:l` | string | `1` while the room is large (past `rooms.large_room` users) | when the room empties |
//! | `switchboard:rooms` | set | rooms with members anywhere | when empty |
//! | `switchboard:catalog` | hash | managed room → its info and creation time (JSON) | when deleted |
//! | `switchboard:n:<node>` | set | the scopes a node has entries in | removed with the node |
//! | `switchboard:nodes` | sorted set | node → last heartbeat (Redis time, ms) | dead nodes removed by the survivors |
//! | `switchboard:stats` | hash | node → its figures (JSON) | removed with the node |

use crate::stream::StreamKey;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    /// The channel every delivery goes through.
    pub(crate) fn channel(&self) -> String {
        format!("{}:fan", self.prefix)
    }

    /// A stream's metadata hash.
    pub(crate) fn meta(&self, key: &StreamKey) -> String {
        format!("{}:s:{}:m", self.prefix, key.encode())
    }

    /// A stream's history.
    pub(crate) fn history(&self, key: &StreamKey) -> String {
        format!("{}:s:{}:x", self.prefix, key.encode())
    }

    /// A request id of a user. The user's length comes first: names may
    /// hold the separator, and `kay` with id `x:1` must not be `kay:x`
    /// with id `1`.
    pub(crate) fn request_id(&self, user: &str, id: &str) -> String {
        format!("{}:id:{}:{user}:{id}", self.prefix, user.len())
    }

    /// The base of a presence scope's keys (`…:z`, `…:u`, `…:c`, `…:n`).
    pub(crate) fn scope(&self, scope: &str) -> String {
        format!("{}:p:{scope}", self.prefix)
    }

    /// The scopes a node has presence entries in.
    pub(crate) fn node_scopes(&self, node: &str) -> String {
        format!("{}:n:{node}", self.prefix)
    }

    /// Nodes by last heartbeat.
    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Each node's figures.
    pub(crate) fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    /// Rooms with members anywhere.
    pub(crate) fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    /// The managed rooms created through the APIs.
    pub(crate) fn catalog(&self) -> String {
        format!("{}:catalog", self.prefix)
    }
}

/// The presence scope of a room. Unambiguous whatever the room's name: a
/// scope's keys add one letter after a last `:`, and the online scope has
/// no `r:`.
pub(crate) fn room_scope(room: &str) -> String {
    format!("r:{room}")
}

/// The presence scope of every connected user.
pub(crate) const ONLINE: &str = "online";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_holding_the_separator_cannot_spell_each_others_keys() {
        let keys = Keys::new("sb");
        assert_ne!(keys.request_id("kay", "x:1"), keys.request_id("kay:x", "1"));
        assert_ne!(keys.request_id("a", "b:c"), keys.request_id("a:b", "c"));
        let rooms = ["x", "x:z", "x:z:z", "online", "r:x"];
        let mut seen = std::collections::HashSet::new();
        for room in rooms {
            let base = keys.scope(&room_scope(room));
            for suffix in ["z", "u", "c", "n", "l"] {
                assert!(seen.insert(format!("{base}:{suffix}")), "{room} {suffix}");
            }
            let stream = StreamKey::Room(room.into());
            assert!(seen.insert(keys.meta(&stream)));
            assert!(seen.insert(keys.history(&stream)));
        }
        for suffix in ["z", "u", "c", "n"] {
            assert!(seen.insert(format!("{}:{suffix}", keys.scope(ONLINE))));
        }
        for user in ["x", "x:m"] {
            let inbox = StreamKey::Inbox(user.into());
            assert!(seen.insert(keys.meta(&inbox)));
            assert!(seen.insert(keys.history(&inbox)));
        }
    }
}
