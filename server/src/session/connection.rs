//! [`Connection`]: what a connection is whatever its transport. A WebSocket
//! [`Session`](super::Session) and an SSE feed (`transport/sse.rs`) each own
//! one and only add their framing.
//!
//! It owns the connection's place on this node and its positions:
//! - **opening**: registered with the hub, counted online, its inbox read
//!   (what it missed, or what waited while the user was offline);
//! - **joins**: the room cap, the hub's membership, the stream's position
//!   and replay, presence; a join that fails half way is undone, and so is
//!   one whose caller is cancelled before it completes (a guard on drop);
//! - **positions** per stream (the room's, the inbox): the epoch and offset
//!   the connection has, so a message that reaches it twice (from a replay
//!   and live, or from a repair between nodes) goes out once, and a message
//!   of another epoch is never taken for one already seen;
//! - **closing**: out of the hub and presence, whether the transport ends
//!   it or drops it (`Drop` does what `close` did not).
//!
//! What a client may ask (the permissions and the join hook in front of a
//! client's join) is checked by [`check_join`], shared by both transports.

use std::collections::HashMap;
use std::sync::Arc;

use switchboard_protocol::{ErrorCode, Position, RoomInfo};

use crate::AppState;
use crate::engine::EngineError;
use crate::hub::connections::ConnectionInfo;
use crate::hub::outbound::{self, Outbound, OutboundQueue};
use crate::hub::{Delivery, DeliveryKind, Joined, Target};
use crate::policy::admission::Ticket;
use crate::policy::auth::Identity;
use crate::policy::hooks::{self, Decision, HookFailure};
use crate::stream::{Replay, Stored, StreamKey, epoch_tag};

/// Where a connection stands in one stream: the epoch (as a tag) and the
/// last offset it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Floor {
    pub(crate) epoch: u64,
    pub(crate) offset: u64,
}

impl Floor {
    fn at(position: &Position) -> Floor {
        Floor { epoch: epoch_tag(&position.epoch), offset: position.offset }
    }
}

/// What opening found.
#[derive(Debug)]
pub(crate) struct Opened {
    /// Where the inbox stands.
    pub(crate) position: Position,
    /// With an inbox position asked for: whether everything after it was
    /// still there.
    pub(crate) recovered: Option<bool>,
    /// The inbox messages to write now, in order.
    pub(crate) missed: Vec<Stored>,
}

/// A join carried out: what its ack or `joined` frame reports.
#[derive(Debug)]
pub(crate) struct Entered {
    pub(crate) joined: Joined,
    /// Whether the connection may see the room's presence (members listed).
    pub(crate) sees_presence: bool,
    pub(crate) position: Position,
    /// For a join with `since`: whether the replay was complete.
    pub(crate) recovered: Option<bool>,
    /// The messages after `since`, not yet written.
    pub(crate) missed: Vec<Stored>,
    /// What the application says about the room, if it is managed.
    pub(crate) info: Option<RoomInfo>,
}

/// Why a join was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Tell the client with this error.
    Error(ErrorCode, String),
    /// The connection is no longer registered: it cannot go on.
    Unregistered,
}

impl From<EngineError> for Refusal {
    fn from(err: EngineError) -> Self {
        Refusal::Error(ErrorCode::UNAVAILABLE, err.to_string())
    }
}

/// Why a client may not join a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// The `join` permission does not allow it.
    Forbidden(String),
    /// The application's join hook said no.
    Refused(ErrorCode, String),
    /// The join hook failed.
    HookFailed(HookFailure),
}

impl From<JoinRefused> for Refusal {
    fn from(refused: JoinRefused) -> Self {
        match refused {
            JoinRefused::Forbidden(message) => Refusal::Error(ErrorCode::FORBIDDEN, message),
            JoinRefused::Refused(code, message) => Refusal::Error(code, message),
            JoinRefused::HookFailed(failure) => {
                Refusal::Error(ErrorCode::HOOK_FAILED, failure.to_string())
            }
        }
    }
}

/// What to do with a delivery taken from the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Write its frame.
    Write,
    /// Already sent (or of an epoch this connection does not follow): skip.
    Skip,
}

/// One connection's state on this node, whatever its transport.
pub(crate) struct Connection {
    pub(crate) state: AppState,
    pub(crate) outbound: Arc<Outbound>,
    pub(crate) queue: OutboundQueue,
    pub(crate) user: Arc<str>,
    pub(crate) identity: Identity,
    /// The session id clients see (32 hex digits), kept as its 16 bytes.
    pub(crate) id: uuid::Uuid,
    /// Per room: where the connection stands in the room's stream.
    rooms: HashMap<Arc<str>, Floor>,
    /// The same for the user's inbox.
    inbox: Floor,
    /// Whether it is registered with the hub (and must leave it).
    registered: bool,
    /// The admission slot this connection holds, given back with it.
    _admission: Option<Ticket>,
}

