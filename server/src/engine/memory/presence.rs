//! [`MemoryPresence`]: on a single node the hub's membership is the whole
//! truth, so presence is what the hub answers, announced at once in the
//! caller's task (no wait, so nothing a cancelled caller could cut in two).

use std::sync::Arc;

use switchboard_protocol::PresenceAction;

use crate::Hub;
use crate::engine::EngineFuture;
use crate::engine::presence::Presence;
use crate::hub::room::MembersPage;
use crate::hub::{Departure, Joined, Left, RoomDetail, RoomSummary};
use crate::policy::events::Events;

/// Presence of a single node.
pub(crate) struct MemoryPresence {
    hub: Arc<Hub>,
    events: Option<Arc<Events>>,
}

impl MemoryPresence {
    pub(crate) fn new(hub: Arc<Hub>, events: Option<Arc<Events>>) -> MemoryPresence {
        MemoryPresence { hub, events }
    }

    fn announce(&self, room: &Arc<str>, user: &str, action: PresenceAction) {
        self.hub.deliver(crate::hub::presence_frame(room, user, action));
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> EngineFuture<'a, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl Presence for MemoryPresence {
    fn connected<'a>(&'a self, user: &'a Arc<str>, first: bool) -> EngineFuture<'a, ()> {
        if let (true, Some(events)) = (first, &self.events) {
            events.presence(user, true);
        }
        ready(())
    }

    fn disconnected(&self, user: &Arc<str>, departure: &Departure) {
        for (room, left) in &departure.rooms {
            if left.announce {
                self.announce(room, user, PresenceAction::Leave);
            }
        }
        if let (true, Some(events)) = (departure.last_of_user, &self.events) {
            events.presence(user, false);
        }
    }

    fn joined<'a>(
        &'a self,
        room: &'a Arc<str>,
        user: &'a Arc<str>,
        local: Joined,
    ) -> EngineFuture<'a, Joined> {
        if local.announce {
            self.announce(room, user, PresenceAction::Join);
        }
        ready(local)
    }

    fn left(&self, room: &Arc<str>, user: &Arc<str>, local: Left, announce: bool) {
        if announce && local.announce {
            self.announce(room, user, PresenceAction::Leave);
        }
    }

    fn members<'a>(
        &'a self,
        room: &'a str,
        cursor: Option<&'a str>,
        limit: usize,
    ) -> EngineFuture<'a, Option<MembersPage>> {
        ready(self.hub.members(room, cursor, limit))
    }

    fn online(&self) -> EngineFuture<'_, Vec<(String, usize)>> {
        ready(self.hub.online_connections())
    }

    fn rooms(&self) -> EngineFuture<'_, Vec<RoomSummary>> {
        ready(self.hub.rooms())
    }

    fn room<'a>(&'a self, room: &'a str) -> EngineFuture<'a, Option<RoomDetail>> {
        ready(self.hub.room(room))
    }

    fn send_occupancy(&self) -> EngineFuture<'_, ()> {
        self.hub.send_occupancy();
        ready(())
    }
}
