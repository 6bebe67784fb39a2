//! [`Permissions`]: `[permissions]` compiled, the one place every
//! transport (WebSocket, SSE) asks what a connection may do in a room:
//! join it, publish to it, read its history, see its presence; and
//! whether clients may send each other private messages.

use crate::config::{Access, PermissionsConfig, RoomRule};
use crate::patterns::RoomPatterns;
use crate::policy::auth::Identity;

/// [`PermissionsConfig`] compiled for lookups.
#[derive(Debug, Clone)]
pub struct Permissions {
    rooms: RoomPatterns<RoomRule>,
    /// Whether clients may send each other private messages.
    pub send: Access,
}

impl Permissions {
    /// The rules of `config`, compiled once.
    pub fn new(config: &PermissionsConfig) -> Permissions {
        Permissions {
            rooms: RoomPatterns::new(
                config.rooms.iter().map(|rule| (rule.pattern.clone(), rule.clone())),
            ),
            send: config.send,
        }
    }

    /// Whether the action that `pick` selects is allowed to `identity` in
    /// `room`; rooms no rule matches allow anything to anyone.
    pub fn allows(
        &self,
        identity: &Identity,
        room: &str,
        pick: impl Fn(&RoomRule) -> Access,
    ) -> bool {
        match self.rooms.first(room).map(pick) {
            None | Some(Access::Anyone) => true,
            Some(Access::Claim) => identity.claims_room(room),
            Some(Access::Server) => false,
        }
    }
}
