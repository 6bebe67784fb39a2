//! What the registry says of itself when asked: rooms as the admin API
//! lists them ([`RoomSummary`], [`RoomDetail`]), connections page by page
//! in session-id order, who is online.

use serde::Serialize;

use super::{Hub, SessionEntry, connections};

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
    /// Every user here with their connection count, sorted by user.
    pub(crate) fn online_connections(&self) -> Vec<(String, usize)> {
        let registry = self.read();
        let mut users: Vec<(String, usize)> =
            registry.users.iter().map(|(user, keys)| (user.to_string(), keys.len())).collect();
        drop(registry);
        users.sort_unstable();
        users
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
