//! `GET /sse?user_id=…&rooms=a,b`: Server-Sent Events for receive-only
//! clients, with the same delivery guarantees as WebSocket sessions.
//!
//! Every stored message goes out with an SSE `id` that is the client's whole
//! cursor: its inbox position and each room's, as offsets alone plus a
//! digest of the epochs and room names they belong to ([`Cursor::encode`]),
//! so the id stays a few bytes per room whatever the names. A browser's
//! `EventSource` sends the last one back as `Last-Event-ID` when it
//! reconnects, and the hub, having checked the digest against the streams'
//! epochs, replays every stream from there, exactly like `join` with
//! `since`.
//!
//! Events: room and private messages have no event name (they reach
//! `onmessage`) and carry the same JSON as the WebSocket `message` frame;
//! `presence` events carry presence frames and `occupancy` events the counts
//! of large rooms (see docs/PROTOCOL.md, "Large rooms"); one `resumed`
//! event, first,
//! says per stream whether a resume requested by `Last-Event-ID` was
//! complete (`{"inbox":true,"rooms":{"news":false}}`); a `reset` event
//! carries the `reset` frame of a stream that started over under a new
//! epoch (its id moves the cursor to the new epoch).
//!
//! A feed is a [`Connection`] like a WebSocket session's: admitted before
//! any hook runs, its rooms capped by `limits.max_rooms_per_connection`,
//! each room's join checked and carried out the same way. This module only
//! frames what the connection gives it as events.

use std::collections::{BTreeMap, VecDeque};
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
use switchboard_protocol::{Position, ServerFrame, validate_name};

use crate::AppState;
use crate::api::ApiError;
use crate::engine::EngineError;
use crate::hub::connections::{ConnectionInfo, Transport};
use crate::hub::{Delivery, DeliveryKind, Target};
use crate::policy::admission::Ticket;
use crate::policy::auth::AuthError;
use crate::policy::client_addr::client_ip;
use crate::policy::hooks::{self, ConnectDecision, ConnectRequest};
use crate::policy::identity::{self, ConnectQuery, Resolved};
use crate::session::connection::{Connection, JoinRefused, Refusal, Verdict, check_join};
use crate::stream::{Stored, StreamKey};
use crate::transport::ws::Peer;

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

/// A `Last-Event-ID` as a client sent it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastEventId {
    /// The compact form: offsets only, in the order of the feed's sorted
    /// rooms, checked against the streams' epochs by a digest.
    Compact { digest: String, inbox: Option<u64>, rooms: Vec<u64> },
    /// The earlier form, whole positions by room name (ids a client kept
    /// from a hub before the compact form).
    Full(Cursor),
}

/// The most rooms one feed follows, whatever
/// `limits.max_rooms_per_connection` says, so that its event ids stay
/// under 8 KB.
const MAX_FEED_ROOMS: usize = 1_000;

/// Marks the compact form of an id.
const COMPACT: &str = "c1";

