//! [`Delivery`]: a serialized server frame and who it is for, the one thing
//! the hub's fan-out takes. The engine builds deliveries (from a publish on
//! this node, or from another node's publish that reached this one) and
//! hands them to [`Hub::deliver`](crate::Hub::deliver); every recipient's
//! queue holds a clone that shares the frame's buffer.

use std::sync::Arc;

use switchboard_protocol::{Position, Presence, PresenceAction, ServerFrame};

use crate::binary::Enveloped;
use crate::deflate::Deflated;
use crate::wire::encode;
use tungstenite::Utf8Bytes;

use crate::stream::StreamKey;

/// Who a delivery is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every connection in a room.
    Room(Arc<str>),
    /// Every connection in a room but one session (a publish that leaves
    /// out its sender). Boxed: a delivery sits in every recipient's queue,
    /// and this keeps `Target` as small as a room's name.
    RoomExcept(Box<(Arc<str>, uuid::Uuid)>),
    /// Every connection of a user.
    User(Arc<str>),
    /// Every connection.
    All,
}

impl Target {
    /// The room, for a room target.
    pub fn room(&self) -> Option<&Arc<str>> {
        match self {
            Target::Room(room) => Some(room),
            Target::RoomExcept(room_except) => Some(&room_except.0),
            Target::User(_) | Target::All => None,
        }
    }

    /// The stream whose messages go to this target: a room's, or a user's
    /// inbox; none for every connection.
    pub fn stream(&self) -> Option<StreamKey> {
        match self {
            Target::Room(room) => Some(StreamKey::Room(room.clone())),
            Target::RoomExcept(room_except) => Some(StreamKey::Room(room_except.0.clone())),
            Target::User(user) => Some(StreamKey::Inbox(user.clone())),
            Target::All => None,
        }
    }

    /// Who a stream's messages go to.
    pub fn of(key: &StreamKey) -> Target {
        match key {
            StreamKey::Room(room) => Target::Room(room.clone()),
            StreamKey::Inbox(user) => Target::User(user.clone()),
        }
    }
}

/// What a delivery carries, so that hubs count messages and not presence,
/// and sessions tell frames to write from orders to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryKind {
    /// A `message` frame.
    Message,
    /// A `presence` frame.
    Presence,
    /// An `occupancy` frame: presence of a large room, as a count.
    Occupancy,
    /// Not a frame: an order to every connection of the target user to
    /// join the room that `frame` names (a server-side join). Each
    /// connection carries it out as its own join and tells its client with
    /// a `joined` frame.
    Join,
    /// The same for leaving the room that `frame` names (a `left` frame).
    Leave,
    /// The target's stream started over under a new epoch (its history was
    /// lost while connections followed it). `frame` is the `reset` frame to
    /// write, `epoch` and `offset` the new position: a connection whose
    /// position is of another epoch moves to it and tells its client.
    Reset,
}

impl DeliveryKind {
    /// Whether only members allowed to see presence receive it.
    pub fn is_presence(self) -> bool {
        matches!(self, DeliveryKind::Presence | DeliveryKind::Occupancy)
    }

    /// Whether it is an order for the connection (join, leave, reset)
    /// rather than a frame to write as it is.
    pub fn is_order(self) -> bool {
        matches!(self, DeliveryKind::Join | DeliveryKind::Leave | DeliveryKind::Reset)
    }
}

/// A serialized server frame and where it goes.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The recipients.
    pub target: Target,
    /// The frame's JSON text, shared by every recipient.
    pub frame: Utf8Bytes,
    /// Its kind.
    pub kind: DeliveryKind,
    /// Its offset in the target's stream (the room's, or the user's inbox),
    /// for messages that are stored; `None` for presence and broadcasts to all.
    pub offset: Option<u64>,
    /// The stream's epoch as a tag (a hash of the epoch string, compared, never shown)
    /// when `offset` is set; 0 otherwise. A connection drops a message of
    /// an epoch other than the one it follows.
    pub epoch: u64,
    /// `frame` compressed for connections that negotiated permessage-deflate,
    /// once the first of them writes it.
    pub(crate) deflated: Deflated,
    /// For a `message` whose payload is bytes: its binary form for
    /// connections that speak binary, once the first of them writes it.
    pub(crate) enveloped: Enveloped,
}

impl Delivery {
    /// A frame outside any stream (presence, a broadcast to everyone, an order).
    pub fn new(target: Target, frame: Utf8Bytes, kind: DeliveryKind) -> Delivery {
        Delivery {
            target,
            frame,
            kind,
            offset: None,
            epoch: 0,
            deflated: Deflated::default(),
            enveloped: Enveloped::default(),
        }
    }

    /// A stream's message at `offset` of the epoch tagged `epoch`.
    pub fn message(target: Target, frame: Utf8Bytes, epoch: u64, offset: u64) -> Delivery {
        Delivery {
            target,
            frame,
            kind: DeliveryKind::Message,
            offset: Some(offset),
            epoch,
            deflated: Deflated::default(),
            enveloped: Enveloped::default(),
        }
    }
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

/// A server-side join as it travels to the user's connections (the
/// `frame` of a [`DeliveryKind::Join`] delivery): the room, and where its
/// stream stood when the join was asked for, so the connection replays
/// what was published meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JoinOrder {
    pub(crate) room: String,
    pub(crate) since: Position,
}

impl JoinOrder {
    /// `room`, epoch and offset on three lines (names hold no control
    /// characters, epochs are hex).
    pub(crate) fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.room, self.since.epoch, self.since.offset)
    }

    /// Reads an encoded order; `None` for anything else.
    pub(crate) fn decode(text: &str) -> Option<JoinOrder> {
        let mut lines = text.splitn(3, '\n');
        let room = lines.next()?.to_owned();
        let epoch = lines.next()?.to_owned();
        let offset = lines.next()?.parse().ok()?;
        Some(JoinOrder { room, since: Position { epoch, offset } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_slot_is_one_pointer_whatever_a_delivery_holds() {
        // Every recipient's queue holds the shared delivery by pointer: a
        // burst to a big room grows each member's queue by 8 bytes a
        // message, not by the delivery's 80.
        assert_eq!(std::mem::size_of::<Arc<Delivery>>(), std::mem::size_of::<usize>());
        // Target 24, frame 32, offset 16, epoch 8, the compressed form's
        // cache 24, the binary form's 16, kind 1 (padded): per
        // publication, not per recipient.
        assert!(std::mem::size_of::<Delivery>() <= 136, "{}", std::mem::size_of::<Delivery>());
    }

    #[test]
    fn targets_name_their_stream() {
        let room: Arc<str> = "r".into();
        assert_eq!(Target::Room(room.clone()).stream(), Some(StreamKey::Room(room.clone())));
        let except = Target::RoomExcept(Box::new((room.clone(), uuid::Uuid::nil())));
        assert_eq!(except.stream(), Some(StreamKey::Room(room.clone())));
        assert_eq!(Target::of(&StreamKey::Inbox("u".into())), Target::User("u".into()));
        assert_eq!(Target::All.stream(), None);
    }

    #[test]
    fn a_join_order_reads_back_as_written_and_nothing_else_reads() {
        let order = JoinOrder {
            room: "chat:42".into(),
            since: Position { epoch: "0f3a".into(), offset: 17 },
        };
        assert_eq!(JoinOrder::decode(&order.encode()), Some(order));
        assert_eq!(JoinOrder::decode("lobby"), None);
        assert_eq!(JoinOrder::decode("lobby\ne\nseven"), None);
    }
}
