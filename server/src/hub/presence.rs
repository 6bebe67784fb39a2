//! Presence as sessions, SSE feeds and the API see it: this node's hub on a
//! single node; in multi-node mode, the cluster's counts in Redis
//! (`cluster/presence.rs`), so that a join is announced when the user
//! arrives anywhere and a leave when their last connection anywhere goes.
//!
//! The hub always keeps its own membership (it delivers by it); this
//! module adds the cluster's view on top. Every connection counts itself
//! in and out, so the cluster's connection figures are exact. A count that
//! could not reach Redis marks the node's entries as stale, and the next
//! heartbeat that reaches Redis rewrites them from the hub
//! ([`resync`]).

use std::sync::Arc;

use switchboard_protocol::PresenceAction;

use crate::AppState;
use crate::cluster::presence::Change;
use crate::hub::Joined;
use crate::hub::operations::announce;
use crate::hub::room::MembersPage;
use crate::store::StoreError;

/// A connection's join as the cluster sees it, after `Hub::join` made it
/// locally: who to list in the ack, and whether to announce it.
pub(crate) async fn joined(
    state: &AppState,
    room: &str,
    user: &str,
    local: Joined,
) -> Result<Joined, StoreError> {
    let Some(cluster) = state.cluster() else { return Ok(local) };
    let change = if local.newly {
        match cluster.count(Some(room), user, 1).await {
            Ok((change, _)) => change,
            Err(err) => {
                state.presence_stale();
                return Err(err.into());
            }
        }
    } else {
        Change::None
    };
    let rooms = &state.config().rooms;
    let members = match cluster.members(Some(room), None, rooms.join_ack_members).await {
        Ok(members) => members,
        Err(err) => {
            // The caller undoes the join here; the count above goes with
            // the rewrite.
            state.presence_stale();
            return Err(err.into());
        }
    };
    let large = members.count > rooms.large_room;
    if large && change == Change::Arrived {
        state.hub().mark_occupancy_due(room);
    }
    Ok(Joined { newly: local.newly, announce: change == Change::Arrived && !large, members, large })
}

/// A connection left a room: whether to announce that its user left.
/// `announce` is the hub's answer, which a single node goes by.
pub(crate) async fn left(state: &AppState, room: &str, user: &str, announce: bool) -> bool {
    let Some(cluster) = state.cluster() else { return announce };
    match cluster.count(Some(room), user, -1).await {
        Ok((Change::Left, users)) if users >= state.config().rooms.large_room => {
            // Still large (or just below): its count goes out instead.
            state.hub().mark_occupancy_due(room);
            false
        }
        Ok((Change::Left, _)) => true,
        Ok(_) => false,
        Err(err) => {
            tracing::warn!(%room, %user, %err, "presence not counted down; rewritten at the next heartbeat");
            state.presence_stale();
            false
        }
    }
}

/// Counts a new connection of `user` as online across the cluster.
/// Called before the connection registers with the hub.
pub(crate) async fn connected(state: &AppState, user: &str) -> Result<(), StoreError> {
    let first = match state.cluster() {
        // Only asked when someone listens: it takes the registry's lock.
        None => state.events().is_some() && state.hub().connections_of(user) == 0,
        Some(cluster) => match cluster.count(None, user, 1).await {
            Ok((change, _)) => change == Change::Arrived,
            Err(err) => {
                state.presence_stale();
                return Err(err.into());
            }
        },
    };
    if let (true, Some(events)) = (first, state.events()) {
        events.presence(user, true);
    }
    Ok(())
}

/// What a connection leaving the hub must still announce.
pub(crate) struct Departure {
    user: Arc<str>,
    /// Every room the connection was in, with the hub's verdict on whether
    /// its user left the room on this node.
    rooms: Vec<(Arc<str>, bool)>,
    /// Whether the connection was counted online in the cluster.
    counted: bool,
}