impl Cursor {
    /// `c1.DIGEST.INBOX.ROOM1.ROOM2…`: the inbox's offset and each room's,
    /// in the order of the sorted room names, in base 36, after a digest of
    /// the inbox's epoch and every room's name and epoch. A few bytes per
    /// room whatever the names (100 rooms with 64-character names: under
    /// 1 KB, where whole positions took over 10 KB and broke reconnects
    /// behind proxies with 8 KB header buffers); the names and epochs are
    /// what the hub finds again when the client comes back.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::with_capacity(16 + 6 * self.rooms.len());
        out.push_str(COMPACT);
        out.push('.');
        out.push_str(&digest(
            self.inbox.as_ref().map(|inbox| inbox.epoch.as_str()),
            self.rooms.iter().map(|(room, position)| (room.as_str(), position.epoch.as_str())),
        ));
        out.push('.');
        if let Some(inbox) = &self.inbox {
            push_base36(&mut out, inbox.offset);
        }
        for position in self.rooms.values() {
            out.push('.');
            push_base36(&mut out, position.offset);
        }
        out
    }

    /// The earlier, whole form: `i=EPOCH:OFFSET&r=EPOCH:OFFSET:ROOM&…`,
    /// form-encoded. Only read now (ids kept from an earlier hub), and
    /// written by tests.
    #[cfg(test)]
    fn encode_full(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if let Some(inbox) = &self.inbox {
            out.append_pair("i", &format!("{}:{}", inbox.epoch, inbox.offset));
        }
        for (room, position) in &self.rooms {
            out.append_pair("r", &format!("{}:{}:{room}", position.epoch, position.offset));
        }
        out.finish()
    }

    /// The whole form read back; anything unreadable is skipped (that
    /// stream is then simply not resumed).
    fn decode_full(text: &str) -> Cursor {
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

impl LastEventId {
    /// Reads an id of either form.
    pub(crate) fn decode(text: &str) -> LastEventId {
        let compact = text.strip_prefix(COMPACT).and_then(|rest| rest.strip_prefix('.'));
        let Some(rest) = compact else { return LastEventId::Full(Cursor::decode_full(text)) };
        let mut parts = rest.split('.');
        let digest = parts.next().unwrap_or_default().to_owned();
        let inbox = parts.next().and_then(|inbox| u64::from_str_radix(inbox, 36).ok());
        // An unreadable room offset makes the list unusable: the digest
        // then fails to match and nothing is taken from it.
        let rooms =
            parts.map(|offset| u64::from_str_radix(offset, 36).unwrap_or(u64::MAX)).collect();
        LastEventId::Compact { digest, inbox, rooms }
    }

    /// The positions to resume from, given where the feed's streams stand
    /// now (`epochs`: the inbox's and each room's current epoch). A compact
    /// id whose digest does not match these epochs and rooms (a stream
    /// started over, the rooms changed) resumes every room from a position
    /// no stream has, which reports each as not recovered, and the inbox
    /// from nowhere, so that it sends what no connection of the user has
    /// received: never a replay from the wrong place.
    pub(crate) fn resolve(self, inbox_epoch: &str, rooms: &BTreeMap<String, String>) -> Cursor {
        let (digest_given, inbox, offsets) = match self {
            LastEventId::Full(cursor) => return cursor,
            LastEventId::Compact { digest, inbox, rooms } => (digest, inbox, rooms),
        };
        let now = digest(
            Some(inbox_epoch),
            rooms.iter().map(|(room, epoch)| (room.as_str(), epoch.as_str())),
        );
        let matches = now == digest_given && offsets.len() == rooms.len();
        let epoch =
            |current: &str| if matches { current.to_owned() } else { LOST_EPOCH.to_owned() };
        Cursor {
            inbox: inbox
                .filter(|_| matches)
                .map(|offset| Position { epoch: epoch(inbox_epoch), offset }),
            rooms: rooms
                .iter()
                .enumerate()
                .map(|(at, (room, current))| {
                    let offset = offsets.get(at).copied().unwrap_or_default();
                    (room.clone(), Position { epoch: epoch(current), offset })
                })
                .collect(),
        }
    }
}

/// An epoch no stream ever has (epochs are hexadecimal): a resume from it
/// is reported as not recovered.
const LOST_EPOCH: &str = "-";

/// The digest of a cursor's streams: 64 bits of the SHA-1 of the inbox's
/// epoch and each room's name and epoch, in base 36. A stable function, so
/// that any node (any version) computes the same.
fn digest<'a>(inbox: Option<&str>, rooms: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut hash = sha1_smol::Sha1::new();
    hash.update(inbox.unwrap_or_default().as_bytes());
    for (room, epoch) in rooms {
        // Names cannot hold control characters: these separate unambiguously.
        hash.update(b"\x1f");
        hash.update(room.as_bytes());
        hash.update(b"\x1e");
        hash.update(epoch.as_bytes());
    }
    let bytes = hash.digest().bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[..8]);
    let mut out = String::with_capacity(13);
    push_base36(&mut out, u64::from_be_bytes(first));
    out
}

