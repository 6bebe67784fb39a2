//! What the client reports to the application besides messages: its
//! [`ConnectionState`], the lifecycle events handed to handlers, and the
//! [`History`] pages it reads.

use switchboard_protocol::CloseCode;

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// Not connected and not trying (before `connect()`, after
    /// `disconnect()`, or after giving up).
    Disconnected,
    /// Opening a connection, or waiting to retry.
    Connecting,
    /// Connected: the server's `welcome` arrived.
    Connected,
    /// Closed for good with `close()`.
    Closed,
}

/// The client is about to open a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connecting {
    /// 0 for the first attempt after `connect()` or after a lost connection,
    /// then 1, 2, … for each retry; reset only once a `welcome` arrives.
    pub attempt: u32,
}

/// The connection is open and the server welcomed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The server's id for this connection.
    pub session: String,
    /// The user id the server resolved.
    pub user: String,
    /// The server's heartbeat interval in milliseconds.
    pub heartbeat_ms: u64,
    /// After a reconnect: whether every private message sent meanwhile was
    /// delivered (true) or some are lost to this connection (false). `None`
    /// on a first connection, which gets whatever waited in the inbox.
    pub inbox_recovered: Option<bool>,
}

/// The connection closed or could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnected {
    /// The close code, when the server sent one.
    pub code: Option<CloseCode>,
    /// Why, as far as the client knows.
    pub reason: String,
    /// Whether the client will try again on its own.
    pub will_reconnect: bool,
}

/// A room was joined: by the app's `join`, automatically after a
/// reconnect, or by the server (a server-side join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: String,
    /// The users present, this one included, in byte order: all of them in a
    /// room of up to the hub's `rooms.join_ack_members` (default 100), else
    /// the first that many ([`Client::members`](crate::Client::members) reads
    /// them all). Presence UIs reset from this, since a reconnect may have
    /// missed `presence` events.
    pub members: Vec<String>,
    /// How many users the room holds in all.
    pub member_count: u64,
    /// True when the room is large: its joins and leaves come as
    /// [`Occupancy`](switchboard_protocol::Occupancy) counts, not as
    /// `presence` events.
    pub large: bool,
    /// True when the client rejoined on its own after a reconnect.
    pub rejoin: bool,
    /// For a rejoin: whether every message published meanwhile was replayed
    /// before this event (true), or the gap could not be filled (false: reload
    /// the room from your own source). `None` for a first join.
    pub recovered: Option<bool>,
    /// True when the server put the client in the room (the application's
    /// backend called the hub's server-side join). The client rejoins it
    /// after a reconnect like its own rooms.
    pub by_server: bool,
    /// What the application says about the room (name, description, its
    /// own data), when it is a managed room.
    pub info: Option<switchboard_protocol::RoomInfo>,
}

/// The server took the client out of a room (a server-side leave). The
/// client no longer rejoins it. The app's own [`Client::leave`](crate::Client::leave)
/// resolves its future instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The room.
    pub room: String,
}

/// A stream the client follows started over under a new epoch: the hub
/// lost its history (its Redis lost its data) while the client was in it.
/// The client carries on from the new position by itself; messages
/// published before the loss that it had not received are gone, so an
/// application that shows the room (or the private messages) reloads them
/// from its own source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// The room; `None` for the user's inbox of private messages.
    pub room: Option<String>,
}

/// One page of a room's members, as [`Client::members_page`](crate::Client::members_page) returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembersPage {
    /// Users in byte order.
    pub members: Vec<String>,
    /// How many users the room holds in all.
    pub member_count: u64,
    /// Pass it to the next call for the following page; `None` on the last.
    pub cursor: Option<String>,
}

/// A page of a room's stored history, as [`Client::history`](crate::Client::history) returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The room's epoch; `None` when the room has no stored stream yet
    /// (nothing was ever published to it, or everything in it expired).
    pub epoch: Option<String>,
    /// The offset of the room's last message.
    pub offset: u64,
    /// The messages, oldest first.
    pub messages: Vec<switchboard_protocol::Message>,
}
