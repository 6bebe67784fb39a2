//! One room's membership on this node: its connections and, for presence,
//! its users in byte order with how many connections each has in it.
//!
//! Users are kept sorted so a page of members starts where the previous one
//! ended (the cursor is the last user id of a page) at O(log n), and a join
//! lists the first few without touching the rest.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hub::outbound::Outbound;

/// A room as the hub sees it. It exists while it has members.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Connections in the room, by hub-local key.
    pub(crate) members: HashMap<u64, Arc<Outbound>>,
    /// Members that may not see presence (a `presence` permission refused them).
    pub(crate) no_presence: HashSet<u64>,
    /// Users in the room with their connection counts; presence is per user.
    users: BTreeMap<Arc<str>, usize>,
    /// Whether the room went past the large-room threshold; it stays large
    /// until it empties, so clients never have to guess which mode it is in.
    large: bool,
    /// Messages published to the room while it existed.
    messages: AtomicU64,
}

/// What adding or removing a connection changed for presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The user's connection count changed, not the set of users.
    None,
    /// The user arrived or left, in a room small enough to say so by name.
    Announce,
    /// The user arrived or left in a large room: its count is due.
    Count,
}

/// One page of a room's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MembersPage {
    /// Users in byte order.
    pub(crate) members: Vec<String>,
    /// Users in the room in all.
    pub(crate) count: usize,
    /// The last user of this page when more follow.
    pub(crate) cursor: Option<String>,
}

impl Room {
    /// Adds a connection; a room of more than `large_room` users becomes large.
    pub(crate) fn insert(&mut self, outbound: Arc<Outbound>, large_room: usize) -> Change {
        let user = outbound.user.clone();
        if self.members.insert(outbound.key, outbound).is_some() {
            return Change::None;
        }
        let count = self.users.entry(user).or_insert(0);
        *count += 1;
        if *count > 1 {
            return Change::None;
        }
        if self.users.len() > large_room {
            self.large = true;
        }
        if self.large { Change::Count } else { Change::Announce }
    }

    /// Removes a connection; `None` when it was not a member.
    pub(crate) fn remove(&mut self, key: u64) -> Option<Change> {
        let outbound = self.members.remove(&key)?;
        self.no_presence.remove(&key);
        let count = self.users.get_mut(&outbound.user)?;
        *count -= 1;
        if *count > 0 {
            return Some(Change::None);
        }
        self.users.remove(&outbound.user);
        Some(if self.large { Change::Count } else { Change::Announce })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn is_large(&self) -> bool {
        self.large
    }

    /// Up to `limit` users after `cursor` (from the first when `None`).
    pub(crate) fn page(&self, cursor: Option<&str>, limit: usize) -> MembersPage {
        let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        let mut members = Vec::with_capacity(limit.min(self.users.len()));
        let mut more = false;
        for user in self.users.range::<str, _>((start, Bound::Unbounded)).map(|(user, _)| user) {
            if members.len() == limit {
                more = true;
                break;
            }
            members.push(user.to_string());
        }
        let cursor = if more { members.last().cloned() } else { None };
        MembersPage { members, count: self.users.len(), cursor }
    }

    /// How many connections `user` has in the room.
    pub(crate) fn connections_of(&self, user: &str) -> usize {
        self.users.get(user).copied().unwrap_or(0)
    }

    pub(crate) fn user_count(&self) -> usize {
        self.users.len()
    }

    pub(crate) fn count_message(&self) {
        self.messages.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(key: u64, user: &str) -> Arc<Outbound> {
        Arc::new(crate::hub::outbound::channel(key, user.into(), 16, 1 << 16).0)
    }

    #[test]
    fn pages_follow_each_other_without_gaps_or_repeats() {
        let mut room = Room::default();
        for (key, user) in ["dave", "alice", "carol", "bob", "erin"].iter().enumerate() {
            room.insert(connection(key as u64, user), 100);
        }
        let first = room.page(None, 2);
        assert_eq!(first.members, ["alice", "bob"]);
        assert_eq!((first.count, first.cursor.as_deref()), (5, Some("bob")));
        let second = room.page(first.cursor.as_deref(), 2);
        assert_eq!(second.members, ["carol", "dave"]);
        let last = room.page(second.cursor.as_deref(), 2);
        assert_eq!((last.members, last.cursor), (vec!["erin".to_owned()], None));
        let exact = room.page(None, 5);
        assert_eq!((exact.members.len(), exact.cursor), (5, None), "no cursor past the end");
        // A cursor user that left meanwhile still marks a place.
        room.remove(1);
        assert_eq!(room.page(Some("alice"), 10).members, ["bob", "carol", "dave", "erin"]);
    }

    #[test]
    fn a_room_past_the_threshold_counts_instead_of_announcing_until_it_empties() {
        let mut room = Room::default();
        assert_eq!(room.insert(connection(1, "a"), 2), Change::Announce);
        assert_eq!(room.insert(connection(2, "a"), 2), Change::None, "a second connection");
        assert_eq!(room.insert(connection(3, "b"), 2), Change::Announce);
        assert_eq!(
            room.insert(connection(4, "c"), 2),
            Change::Count,
            "the third user is one too many"
        );
        assert!(room.is_large());
        assert_eq!(room.remove(4), Some(Change::Count));
        assert_eq!(room.remove(3), Some(Change::Count), "still large below the threshold");
        assert_eq!(room.remove(2), Some(Change::None));
        assert_eq!(room.remove(2), None, "not a member any more");
        assert_eq!(room.remove(1), Some(Change::Count));
        assert!(room.is_empty());
    }
}