fn push_base36(out: &mut String, mut value: u64) {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut buffer = [0u8; 13];
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = DIGITS[(value % 36) as usize];
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.extend(buffer[at..].iter().map(|&digit| digit as char));
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
    let identity = match identity::resolve(&connect, &headers, state.auth()).await {
        Ok(Resolved::Known(identity)) => identity,
        // An event stream has no frames to authenticate with.
        Ok(Resolved::AwaitAuthFrame) => {
            return ApiError::Auth(AuthError::MissingToken).into_response();
        }
        Err(err) => return ApiError::Auth(err).into_response(),
    };
    // Admitted before any hook runs, as a WebSocket is: a client the hub
    // would refuse costs the application nothing.
    let slot = match state.admit(peer, &headers, Some(&identity.user)) {
        Ok(ticket) => ticket,
        Err(err) => return ApiError::from(err).into_response(),
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
            Ok(ConnectDecision::Unavailable { message }) => {
                tracing::warn!(%message, "SSE connection turned away: the connect hook could not decide");
                let failure = crate::policy::hooks::HookFailure::Unavailable("connect");
                return ApiError::HookFailed(failure).into_response();
            }
            Err(failure) => return ApiError::HookFailed(failure).into_response(),
        }
    }
    let mut rooms: Vec<String> = Vec::new();
    for room in query
        .rooms
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .chain(hooked_rooms)
    {
        if !rooms.contains(&room) {
            rooms.push(room);
        }
    }
    // Past a thousand rooms even the compact event id would outgrow a
    // proxy's 8 KB header buffer (at most 8 bytes a room for offsets below
    // 36^7): a feed never follows more, whatever the configuration.
    let max_rooms = state.config().limits.max_rooms_per_connection.min(MAX_FEED_ROOMS);
    if rooms.len() > max_rooms {
        return ApiError::BadRequest(format!("at most {max_rooms} rooms per connection"))
            .into_response();
    }
    for room in &rooms {
        if let Err(reason) = validate_name(room) {
            return ApiError::InvalidName { field: "rooms", reason }.into_response();
        }
    }
    // Each room's join, as a client's `join` is checked.
    for room in &rooms {
        match check_join(&state, &identity, room).await {
            Ok(()) => {}
            Err(JoinRefused::Forbidden(message)) => {
                return ApiError::Forbidden(message).into_response();
            }
            Err(JoinRefused::Refused(_, message)) => {
                return ApiError::Refused(message).into_response();
            }
            Err(JoinRefused::HookFailed(failure)) => {
                return ApiError::HookFailed(failure).into_response();
            }
        }
    }
    let resume =
        headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(LastEventId::decode);
    let info = ConnectionInfo {
        session: uuid::Uuid::new_v4(),
        transport: Transport::Sse,
        address,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|agent| agent.to_str().ok())
            .map(crate::hub::connections::intern_agent),
        connected_at: crate::wire::now_ms(),
    };
    let connection = Connection::new(state, identity, None);
    match Feed::open(connection, rooms, resume, slot, info).await {
        Ok(feed) => Sse::new(feed.into_stream())
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
        Err(Refusal::Error(_, message)) => {
            ApiError::Unavailable(EngineError::Failed(message)).into_response()
        }
        Err(Refusal::Unregistered) => ApiError::ShuttingDown.into_response(),
    }
}

/// One SSE connection: a [`Connection`] whose deliveries become events.
struct Feed {
    connection: Connection,
    cursor: Cursor,
    /// Events to send before anything live: `resumed`, then replays.
    backlog: VecDeque<Event>,
}

