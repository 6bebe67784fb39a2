//! The hub: this node's registry of connections, users and rooms, and the
//! local fan-out that delivers a serialized frame to the right connections.
//!
//! The hub knows nothing of other nodes, of streams' history or of
//! presence beyond this node: the engine (`engine/`) hands it the
//! deliveries this node must make through [`Hub::deliver`], and reads its
//! membership. One `std::sync::RwLock` guards the registry; fan-out holds
//! it for reading and never waits inside it, because pushing to an
//! [`Outbound`] never blocks.
//!
//! Presence scales with the room: a join lists at most a fixed number of
//! members, and a room past the large-room threshold stops announcing each
//! join and leave; the hub notes it as due for an `occupancy` count instead,
//! which [`Hub::send_occupancy`] sends on the maintenance tick.

pub(crate) mod connections;
mod delivery;
pub(crate) mod latency;
mod listing;
pub(crate) mod outbound;
pub(crate) mod rates;
pub(crate) mod room;
pub(crate) mod stats;
pub(crate) mod wakes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use delivery::{Delivery, DeliveryKind, Target};
pub(crate) use delivery::{JoinOrder, occupancy, presence_frame};
pub use listing::{ManagedFields, RoomDetail, RoomSummary};

use crate::hub::outbound::{Outbound, Pushed};
use crate::hub::room::{Change, MembersPage, Room};
use crate::hub::stats::Counters;
use crate::stream::StreamKey;

/// This node's connections, users and rooms.
#[derive(Debug, Default)]
pub struct Hub {
    registry: RwLock<Registry>,
    next_key: AtomicU64,
    policy: PresencePolicy,
    pub(crate) counters: Counters,
}

/// How presence scales with a room's size (from `[rooms]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PresencePolicy {
    /// At most this many users in a join ack.
    pub(crate) ack_members: usize,
    /// Above this many users a room is large.
    pub(crate) large_room: usize,
}

impl Default for PresencePolicy {
    fn default() -> Self {
        let rooms = crate::config::RoomsConfig::default();
        PresencePolicy { ack_members: rooms.join_ack_members, large_room: rooms.large_room }
    }
}

#[derive(Debug, Default)]
struct Registry {
    sessions: HashMap<u64, SessionEntry>,
    /// Connections by session id, in session-id order: for orders
    /// addressed to one session and for the connection listing's pages.
    by_session: BTreeMap<uuid::Uuid, u64>,
    users: HashMap<Arc<str>, Vec<u64>>,
    rooms: HashMap<Arc<str>, Room>,
    /// Large rooms whose user count changed since the last `occupancy`.
    occupancy_due: HashSet<Arc<str>>,
}

#[derive(Debug)]
struct SessionEntry {
    outbound: Arc<Outbound>,
    rooms: HashSet<Arc<str>>,
    info: Box<connections::ConnectionInfo>,
}

/// What a join changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// False when the connection was already in the room.
    pub(crate) newly: bool,
    /// True when this is the user's first connection in the room: announce it.
    pub(crate) announce: bool,
    /// The first users present after the join (at most the ack's cap), the
    /// room's user count, and where the rest starts.
    pub(crate) members: MembersPage,
    /// Whether the room is large (presence by `occupancy` counts).
    pub(crate) large: bool,
}

/// What a leave changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Left {
    /// False when the connection was not in the room.
    pub(crate) was_member: bool,
    /// True when the user's last connection in the room left (in a room
    /// small enough to say so by name): announce it.
    pub(crate) announce: bool,
    /// True when nobody on this node is in the room any more.
    pub(crate) emptied: bool,
}

