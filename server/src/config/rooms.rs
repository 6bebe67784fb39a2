//! `[rooms]` and `[permissions]`: how presence scales with a room, the
//! managed rooms, and who may do what in which room.

use serde::{Deserialize, Serialize};

/// Rules for rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Whether a connection must have joined a room to publish to it
    /// (default `true`; refused with error code 201 otherwise).
    pub publish_requires_join: bool,
    /// How many users a `join` ack lists at most (default 100); the ack also
    /// carries the room's `member_count` and a `cursor` for the rest, read
    /// with `members` requests. Keeps a join's cost independent of the room's
    /// size.
    pub join_ack_members: usize,
    /// Above this many users a room is large (default 500) and stays large
    /// until it empties: its joins and leaves are no longer announced one by
    /// one (N²/2 frames to fill a room of N) but as an `occupancy` count.
    pub large_room: usize,
    /// How often a large room whose count changed sends `occupancy`, in
    /// milliseconds (default 1000).
    pub occupancy_interval_ms: u64,
    /// Managed rooms that exist from the start, whether or not anyone is in
    /// them, and cannot be deleted (default none).
    pub default_rooms: Vec<String>,
    /// The most managed rooms (default 0: no limit); creating one more is
    /// refused with 409 `room_limit`.
    pub max_rooms: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            publish_requires_join: true,
            join_ack_members: 100,
            large_room: 500,
            occupancy_interval_ms: 1_000,
            default_rooms: Vec::new(),
            max_rooms: 0,
        }
    }
}

/// Who may do what in which room: the first rule whose pattern matches a
/// room applies; rooms no rule matches allow anything to anyone.
///
/// ```toml
/// [[permissions.rooms]]
/// pattern = "private:*"
/// join = "claim"      # the token's `rooms` claim must match the room
/// publish = "claim"
/// history = "claim"
/// presence = "claim"
///
/// [[permissions.rooms]]
/// pattern = "announcements"
/// publish = "server"  # only the HTTP API may publish
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PermissionsConfig {
    /// Rules by room-name pattern.
    pub rooms: Vec<RoomRule>,
    /// Whether clients may `send` private messages to each other (default
    /// `anyone`; `server` leaves private messages to the HTTP API).
    pub send: Access,
}

impl Default for PermissionsConfig {
    fn default() -> Self {
        PermissionsConfig { rooms: Vec::new(), send: Access::Anyone }
    }
}

/// The permissions of the rooms a pattern matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRule {
    /// Room-name pattern (`*`, `?`).
    pub pattern: String,
    /// Who may join (and so receive messages).
    #[serde(default)]
    pub join: Access,
    /// Who may publish.
    #[serde(default)]
    pub publish: Access,
    /// Who may read history (and so resume with `since`).
    #[serde(default)]
    pub history: Access,
    /// Who sees presence (join/leave events and the join ack's members).
    #[serde(default)]
    pub presence: Access,
}

/// Who an action is open to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any connection.
    #[default]
    Anyone,
    /// Connections whose token's rooms claim matches the room.
    Claim,
    /// No connection; only the HTTP API.
    Server,
}
