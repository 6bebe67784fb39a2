//! `GET /sse?user_id=…&rooms=a,b`: Server-Sent Events for receive-only
//! clients, with the same delivery guarantees as WebSocket sessions.
//!
//! Every stored message goes out with an SSE `id` that is the client's whole
//! cursor: its inbox position and each room's. A browser's `EventSource`
//! sends the last one back as `Last-Event-ID` when it reconnects, and the
//! hub replays every stream from there, exactly like `join` with `since`.
//!
//! Events: room and private messages have no event name (they reach
//! `onmessage`) and carry the same JSON as the WebSocket `message` frame;
//! `presence` events carry presence frames and `occupancy` events the counts
//! of large rooms (see docs/PROTOCOL.md, "Large rooms"); one `resumed`
//! event, first,
//! says per stream whether a resume requested by `Last-Event-ID` was
//! complete (`{"inbox":true,"rooms":{"news":false}}`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use switchboard_protocol::{Position, PresenceAction, validate_name};

use crate::AppState;
use crate::api::ApiError;
use crate::broker::{Delivery, DeliveryKind, Target};
use crate::hub::connections::{ConnectionInfo, Transport};
use crate::hub::operations::announce;
use crate::hub::outbound::{self, Outbound, OutboundQueue};
use crate::hub::presence;
use crate::policy::admission::Ticket;
use crate::policy::auth::{AuthError, Identity};
use crate::policy::hooks::{self, ConnectDecision, ConnectRequest, Decision};
use crate::policy::identity::{self, ConnectQuery, Resolved};
use crate::store::{Replay, Stored, StreamKey};
use crate::transport::client_addr::client_ip;
use crate::transport::ws::Peer;

/// Most rooms one SSE connection may follow.
const MAX_ROOMS: usize = 100;

/// The query of `GET /sse`.
#[derive(Debug, Deserialize)]
pub(crate) struct SseQuery {
    user_id: Option<String>,
    token: Option<String>,
    /// Comma-separated room names.
    #[serde(default)]
    rooms: String,
}

/// Where a client stands in each stream: what an SSE event id encodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    inbox: Option<Position>,
    rooms: BTreeMap<String, Position>,
}

impl Cursor {
    /// `i=EPOCH:OFFSET&r=EPOCH:OFFSET:ROOM&…`, form-encoded so any room
    /// name stays a valid header value.
    pub(crate) fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if let Some(inbox) = &self.inbox {
            out.append_pair("i", &format!("{}:{}", inbox.epoch, inbox.offset));
        }
        for (room, position) in &self.rooms {
            out.append_pair("r", &format!("{}:{}:{room}", position.epoch, position.offset));
        }
        out.finish()
    }

    /// Reads an id back; anything unreadable is skipped (that stream is then
    /// simply not resumed).
    pub(crate) fn decode(text: &str) -> Cursor {
        let mut cursor = Cursor::default();
        for (key, value) in form_urlencoded::parse(text.as_bytes()) {
            let mut parts = value.splitn(3, ':');
            let (Some(epoch), Some(offset)) = (parts.next(), parts.next()) else { continue };
            let Ok(offset) = offset.parse::<u64>() else { continue };
            let position = Position { epoch: epoch.to_owned(), offset };
            match (key.as_ref(), parts.next()) {
                ("i", None) => cursor.inbox = Some(position),
                ("r", Some(room)) => {
                    cursor.rooms.insert(room.to_owned(), position);
                }
                _ => {}
            }
        }
        cursor
    }
}

