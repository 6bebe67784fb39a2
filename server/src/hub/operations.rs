//! What a WebSocket session, the HTTP API and an SSE stream all do the same
//! way: send a private message through the receiver's inbox, read a page of
//! a room's history, size a page of members, announce presence.

use std::sync::Arc;

use switchboard_protocol::{Message, Presence, PresenceAction, ServerFrame};

use crate::AppState;
use crate::broker::{Delivery, DeliveryKind, Target};
use crate::hub::streams::messages;
use crate::state::server_api::SendStatus;
use crate::store::{StoreError, StreamKey};
use crate::transport::wire::encode;

/// What a private send did.
pub(crate) struct Sent {
    pub(crate) reached: usize,
    pub(crate) status: SendStatus,
    pub(crate) offset: u64,
}

/// Stores a private message in the receiver's inbox and delivers it to their
/// connections: `live` when some got it now, `queued` when it waits in the
/// inbox, `dropped` when the inbox keeps no history and nobody is connected.
/// `request` is the sender and the request's id, when it has one.
pub(crate) async fn send_private(
    state: &AppState,
    to: Arc<str>,
    message: Message,
    request: Option<(&str, &str)>,
) -> Result<Sent, crate::hub::streams::PublishError> {
    let key = StreamKey::Inbox(to.clone());
    let keeps = state.streams().limits(&key).size > 0;
    let target = Target::User(to);
    let published = state.streams().publish(state.broker(), key, target, message, request).await?;
    state.hub().counters.message_accepted();
    let status = match (published.reached, keeps) {
        (0, true) => SendStatus::Queued,
        (0, false) => SendStatus::Dropped,
        _ => SendStatus::Live,
    };
    Ok(Sent { reached: published.reached, status, offset: published.stored.offset })
}

/// A page of a room's history.
pub(crate) struct Page {
    /// `None` when the room has no stream (never used, or swept when idle).
    pub(crate) epoch: Option<String>,
    pub(crate) offset: u64,
    pub(crate) messages: Vec<Message>,
}

/// Reads up to `limit` (capped by `history.max_page`) messages of a room
/// after `since`. A room without a stream reads as empty, and stays without.
pub(crate) async fn read_history(
    state: &AppState,
    room: &str,
    since: Option<u64>,
    limit: Option<u32>,
) -> Result<Page, StoreError> {
    let streams = state.streams();
    let key = StreamKey::Room(room.into());
    let limit = limit.map_or(100, |l| l as usize).min(streams.max_page());
    Ok(match streams.page(&key, since, limit).await? {
        Some((position, stored)) => Page {
            epoch: Some(position.epoch),
            offset: position.offset,
            messages: messages(&stored),
        },
        None => Page { epoch: None, offset: 0, messages: Vec::new() },
    })
}

/// The size of a `members` page: `limit`, 100 when absent, at most
/// [`MAX_MEMBERS_PAGE`](switchboard_protocol::MAX_MEMBERS_PAGE).
pub(crate) fn members_limit(limit: Option<u32>) -> usize {
    limit.unwrap_or(100).clamp(1, switchboard_protocol::MAX_MEMBERS_PAGE) as usize
}

/// Tells a room that `user` joined or left. Presence is best effort: a broker
/// failure is logged, and the request that caused it still succeeds.
pub(crate) async fn announce(state: &AppState, room: &str, user: &str, action: PresenceAction) {
    let frame = encode(&ServerFrame::Presence(Presence {
        room: room.to_owned(),
        user: user.to_owned(),
        action,
    }));
    let delivery = Delivery {
        target: Target::Room(room.into()),
        frame,
        kind: DeliveryKind::Presence,
        offset: None,
    };
    if let Err(err) = state.broker().publish(delivery).await {
        tracing::warn!(%room, %user, ?action, %err, "presence not delivered");
    }
}
