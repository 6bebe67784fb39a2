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
pub(crate) mod outbound;
pub(crate) mod rates;
pub(crate) mod room;
pub(crate) mod stats;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use switchboard_protocol::{Presence, PresenceAction, ServerFrame};

pub(crate) use delivery::JoinOrder;
pub use delivery::{Delivery, DeliveryKind, Target};

use crate::hub::outbound::{Outbound, Pushed};
use crate::hub::room::{Change, MembersPage, Room};
use crate::hub::stats::Counters;
use crate::stream::StreamKey;
use crate::wire::encode;

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

/// A large room's `occupancy` frame, for the members that may see presence.
pub(crate) fn occupancy(room: &Arc<str>, count: usize) -> Delivery {
    let frame = encode(&ServerFrame::Occupancy(switchboard_protocol::Occupancy {
        room: room.to_string(),
        count: count as u64,
    }));
    Delivery::new(Target::Room(room.clone()), frame, DeliveryKind::Occupancy)
}

/// A `presence` frame: `user` joined or left `room`.
pub(crate) fn presence_frame(room: &Arc<str>, user: &str, action: PresenceAction) -> Delivery {
    let frame = encode(&ServerFrame::Presence(Presence {
        room: room.to_string(),
        user: user.to_owned(),
        action,
    }));
    Delivery::new(Target::Room(room.clone()), frame, DeliveryKind::Presence)
}

/// This node's presence, as [`Hub::presence_snapshot`] takes it.
#[derive(Debug, Default)]
pub(crate) struct PresenceSnapshot {
    pub(crate) users: Vec<(Arc<str>, usize)>,
    pub(crate) rooms: Vec<(Arc<str>, Arc<str>, usize)>,
}

/// A room as `GET /api/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoomSummary {
    /// The room name.
    pub id: String,
    /// Distinct users in the room.
    pub members: usize,
    /// Connections in the room.
    pub connections: usize,
    /// Messages published to the room since it was created.
    pub messages: u64,
    /// For a managed room: what the application says about it.
    #[serde(flatten)]
    pub managed: ManagedFields,
}

/// The fields a managed room adds to its listing (`GET /api/rooms`, `GET
/// /api/rooms/{room}`); all absent for an ad hoc room.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ManagedFields {
    /// A display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The application's own JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// When it was created, in Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<u64>,
    /// Whether it comes from `rooms.default_rooms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// When its newest kept message was published, in Unix milliseconds
    /// (any room with history; absent when it keeps none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<u64>,
}

