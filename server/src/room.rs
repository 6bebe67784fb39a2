//! One room's membership on this node: its connections and, for presence,
//! how many connections each user has in it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outbound::Outbound;

/// A room as the hub sees it. It exists while it has members.
#[derive(Debug, Default)]
pub(crate) struct Room {
    /// Connections in the room, by hub-local key.
    pub(crate) members: HashMap<u64, Arc<Outbound>>,
    /// Members that may not see presence (a `presence` permission refused them).
    pub(crate) no_presence: std::collections::HashSet<u64>,
    /// Users in the room with their connection counts; presence is per user.
    users: HashMap<Arc<str>, usize>,
    /// Messages published to the room while it existed.
    messages: AtomicU64,
}

impl Room {
    /// Adds a connection; returns true when it is its user's first in the room.
    pub(crate) fn insert(&mut self, outbound: Arc<Outbound>) -> bool {
        let user = outbound.user.clone();
        if self.members.insert(outbound.key, outbound).is_some() {
            return false;
        }
        let count = self.users.entry(user).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// Removes a connection; returns `None` when it was not a member, or
    /// whether it was its user's last connection in the room.
    pub(crate) fn remove(&mut self, key: u64) -> Option<bool> {
        let outbound = self.members.remove(&key)?;
        self.no_presence.remove(&key);
        let count = self.users.get_mut(&outbound.user)?;
        *count -= 1;
        if *count == 0 {
            self.users.remove(&outbound.user);
            Some(true)
        } else {
            Some(false)
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The users present, sorted.
    pub(crate) fn users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.users.keys().map(|u| u.to_string()).collect();
        users.sort_unstable();
        users
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