impl Feed {
    async fn open(
        mut connection: Connection,
        rooms: Vec<String>,
        resume: Option<LastEventId>,
        slot: Ticket,
        info: ConnectionInfo,
    ) -> Result<Feed, Refusal> {
        connection.hold(slot);
        let resume = match resume {
            None => Cursor::default(),
            // Rooms this feed does not follow leave the cursor.
            Some(LastEventId::Full(mut cursor)) => {
                cursor.rooms.retain(|room, _| rooms.contains(room));
                cursor
            }
            // A compact id holds offsets only: the epochs and names it was
            // made with are checked against where the streams stand now.
            Some(compact) => {
                let broker = connection.state.engine().broker();
                let inbox = broker.head(&StreamKey::Inbox(connection.user.clone())).await?;
                let mut epochs = BTreeMap::new();
                for room in &rooms {
                    let head = broker.head(&StreamKey::Room(room.as_str().into())).await?;
                    epochs.insert(room.clone(), head.epoch);
                }
                compact.resolve(&inbox.epoch, &epochs)
            }
        };
        let mut replays: Vec<(StreamKey, Stored)> = Vec::new();
        let mut report = serde_json::Map::new();
        let mut cursor = Cursor::default();

        let opened = connection.open(resume.inbox.as_ref(), info).await?;
        let inbox = StreamKey::Inbox(connection.user.clone());
        if let Some(recovered) = opened.recovered {
            report.insert("inbox".into(), json!(recovered));
        }
        replays.extend(opened.missed.into_iter().map(|m| (inbox.clone(), m)));
        cursor.inbox = Some(opened.position);

        let mut room_report = serde_json::Map::new();
        for room in rooms {
            let key = StreamKey::Room(room.as_str().into());
            // Without the right to read history there is nothing to replay.
            let state = connection.state.clone();
            let since = resume
                .rooms
                .get(&room)
                .filter(|_| state.permissions().allows(&connection.identity, &room, |r| r.history));
            let entered = connection.enter(&room, since).await?;
            if entered.recovered.is_none() && resume.rooms.contains_key(&room) {
                room_report.insert(room.clone(), json!(false)); // asked, but history is not allowed
            }
            if let Some(recovered) = entered.recovered {
                room_report.insert(room.clone(), json!(recovered));
            }
            replays.extend(entered.missed.into_iter().map(|m| (key.clone(), m)));
            cursor.rooms.insert(room, entered.position);
        }
        let mut feed = Feed { connection, cursor: Cursor::default(), backlog: VecDeque::new() };
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
        let mut replayed = Cursor { inbox: resume.inbox.clone(), rooms: resume.rooms.clone() };
        for (room, position) in &cursor.rooms {
            replayed.rooms.entry(room.clone()).or_insert_with(|| position.clone());
        }
        if replayed.inbox.is_none() {
            replayed.inbox = cursor.inbox.clone();
        }
        for (key, stored) in replays {
            let event = stored_event(&mut replayed, &key, &stored.frame, stored.offset);
            feed.backlog.push_back(event);
        }
        feed.cursor = merge(replayed, &cursor);
        Ok(feed)
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send {
        futures::stream::unfold(self, |mut feed| async move {
            if let Some(event) = feed.backlog.pop_front() {
                return Some((Ok(event), feed));
            }
            let shutdown = feed.connection.state.shutdown_token().clone();
            let closing = feed.connection.outbound.close_signal();
            loop {
                let delivery = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    _ = closing.requested() => return None,
                    delivery = feed.connection.queue.recv() => delivery,
                };
                if let Some(event) = feed.live_event(&delivery) {
                    return Some((Ok(event), feed));
                }
            }
        })
    }

    /// The SSE event for a live delivery; `None` for one a replay covered.
    fn live_event(&mut self, delivery: &Delivery) -> Option<Event> {
        match delivery.kind {
            // A feed's rooms are the ones its URL and the connect hook
            // named: server-side joins and leaves are for WebSocket
            // connections.
            DeliveryKind::Join | DeliveryKind::Leave => return None,
            DeliveryKind::Reset => return self.reset_event(delivery),
            DeliveryKind::Presence => {
                return Some(Event::default().event("presence").data(delivery.frame.as_str()));
            }
            DeliveryKind::Occupancy => {
                return Some(Event::default().event("occupancy").data(delivery.frame.as_str()));
            }
            DeliveryKind::Message => {}
        }
        if self.connection.wanted(delivery) == Verdict::Skip {
            return None;
        }
        let (Some(offset), Some(key)) = (delivery.offset, delivery.target.stream()) else {
            return Some(Event::default().data(delivery.frame.as_str()));
        };
        Some(stored_event(&mut self.cursor, &key, &delivery.frame, offset))
    }

