//! The hub: this node's registry of connections, users and rooms, and the
//! local fan-out that delivers a serialized frame to the right connections.
//!
//! The hub knows nothing of other nodes: a [`Broker`](crate::broker::Broker)
//! carries deliveries between nodes and hands each node's hub the ones it must
//! deliver locally through [`Hub::deliver`]. One `std::sync::RwLock` guards
//! the registry; fan-out holds it for reading and never waits inside it,
//! because pushing to an [`Outbound`] never blocks.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;

use crate::broker::{Delivery, DeliveryKind, Target};
use crate::outbound::{Outbound, Pushed};
use crate::room::Room;
use crate::stats::Counters;

/// This node's connections, users and rooms.
#[derive(Debug, Default)]
pub struct Hub {
    registry: RwLock<Registry>,
    next_key: AtomicU64,
    pub(crate) counters: Counters,
}

#[derive(Debug, Default)]
struct Registry {
    sessions: HashMap<u64, SessionEntry>,
    users: HashMap<Arc<str>, Vec<u64>>,
    rooms: HashMap<Arc<str>, Room>,
}

#[derive(Debug)]
struct SessionEntry {
    outbound: Arc<Outbound>,
    rooms: HashSet<Arc<str>>,
}

/// What a join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// False when the connection was already in the room.
    pub(crate) newly: bool,
    /// True when this is the user's first connection in the room: announce it.
    pub(crate) announce: bool,
    /// The users present after the join.
    pub(crate) members: Vec<String>,
}

/// What a leave changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Left {
    /// False when the connection was not in the room.
    pub(crate) was_member: bool,
    /// True when the user's last connection left: announce it.
    pub(crate) announce: bool,
}

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomSummary {
    /// The room name.
    pub id: String,
    /// Distinct users in the room.
    pub members: usize,
    /// Connections in the room.
    pub connections: usize,
    /// Messages published to the room since it was created.
    pub messages: u64,
}

