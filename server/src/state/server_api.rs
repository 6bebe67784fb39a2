//! The in-process server API: what the HTTP admin API does, as methods of
//! [`AppState`] for Rust code in the process that embeds the hub. Service
//! code sends to a user, publishes to a room, broadcasts, disconnects a
//! user, or asks who is online, through the same path as `POST /api/…`:
//! names checked, history and offsets, the broker (so in multi-node mode
//! every node hears it). The HTTP handlers are thin wrappers over these.
//!
//! ```no_run
//! # async fn example(state: switchboard_server::AppState) -> Result<(), switchboard_server::ServerError> {
//! use serde_json::json;
//! let sent = state.send("alice", "invoice", json!({"id": 42})).await?;
//! println!("{} connections now, {}", sent.delivered, sent.status.as_str());
//! state.publish("general", "notice", json!("maintenance at 5")).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use switchboard_protocol::{CloseCode, Message, NameError, ServerFrame, validate_name};

use super::AppState;
use crate::binary::Payload;
use crate::engine::broker::messages;
use crate::engine::{EngineError, Publication};
use crate::hub::{Delivery, DeliveryKind, JoinOrder, Target};
use crate::stream::StreamKey;
use crate::wire::{encode, now_ms};

/// A server-side request that could not be carried out.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServerError {
    /// A name breaks the protocol's naming rules.
    #[error("invalid `{field}`: {reason}")]
    InvalidName {
        /// Which argument.
        field: &'static str,
        /// Which rule.
        reason: NameError,
    },
    /// A close code outside 1000 and 3000–4999 (RFC 6455 7.4).
    #[error("`code` must be 1000 or within 3000–4999, not {0}")]
    InvalidCloseCode(u16),
    /// Not a session id (32 hex digits, as `welcome` names it).
    #[error("no session `{0}`")]
    UnknownSession(String),
    /// The history store, the broker or Redis failed; nothing was sent.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl From<EngineError> for ServerError {
    fn from(err: EngineError) -> Self {
        ServerError::Unavailable(err.to_string())
    }
}

/// Where a private message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Some connection of the user got it now.
    Live,
    /// Nobody was connected: it waits in the user's inbox.
    Queued,
    /// Nobody was connected and the inbox keeps no history.
    Dropped,
}

impl SendStatus {
    /// `live`, `queued` or `dropped`, as the HTTP API says it.
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Live => "live",
            SendStatus::Queued => "queued",
            SendStatus::Dropped => "dropped",
        }
    }
}

/// A private message sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Connections that got it now (across the cluster in multi-node mode).
    pub delivered: usize,
    /// Where it went.
    pub status: SendStatus,
    /// Its offset in the user's inbox.
    pub offset: u64,
}

/// A message published to a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Connections it was queued to (on one node; 0 in multi-node mode,
    /// where other nodes deliver it).
    pub delivered: usize,
    /// Its offset in the room's stream.
    pub offset: u64,
}

/// A page of a room's users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Users in byte order.
    pub users: Vec<String>,
    /// Users in the room in all.
    pub count: usize,
    /// The last user of this page when more follow.
    pub cursor: Option<String>,
}

fn check(field: &'static str, name: &str) -> Result<(), ServerError> {
    validate_name(name).map_err(|reason| ServerError::InvalidName { field, reason })
}

/// A page of a room's history.
pub(crate) struct Page {
    /// `None` when the room has no stream (never used, or swept when idle).
    pub(crate) epoch: Option<String>,
    pub(crate) offset: u64,
    pub(crate) messages: Vec<Message>,
}

/// The size of a `members` page: `limit`, 100 when absent, at most
/// [`MAX_MEMBERS_PAGE`](switchboard_protocol::MAX_MEMBERS_PAGE).
pub(crate) fn members_limit(limit: Option<u32>) -> usize {
    limit.unwrap_or(100).clamp(1, switchboard_protocol::MAX_MEMBERS_PAGE) as usize
}

