//! [`Presence`]: who is online and who is in which room, across nodes.
//!
//! The hub keeps this node's membership (it delivers by it) and is the
//! truth about this node's connections; the presence engine adds the view
//! across nodes, and owns what follows from it:
//! - it **announces**: a `presence` join when a user's first connection
//!   anywhere enters a room, a leave when their last one anywhere leaves,
//!   and for a large room an `occupancy` count instead, coalesced per
//!   `rooms.occupancy_interval_ms`. Callers never send presence frames;
//! - a room past `rooms.large_room` users **stays large until it empties**,
//!   on every node;
//! - a change reported here is **never lost to a cancelled caller**: the
//!   leave and disconnect reports do not wait, and an engine that mirrors
//!   the hub elsewhere (Redis) writes what the hub holds when it writes,
//!   not the sum of the changes it was told about, so a failed or repeated
//!   write, or a rewrite after Redis lost its data, converges on the truth.

use std::sync::Arc;

use super::EngineFuture;
use crate::hub::room::MembersPage;
use crate::hub::{Departure, Joined, Left, RoomDetail, RoomSummary};

/// Presence across nodes.
pub(crate) trait Presence: Send + Sync + 'static {
    /// A connection of `user` was added to the hub (`first`: the user's
    /// first on this node). Resolves once the user counts as online
    /// everywhere; an error means the connection cannot be counted and
    /// should end.
    fn connected<'a>(&'a self, user: &'a Arc<str>, first: bool) -> EngineFuture<'a, ()>;

    /// A connection was removed from the hub (`departure` is what the hub
    /// said of it). Never waits.
    fn disconnected(&self, user: &Arc<str>, departure: &Departure);

    /// A connection of `user` joined `room` on the hub (`local` is the
    /// hub's answer). Announces the user when this is their arrival in the
    /// room, and resolves with what the join's ack lists: the first users,
    /// the room's user count, whether it is large.
    fn joined<'a>(
        &'a self,
        room: &'a Arc<str>,
        user: &'a Arc<str>,
        local: Joined,
    ) -> EngineFuture<'a, Joined>;

    /// A connection of `user` left `room` on the hub (`local` is the hub's
    /// answer); `announce` false when its join was never announced (a join
    /// undone). Never waits.
    fn left(&self, room: &Arc<str>, user: &Arc<str>, local: Left, announce: bool);

    /// Up to `limit` users of `room` after `cursor`, in byte order; `None`
    /// when nobody is in it.
    fn members<'a>(
        &'a self,
        room: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> EngineFuture<'a, Option<MembersPage>>;

    /// Every user connected, with their connections, sorted by user.
    fn online(&self) -> EngineFuture<'_, Vec<(String, usize)>>;

    /// Every room with members, with its figures, sorted by name.
    fn rooms(&self) -> EngineFuture<'_, Vec<RoomSummary>>;

    /// One room with members; `None` when nobody is in it.
    fn room<'a>(&'a self, room: &'a str) -> EngineFuture<'a, Option<RoomDetail>>;

    /// Sends each large room whose count changed its `occupancy` frame
    /// (every `rooms.occupancy_interval_ms`).
    fn send_occupancy(&self) -> EngineFuture<'_, ()>;
}