/// `GET /sse`.
pub(crate) async fn events(
    State(state): State<AppState>,
    Peer(peer): Peer,
    RawQuery(raw_query): RawQuery,
    query: Result<Query<SseQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return ApiError::BadRequest(rejection.body_text()).into_response(),
    };
    let connect =
        ConnectQuery { user_id: query.user_id, token: query.token, ..ConnectQuery::default() };
    let identity = match identity::resolve(&connect, &headers, state.auth()) {
        Ok(Resolved::Known(identity)) => identity,
        // An event stream has no frames to authenticate with.
        Ok(Resolved::AwaitAuthFrame) => {
            return ApiError::Auth(AuthError::MissingToken).into_response();
        }
        Err(err) => return ApiError::Auth(err).into_response(),
    };
    let mut identity = identity;
    let mut hooked_rooms = Vec::new();
    let address = peer.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |peer| {
        client_ip(peer.ip(), &headers, &state.config().limits.trusted_proxies)
    });
    // The application's say, as at a WebSocket's connect: it may refuse,
    // name the user, add rooms.
    if let Some((hooks, timeout)) = state.hooks() {
        let query = hooks::hook_query(raw_query.as_deref());
        let request =
            ConnectRequest { identity: &identity, address, headers: &headers, query: &query };
        match hooks::call("connect", timeout, hooks.connect(&request)).await {
            Ok(ConnectDecision::Allow { user, rooms, meta }) => {
                if let Some(user) = user {
                    if let Err(reason) = validate_name(&user) {
                        return ApiError::InvalidName { field: "user", reason }.into_response();
                    }
                    identity.user = user.into();
                }
                identity.meta = meta.map(Arc::new);
                hooked_rooms = rooms;
            }
            Ok(ConnectDecision::Refuse { message }) => {
                return ApiError::Refused(message).into_response();
            }
            Err(failure) => return ApiError::HookFailed(failure).into_response(),
        }
    }
    let rooms: Vec<String> = query
        .rooms
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .chain(hooked_rooms)
        .collect();
    if rooms.len() > MAX_ROOMS {
        return ApiError::BadRequest(format!("at most {MAX_ROOMS} rooms per connection"))
            .into_response();
    }
    for room in &rooms {
        if let Err(reason) = validate_name(room) {
            return ApiError::InvalidName { field: "rooms", reason }.into_response();
        }
    }
    let permissions = state.permissions();
    if let Some(room) =
        rooms.iter().find(|room| !permissions.allows(&identity, room, |rule| rule.join))
    {
        return ApiError::Forbidden(format!("not allowed to join `{room}`")).into_response();
    }
    // Each room's join, as the application sees it.
    if let Some((hooks, timeout)) = state.hooks() {
        for room in &rooms {
            match hooks::call("join", timeout, hooks.join(&identity, room)).await {
                Ok(Decision::Allow) => {}
                Ok(Decision::Refuse { message, .. }) => {
                    return ApiError::Refused(message).into_response();
                }
                Err(failure) => return ApiError::HookFailed(failure).into_response(),
            }
        }
    }
    let slot = match state.admission().admit(&state, peer, &headers, Some(&identity.user)) {
        Ok(ticket) => ticket,
        Err(err) => return err.into_response(),
    };
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(Cursor::decode);

    let info = ConnectionInfo {
        session: uuid::Uuid::new_v4(),
        transport: Transport::Sse,
        address,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(crate::hub::connections::intern_agent),
        connected_at: crate::transport::wire::now_ms(),
    };
    match Feed::open(state, identity, rooms, resume, slot, info).await {
        Ok(feed) => Sse::new(feed.into_stream())
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
        Err(err) => ApiError::Store(err).into_response(),
    }
}

/// One SSE connection: registered with the hub like a session.
struct Feed {
    state: AppState,
    outbound: Arc<Outbound>,
    queue: OutboundQueue,
    cursor: Cursor,
    floors: HashMap<StreamKey, u64>,
    /// Whether the feed was counted online in the cluster.
    counted: bool,
    /// Who it is, for the disconnect hook.
    identity: Identity,
    /// Events to send before anything live: `resumed`, then replays.
    backlog: VecDeque<Event>,
    _slot: Ticket,
}

