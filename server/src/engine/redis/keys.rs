//! [`Keys`]: the name of everything the hub keeps in Redis, in one place.
//!
//! Every key names its tag between braces (`shards.rs`): a room's keys all
//! share `{r:<room>}`, a user's `{u:<user>}`, a node's index `{n:<node>}`,
//! and what every node reads `{home}`. A script touches one tag's keys, so
//! the layout is the same on one Redis, on several, and on Redis Cluster's
//! hash slots. With `prefix = "switchboard"`:
//!
//! | key | type | what | expires |
//! |---|---|---|---|
//! | `switchboard:fan` | channel | deliveries, on every shard; every node listens to every shard's | — |
//! | `switchboard:{c<n>}:fan` | channel | on a Redis Cluster, the deliveries of one hash slot (the tag `c<n>` is one of that slot; `cluster.rs` names them) | — |
//! | `switchboard:{r:<room>}:m` | hash | the room stream's `epoch`, `last` offset, `bytes` kept | never while anyone follows the stream; else the history TTL, at least 10 min after the last use |
//! | `switchboard:{r:<room>}:x` | stream | its history, entry id `<offset>-0`, fields `ts`, `f` (the frame) | history TTL after the last publish |
//! | `switchboard:{r:<room>}:i:<digest>` | string | a request id's position in the room's stream (`o:<epoch>:<offset>`); the digest is the first 128 bits of SHA-256 of the user id's length, the user id and the request id, so no user and id can spell another's, or another key | `delivery.id_window_secs` |
//! | `switchboard:{r:<room>}:z` | sorted set | the users in the room, by name | when empty |
//! | `switchboard:{r:<room>}:u` | hash | user → their connections in the room, all nodes | when empty |
//! | `switchboard:{r:<room>}:c` | hash | `<node>\|<user>` → connections on that node | when empty |
//! | `switchboard:{r:<room>}:n` | string | connections in the room, all nodes | when empty |
//! | `switchboard:{r:<room>}:l` | string | `1` while the room is large (past `rooms.large_room` users) | when the room empties |
//! | `switchboard:{u:<user>}:m` / `:x` / `:i:…` | hash / stream / string | a user's inbox, the same, plus `delivered`; request ids of sends to the user | the same |
//! | `switchboard:{u:<user>}:c` | hash | node → the user's connections on that node | when empty |
//! | `switchboard:{u:<user>}:n` | string | the user's connections, all nodes | when empty |
//! | `switchboard:{n:<node>}:s` | hash | a node's index: scope (`r:<room>`, `u:<user>`) → its connections there; `#` → all its connections | removed with the node |
//! | `switchboard:{home}:catalog` | hash | managed room → its info and creation time (JSON) | when deleted |
//! | `switchboard:{home}:nodes` | sorted set | node → last heartbeat (Redis time, ms) | dead nodes removed by the survivors |
//! | `switchboard:{home}:stats` | hash | node → its figures (JSON) | removed with the node |
//!
//! Who is online, and which rooms have members, is read from the live
//! nodes' indexes: each is written by its node alone, so it needs no
//! agreement between nodes, and a dead node's goes with it.

use crate::stream::StreamKey;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub(crate) prefix: String,
}

/// The field of a node's index that holds all its connections.
pub(crate) const ALL_CONNECTIONS: &str = "#";

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys { prefix: prefix.to_owned() }
    }

    fn tagged(&self, tag: &str, rest: &str) -> String {
        format!("{}:{{{tag}}}:{rest}", self.prefix)
    }

    /// The channel deliveries go through, on each shard.
    pub(crate) fn channel(&self) -> String {
        format!("{}:fan", self.prefix)
    }

    /// A stream's metadata hash.
    pub(crate) fn meta(&self, key: &StreamKey) -> String {
        self.tagged(&key.encode(), "m")
    }

    /// A stream's history.
    pub(crate) fn history(&self, key: &StreamKey) -> String {
        self.tagged(&key.encode(), "x")
    }

    /// A request id of `user` in `key`'s stream, as a digest: a user and
    /// an id may hold any character, and spelled out they could make the
    /// name of another room's key (`a}:m`).
    pub(crate) fn request_id(&self, key: &StreamKey, user: &str, id: &str) -> String {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update((user.len() as u64).to_be_bytes());
        digest.update(user.as_bytes());
        digest.update(id.as_bytes());
        let hex: String =
            digest.finalize()[..16].iter().map(|byte| format!("{byte:02x}")).collect();
        self.tagged(&key.encode(), &format!("i:{hex}"))
    }

    /// A presence scope's key with `suffix`: a room's (`z`, `u`, `c`, `n`,
    /// `l`), or a user's (`c`, `n`).
    pub(crate) fn scope(&self, scope: &Scope<'_>, suffix: &str) -> String {
        self.tagged(&scope.name(), suffix)
    }

    /// The connection count of the followers of `key`'s stream: the room's
    /// connections, or the user's.
    pub(crate) fn followers(&self, key: &StreamKey) -> String {
        self.tagged(&key.encode(), "n")
    }

    /// A node's index of its presence entries.
    pub(crate) fn node_index(&self, node: &str) -> String {
        self.tagged(&format!("n:{node}"), "s")
    }

    /// Nodes by last heartbeat.
    pub(crate) fn nodes(&self) -> String {
        self.tagged(super::shards::HOME, "nodes")
    }

    /// Each node's figures.
    pub(crate) fn stats(&self) -> String {
        self.tagged(super::shards::HOME, "stats")
    }

    /// The managed rooms created through the APIs.
    pub(crate) fn catalog(&self) -> String {
        self.tagged(super::shards::HOME, "catalog")
    }
}