impl AppState {
    /// A message from the server (`from` is `server_name`) for the server's
    /// own requests.
    fn server_message(
        &self,
        room: Option<&str>,
        to: Option<&str>,
        event: &str,
        data: Payload,
    ) -> Message {
        let (data, encoding) = data.into_fields();
        Message {
            encoding,
            room: room.map(str::to_owned),
            to: to.map(str::to_owned),
            from: self.config().server_name.clone(),
            event: event.to_owned(),
            data,
            ts: now_ms(),
            offset: None,
            binary: None,
        }
    }

    /// Sends a private message from the server to every connection of
    /// `user`, through their inbox: kept there when none is connected
    /// (`POST /api/send`). `data` is JSON (a [`serde_json::Value`]) or
    /// bytes ([`Payload::Bytes`], also from a `Vec<u8>` or a `&[u8]`).
    pub async fn send(
        &self,
        user: &str,
        event: &str,
        data: impl Into<Payload>,
    ) -> Result<Sent, ServerError> {
        check("to", user)?;
        check("event", event)?;
        let message = self.server_message(None, Some(user), event, data.into());
        Ok(self.send_private(user.into(), message, None).await?)
    }

    /// Stores a private message in the receiver's inbox and delivers it to
    /// their connections: `live` when some got it now, `queued` when it
    /// waits in the inbox, `dropped` when the inbox keeps no history and
    /// nobody is connected. `request` is the sender and the request's id,
    /// when it has one (a repeat is answered with the first offset).
    pub(crate) async fn send_private(
        &self,
        to: Arc<str>,
        message: Message,
        request: Option<(Arc<str>, String)>,
    ) -> Result<Sent, EngineError> {
        let key = StreamKey::Inbox(to.clone());
        let copy = self.events().map(|_| message.clone());
        let publication = Publication { key, target: Target::User(to), message, request };
        let published = self.engine().publish(publication).await?;
        if !published.repeated {
            self.hub().counters.message_accepted();
            if let (Some(events), Some(message)) = (self.events(), copy) {
                events.sent(&message, published.offset);
            }
        }
        let status = match (published.reached, published.kept) {
            (0, true) => SendStatus::Queued,
            (0, false) => SendStatus::Dropped,
            _ => SendStatus::Live,
        };
        Ok(Sent { delivered: published.reached, status, offset: published.offset })
    }