/// Whether `identity` may join `room` as a client: the `join` permission,
/// then the application's join hook.
pub(crate) async fn check_join(
    state: &AppState,
    identity: &Identity,
    room: &str,
) -> Result<(), JoinRefused> {
    if !state.permissions().allows(identity, room, |rule| rule.join) {
        return Err(JoinRefused::Forbidden(format!("not allowed to join `{room}`")));
    }
    if let Some((hooks, timeout)) = state.hooks() {
        match hooks::call("join", timeout, hooks.join(identity, room)).await {
            Ok(Decision::Allow) => {}
            Ok(Decision::Refuse { code, message }) => {
                return Err(JoinRefused::Refused(code, message));
            }
            Err(failure) => return Err(JoinRefused::HookFailed(failure)),
        }
    }
    Ok(())
}

impl Connection {
    /// A connection of `identity`, not yet registered.
    pub(crate) fn new(state: AppState, identity: Identity, ticket: Option<Ticket>) -> Connection {
        let limits = &state.config().limits;
        let (outbound, queue) = outbound::channel(
            state.hub().next_key(),
            identity.user.clone(),
            limits.outbound_queue_messages,
            limits.outbound_queue_bytes,
        );
        Connection {
            outbound: Arc::new(outbound),
            queue,
            user: identity.user.clone(),
            identity,
            id: uuid::Uuid::new_v4(),
            rooms: HashMap::new(),
            inbox: Floor { epoch: 0, offset: 0 },
            registered: false,
            _admission: ticket,
            state,
        }
    }

    /// Keeps the connection's admission slot until it ends.
    pub(crate) fn hold(&mut self, ticket: Ticket) {
        self._admission = Some(ticket);
    }

    /// The hub's key of this connection.
    pub(crate) fn key(&self) -> u64 {
        self.outbound.key
    }

    /// Registers with the hub (so it is a live recipient of its inbox from
    /// now on), counts the user online, and reads the inbox: from `since`,
    /// or what no connection of the user has received yet.
    pub(crate) async fn open(
        &mut self,
        since: Option<&Position>,
        info: ConnectionInfo,
    ) -> Result<Opened, EngineError> {
        let state = self.state.clone();
        let first = state.hub().register(self.outbound.clone(), info);
        self.registered = true;
        let engine = state.engine();
        engine.presence().connected(&self.user, first).await?;
        let inbox = StreamKey::Inbox(self.user.clone());
        let opened = match since {
            Some(since) => {
                let resumed = engine.resume(&inbox, Some(since)).await?;
                match resumed.replay {
                    Some(Replay::Complete(missed)) => {
                        let head = resumed.position.offset;
                        engine.broker().mark_delivered(&inbox, head).await?;
                        Opened { position: resumed.position, recovered: Some(true), missed }
                    }
                    _ => {
                        let position = resumed.position;
                        Opened { position, recovered: Some(false), missed: Vec::new() }
                    }
                }
            }
            None => {
                let (position, missed) = engine.broker().undelivered(&inbox).await?;
                Opened { position, recovered: None, missed }
            }
        };
        self.inbox = Floor::at(&opened.position);
        Ok(opened)
    }

    /// Joins `room` (the caller checked what it had to): the room cap, the
    /// hub's membership, where the room's stream stands and, with `since`,
    /// what came after it, presence (announced by the engine). A join that
    /// fails, or whose future is dropped before it completes, is undone.
    pub(crate) async fn enter(
        &mut self,
        room: &str,
        since: Option<&Position>,
    ) -> Result<Entered, Refusal> {
        let state = self.state.clone();
        let hub = state.hub();
        let max_rooms = state.config().limits.max_rooms_per_connection;
        let member = hub.is_member(self.key(), room);
        if !member && hub.rooms_of(self.key()) >= max_rooms {
            let message = format!("at most {max_rooms} rooms per connection");
            return Err(Refusal::Error(ErrorCode::LIMIT_EXCEEDED, message));
        }
        let sees_presence = state.permissions().allows(&self.identity, room, |rule| rule.presence);
        let local = hub.join(self.key(), room, sees_presence).ok_or(Refusal::Unregistered)?;
        let room: Arc<str> = room.into();
        let undo = Undo { connection: self, room: room.clone(), armed: local.newly };
        let key = StreamKey::Room(room.clone());
        let engine = state.engine();
        // The room's info (for the ack) is read alongside the join rather
        // than after it: in a cluster that is one round trip fewer.
        let (resumed, info) = tokio::join!(engine.resume(&key, since), engine.catalog().get(&room));
        let resumed = resumed?;
        let joined = engine.presence().joined(&room, &undo.connection.user, local).await?;
        undo.disarm();
        let head = Floor::at(&resumed.position);
        let (recovered, missed) = match resumed.replay {
            Some(Replay::Complete(missed)) => (Some(true), missed),
            Some(Replay::Lost) => (Some(false), Vec::new()),
            None => (None, Vec::new()),
        };
        // A connection that was in the room already keeps its place in the
        // stream: messages below the head may still be in its queue. A
        // complete replay covers everything up to the head.
        let floor = match self.rooms.get(&room) {
            Some(kept) if kept.epoch == head.epoch && recovered != Some(true) => *kept,
            Some(kept) if kept.epoch == head.epoch => {
                Floor { offset: kept.offset.max(head.offset), ..head }
            }
            _ => head,
        };
        self.rooms.insert(room.clone(), floor);
        // A join goes on without the room's info when the catalog cannot be
        // read: the info is a courtesy, the membership is what was asked.
        let info = match info {
            Ok(managed) => managed.map(|room| room.info),
            Err(err) => {
                tracing::warn!(%room, %err, "the room's info could not be read for the join");
                None
            }
        };
        Ok(Entered { joined, sees_presence, position: resumed.position, recovered, missed, info })
    }