/// A room as `GET /api/rooms/{room}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomDetail {
    /// The room name.
    pub id: String,
    /// The users in the room, sorted.
    pub members: Vec<String>,
    /// Connections in the room.
    pub connections: usize,
    /// Messages published to the room since it was created.
    pub messages: u64,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    // A panic elsewhere while holding the lock leaves the registry consistent
    // (every mutation below is completed before anything can panic), so a
    // poisoned lock is still safe to use and the hub keeps serving.
    fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh hub-local key for a connection.
    pub(crate) fn next_key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a connection.
    pub(crate) fn register(&self, outbound: Arc<Outbound>) {
        let mut registry = self.write();
        registry.users.entry(outbound.user.clone()).or_default().push(outbound.key);
        registry.sessions.insert(outbound.key, SessionEntry { outbound, rooms: HashSet::new() });
        drop(registry);
        self.counters.connection_opened();
    }

    /// Removes a connection from the hub and from all its rooms; returns the
    /// rooms its user has now left entirely, so the caller can announce them.
    pub(crate) fn unregister(&self, key: u64) -> Vec<(Arc<str>, Arc<str>)> {
        let mut registry = self.write();
        let Some(entry) = registry.sessions.remove(&key) else {
            return Vec::new();
        };
        let user = entry.outbound.user.clone();
        if let Some(keys) = registry.users.get_mut(&user) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                registry.users.remove(&user);
            }
        }
        let mut left = Vec::new();
        for room_name in entry.rooms {
            if let Some(room) = registry.rooms.get_mut(&room_name) {
                if room.remove(key) == Some(true) {
                    left.push((room_name.clone(), user.clone()));
                }
                if room.is_empty() {
                    registry.rooms.remove(&room_name);
                }
            }
        }
        left
    }

    /// Puts a connection in a room, creating the room on first join;
    /// `sees_presence` false keeps presence frames from it.
    pub(crate) fn join(&self, key: u64, room_name: &str, sees_presence: bool) -> Option<Joined> {
        let mut registry = self.write();
        let registry = &mut *registry;
        let entry = registry.sessions.get_mut(&key)?;
        let room_name: Arc<str> = match registry.rooms.get_key_value(room_name) {
            Some((existing, _)) => existing.clone(),
            None => Arc::from(room_name),
        };
        let newly = entry.rooms.insert(room_name.clone());
        let room = registry.rooms.entry(room_name).or_default();
        let announce = newly && room.insert(entry.outbound.clone());
        if sees_presence {
            room.no_presence.remove(&key);
        } else {
            room.no_presence.insert(key);
        }
        Some(Joined { newly, announce, members: room.users() })
    }

    /// Takes a connection out of a room; an emptied room disappears.
    pub(crate) fn leave(&self, key: u64, room_name: &str) -> Left {
        let mut registry = self.write();
        let registry = &mut *registry;
        let not_member = Left { was_member: false, announce: false };
        let Some(entry) = registry.sessions.get_mut(&key) else {
            return not_member;
        };
        if !entry.rooms.remove(room_name) {
            return not_member;
        }
        let Some(room) = registry.rooms.get_mut(room_name) else {
            return not_member;
        };
        let announce = room.remove(key) == Some(true);
        if room.is_empty() {
            registry.rooms.remove(room_name);
        }
        Left { was_member: true, announce }
    }

    /// Whether a connection is in a room.
    pub(crate) fn is_member(&self, key: u64, room_name: &str) -> bool {
        self.read().sessions.get(&key).is_some_and(|entry| entry.rooms.contains(room_name))
    }

    /// How many rooms a connection is in.
    pub(crate) fn rooms_of(&self, key: u64) -> usize {
        self.read().sessions.get(&key).map_or(0, |entry| entry.rooms.len())
    }

    /// How many connections a user holds on this node.
    pub fn connections_of(&self, user: &str) -> usize {
        self.read().users.get(user).map_or(0, Vec::len)
    }

    /// Delivers a serialized frame to this node's connections that `target`
    /// names; returns how many connections it was queued to.
    ///
    /// A broker calls this for every delivery that reaches this node.
    pub fn deliver(&self, delivery: &Delivery) -> usize {
        let registry = self.read();
        let mut reached = 0;
        let mut push = |outbound: &Outbound| match outbound.push(delivery) {
            Pushed::Queued => reached += 1,
            Pushed::Overflowed => self.counters.slow_consumer(),
            Pushed::Gone => {}
        };
        match &delivery.target {
            Target::Room(name) => {
                if let Some(room) = registry.rooms.get(name) {
                    if delivery.kind == DeliveryKind::Message {
                        room.count_message();
                    }
                    if delivery.kind == DeliveryKind::Presence && !room.no_presence.is_empty() {
                        room.members
                            .iter()
                            .filter(|(key, _)| !room.no_presence.contains(key))
                            .for_each(|(_, o)| push(o));
                    } else {
                        room.members.values().for_each(|o| push(o));
                    }
                }
            }
            Target::User(user) => {
                for key in registry.users.get(user).into_iter().flatten() {
                    if let Some(entry) = registry.sessions.get(key) {
                        push(&entry.outbound);
                    }
                }
            }
            Target::All => registry.sessions.values().for_each(|e| push(&e.outbound)),
        }
        drop(registry);
        self.counters.delivered(reached as u64);
        reached
    }

    /// Asks every connection of `user` to close; returns how many there were.
    pub(crate) fn close_user(
        &self,
        user: &str,
        code: switchboard_protocol::CloseCode,
        reason: &str,
    ) -> usize {
        let registry = self.read();
        let mut closed = 0;
        for key in registry.users.get(user).into_iter().flatten() {
            if let Some(entry) = registry.sessions.get(key) {
                entry.outbound.close(code, reason);
                closed += 1;
            }
        }
        closed
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.read().sessions.len()
    }

    /// Distinct users connected to this node.
    pub fn user_count(&self) -> usize {
        self.read().users.len()
    }

    /// Rooms with members on this node.
    pub fn room_count(&self) -> usize {
        self.read().rooms.len()
    }

    /// The users connected to this node, sorted.
    pub fn online_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self.read().users.keys().map(|u| u.to_string()).collect();
        users.sort_unstable();
        users
    }

    /// Every room on this node, sorted by name.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        let registry = self.read();
        let mut rooms: Vec<RoomSummary> = registry
            .rooms
            .iter()
            .map(|(id, room)| RoomSummary {
                id: id.to_string(),
                members: room.user_count(),
                connections: room.members.len(),
                messages: room.messages(),
            })
            .collect();
        drop(registry);
        rooms.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        rooms
    }

    /// One room, if it exists on this node.
    pub fn room(&self, id: &str) -> Option<RoomDetail> {
        let registry = self.read();
        let room = registry.rooms.get(id)?;
        Some(RoomDetail {
            id: id.to_owned(),
            members: room.users(),
            connections: room.members.len(),
            messages: room.messages(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::{self, OutboundQueue};
    use axum::extract::ws::Utf8Bytes;

    fn connect(hub: &Hub, user: &str) -> (u64, OutboundQueue) {
        let key = hub.next_key();
        let (outbound, queue) = outbound::channel(key, user.into(), 16, 1 << 20);
        hub.register(Arc::new(outbound));
        (key, queue)
    }

    fn room_delivery(room: &str, text: &str) -> Delivery {
        Delivery {
            target: Target::Room(room.into()),
            frame: Utf8Bytes::from(text),
            kind: DeliveryKind::Message,
            offset: None,
        }
    }

    #[test]
    fn presence_is_per_user_not_per_connection() {
        let hub = Hub::new();
        let (tab1, _q1) = connect(&hub, "alice");
        let (tab2, _q2) = connect(&hub, "alice");
        assert!(hub.join(tab1, "general", true).unwrap().announce);
        let second = hub.join(tab2, "general", true).unwrap();
        assert!(second.newly && !second.announce, "a second tab announces nothing");
        assert_eq!(second.members, vec!["alice".to_owned()]);
        assert!(!hub.leave(tab1, "general").announce, "alice still has a tab in the room");
        assert!(hub.leave(tab2, "general").announce);
        assert_eq!(hub.room_count(), 0, "an empty room disappears");
    }

    #[test]
    fn rooms_deliver_to_members_only_and_count_messages() {
        let hub = Hub::new();
        let (a, mut qa) = connect(&hub, "alice");
        let (_b, mut qb) = connect(&hub, "bob");
        hub.join(a, "general", true).unwrap();
        assert_eq!(hub.deliver(&room_delivery("general", "hi")), 1);
        assert_eq!(qa.try_recv().unwrap().frame, "hi");
        assert!(qb.try_recv().is_none());
        assert_eq!(hub.room("general").unwrap().messages, 1);
        assert_eq!(hub.deliver(&room_delivery("nowhere", "hi")), 0);
    }

    #[test]
    fn unregister_reports_rooms_the_user_left() {
        let hub = Hub::new();
        let (a, _qa) = connect(&hub, "alice");
        hub.join(a, "x", true).unwrap();
        hub.join(a, "y", true).unwrap();
        let mut left: Vec<String> =
            hub.unregister(a).into_iter().map(|(r, _)| r.to_string()).collect();
        left.sort();
        assert_eq!(left, ["x", "y"]);
        assert_eq!((hub.connection_count(), hub.user_count(), hub.room_count()), (0, 0, 0));
    }
}
