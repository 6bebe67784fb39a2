//! Managed rooms through the in-process API: create a room ahead of time
//! with its [`RoomInfo`], change it, delete it, read it. The HTTP handlers
//! (`POST /api/rooms`, `PATCH` and `DELETE /api/rooms/{room}`) wrap these.
//!
//! ```no_run
//! # async fn example(state: switchboard_server::AppState) -> Result<(), switchboard_server::RoomError> {
//! use switchboard_server::RoomInfo;
//! let info = RoomInfo { name: Some("Launch".into()), ..RoomInfo::default() };
//! state.create_room("launch", info).await?;
//! state.update_room("launch", |info| info.description = Some("T-minus 3".into())).await?;
//! # Ok(()) }
//! ```

use switchboard_protocol::{RoomInfo, validate_name};

use super::AppState;
use crate::engine::catalog::{ManagedRoom, RoomError};

fn check(room: &str) -> Result<(), RoomError> {
    validate_name(room).map_err(RoomError::InvalidName)
}

impl AppState {
    /// Creates a managed room: it exists (listed, joinable, its info in
    /// every join's ack) whether or not anyone is in it, until deleted.
    /// Refused when it exists already or `rooms.max_rooms` managed rooms
    /// exist.
    pub async fn create_room(&self, room: &str, info: RoomInfo) -> Result<ManagedRoom, RoomError> {
        check(room)?;
        self.engine().catalog().create(room, info).await
    }

    /// Changes a managed room's info; connections already in it learn the
    /// new info on their next join.
    pub async fn update_room(
        &self,
        room: &str,
        change: impl FnOnce(&mut RoomInfo),
    ) -> Result<ManagedRoom, RoomError> {
        check(room)?;
        self.engine().catalog().update(room, change).await
    }

    /// Deletes a managed room and takes every user in it out (each of their
    /// connections gets a `left` frame, on every node); returns how many
    /// users were in it. Its history expires as any room's does. Rooms of
    /// `rooms.default_rooms` cannot be deleted.
    pub async fn delete_room(&self, room: &str) -> Result<usize, RoomError> {
        check(room)?;
        self.engine().catalog().delete(room).await?;
        let mut users = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let presence = self.engine().presence();
            let page = presence.members(room, cursor.as_deref(), 1000).await?;
            let Some(page) = page else { break };
            users.extend(page.members);
            cursor = page.cursor;
            if cursor.is_none() {
                break;
            }
        }
        for user in &users {
            self.leave(user, room).await.map_err(|err| RoomError::Unavailable(err.to_string()))?;
        }
        Ok(users.len())
    }

    /// The managed room `room`, if it is one.
    pub async fn managed_room(&self, room: &str) -> Result<Option<ManagedRoom>, RoomError> {
        check(room)?;
        self.engine().catalog().get(room).await
    }

    /// Every managed room, sorted by name.
    pub async fn managed_rooms(&self) -> Result<Vec<ManagedRoom>, RoomError> {
        self.engine().catalog().all().await
    }
}