    /// Reads up to `limit` (capped by `history.max_page`) messages of a
    /// room after `since`. A room without a stream reads as empty, and
    /// stays without.
    pub(crate) async fn read_history(
        &self,
        room: &str,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Page, EngineError> {
        let engine = self.engine();
        let key = StreamKey::Room(room.into());
        let limit = limit.map_or(100, |l| l as usize).min(engine.rules().max_page());
        Ok(match engine.page(&key, since, limit).await? {
            Some((position, stored)) => Page {
                epoch: Some(position.epoch),
                offset: position.offset,
                messages: messages(&stored),
            },
            None => Page { epoch: None, offset: 0, messages: Vec::new() },
        })
    }

    /// Publishes a message from the server to a room, as part of its stream
    /// (recoverable like any) (`POST /api/broadcast` with `room`).
    /// `data` is JSON (a [`serde_json::Value`]) or bytes
    /// ([`Payload::Bytes`], also from a `Vec<u8>` or a `&[u8]`).
    pub async fn publish(
        &self,
        room: &str,
        event: &str,
        data: impl Into<Payload>,
    ) -> Result<Published, ServerError> {
        self.publish_except(room, event, data, None).await
    }

    /// Like [`AppState::publish`], leaving out one session (`except`, the
    /// id its `welcome` named): every other connection in the room gets
    /// it, and it is part of the room's history all the same.
    pub async fn publish_except(
        &self,
        room: &str,
        event: &str,
        data: impl Into<Payload>,
        except: Option<&str>,
    ) -> Result<Published, ServerError> {
        check("room", room)?;
        check("event", event)?;
        let except = except
            .map(|session| {
                uuid::Uuid::try_parse(session)
                    .map_err(|_| ServerError::UnknownSession(session.to_owned()))
            })
            .transpose()?;
        let message = self.server_message(Some(room), None, event, data.into());
        let copy = self.events().map(|_| message.clone());
        let room: Arc<str> = room.into();
        let key = StreamKey::Room(room.clone());
        let target = match except {
            Some(session) => Target::RoomExcept(Box::new((room, session))),
            None => Target::Room(room),
        };
        let publication = Publication { key, target, message, request: None };
        let published = self.engine().publish(publication).await?;
        self.hub().counters.message_accepted();
        if let (Some(events), Some(message)) = (self.events(), copy) {
            events.published(&message, published.offset);
        }
        Ok(Published { delivered: published.reached, offset: published.offset })
    }

    /// Sends a message from the server to every connection (of every node),
    /// outside any stream; returns how many connections it reached
    /// (`POST /api/broadcast` without `room`).
    pub async fn broadcast(
        &self,
        event: &str,
        data: impl Into<Payload>,
    ) -> Result<usize, ServerError> {
        check("event", event)?;
        let message = self.server_message(None, None, event, data.into());
        let frame = encode(&ServerFrame::Message(message));
        let delivery = Delivery::new(Target::All, frame, DeliveryKind::Message);
        let delivered = self.engine().broker().deliver(delivery).await?;
        self.hub().counters.message_accepted();
        Ok(delivered)
    }

    /// Closes every connection of `user` (on every node) with `code`;
    /// returns how many there were (`POST /api/disconnect`). 4501
    /// ([`CloseCode::KICKED`]) tells the SDKs not to reconnect.
    pub async fn disconnect(
        &self,
        user: &str,
        code: CloseCode,
        reason: &str,
    ) -> Result<usize, ServerError> {
        check("user", user)?;
        if !(code == CloseCode::NORMAL || (3000..5000).contains(&code.0)) {
            return Err(ServerError::InvalidCloseCode(code.0));
        }
        Ok(self.engine().node().close_user(user, code, reason).await?)
    }

    /// Puts every connection `user` has now (on every node) in `room`, as if
    /// each had sent `join`: the permissions and the join hook are not
    /// asked (the application decides), the per-connection room limit
    /// applies. Each connection tells its client with a `joined` frame, and
    /// the SDKs rejoin the room after a reconnect like their own rooms (a
    /// rejoin is a client's join, so the permissions then apply). Returns
    /// how many connections the order reached (across the cluster in
    /// multi-node mode); a user who is not connected is not remembered:
    /// for rooms a user should always be in, answer the connect hook with
    /// them. SSE feeds keep the rooms of their URL. `POST
    /// /api/rooms/{room}/join`.
    pub async fn join(&self, user: &str, room: &str) -> Result<usize, ServerError> {
        check("user", user)?;
        check("room", room)?;
        // Where the room stands now: each connection replays what was
        // published between this call and its join, so a message published
        // once `join` returned reaches the user like any member.
        let key = StreamKey::Room(room.into());
        let position = self.engine().broker().head(&key).await?;
        let order = JoinOrder { room: room.into(), since: position };
        self.order(DeliveryKind::Join, user, order.encode()).await
    }

    /// Takes every connection of `user` (on every node) out of `room`; each
    /// tells its client with a `left` frame, and the SDKs stop rejoining
    /// it. Returns how many connections the order reached. `POST
    /// /api/rooms/{room}/leave`.
    pub async fn leave(&self, user: &str, room: &str) -> Result<usize, ServerError> {
        check("user", user)?;
        check("room", room)?;
        self.order(DeliveryKind::Leave, user, room.to_owned()).await
    }

    /// Hands a join or leave order to every connection of `user`.
    async fn order(
        &self,
        kind: DeliveryKind,
        user: &str,
        order: String,
    ) -> Result<usize, ServerError> {
        let delivery = Delivery::new(Target::User(user.into()), order.into(), kind);
        Ok(self.engine().broker().deliver(delivery).await?)
    }

    /// Every user connected (to any node, in multi-node mode), sorted.
    pub async fn online_users(&self) -> Result<Vec<String>, ServerError> {
        let online = self.engine().presence().online().await?;
        Ok(online.into_iter().map(|(user, _)| user).collect())
    }

    /// Up to `limit` users of `room` after `cursor`, in byte order; `None`
    /// when nobody is in it.
    pub async fn room_members(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Option<Members>, ServerError> {
        check("room", room)?;
        let page = self.engine().presence().members(room, cursor, limit).await?;
        Ok(page.map(|page| Members { users: page.members, count: page.count, cursor: page.cursor }))
    }
}