    /// Whether the connection is in `room`.
    pub(crate) fn is_member(&self, room: &str) -> bool {
        self.state.hub().is_member(self.key(), room)
    }

    /// Leaves `room`; presence announces the user when this was their last
    /// connection there. Never waits.
    pub(crate) fn exit(&mut self, room: &str) {
        self.rooms.remove(room);
        leave(&self.state, self.key(), room, &self.user, true);
    }

    /// What to do with a live delivery; a new one moves its stream's floor,
    /// so that whatever reaches the connection twice (from a replay and
    /// live, or from a repair between nodes) goes out once. A message of an
    /// epoch other than the one the connection follows is skipped: a new
    /// epoch is announced first by a [`DeliveryKind::Reset`], which moves
    /// the floor ([`Connection::reset`]).
    pub(crate) fn wanted(&mut self, delivery: &Delivery) -> Verdict {
        let write = |yes: bool| if yes { Verdict::Write } else { Verdict::Skip };
        let Some(offset) = delivery.offset else {
            return write(
                !matches!(&delivery.target, Target::RoomExcept(room_except) if room_except.1 == self.id),
            );
        };
        let (floor, except) = match &delivery.target {
            Target::RoomExcept(room_except) => {
                let (room, except) = &**room_except;
                (self.rooms.get_mut(room), Some(except))
            }
            Target::Room(room) => (self.rooms.get_mut(room), None),
            Target::User(_) => (Some(&mut self.inbox), None),
            Target::All => return Verdict::Write,
        };
        let not_me = except.is_none_or(|except| *except != self.id);
        // A room the connection is not in (it left, or its join was
        // undone): what was queued for it before is not written.
        let Some(floor) = floor else { return Verdict::Skip };
        if delivery.epoch != floor.epoch || offset <= floor.offset {
            return Verdict::Skip;
        }
        // The sender's own message moves its floor all the same.
        floor.offset = offset;
        write(not_me)
    }

    /// A stream this connection follows started over under a new epoch
    /// (`delivery` is a [`DeliveryKind::Reset`]): true when the connection
    /// was on another epoch, now moved to the new one, and its client must
    /// be told (the delivery's frame).
    pub(crate) fn reset(&mut self, delivery: &Delivery) -> bool {
        debug_assert_eq!(delivery.kind, DeliveryKind::Reset);
        let floor = match &delivery.target {
            Target::Room(room) => self.rooms.get_mut(room),
            Target::User(_) => Some(&mut self.inbox),
            Target::RoomExcept(_) | Target::All => None,
        };
        let Some(floor) = floor else { return false };
        if floor.epoch == delivery.epoch {
            return false;
        }
        *floor = Floor { epoch: delivery.epoch, offset: delivery.offset.unwrap_or(0) };
        true
    }