/// A presence scope: a room's members, or a user's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope<'a> {
    Room(&'a str),
    User(&'a str),
}

impl Scope<'_> {
    /// Its name in a node's index, and its tag: the same as its stream's.
    pub(crate) fn name(&self) -> String {
        match self {
            Scope::Room(room) => StreamKey::Room((*room).into()).encode(),
            Scope::User(user) => StreamKey::Inbox((*user).into()).encode(),
        }
    }

    /// The scope a name of a node's index names.
    pub(crate) fn parse(name: &str) -> Option<Scope<'_>> {
        match name.split_once(':')? {
            ("r", room) => Some(Scope::Room(room)),
            ("u", user) => Some(Scope::User(user)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::shards::tag_of;
    use super::*;

    #[test]
    fn names_holding_the_separator_cannot_spell_each_others_keys() {
        let keys = Keys::new("sb");
        let room = StreamKey::Room("r".into());
        assert_ne!(keys.request_id(&room, "kay", "x:1"), keys.request_id(&room, "kay:x", "1"));
        assert_ne!(keys.request_id(&room, "a", "b:c"), keys.request_id(&room, "a:b", "c"));
        let mut seen = std::collections::HashSet::new();
        for name in ["x", "x:z", "x:z:z", "online", "r:x", "a}b", "{c"] {
            let scope = Scope::Room(name);
            for suffix in ["z", "u", "c", "n", "l"] {
                assert!(seen.insert(keys.scope(&scope, suffix)), "{name} {suffix}");
            }
            let stream = StreamKey::Room(name.into());
            assert!(seen.insert(keys.meta(&stream)));
            assert!(seen.insert(keys.history(&stream)));
            let user = Scope::User(name);
            for suffix in ["c", "n"] {
                assert!(seen.insert(keys.scope(&user, suffix)), "{name} {suffix}");
            }
            let inbox = StreamKey::Inbox(name.into());
            assert!(seen.insert(keys.meta(&inbox)));
            assert!(seen.insert(keys.history(&inbox)));
            assert_eq!(Scope::parse(&scope.name()), Some(scope));
            assert_eq!(Scope::parse(&user.name()), Some(user));
        }
    }

    #[test]
    fn a_streams_keys_and_its_followers_share_one_tag() {
        let keys = Keys::new("sb");
        for name in ["lobby", "a}b", "{c}", "x:y"] {
            for (stream, scope) in [
                (StreamKey::Room(name.into()), Scope::Room(name)),
                (StreamKey::Inbox(name.into()), Scope::User(name)),
            ] {
                let tag = tag_of(&keys.meta(&stream)).to_owned();
                for key in [
                    keys.history(&stream),
                    keys.request_id(&stream, "u", "1"),
                    keys.followers(&stream),
                    keys.scope(&scope, "c"),
                    keys.scope(&scope, "n"),
                    keys.scope(&scope, "z"),
                ] {
                    assert_eq!(tag_of(&key), tag, "{key}");
                }
            }
        }
        assert_eq!(tag_of(&keys.nodes()), "home");
        assert_eq!(tag_of(&keys.catalog()), "home");
        assert_eq!(tag_of(&keys.node_index("abc")), "n:abc");
    }
}
