//! The broker: how a delivery reaches every node's hub.
//!
//! Sessions and the HTTP API never call the hub's fan-out directly; they hand
//! a [`Delivery`] to the node's [`Broker`], which carries it to every node
//! (this one included) and lets each node's [`Hub`](crate::Hub) deliver it to
//! its own connections. [`MemoryBroker`] is the default
//! for a single node; [`RedisBroker`] carries deliveries between the nodes
//! of a cluster (`redis.url`); another broker implements the same trait and
//! is passed to [`AppState::with_broker`](crate::AppState::with_broker),
//! without any change to the hub or the sessions.
//!
//! The frame inside a delivery is serialized once; nodes and recipients share it.

mod memory;
mod redis;
pub use memory::MemoryBroker;
pub use redis::RedisBroker;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tungstenite::Utf8Bytes;

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
}

/// What a delivery carries, so that hubs count messages and not presence.
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
}

impl DeliveryKind {
    /// Whether only members allowed to see presence receive it.
    pub fn is_presence(self) -> bool {
        matches!(self, DeliveryKind::Presence | DeliveryKind::Occupancy)
    }

    /// Whether it is an order for the connection (join, leave) rather than
    /// a frame to write.
    pub fn is_order(self) -> bool {
        matches!(self, DeliveryKind::Join | DeliveryKind::Leave)
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
}

/// A broker could not carry a delivery.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The broker's backend cannot be reached right now.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// The future a broker returns.
pub type BrokerFuture<'a> = Pin<Box<dyn Future<Output = Result<usize, BrokerError>> + Send + 'a>>;

/// Carries deliveries to every node's hub.
pub trait Broker: Send + Sync + 'static {
    /// Publishes a delivery to every node. Resolves with how many connections
    /// it reached as far as this broker can tell (a single-node broker knows
    /// exactly; a multi-node broker may count only this node's), once the
    /// delivery is committed: deliveries published one after another by the
    /// same caller reach each connection in that order.
    fn publish(&self, delivery: Delivery) -> BrokerFuture<'_>;
}