impl Feed {
    async fn open(
        state: AppState,
        identity: Identity,
        rooms: Vec<String>,
        resume: Option<Cursor>,
        slot: Ticket,
        info: ConnectionInfo,
    ) -> Result<Feed, crate::store::StoreError> {
        let user = identity.user.clone();
        let hub = state.hub().clone();
        let limits = &state.config().limits;
        let (outbound, queue) = outbound::channel(
            hub.next_key(),
            user.clone(),
            limits.outbound_queue_messages,
            limits.outbound_queue_bytes,
        );
        let mut feed = Feed {
            state: state.clone(),
            outbound: Arc::new(outbound),
            queue,
            cursor: Cursor::default(),
            floors: HashMap::new(),
            counted: false,
            identity: identity.clone(),
            backlog: VecDeque::new(),
            _slot: slot,
        };
        let resume = resume.unwrap_or_default();
        let streams = state.streams();
        presence::connected(&state, &user).await?;
        feed.counted = true;
        let mut replays: Vec<(StreamKey, Stored)> = Vec::new();
        let mut report = serde_json::Map::new();

        // The inbox: registering with the hub makes this feed a live recipient.
        let inbox = StreamKey::Inbox(user.clone());
        let register = {
            let (hub, outbound) = (hub.clone(), feed.outbound.clone());
            move || hub.register(outbound, info)
        };
        let position = match &resume.inbox {
            Some(since) => {
                let ((), position, replay) = streams.resume(&inbox, Some(since), register).await?;
                let complete = matches!(replay, Some(Replay::Complete(_)));
                report.insert("inbox".into(), json!(complete));
                if let Some(Replay::Complete(missed)) = replay {
                    replays.extend(missed.into_iter().map(|m| (inbox.clone(), m)));
                    streams.mark_delivered(&inbox, position.offset).await?;
                }
                position
            }
            None => {
                let ((), position, pending) = streams.undelivered(&inbox, register).await?;
                replays.extend(pending.into_iter().map(|m| (inbox.clone(), m)));
                position
            }
        };
        feed.floors.insert(inbox.clone(), position.offset);
        feed.cursor.inbox = Some(position);

        let mut room_report = serde_json::Map::new();
        for room in rooms {
            let key = StreamKey::Room(room.as_str().into());
            let permissions = state.permissions();
            // Without the right to read history there is nothing to replay.
            let since = resume
                .rooms
                .get(&room)
                .filter(|_| permissions.allows(&identity, &room, |r| r.history));
            let sees_presence = permissions.allows(&identity, &room, |rule| rule.presence);
            let session = feed.outbound.key;
            let (joined, position, replay) =
                streams.resume(&key, since, || hub.join(session, &room, sees_presence)).await?;
            let joined = match joined {
                Some(joined) => Some(presence::joined(&state, &room, &user, joined).await?),
                None => None,
            };
            if joined.is_some_and(|j| j.announce) {
                announce(&state, &room, &user, PresenceAction::Join).await;
            }
            if replay.is_none() && resume.rooms.contains_key(&room) {
                room_report.insert(room.clone(), json!(false)); // asked, but history is not allowed
            }
            if let Some(replay) = replay {
                room_report.insert(room.clone(), json!(matches!(replay, Replay::Complete(_))));
                if let Replay::Complete(missed) = replay {
                    replays.extend(missed.into_iter().map(|m| (key.clone(), m)));
                }
            }
            feed.floors.insert(key, position.offset);
            feed.cursor.rooms.insert(room, position);
        }
        if resume != Cursor::default() {
            report.insert("rooms".into(), serde_json::Value::Object(room_report));
            feed.backlog.push_back(
                Event::default()
                    .event("resumed")
                    .data(serde_json::Value::Object(report).to_string()),
            );
        }
        // Replays go out with ids that advance the cursor from where the
        // client stood, so a drop during the replay resumes mid-way.
        let mut cursor = Cursor { inbox: resume.inbox.clone(), rooms: resume.rooms.clone() };
        for (room, position) in &feed.cursor.rooms {
            cursor.rooms.entry(room.clone()).or_insert_with(|| position.clone());
        }
        if cursor.inbox.is_none() {
            cursor.inbox = feed.cursor.inbox.clone();
        }
        for (key, stored) in replays {
            let event = stored_event(&mut cursor, &key, &stored.frame, stored.offset);
            feed.backlog.push_back(event);
        }
        feed.cursor = merge(cursor, &feed.cursor);
        Ok(feed)
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut feed| async move {
            if let Some(event) = feed.backlog.pop_front() {
                return Some((Ok(event), feed));
            }
            let shutdown = feed.state.shutdown_token().clone();
            let closing = feed.outbound.close_signal();
            loop {
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    _ = closing.requested() => return None,
                    delivery = feed.queue.recv() => delivery,
                };
                if let Some(event) = feed.live_event(&delivery) {
                    return Some((Ok(event), feed));
                }
            }
        })
    }

    /// The SSE event for a live delivery; `None` for one a replay covered.
    fn live_event(&mut self, delivery: &Delivery) -> Option<Event> {
        // A feed's rooms are the ones its URL and the connect hook named:
        // server-side joins and leaves are for WebSocket connections.
        if delivery.kind.is_order() {
            return None;
        }
        if delivery.kind == DeliveryKind::Presence {
            return Some(Event::default().event("presence").data(delivery.frame.as_str()));
        }
        if delivery.kind == DeliveryKind::Occupancy {
            return Some(Event::default().event("occupancy").data(delivery.frame.as_str()));
        }
        let Some(offset) = delivery.offset else {
            return Some(Event::default().data(delivery.frame.as_str()));
        };
        let key = match &delivery.target {
            Target::Room(room) => StreamKey::Room(room.clone()),
            Target::RoomExcept(room_except) => StreamKey::Room(room_except.0.clone()),
            Target::User(user) => StreamKey::Inbox(user.clone()),
            Target::All => return Some(Event::default().data(delivery.frame.as_str())),
        };
        match self.floors.get_mut(&key) {
            Some(floor) if offset <= *floor => return None,
            Some(floor) => *floor = offset,
            None => {}
        }
        Some(stored_event(&mut self.cursor, &key, &delivery.frame, offset))
    }
}