/// Removes a connection from the hub; the returned departure announces
/// what its leaving changed. `counted`: whether [`connected`] counted it.
pub(crate) fn unregister(state: &AppState, key: u64, user: Arc<str>, counted: bool) -> Departure {
    let hub = state.hub();
    // In a cluster every room the connection was in is counted down; on a
    // single node only those its user left entirely are announced.
    let every = state.cluster().map(|_| hub.room_names(key));
    let left: Vec<Arc<str>> = hub.unregister(key).into_iter().map(|(room, _)| room).collect();
    let rooms = match every {
        Some(every) => every
            .into_iter()
            .map(|room| {
                let gone_here = left.contains(&room);
                (room, gone_here)
            })
            .collect(),
        None => left.into_iter().map(|room| (room, true)).collect(),
    };
    Departure { user, rooms, counted }
}

impl Departure {
    /// Announces the leaves, and counts the connection out of the cluster.
    pub(crate) async fn announce(self, state: &AppState) {
        for (room, gone_here) in &self.rooms {
            if left(state, room, &self.user, *gone_here).await {
                announce(state, room, &self.user, PresenceAction::Leave).await;
            }
        }
        let last = match state.cluster() {
            None => {
                self.counted
                    && state.events().is_some()
                    && state.hub().connections_of(&self.user) == 0
            }
            Some(_) if !self.counted => false,
            Some(cluster) => match cluster.count(None, &self.user, -1).await {
                Ok((change, _)) => change == Change::Left,
                Err(err) => {
                    tracing::warn!(user = %self.user, %err, "online presence not counted down");
                    state.presence_stale();
                    false
                }
            },
        };
        if let (true, Some(events)) = (last, state.events()) {
            events.presence(&self.user, false);
        }
    }
}

/// A page of a room's users; `None` when nobody is in it.
pub(crate) async fn members(
    state: &AppState,
    room: &str,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Option<MembersPage>, StoreError> {
    match state.cluster() {
        None => Ok(state.hub().members(room, cursor, limit)),
        Some(cluster) => {
            let page = cluster.members(Some(room), cursor, limit).await?;
            Ok((page.count > 0).then_some(page))
        }
    }
}

/// Every user connected (anywhere, in multi-node mode), sorted.
pub(crate) async fn online(state: &AppState) -> Result<Vec<String>, StoreError> {
    match state.cluster() {
        None => Ok(state.hub().online_users()),
        Some(cluster) => Ok(cluster.online_users().await?),
    }
}

/// Every user connected (to any node, in multi-node mode) with their
/// connection count, sorted by user.
pub(crate) async fn online_connections(
    state: &AppState,
) -> Result<Vec<(String, usize)>, StoreError> {
    match state.cluster() {
        None => {
            let hub = state.hub();
            let users = hub.online_users();
            Ok(users
                .into_iter()
                .map(|user| {
                    let count = hub.connections_of(&user);
                    (user, count)
                })
                .collect())
        }
        Some(cluster) => Ok(cluster.online_connections().await?),
    }
}

/// Sends each large room whose count changed its cluster-wide count,
/// through the broker to every node's members (multi-node mode).
pub(crate) async fn send_occupancy(state: &AppState) {
    let Some(cluster) = state.cluster() else { return };
    for room in state.hub().take_occupancy_due() {
        match cluster.members(Some(&room), None, 0).await {
            Ok(page) if page.count > 0 => {
                let delivery = crate::hub::occupancy(&room, page.count);
                if let Err(err) = state.broker().publish(delivery).await {
                    tracing::debug!(%room, %err, "occupancy not sent");
                }
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(%room, %err, "occupancy not counted"),
        }
    }
}

/// Rewrites this node's entries in the cluster's presence from its hub:
/// after Redis lost them (a restart) or after counts that failed. Other
/// nodes see no leave or join for it: nothing is announced.
pub(crate) async fn resync(state: &AppState) -> Result<(), StoreError> {
    let Some(cluster) = state.cluster() else { return Ok(()) };
    cluster.bury(&cluster.node).await?;
    let snapshot = state.hub().presence_snapshot();
    for (user, connections) in snapshot.users {
        cluster.count(None, &user, connections as i64).await?;
    }
    for (room, user, connections) in snapshot.rooms {
        cluster.count(Some(&room), &user, connections as i64).await?;
    }
    Ok(())
}