    /// Leaves the hub and presence (announcing the user's leaves). Never
    /// waits; done by `Drop` when the transport did not.
    pub(crate) fn close(&mut self) {
        if !std::mem::take(&mut self.registered) {
            return;
        }
        let departure = self.state.hub().unregister(self.key());
        let engine = self.state.engine();
        engine.presence().disconnected(&self.user, &departure);
        for (room, left) in &departure.rooms {
            if left.emptied {
                engine.broker().unfollow(&StreamKey::Room(room.clone()));
            }
        }
        if departure.last_of_user {
            engine.broker().unfollow(&StreamKey::Inbox(self.user.clone()));
        }
        self.rooms.clear();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// Takes connection `key` out of `room` on the hub and tells presence
/// (`announce` false for a join that was never announced).
fn leave(state: &AppState, key: u64, room: &str, user: &Arc<str>, announce: bool) {
    let left = state.hub().leave(key, room);
    if !left.was_member {
        return;
    }
    let engine = state.engine();
    let room: Arc<str> = room.into();
    engine.presence().left(&room, user, left, announce);
    if left.emptied {
        engine.broker().unfollow(&StreamKey::Room(room));
    }
}

/// Undoes a join on the hub unless disarmed: a join that failed, or whose
/// future was dropped, leaves nothing behind.
struct Undo<'a> {
    connection: &'a Connection,
    room: Arc<str>,
    armed: bool,
}

impl Undo<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if self.armed {
            let connection = self.connection;
            leave(&connection.state, connection.key(), &self.room, &connection.user, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use tungstenite::Utf8Bytes;

    fn message(room: &str, epoch: &str, offset: u64) -> Delivery {
        let frame = Utf8Bytes::from(format!("m{offset}"));
        Delivery::message(Target::Room(room.into()), frame, epoch_tag(epoch), offset)
    }

    #[tokio::test]
    async fn a_new_epoch_is_never_taken_for_messages_already_seen() {
        let state = AppState::new(Config::default()).unwrap();
        let mut connection = Connection::new(state, Identity::trusted("ann"), None);
        connection.open(None, ConnectionInfo::test()).await.unwrap();
        let entered = connection.enter("quiet", None).await.unwrap();
        let epoch = entered.position.epoch.clone();
        connection.rooms.insert("quiet".into(), Floor { epoch: epoch_tag(&epoch), offset: 50 });
        assert_eq!(connection.wanted(&message("quiet", &epoch, 50)), Verdict::Skip);
        assert_eq!(connection.wanted(&message("quiet", &epoch, 51)), Verdict::Write);
        // The stream started over: its first message is not "offset 1,
        // already seen"; it is of another epoch, skipped until the reset
        // moves the connection there, then taken.
        assert_eq!(connection.wanted(&message("quiet", "fresh", 1)), Verdict::Skip);
        let frame = Utf8Bytes::from("reset");
        let mut reset = Delivery::new(Target::Room("quiet".into()), frame, DeliveryKind::Reset);
        (reset.epoch, reset.offset) = (epoch_tag("fresh"), Some(0));
        assert!(connection.reset(&reset), "moved, and the client is told");
        assert!(!connection.reset(&reset), "once");
        assert_eq!(connection.wanted(&message("quiet", "fresh", 1)), Verdict::Write);
        assert_eq!(
            connection.wanted(&message("quiet", &epoch, 52)),
            Verdict::Skip,
            "the old epoch is over"
        );
    }

    #[tokio::test]
    async fn a_join_again_keeps_the_place_of_messages_still_queued() {
        let state = AppState::new(Config::default()).unwrap();
        let mut connection = Connection::new(state.clone(), Identity::trusted("ann"), None);
        connection.open(None, ConnectionInfo::test()).await.unwrap();
        connection.enter("busy", None).await.unwrap();
        for n in 0..5 {
            state.publish("busy", "e", serde_json::json!(n)).await.unwrap();
        }
        // Five messages wait in the queue; the client joins again meanwhile.
        let again = connection.enter("busy", None).await.unwrap();
        assert_eq!(again.position.offset, 5);
        let mut written = 0;
        while let Some(delivery) = connection.queue.try_recv() {
            let message = delivery.kind == DeliveryKind::Message;
            if message && connection.wanted(&delivery) == Verdict::Write {
                written += 1;
            }
        }
        assert_eq!(written, 5, "none of the queued messages is dropped");
    }

    #[tokio::test]
    async fn a_join_cut_short_is_undone() {
        let state = AppState::new(Config::default()).unwrap();
        let mut connection = Connection::new(state.clone(), Identity::trusted("ann"), None);
        connection.open(None, ConnectionInfo::test()).await.unwrap();
        // What `enter` leaves when it fails or is dropped after the hub's
        // join and before presence heard of it: the guard, armed.
        state.hub().join(connection.key(), "room", true).unwrap();
        drop(Undo { connection: &connection, room: "room".into(), armed: true });
        assert!(!connection.is_member("room"), "nothing left of it");
        assert_eq!(state.hub().room_count(), 0);
        // Disarmed, the join stands.
        state.hub().join(connection.key(), "room", true).unwrap();
        Undo { connection: &connection, room: "room".into(), armed: true }.disarm();
        assert!(connection.is_member("room"));
        drop(connection);
        assert_eq!(state.hub().connection_count(), 0, "a dropped connection leaves the hub");
    }
}