/// A stored message's event: the cursor advances to it and becomes the id.
fn stored_event(cursor: &mut Cursor, key: &StreamKey, frame: &str, offset: u64) -> Event {
    let position = match key {
        StreamKey::Room(room) => cursor.rooms.get_mut(&**room),
        StreamKey::Inbox(_) => cursor.inbox.as_mut(),
    };
    if let Some(position) = position {
        position.offset = offset;
    }
    Event::default().id(cursor.encode()).data(frame)
}

/// After a replay the cursor is at the head of every stream it followed.
fn merge(mut replayed: Cursor, head: &Cursor) -> Cursor {
    if let (Some(replayed), Some(head)) = (replayed.inbox.as_mut(), head.inbox.as_ref()) {
        if replayed.epoch != head.epoch || replayed.offset < head.offset {
            *replayed = head.clone();
        }
    }
    for (room, head) in &head.rooms {
        replayed.rooms.insert(room.clone(), head.clone());
    }
    replayed
}

impl Drop for Feed {
    fn drop(&mut self) {
        let user = self.outbound.user.clone();
        let departure = presence::unregister(&self.state, self.outbound.key, user, self.counted);
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let state = self.state.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            departure.announce(&state).await;
            if let Some((hooks, timeout)) = state.hooks() {
                let hook = hooks.disconnect(&identity, "the event stream ended");
                let _ = hooks::call("disconnect", timeout, hook).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_their_encoding_whatever_the_room_names() {
        let mut cursor =
            Cursor { inbox: Some(Position { epoch: "e1".into(), offset: 4 }), ..Cursor::default() };
        cursor.rooms.insert("news".into(), Position { epoch: "e2".into(), offset: 9 });
        cursor.rooms.insert("a:b&c=d é".into(), Position { epoch: "e3".into(), offset: 0 });
        let text = cursor.encode();
        assert!(text.is_ascii() && !text.contains('\n'), "{text}");
        assert_eq!(Cursor::decode(&text), cursor);
        assert_eq!(Cursor::decode("garbage&r=x"), Cursor::default());
    }
}