/// What removing a connection changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Departure {
    /// Every room the connection was in, with what leaving it changed.
    pub(crate) rooms: Vec<(Arc<str>, Left)>,
    /// True when it was its user's last connection on this node.
    pub(crate) last_of_user: bool,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub::default()
    }

    /// An empty hub whose presence follows `policy`.
    pub(crate) fn with_policy(policy: PresencePolicy) -> Hub {
        Hub { policy, ..Hub::default() }
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

    /// Adds a connection; true when it is its user's first on this node.
    pub(crate) fn register(
        &self,
        outbound: Arc<Outbound>,
        info: connections::ConnectionInfo,
    ) -> bool {
        let mut registry = self.write();
        let keys = registry.users.entry(outbound.user.clone()).or_default();
        keys.push(outbound.key);
        let first = keys.len() == 1;
        registry.by_session.insert(info.session, outbound.key);
        let entry = SessionEntry { outbound, rooms: HashSet::new(), info: Box::new(info) };
        registry.sessions.insert(entry.outbound.key, entry);
        drop(registry);
        self.counters.connection_opened();
        first
    }

    /// Removes a connection from the hub and from all its rooms; returns
    /// what that changed, for presence to announce.
    pub(crate) fn unregister(&self, key: u64) -> Departure {
        let mut registry = self.write();
        let Some(entry) = registry.sessions.remove(&key) else {
            return Departure::default();
        };
        registry.by_session.remove(&entry.info.session);
        let user = entry.outbound.user.clone();
        let mut last_of_user = false;
        if let Some(keys) = registry.users.get_mut(&user) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                registry.users.remove(&user);
                last_of_user = true;
            }
        }
        let mut rooms = Vec::with_capacity(entry.rooms.len());
        let registry = &mut *registry;
        for room_name in entry.rooms {
            if let Some(room) = registry.rooms.get_mut(&room_name) {
                let change = room.remove(key);
                if change == Some(Change::Count) {
                    registry.occupancy_due.insert(room_name.clone());
                }
                let emptied = room.is_empty();
                if emptied {
                    registry.rooms.remove(&room_name);
                }
                let left =
                    Left { was_member: true, announce: change == Some(Change::Announce), emptied };
                rooms.push((room_name, left));
            }
        }
        Departure { rooms, last_of_user }
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
        let room = registry.rooms.entry(room_name.clone()).or_default();
        let change = if newly {
            room.insert(entry.outbound.clone(), self.policy.large_room)
        } else {
            Change::None
        };
        if sees_presence {
            room.no_presence.remove(&key);
        } else {
            room.no_presence.insert(key);
        }
        let joined = Joined {
            newly,
            announce: change == Change::Announce,
            members: room.page(None, self.policy.ack_members),
            large: room.is_large(),
        };
        if change == Change::Count {
            registry.occupancy_due.insert(room_name);
        }
        Some(joined)
    }

    /// Takes a connection out of a room; an emptied room disappears.
    pub(crate) fn leave(&self, key: u64, room_name: &str) -> Left {
        let mut registry = self.write();
        let registry = &mut *registry;
        let not_member = Left::default();
        let Some(entry) = registry.sessions.get_mut(&key) else {
            return not_member;
        };
        if !entry.rooms.remove(room_name) {
            return not_member;
        }
        let Some(room) = registry.rooms.get_mut(room_name) else {
            return not_member;
        };
        let change = room.remove(key);
        if change == Some(Change::Count) {
            let (name, _) = registry.rooms.get_key_value(room_name).expect("looked up above");
            registry.occupancy_due.insert(name.clone());
        }
        let emptied = registry.rooms.get(room_name).is_some_and(Room::is_empty);
        if emptied {
            registry.rooms.remove(room_name);
        }
        Left { was_member: true, announce: change == Some(Change::Announce), emptied }
    }

    /// Up to `limit` users of a room after `cursor`; `None` when the room
    /// does not exist on this node.
    pub(crate) fn members(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Option<MembersPage> {
        Some(self.read().rooms.get(room)?.page(cursor, limit))
    }

    /// Sends every large room whose user count changed since the last call
    /// its `occupancy` frame, to the members that may see presence; returns
    /// how many rooms it told.
    pub(crate) fn send_occupancy(&self) -> usize {
        let due: Vec<(Arc<str>, usize)> = {
            let mut registry = self.write();
            let registry = &mut *registry;
            registry
                .occupancy_due
                .drain()
                .filter_map(|name| {
                    let count = registry.rooms.get(&name)?.user_count();
                    Some((name, count))
                })
                .collect()
        };
        for (room, count) in &due {
            self.deliver(occupancy(room, *count));
        }
        due.len()
    }

    /// Notes that a large room's user count changed across the cluster
    /// (multi-node mode, where the count is Redis's).
    pub(crate) fn mark_occupancy_due(&self, room: &str) {
        let mut registry = self.write();
        let name = match registry.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => Arc::from(room),
        };
        registry.occupancy_due.insert(name);
    }

    /// The large rooms whose count changed since the last call (multi-node
    /// mode: the caller reads each count from Redis and sends it to every
    /// node).
    pub(crate) fn take_occupancy_due(&self) -> Vec<Arc<str>> {
        self.write().occupancy_due.drain().collect()
    }

    /// How many connections `user` has in `room` on this node.
    pub(crate) fn user_connections_in(&self, room: &str, user: &str) -> usize {
        self.read().rooms.get(room).map_or(0, |room| room.connections_of(user))
    }

    /// The streams a connection here follows: every room with members,
    /// every connected user's inbox.
    pub(crate) fn followed_streams(&self) -> HashSet<StreamKey> {
        let registry = self.read();
        let rooms = registry.rooms.keys().map(|room| StreamKey::Room(room.clone()));
        let inboxes = registry.users.keys().map(|user| StreamKey::Inbox(user.clone()));
        rooms.chain(inboxes).collect()
    }

    /// Queues a message frame to one connection (a session-addressed send),
    /// outside any stream, counted like any delivery.
    pub(crate) fn push_to(&self, outbound: &Outbound, frame: tungstenite::Utf8Bytes) -> bool {
        let bytes = frame.len() as u64;
        let delivery =
            Delivery::new(Target::User(outbound.user.clone()), frame, DeliveryKind::Message);
        match outbound.push(&Arc::new(delivery)) {
            Pushed::Queued => {
                self.counters.delivered(DeliveryKind::Message, 1, bytes);
                true
            }
            Pushed::Overflowed => {
                self.counters.slow_consumer();
                false
            }
            Pushed::Gone => false,
        }
    }

    /// Connections in a room on this node.
    pub(crate) fn room_connections(&self, room: &str) -> usize {
        self.read().rooms.get(room).map_or(0, |room| room.members.len())
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
    /// A broker calls this for every delivery that reaches this node. The
    /// delivery is shared by every recipient's queue: one allocation per
    /// delivery (none when it comes as an `Arc` already), none per recipient.
    pub fn deliver(&self, delivery: impl Into<Arc<Delivery>>) -> usize {
        let delivery = &delivery.into();
        let registry = self.read();
        let mut reached = 0;
        let mut push = |outbound: &Outbound| match outbound.push(delivery) {
            Pushed::Queued => reached += 1,
            Pushed::Overflowed => self.counters.slow_consumer(),
            Pushed::Gone => {}
        };
        // A room message that leaves out its sender reaches the sender's
        // queue too: the session drops it there (`Session::wanted`), which
        // costs one slot where finding the sender here would cost a search.
        match &delivery.target {
            Target::Room(_) | Target::RoomExcept(_) => {
                let name = delivery.target.room().expect("a room target");
                if let Some(room) = registry.rooms.get(name) {
                    if delivery.kind == DeliveryKind::Message {
                        room.count_message();
                    }
                    if delivery.kind.is_presence() && !room.no_presence.is_empty() {
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
        self.counters.delivered(delivery.kind, reached as u64, delivery.frame.len() as u64);
        reached
    }

    /// Asks every connection on this node to close (the node is shutting
    /// down); returns how many there were. Each hears it through its own
    /// close signal, so no session waits on one shared signal per wake-up.
    pub(crate) fn close_all(&self, code: switchboard_protocol::CloseCode, reason: &str) -> usize {
        let registry = self.read();
        for entry in registry.sessions.values() {
            entry.outbound.close(code, reason);
        }
        registry.sessions.len()
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

    /// Asks every connection in `room` to close; returns how many there were.
    pub(crate) fn close_room(
        &self,
        room: &str,
        code: switchboard_protocol::CloseCode,
        reason: &str,
    ) -> usize {
        let registry = self.read();
        let Some(room) = registry.rooms.get(room) else { return 0 };
        for outbound in room.members.values() {
            outbound.close(code, reason);
        }
        room.members.len()
    }

    /// The queue of the connection whose session id is `session`, if it is
    /// on this node.
    pub(crate) fn session(&self, session: &uuid::Uuid) -> Option<Arc<Outbound>> {
        let registry = self.read();
        let key = registry.by_session.get(session)?;
        registry.sessions.get(key).map(|entry| entry.outbound.clone())
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
}

#[cfg(test)]
mod tests;