    /// A stream that started over: the cursor moves to its new epoch.
    fn reset_event(&mut self, delivery: &Delivery) -> Option<Event> {
        if !self.connection.reset(delivery) {
            return None;
        }
        let Ok(ServerFrame::Reset(reset)) = serde_json::from_str(&delivery.frame) else {
            return None;
        };
        let position = Position { epoch: reset.epoch, offset: reset.offset };
        match (&delivery.target, reset.room) {
            (Target::User(_), None) => self.cursor.inbox = Some(position),
            (Target::Room(_), Some(room)) => {
                self.cursor.rooms.insert(room, position);
            }
            _ => return None,
        }
        Some(Event::default().event("reset").id(self.cursor.encode()).data(delivery.frame.as_str()))
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
        // The connection leaves the hub and presence as it drops; the
        // application's disconnect hook is called after it.
        self.connection.close();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let state = self.connection.state.clone();
        let identity = self.connection.identity.clone();
        tokio::spawn(async move {
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

    fn position(epoch: &str, offset: u64) -> Position {
        Position { epoch: epoch.into(), offset }
    }

    #[test]
    fn an_id_is_a_few_bytes_per_room_whatever_their_names() {
        let mut cursor = Cursor { inbox: Some(position("e0", 4)), ..Cursor::default() };
        for n in 0..100 {
            let room = format!("{n:03}-{}", "x".repeat(60));
            cursor.rooms.insert(room, position(&format!("{n:012x}"), 1_000_000 + n));
        }
        let compact = cursor.encode();
        let full = cursor.encode_full();
        assert!(compact.is_ascii() && !compact.contains('\n'), "{compact}");
        assert!(compact.len() < 1_024, "{} bytes", compact.len());
        assert!(full.len() > 8 * 1_024, "the earlier form: {} bytes", full.len());
        // Back where it was made, it resolves to the same positions.
        let epochs: BTreeMap<String, String> =
            cursor.rooms.iter().map(|(room, p)| (room.clone(), p.epoch.clone())).collect();
        assert_eq!(LastEventId::decode(&compact).resolve("e0", &epochs), cursor);
    }

    #[test]
    fn a_compact_id_never_resumes_from_the_wrong_place() {
        let mut cursor = Cursor { inbox: Some(position("e0", 4)), ..Cursor::default() };
        cursor.rooms.insert("a".into(), position("ea", 7));
        cursor.rooms.insert("b".into(), position("eb", 9));
        let id = LastEventId::decode(&cursor.encode());
        // Rooms are reported lost; the inbox, resumed from nowhere, sends
        // what the user's connections have not received.
        let lost = |cursor: &Cursor| {
            cursor.inbox.is_none() && cursor.rooms.values().all(|p| p.epoch == LOST_EPOCH)
        };
        let epochs = |a: &str, b: &str| {
            BTreeMap::from([("a".to_owned(), a.to_owned()), ("b".to_owned(), b.to_owned())])
        };
        assert_eq!(id.clone().resolve("e0", &epochs("ea", "eb")), cursor);
        // A room started over since (a new epoch), or the feed's rooms are
        // not those of the id: no stream resumes from the id's offsets.
        assert!(lost(&id.clone().resolve("e0", &epochs("new", "eb"))));
        assert!(lost(&id.clone().resolve("other", &epochs("ea", "eb"))));
        let fewer = BTreeMap::from([("a".to_owned(), "ea".to_owned())]);
        assert!(lost(&id.clone().resolve("e0", &fewer)));
        assert!(lost(&LastEventId::decode("c1.zz.4.7.9").resolve("e0", &epochs("ea", "eb"))));
    }

    #[test]
    fn ids_of_the_earlier_form_are_still_read_whatever_the_room_names() {
        let mut cursor = Cursor { inbox: Some(position("e1", 4)), ..Cursor::default() };
        cursor.rooms.insert("news".into(), position("e2", 9));
        cursor.rooms.insert("a:b&c=d é".into(), position("e3", 0));
        let text = cursor.encode_full();
        assert!(text.is_ascii() && !text.contains('\n'), "{text}");
        assert_eq!(LastEventId::decode(&text), LastEventId::Full(cursor));
        assert_eq!(LastEventId::decode("garbage&r=x"), LastEventId::Full(Cursor::default()));
    }
}