/// A room as `GET /api/rooms/{room}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RoomDetail {
    /// The room name.
    pub id: String,
    /// The first users in the room in byte order, as many as a join ack lists.
    pub members: Vec<String>,
    /// Distinct users in the room.
    pub member_count: usize,
    /// Where the rest of the members starts (for `GET
    /// /api/rooms/{room}/members?cursor=`), absent when `members` is all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Whether the room is large (presence by `occupancy` counts).
    pub large: bool,
    /// Connections in the room.
    pub connections: usize,
    /// Messages published to the room since it was created.
    pub messages: u64,
    /// For a managed room: what the application says about it.
    #[serde(flatten)]
    pub managed: ManagedFields,
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
            self.deliver(&occupancy(room, *count));
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

    /// Every user here with their connections, and every room's users
    /// with their connections in it: what this node counts into the
    /// cluster's presence.
    pub(crate) fn presence_snapshot(&self) -> PresenceSnapshot {
        let registry = self.read();
        PresenceSnapshot {
            users: registry.users.iter().map(|(user, keys)| (user.clone(), keys.len())).collect(),
            rooms: registry
                .rooms
                .iter()
                .flat_map(|(name, room)| {
                    room.users().map(move |(user, n)| (name.clone(), user.clone(), n))
                })
                .collect(),
        }
    }

    /// How many connections `user` has in `room` on this node.
    pub(crate) fn user_connections_in(&self, room: &str, user: &str) -> usize {
        self.read().rooms.get(room).map_or(0, |room| room.connections_of(user))
    }

    /// Whether `room` is large on this node.
    pub(crate) fn is_large(&self, room: &str) -> bool {
        self.read().rooms.get(room).is_some_and(Room::is_large)
    }

    /// The streams a connection here follows: every room with members,
    /// every connected user's inbox.
    pub(crate) fn followed_streams(&self) -> HashSet<StreamKey> {
        let registry = self.read();
        let rooms = registry.rooms.keys().map(|room| StreamKey::Room(room.clone()));
        let inboxes = registry.users.keys().map(|user| StreamKey::Inbox(user.clone()));
        rooms.chain(inboxes).collect()
    }

    /// Every user here with their connection count, sorted by user.
    pub(crate) fn online_connections(&self) -> Vec<(String, usize)> {
        let registry = self.read();
        let mut users: Vec<(String, usize)> =
            registry.users.iter().map(|(user, keys)| (user.to_string(), keys.len())).collect();
        drop(registry);
        users.sort_unstable();
        users
    }

    /// Queues a message frame to one connection (a session-addressed send),
    /// outside any stream, counted like any delivery.
    pub(crate) fn push_to(&self, outbound: &Outbound, frame: tungstenite::Utf8Bytes) -> bool {
        let bytes = frame.len() as u64;
        let delivery =
            Delivery::new(Target::User(outbound.user.clone()), frame, DeliveryKind::Message);
        match outbound.push(&delivery) {
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
    /// A broker calls this for every delivery that reaches this node.
    pub fn deliver(&self, delivery: &Delivery) -> usize {
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

    /// This node's connections (of `user`, or everyone's) in session-id
    /// order, up to `limit` after the session `after`; and the cursor of the
    /// next page when there is one.
    pub fn connections(
        &self,
        user: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<connections::ConnectionSummary>, Option<String>) {
        let registry = self.read();
        // A cursor is a session id as the listing writes it (32 hex digits,
        // whose text order is the ids' order); anything else is compared as
        // text, without the index.
        let after_id = after.and_then(|after| uuid::Uuid::try_parse(after).ok());
        let wanted = |session: &uuid::Uuid| match (after, after_id) {
            (None, _) => true,
            (Some(_), Some(id)) => *session > id,
            (Some(after), None) => session.simple().to_string().as_str() > after,
        };
        let listed: Vec<(&uuid::Uuid, &SessionEntry)> = match (user, after, after_id) {
            (Some(user), ..) => {
                let mut mine: Vec<(&uuid::Uuid, &SessionEntry)> = registry
                    .users
                    .get(user)
                    .into_iter()
                    .flatten()
                    .filter_map(|key| registry.sessions.get(key))
                    .map(|entry| (&entry.info.session, entry))
                    .filter(|(session, _)| wanted(session))
                    .collect();
                mine.sort_unstable_by_key(|(session, _)| **session);
                mine.truncate(limit.saturating_add(1));
                mine
            }
            (None, Some(_), None) => registry
                .by_session
                .iter()
                .filter(|(session, _)| wanted(session))
                .filter_map(|(session, key)| Some((session, registry.sessions.get(key)?)))
                .take(limit.saturating_add(1))
                .collect(),
            (None, _, id) => {
                let start = id.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
                registry
                    .by_session
                    .range((start, std::ops::Bound::Unbounded))
                    .filter_map(|(session, key)| Some((session, registry.sessions.get(key)?)))
                    .take(limit.saturating_add(1))
                    .collect()
            }
        };
        let more = listed.len() > limit;
        let page: Vec<connections::ConnectionSummary> = listed
            .into_iter()
            .take(limit)
            .map(|(session, entry)| {
                let mut rooms: Vec<String> = entry.rooms.iter().map(|r| r.to_string()).collect();
                rooms.sort_unstable();
                connections::ConnectionSummary::new(
                    session.simple().to_string(),
                    &entry.outbound.user,
                    &entry.info,
                    rooms,
                )
            })
            .collect();
        let cursor = more.then(|| page.last().map(|c| c.session.clone())).flatten();
        (page, cursor)
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
                managed: ManagedFields::default(),
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
        let first = room.page(None, self.policy.ack_members);
        Some(RoomDetail {
            id: id.to_owned(),
            members: first.members,
            member_count: first.count,
            cursor: first.cursor,
            large: room.is_large(),
            connections: room.members.len(),
            messages: room.messages(),
            managed: ManagedFields::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbound::{self, OutboundQueue};
    use tungstenite::Utf8Bytes;

    fn connect(hub: &Hub, user: &str) -> (u64, OutboundQueue) {
        let key = hub.next_key();
        let (outbound, queue) = outbound::channel(key, user.into(), 16, 1 << 20);
        hub.register(Arc::new(outbound), connections::ConnectionInfo::test());
        (key, queue)
    }

    fn room_delivery(room: &str, text: &str) -> Delivery {
        Delivery::new(Target::Room(room.into()), Utf8Bytes::from(text), DeliveryKind::Message)
    }

    #[test]
    fn presence_is_per_user_not_per_connection() {
        let hub = Hub::new();
        let (tab1, _q1) = connect(&hub, "alice");
        let (tab2, _q2) = connect(&hub, "alice");
        assert!(hub.join(tab1, "general", true).unwrap().announce);
        let second = hub.join(tab2, "general", true).unwrap();
        assert!(second.newly && !second.announce, "a second tab announces nothing");
        assert_eq!(second.members.members, vec!["alice".to_owned()]);
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
    fn a_join_lists_at_most_the_cap_and_counts_the_rest() {
        let hub = Hub::with_policy(PresencePolicy { ack_members: 3, large_room: 1_000 });
        let mut queues = Vec::new();
        let mut last = None;
        for n in 0..10 {
            let (key, queue) = connect(&hub, &format!("user-{n}"));
            queues.push(queue);
            last = hub.join(key, "big", true);
        }
        let joined = last.unwrap();
        assert_eq!(joined.members.members, ["user-0", "user-1", "user-2"]);
        assert_eq!((joined.members.count, joined.members.cursor.as_deref()), (10, Some("user-2")));
        let rest = hub.members("big", Some("user-2"), 100).unwrap();
        assert_eq!(rest.members.len(), 7);
        assert_eq!(rest.cursor, None);
        assert!(hub.members("nowhere", None, 100).is_none());
        let detail = hub.room("big").unwrap();
        assert_eq!((detail.members.len(), detail.member_count), (3, 10));
    }

    /// Allocations made by one fan-out to a room of `members`, once each
    /// member's queue has held a frame before (a queue allocates its first
    /// slots on its first frame and keeps a few once drained).
    fn fan_out_allocations(members: usize) -> u64 {
        let hub = Hub::with_policy(PresencePolicy { ack_members: 10, large_room: 5 });
        let mut queues = Vec::new();
        for n in 0..members {
            let (key, queue) = connect(&hub, &format!("user-{n}"));
            hub.join(key, "big", true).unwrap();
            queues.push(queue);
        }
        let delivery = room_delivery("big", "hello");
        assert_eq!(hub.deliver(&delivery), members);
        for queue in &mut queues {
            while queue.try_recv().is_some() {}
        }
        let counted = allocation_counter::measure(|| {
            assert_eq!(hub.deliver(&delivery), members);
        });
        counted.count_total
    }

    #[test]
    fn a_fan_out_allocates_nothing_per_recipient() {
        // The frame is serialized once and shared; each recipient gets two
        // reference counts and a slot in a queue that already has room.
        assert_eq!(fan_out_allocations(10), 0);
        assert_eq!(fan_out_allocations(2_000), 0);
    }

    /// Every text frame waiting in `queue`.
    fn frames(queue: &mut OutboundQueue) -> Vec<String> {
        std::iter::from_fn(|| queue.try_recv()).map(|d| d.frame.to_string()).collect()
    }

    #[test]
    fn a_large_room_sends_one_count_per_tick_instead_of_names() {
        let hub = Hub::with_policy(PresencePolicy { ack_members: 100, large_room: 2 });
        let (a, mut qa) = connect(&hub, "alice");
        let (b, _qb) = connect(&hub, "bob");
        assert!(hub.join(a, "hall", true).unwrap().announce);
        assert!(hub.join(b, "hall", true).unwrap().announce);
        let mut late = Vec::new();
        for user in ["carol", "dave", "erin"] {
            let (key, queue) = connect(&hub, user);
            let joined = hub.join(key, "hall", true).unwrap();
            assert!(!joined.announce && joined.large, "{user}: counted, not announced");
            late.push((key, queue));
        }
        assert_eq!(hub.send_occupancy(), 1, "three joins, one count");
        let expected = r#"{"type":"occupancy","room":"hall","count":5}"#;
        assert_eq!(frames(&mut qa), [expected]);
        assert_eq!(hub.send_occupancy(), 0, "nothing changed since");
        assert!(!hub.leave(late[0].0, "hall").announce, "a leave is counted too");
        hub.unregister(late[1].0);
        assert_eq!(hub.send_occupancy(), 1);
        assert_eq!(frames(&mut qa), [r#"{"type":"occupancy","room":"hall","count":3}"#]);
        assert!(hub.leave(b, "hall").was_member);
        assert!(hub.join(b, "hall", true).unwrap().large, "large until it empties");
    }

    #[test]
    fn occupancy_skips_members_without_the_presence_permission_and_emptied_rooms() {
        let hub = Hub::with_policy(PresencePolicy { ack_members: 100, large_room: 1 });
        let (a, mut qa) = connect(&hub, "alice");
        let (b, mut qb) = connect(&hub, "bob");
        hub.join(a, "hall", false).unwrap();
        hub.join(b, "hall", true).unwrap();
        assert_eq!(hub.send_occupancy(), 1);
        assert!(frames(&mut qa).is_empty(), "alice may not see presence");
        assert_eq!(frames(&mut qb).len(), 1);
        hub.join(a, "gone", true).unwrap();
        hub.join(b, "gone", true).unwrap();
        hub.unregister(a);
        hub.unregister(b);
        assert_eq!(hub.send_occupancy(), 0, "an emptied room has nobody to tell");
    }

    #[test]
    fn unregister_reports_rooms_the_user_left() {
        let hub = Hub::new();
        let (a, _qa) = connect(&hub, "alice");
        hub.join(a, "x", true).unwrap();
        hub.join(a, "y", true).unwrap();
        let departure = hub.unregister(a);
        assert!(departure.last_of_user);
        let mut left: Vec<String> = departure
            .rooms
            .into_iter()
            .filter(|(_, left)| left.announce && left.emptied)
            .map(|(r, _)| r.to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["x", "y"]);
        assert_eq!((hub.connection_count(), hub.user_count(), hub.room_count()), (0, 0, 0));
    }
}
