//! [`Session`]: one WebSocket connection's life, from `welcome` to close.
//!
//! A session runs in a single task that waits on four things at once: frames
//! from the client, frames queued for it by the hub, the heartbeat tick, and
//! the close signals (its own, and the node's shutdown). It is generic over
//! any `Stream + Sink` of WebSocket messages, so unit tests drive it through
//! in-memory channels with a paused clock, and production through axum's
//! `WebSocket`.
//!
//! It answers requests that carry an `id` with `ack`/`error` written straight
//! to its socket, and hands every message and presence change to the broker.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes};
use futures::{Sink, SinkExt, Stream, StreamExt};
use switchboard_protocol::{
    Ack, ClientFrame, CloseCode, ErrorCode, ErrorFrame, Message, PROTOCOL_VERSION, Position,
    Presence, PresenceAction, ServerFrame, Welcome, validate_name,
};
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tracing::{debug, info};

use crate::AppState;
use crate::auth::Identity;
use crate::broker::{Delivery, DeliveryKind, Target};
use crate::config::Access;
use crate::ids::Seen;
use crate::outbound::{self, Outbound, OutboundQueue};
use crate::store::{Replay, StoreError, StreamKey};
use crate::streams::messages;
use crate::wire::{encode, now_ms};

/// How many queued frames are written before one flush.
const WRITE_BATCH: usize = 64;
/// How long a closing session keeps reading so its close frame is not lost to
/// a TCP reset caused by unread input.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// The close reason sent to every session when the node shuts down.
const SHUTDOWN: &str = "server shutting down";

/// What woke the session up.
enum Wake {
    Shutdown,
    Close(CloseCode, String),
    Queued(Delivery),
    Incoming(Option<Result<WsMessage, axum::Error>>),
    Tick,
    /// The token timer: true when it expired, false for the refresh warning.
    Token(bool),
}

/// Sleeps until the timer's instant and yields its flag; never without one.
async fn sleep_until_some(timer: Option<(Instant, bool)>) -> bool {
    match timer {
        Some((at, expired)) => {
            tokio::time::sleep_until(at).await;
            expired
        }
        None => std::future::pending().await,
    }
}

/// How a connection starts: a room to join at once, and where the client's
/// inbox stood (to resume it) when it reconnects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Start {
    pub(crate) room: Option<String>,
    pub(crate) inbox_since: Option<Position>,
}

/// What to do after handling one event.
#[derive(Debug)]
enum Flow {
    Continue,
    /// Close with this code and reason.
    Close(CloseCode, String),
    /// The peer is gone or the socket failed: stop without a close frame.
    Gone(Ended),
}

/// Why a session ended without sending a close frame, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The client sent a close frame (the stack answers it).
    ClientClosed,
    /// The connection ended without a close frame: a network drop, a
    /// killed client, a laptop lid. Not a protocol error.
    Dropped,
    /// Reading or writing failed at the network level.
    NetworkError,
    /// The hub no longer knows the connection.
    Unregistered,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::ClientClosed => "the client closed the connection",
            Ended::Dropped => "the connection dropped without a close frame",
            Ended::NetworkError => "network error",
            Ended::Unregistered => "removed from the hub",
        })
    }
}

/// The close for a session whose writes made no progress for `stall`.
fn stalled(stall: Duration) -> Flow {
    Flow::Close(
        CloseCode::SLOW_CONSUMER,
        format!("a write made no progress for {} ms: read faster", stall.as_millis()),
    )
}

/// A write's outcome as a [`Flow`]: a failed write means the peer is gone.
fn written(result: Result<(), axum::Error>) -> Flow {
    match result {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Gone(Ended::NetworkError),
    }
}

/// One connection's state.
pub(crate) struct Session<S> {
    socket: S,
    state: AppState,
    outbound: Arc<Outbound>,
    queue: OutboundQueue,
    user: Arc<str>,
    identity: Identity,
    /// The expiry (Unix seconds) the last `refresh` warning was about: one
    /// warning per expiry, so a provider of short-lived tokens cannot make
    /// hub and client spin.
    warned_for: Option<u64>,
    limiter: governor::DefaultDirectRateLimiter,
    /// Frames refused by the rate limiter in the current 10-second window.
    refused: (Instant, u32),
    id: String,
    last_heard: Instant,
    /// Per room: the offset a replay (or the join) already covered; live
    /// messages at or below it are not sent again.
    room_floors: HashMap<Arc<str>, u64>,
    /// The same for the user's inbox.
    inbox_floor: u64,
}

impl<S> Session<S>
where
    S: Stream<Item = Result<WsMessage, axum::Error>>
        + Sink<WsMessage, Error = axum::Error>
        + Unpin
        + Send,
{
    /// Prepares the connection; it joins the hub when it starts running.
    pub(crate) fn new(socket: S, state: AppState, identity: Identity) -> Session<S> {
        let hub = state.hub();
        let limits = &state.config().limits;
        let (outbound, queue) = outbound::channel(
            hub.next_key(),
            identity.user.clone(),
            limits.outbound_queue_messages,
            limits.outbound_queue_bytes,
        );
        // Bursts of twice the sustained rate.
        let per_sec = NonZeroU32::new(limits.messages_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let limiter =
            governor::RateLimiter::direct(governor::Quota::per_second(per_sec).allow_burst(burst));
        Session {
            socket,
            state,
            outbound: Arc::new(outbound),
            queue,
            user: identity.user.clone(),
            identity,
            warned_for: None,
            limiter,
            refused: (Instant::now(), 0),
            id: uuid::Uuid::new_v4().simple().to_string(),
            last_heard: Instant::now(),
            room_floors: HashMap::new(),
            inbox_floor: 0,
        }
    }

    /// Runs the connection to its end, then removes it from the hub and
    /// announces the rooms its user left.
    pub(crate) async fn run(mut self, start: Start) {
        info!(session = %self.id, user = %self.user, "connected");
        let flow = self.serve(start).await;
        let reason = match flow {
            Flow::Close(code, reason) => {
                debug!(session = %self.id, %code, %reason, "closing");
                self.close(code, &reason).await;
                format!("closed with {code}")
            }
            Flow::Gone(ended) => ended.to_string(),
            Flow::Continue => "ended".to_owned(),
        };
        for (room, user) in self.state.hub().unregister(self.outbound.key) {
            self.announce(&room, &user, PresenceAction::Leave).await;
        }
        info!(session = %self.id, user = %self.user, %reason, "disconnected");
    }

    async fn serve(&mut self, start: Start) -> Flow {
        let heartbeat = self.state.config().heartbeat.clone();
        // A write that cannot finish within the heartbeat timeout means the
        // client stopped reading; the session must not wait on it forever.
        let stall = heartbeat.timeout();
        match tokio::time::timeout(stall, self.open(start)).await {
            Err(_) => return stalled(stall),
            Ok(Flow::Continue) => {}
            Ok(flow) => return flow,
        }
        let shutdown = self.state.shutdown_token().clone();
        let close_signal = self.outbound.close_signal().clone();
        let mut ticker =
            tokio::time::interval_at(Instant::now() + heartbeat.interval(), heartbeat.interval());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let token_timer = self.token_timer();
            let wake = tokio::select! {
                biased;
                () = shutdown.cancelled() => Wake::Shutdown,
                (code, reason) = close_signal.requested() => Wake::Close(code, reason),
                expired = sleep_until_some(token_timer) => Wake::Token(expired),
                Some(frame) = self.queue.recv() => Wake::Queued(frame),
                incoming = self.socket.next() => Wake::Incoming(incoming),
                _ = ticker.tick() => Wake::Tick,
            };
            // Handling may write to a socket whose peer stopped reading (its
            // own answers, a replay, a ping: nothing the outbound queue
            // bounds). The close signals must still win then, and the
            // heartbeat ticker, which is not needed meanwhile, measures how
            // long the write has been stuck.
            let woke = Instant::now();
            let mut tick_owed = false;
            let work = self.on_wake(wake, heartbeat.timeout());
            tokio::pin!(work);
            let flow = loop {
                break tokio::select! {
                    biased;
                    () = shutdown.cancelled() => Flow::Close(CloseCode::GOING_AWAY, SHUTDOWN.to_owned()),
                    (code, reason) = close_signal.requested() => Flow::Close(code, reason),
                    flow = &mut work => flow,
                    _ = ticker.tick() => {
                        if woke.elapsed() >= stall {
                            stalled(stall)
                        } else {
                            tick_owed = true;
                            continue;
                        }
                    }
                };
            };
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
            if tick_owed {
                // The heartbeat this tick was for runs on the next wake.
                ticker.reset_immediately();
            }
        }
    }

    /// The start of a connection: registers it, sends `welcome` and what
    /// waited in the inbox, and joins the room the URL named.
    async fn open(&mut self, start: Start) -> Flow {
        let heartbeat_ms = self.state.config().heartbeat.interval_ms;
        // Register under the inbox's lock, then read it: every private message
        // is then in the replay below or in the live queue (see streams.rs).
        let inbox = StreamKey::Inbox(self.user.clone());
        let (hub, outbound) = (self.state.hub().clone(), self.outbound.clone());
        let register = move || hub.register(outbound);
        let streams = self.state.streams();
        let (position, recovered, missed) = match &start.inbox_since {
            Some(since) => match streams.resume(&inbox, Some(since), register).await {
                Ok(((), position, Some(Replay::Complete(missed)))) => {
                    (Some(position), Some(true), missed)
                }
                Ok(((), position, _)) => (Some(position), Some(false), Vec::new()),
                Err(err) => return self.store_failed(err),
            },
            None => match streams.undelivered(&inbox, register).await {
                Ok(((), position, pending)) => (Some(position), None, pending),
                Err(err) => return self.store_failed(err),
            },
        };
        // The welcome names the position just before the messages that follow
        // it, so a client advances through the replay like through live ones.
        let before_replay = position.map(|head| {
            self.inbox_floor = head.offset;
            if recovered == Some(true) {
                let _ = streams.store().mark_delivered(&inbox, head.offset);
            }
            let offset = missed.first().map_or(head.offset, |first| first.offset - 1);
            Position { epoch: head.epoch, offset }
        });
        let welcome = ServerFrame::Welcome(Welcome {
            session: self.id.clone(),
            user: self.user.to_string(),
            protocol: PROTOCOL_VERSION,
            heartbeat_ms,
            inbox: before_replay,
            recovered,
        });
        if let flow @ (Flow::Close(..) | Flow::Gone(_)) = self.reply(&welcome).await {
            return flow;
        }
        for stored in missed {
            if self.socket.send(WsMessage::Text(stored.frame)).await.is_err() {
                return Flow::Gone(Ended::NetworkError);
            }
        }
        match start.room {
            Some(room) => self.handle(ClientFrame::Join { id: None, room, since: None }).await,
            None => Flow::Continue,
        }
    }

    async fn on_wake(&mut self, wake: Wake, timeout: Duration) -> Flow {
        match wake {
            Wake::Shutdown => Flow::Close(CloseCode::GOING_AWAY, SHUTDOWN.to_owned()),
            Wake::Close(code, reason) => Flow::Close(code, reason),
            Wake::Queued(frame) => self.write_queued(frame).await,
            Wake::Incoming(incoming) => {
                self.last_heard = Instant::now();
                self.on_incoming(incoming).await
            }
            Wake::Tick => self.on_tick(timeout).await,
            Wake::Token(true) => {
                Flow::Close(CloseCode::TOKEN_EXPIRED, "the token expired".to_owned())
            }
            Wake::Token(false) => {
                self.warned_for = self.identity.expires_at;
                let left = self.token_left_ms().unwrap_or(0);
                self.reply(&ServerFrame::Refresh { expires_in_ms: left }).await
            }
        }
    }

    /// Milliseconds until the token expires, if it does.
    fn token_left_ms(&self) -> Option<u64> {
        let expires_ms = self.identity.expires_at?.saturating_mul(1000);
        Some(expires_ms.saturating_sub(now_ms()))
    }

    /// When the token next needs attention: the `refresh` warning (false),
    /// then the expiry (true).
    fn token_timer(&self) -> Option<(Instant, bool)> {
        let left = Duration::from_millis(self.token_left_ms()?);
        let before = Duration::from_millis(self.state.config().auth.refresh_before_ms);
        let warned = self.warned_for == self.identity.expires_at;
        if warned {
            Some((Instant::now() + left, true))
        } else {
            Some((Instant::now() + left.saturating_sub(before), false))
        }
    }

    /// Whether the rate limit lets another frame through; past the abuse
    /// threshold in a 10-second window, the connection is closed.
    fn admit_frame(&mut self) -> Result<(), Flow> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        let now = Instant::now();
        if now.duration_since(self.refused.0) > Duration::from_secs(10) {
            self.refused = (now, 0);
        }
        self.refused.1 += 1;
        if self.refused.1 >= self.state.config().limits.rate_abuse_threshold {
            return Err(Flow::Close(
                CloseCode::RATE_LIMITED,
                "sending too fast for too long".to_owned(),
            ));
        }
        Err(Flow::Continue)
    }

    /// Whether `access` lets this connection act in `room`.
    fn may(&self, room: &str, access: impl Fn(&crate::config::RoomRule) -> Access) -> bool {
        self.state.permissions().allows(&self.identity, room, access)
    }

    /// Writes a queued delivery and whatever else is already waiting, then
    /// flushes once. Skips what a replay already sent.
    async fn write_queued(&mut self, first: Delivery) -> Flow {
        let mut next = Some(first);
        let mut batch = 0;
        while let Some(delivery) = next.take() {
            if self.wanted(&delivery)
                && self.socket.feed(WsMessage::Text(delivery.frame)).await.is_err()
            {
                return Flow::Gone(Ended::NetworkError);
            }
            batch += 1;
            if batch < WRITE_BATCH {
                next = self.queue.try_recv();
            }
        }
        written(self.socket.flush().await)
    }

    /// Whether a live delivery is new to this connection.
    fn wanted(&self, delivery: &Delivery) -> bool {
        let Some(offset) = delivery.offset else { return true };
        match &delivery.target {
            Target::Room(room) => self.room_floors.get(room).is_none_or(|floor| offset > *floor),
            Target::User(_) => offset > self.inbox_floor,
            Target::All => true,
        }
    }

    fn store_failed(&self, err: StoreError) -> Flow {
        tracing::error!(session = %self.id, %err, "history store failed");
        Flow::Close(CloseCode::INTERNAL_ERROR, "history store unavailable".to_owned())
    }

    async fn on_tick(&mut self, timeout: Duration) -> Flow {
        if self.last_heard.elapsed() >= timeout {
            return Flow::Close(
                CloseCode::HEARTBEAT_TIMEOUT,
                format!("nothing heard for {} ms", timeout.as_millis()),
            );
        }
        written(self.socket.send(WsMessage::Ping(Default::default())).await)
    }

    async fn on_incoming(&mut self, incoming: Option<Result<WsMessage, axum::Error>>) -> Flow {
        match incoming {
            None => Flow::Gone(Ended::Dropped),
            Some(Ok(WsMessage::Close(_))) => Flow::Gone(Ended::ClientClosed),
            Some(Ok(WsMessage::Text(text))) => {
                if let Err(flow) = self.admit_frame() {
                    if let Flow::Continue = flow {
                        let message = "rate limit: too many frames; slow down".to_owned();
                        return self.fail(None, ErrorCode::RATE_LIMITED, message).await;
                    }
                    return flow;
                }
                match ClientFrame::decode_limited(&text, self.state.config().limits.max_json_depth)
                {
                    Ok(frame) => self.handle(frame).await,
                    Err(err) => self.fail(err.id, err.code, err.message).await,
                }
            }
            Some(Ok(WsMessage::Binary(_))) => {
                self.fail(
                    None,
                    ErrorCode::BINARY_UNSUPPORTED,
                    "binary messages are not supported; send JSON text".to_owned(),
                )
                .await
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Flow::Continue,
            Some(Err(err)) => read_error_flow(err),
        }
    }

    /// Carries out one decoded request.
    async fn handle(&mut self, frame: ClientFrame) -> Flow {
        match frame {
            ClientFrame::Join { id, room, since } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.join) {
                    return self
                        .fail(id, ErrorCode::FORBIDDEN, format!("not allowed to join `{room}`"))
                        .await;
                }
                let max_rooms = self.state.config().limits.max_rooms_per_connection;
                if self.state.hub().rooms_of(self.outbound.key) >= max_rooms
                    && !self.state.hub().is_member(self.outbound.key, &room)
                {
                    let message = format!("at most {max_rooms} rooms per connection");
                    return self.fail(id, ErrorCode::LIMIT_EXCEEDED, message).await;
                }
                // Without the right to read history there is nothing to replay.
                let since = since.filter(|_| self.may(&room, |rule| rule.history));
                let sees_presence = self.may(&room, |rule| rule.presence);
                let key = StreamKey::Room(room.as_str().into());
                let (hub, session_key) = (self.state.hub().clone(), self.outbound.key);
                let joined = self
                    .state
                    .streams()
                    .resume(&key, since.as_ref(), || hub.join(session_key, &room, sees_presence))
                    .await;
                let (joined, position, replay) = match joined {
                    Ok((Some(joined), position, replay)) => (joined, position, replay),
                    Ok((None, ..)) => return Flow::Gone(Ended::Unregistered),
                    Err(err) => {
                        return self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await;
                    }
                };
                if joined.announce {
                    let user = self.user.clone();
                    self.announce(&room, &user, PresenceAction::Join).await;
                }
                let recovered = match replay {
                    Some(Replay::Complete(missed)) => {
                        for stored in missed {
                            if self.socket.send(WsMessage::Text(stored.frame)).await.is_err() {
                                return Flow::Gone(Ended::NetworkError);
                            }
                        }
                        Some(true)
                    }
                    Some(Replay::Lost) => Some(false),
                    None => None,
                };
                self.room_floors.insert(room.as_str().into(), position.offset);
                self.ack(id, |ack| {
                    if sees_presence {
                        ack.members = Some(joined.members.members);
                        ack.member_count = Some(joined.members.count as u64);
                        ack.cursor = joined.members.cursor;
                        ack.large = joined.large.then_some(true);
                    }
                    ack.epoch = Some(position.epoch);
                    ack.offset = Some(position.offset);
                    ack.recovered = recovered;
                })
                .await
            }
            ClientFrame::Leave { id, room } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                let left = self.state.hub().leave(self.outbound.key, &room);
                self.room_floors.remove(room.as_str());
                if left.announce {
                    let user = self.user.clone();
                    self.announce(&room, &user, PresenceAction::Leave).await;
                }
                self.ack(id, |_| {}).await
            }
            ClientFrame::Publish { id, room, event, data } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if let Err(flow) = self.check_name(&id, "event", &event).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.publish) {
                    let message = format!("not allowed to publish to `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                if self.state.config().rooms.publish_requires_join
                    && !self.state.hub().is_member(self.outbound.key, &room)
                {
                    let message = format!("join room `{room}` before publishing to it");
                    return self.fail(id, ErrorCode::NOT_JOINED, message).await;
                }
                if let Some(flow) = self.repeat(&id).await {
                    return flow;
                }
                let message = Message {
                    room: Some(room.clone()),
                    to: None,
                    from: self.user.to_string(),
                    event,
                    data,
                    ts: now_ms(),
                    offset: None,
                };
                let room: Arc<str> = room.into();
                let key = StreamKey::Room(room.clone());
                let published = self
                    .state
                    .streams()
                    .publish(self.state.broker(), key, Target::Room(room), message)
                    .await;
                match published {
                    Ok(published) => {
                        self.state.hub().counters.message_accepted();
                        let offset = published.stored.offset;
                        self.answer(id, |ack| ack.offset = Some(offset)).await
                    }
                    Err(err) => self.refuse(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::Send { id, to, event, data } => {
                if let Err(flow) = self.check_name(&id, "to", &to).await {
                    return flow;
                }
                if let Err(flow) = self.check_name(&id, "event", &event).await {
                    return flow;
                }
                if self.state.permissions().send != Access::Anyone {
                    let message = "private messages between clients are switched off".to_owned();
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                if let Some(flow) = self.repeat(&id).await {
                    return flow;
                }
                let message = Message {
                    room: None,
                    to: Some(to.clone()),
                    from: self.user.to_string(),
                    event,
                    data,
                    ts: now_ms(),
                    offset: None,
                };
                match send_private(&self.state, to.into(), message).await {
                    Ok(sent) => {
                        self.answer(id, |ack| {
                            ack.delivered = Some(sent.reached as u64);
                            ack.status = Some(sent.status.to_owned());
                            ack.offset = Some(sent.offset);
                        })
                        .await
                    }
                    Err(err) => self.refuse(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::History { id, room, since, limit } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.history) {
                    let message = format!("not allowed to read the history of `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                match read_history(&self.state, &room, since, limit) {
                    Ok(page) => {
                        self.ack(id, |ack| {
                            ack.epoch = page.epoch;
                            ack.offset = Some(page.offset);
                            ack.messages = Some(page.messages);
                        })
                        .await
                    }
                    Err(err) => self.fail(id, ErrorCode::UNAVAILABLE, err.to_string()).await,
                }
            }
            ClientFrame::Members { id, room, cursor, limit } => {
                if let Err(flow) = self.check_name(&id, "room", &room).await {
                    return flow;
                }
                if !self.may(&room, |rule| rule.presence) {
                    let message = format!("not allowed to see who is in `{room}`");
                    return self.fail(id, ErrorCode::FORBIDDEN, message).await;
                }
                let page = if self.state.hub().is_member(self.outbound.key, &room) {
                    self.state.hub().members(&room, cursor.as_deref(), members_limit(limit))
                } else {
                    None
                };
                let Some(page) = page else {
                    let message = format!("join room `{room}` before reading its members");
                    return self.fail(id, ErrorCode::NOT_JOINED, message).await;
                };
                self.ack(id, |ack| {
                    ack.members = Some(page.members);
                    ack.member_count = Some(page.count as u64);
                    ack.cursor = page.cursor;
                })
                .await
            }
            ClientFrame::Auth { id, token } => match self.state.auth().verify(&token) {
                Ok(identity) if identity.user == self.user => {
                    self.identity = identity;
                    self.ack(id, |_| {}).await
                }
                Ok(_) => {
                    let message = crate::auth::AuthError::OtherUser.to_string();
                    self.fail(id, ErrorCode::INVALID_TOKEN, message).await
                }
                Err(err) => self.fail(id, ErrorCode::INVALID_TOKEN, err.to_string()).await,
            },
            ClientFrame::Ping { id } => self.reply(&ServerFrame::Pong { id }).await,
        }
    }

    /// For a `publish` or `send` whose id was seen recently: answers it again
    /// (or, while the first is still being carried out, acks it) and returns
    /// the flow; `None` for a new id, now claimed.
    async fn repeat(&mut self, id: &Option<String>) -> Option<Flow> {
        let id = id.as_ref()?;
        match self.state.ids().begin(&self.user, id) {
            Seen::New => None,
            Seen::Done(answer) => Some(written(self.socket.send(WsMessage::Text(answer)).await)),
            Seen::InFlight => Some(self.ack(Some(id.clone()), |_| {}).await),
        }
    }

    /// Acks a claimed request and remembers the answer for repeats.
    async fn answer(&mut self, id: Option<String>, fill: impl FnOnce(&mut Ack)) -> Flow {
        let Some(id) = id else { return Flow::Continue };
        let mut ack = Ack { id: id.clone(), ..Ack::default() };
        fill(&mut ack);
        let frame = encode(&ServerFrame::Ack(ack));
        self.state.ids().finish(&self.user, &id, frame.clone());
        written(self.socket.send(WsMessage::Text(frame)).await)
    }

    /// Refuses a claimed request; the id is released so a retry is carried out.
    async fn refuse(&mut self, id: Option<String>, code: ErrorCode, message: String) -> Flow {
        if let Some(id) = &id {
            self.state.ids().forget(&self.user, id);
        }
        self.fail(id, code, message).await
    }

    async fn announce(&mut self, room: &str, user: &str, action: PresenceAction) {
        announce(&self.state, room, user, action).await;
    }

    async fn check_name(
        &mut self,
        id: &Option<String>,
        field: &str,
        name: &str,
    ) -> Result<(), Flow> {
        match validate_name(name) {
            Ok(()) => Ok(()),
            Err(err) => {
                let message = format!("invalid `{field}`: {err}");
                Err(self.fail(id.clone(), ErrorCode::INVALID_NAME, message).await)
            }
        }
    }

    /// Acks a request that had an `id`; requests without one get no answer.
    async fn ack(&mut self, id: Option<String>, fill: impl FnOnce(&mut Ack)) -> Flow {
        let Some(id) = id else { return Flow::Continue };
        let mut ack = Ack { id, ..Ack::default() };
        fill(&mut ack);
        self.reply(&ServerFrame::Ack(ack)).await
    }

    /// Reports an error; the connection stays open.
    async fn fail(&mut self, id: Option<String>, code: ErrorCode, message: String) -> Flow {
        debug!(session = %self.id, %code, %message, "request refused");
        self.reply(&ServerFrame::Error(ErrorFrame { id, code, message })).await
    }

    async fn reply(&mut self, frame: &ServerFrame) -> Flow {
        written(self.socket.send(WsMessage::Text(encode(frame))).await)
    }

    /// Sends a close frame, then reads until the peer answers or hangs up,
    /// all within [`CLOSE_LINGER`]: a peer that stopped reading (a slow
    /// consumer) may never take the close frame, and is then simply dropped.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame { code: code.0, reason: Utf8Bytes::from(truncate_reason(reason)) };
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            if self.socket.send(WsMessage::Close(Some(frame))).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, WsMessage::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// What a private send did.
pub(crate) struct Sent {
    pub(crate) reached: usize,
    pub(crate) status: &'static str,
    pub(crate) offset: u64,
}

/// Stores a private message in the receiver's inbox and delivers it to their
/// connections: `live` when some got it now, `queued` when it waits in the
/// inbox, `dropped` when the inbox keeps no history and nobody is connected.
pub(crate) async fn send_private(
    state: &AppState,
    to: Arc<str>,
    message: Message,
) -> Result<Sent, crate::streams::PublishError> {
    let key = StreamKey::Inbox(to.clone());
    let keeps = state.streams().limits(&key).size > 0;
    let published = state.streams().publish(state.broker(), key, Target::User(to), message).await?;
    state.hub().counters.message_accepted();
    let status = match (published.reached, keeps) {
        (0, true) => "queued",
        (0, false) => "dropped",
        _ => "live",
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
pub(crate) fn read_history(
    state: &AppState,
    room: &str,
    since: Option<u64>,
    limit: Option<u32>,
) -> Result<Page, StoreError> {
    let streams = state.streams();
    let key = StreamKey::Room(room.into());
    let limit = limit.map_or(100, |l| l as usize).min(streams.max_page());
    Ok(match streams.store().page(&key, since, limit, streams.limits(&key), now_ms())? {
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

/// Maps a read error to the close code RFC 6455 prescribes for it; a
/// connection that simply ended is no protocol error.
fn read_error_flow(err: axum::Error) -> Flow {
    let Ok(err) = err.into_inner().downcast::<tungstenite::Error>() else {
        return Flow::Gone(Ended::NetworkError);
    };
    match *err {
        // The TCP stream ended without a close frame: the client vanished
        // (network drop, killed process). Nobody is left to send 1002 to.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => Flow::Gone(Ended::Dropped),
        tungstenite::Error::Capacity(cause) => {
            Flow::Close(CloseCode::MESSAGE_TOO_BIG, format!("message too big: {cause}"))
        }
        tungstenite::Error::Utf8(_) => {
            Flow::Close(CloseCode::INVALID_PAYLOAD, "text frame is not valid UTF-8".to_owned())
        }
        tungstenite::Error::Protocol(cause) => {
            Flow::Close(CloseCode(1002), format!("protocol error: {cause}"))
        }
        _ => Flow::Gone(Ended::NetworkError),
    }
}

/// A close reason must fit in a control frame: at most 123 bytes.
pub(crate) fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use futures::channel::mpsc;

    struct Peer {
        to_session: mpsc::UnboundedSender<Result<WsMessage, axum::Error>>,
        from_session: mpsc::UnboundedReceiver<WsMessage>,
        memory: crate::memory_socket::MemoryPeer,
    }

    impl Peer {
        fn send(&self, text: &str) {
            self.to_session.unbounded_send(Ok(WsMessage::Text(text.into()))).unwrap();
        }

        async fn next(&mut self) -> WsMessage {
            self.from_session.next().await.expect("session ended")
        }

        /// Everything the session wrote until it dropped its socket.
        async fn rest(&mut self) -> Vec<WsMessage> {
            let mut rest = Vec::new();
            while let Some(message) = self.from_session.next().await {
                rest.push(message);
            }
            rest
        }

        async fn next_frame(&mut self) -> ServerFrame {
            loop {
                match self.next().await {
                    WsMessage::Text(text) => return serde_json::from_str(&text).unwrap(),
                    WsMessage::Ping(_) => continue,
                    other => panic!("expected a text frame, got {other:?}"),
                }
            }
        }
    }

    fn start(config: Config, user: &str) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
        start_with(config, user, |_| {})
    }

    /// Like [`start`], with `before` applied to the client's end before the
    /// session runs.
    fn start_with(
        config: Config,
        user: &str,
        before: impl FnOnce(&crate::memory_socket::MemoryPeer),
    ) -> (Peer, AppState, tokio::task::JoinHandle<()>) {
        let state = AppState::new(config).unwrap();
        let (socket, mut memory) = crate::memory_socket::pair();
        before(&memory);
        let (to_session, from_session) = (memory.to_session.clone(), {
            let (_, empty) = mpsc::unbounded();
            std::mem::replace(&mut memory.from_session, empty)
        });
        let session = Session::new(socket, state.clone(), Identity::trusted(user));
        let task = tokio::spawn(session.run(Start::default()));
        (Peer { to_session, from_session, memory }, state, task)
    }

    fn heartbeat(interval_ms: u64, timeout_ms: u64) -> Config {
        let mut config = Config::default();
        config.heartbeat.interval_ms = interval_ms;
        config.heartbeat.timeout_ms = timeout_ms;
        config
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_sends_but_never_reads_is_cut_off_after_the_timeout() {
        // Its own answers pile up, not queued deliveries: no outbound queue
        // overflows, so only the stalled write can tell.
        let (mut peer, state, task) = start(heartbeat(1_000, 2_500), "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        let started = Instant::now();
        peer.memory.stop_reading();
        peer.send(r#"{"type":"ping","id":"1"}"#);
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the session ends on its own")
            .unwrap();
        let elapsed = started.elapsed();
        // Noticed at the first tick past the timeout, then at most
        // CLOSE_LINGER spent trying to say goodbye.
        assert!(
            elapsed >= Duration::from_millis(2_500)
                && elapsed <= Duration::from_millis(3_500) + CLOSE_LINGER,
            "ended after {elapsed:?}"
        );
        assert_eq!(state.hub().connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_its_welcome_is_cut_off_after_the_timeout() {
        let (_peer, state, task) =
            start_with(heartbeat(1_000, 2_500), "alice", |peer| peer.stop_reading());
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the session ends on its own")
            .unwrap();
        assert_eq!(state.hub().connection_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_client_that_reads_is_not_mistaken_for_a_stalled_one() {
        let (mut peer, state, _task) = start(heartbeat(1_000, 2_500), "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        for n in 0..50 {
            peer.send(&format!(r#"{{"type":"ping","id":"{n}"}}"#));
            loop {
                match peer.next().await {
                    WsMessage::Text(text) if text.contains("pong") => break,
                    WsMessage::Ping(_) => continue,
                    other => panic!("unexpected {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(state.hub().connection_count(), 1, "still connected after 10 s");
    }

    #[tokio::test]
    async fn a_connection_that_drops_without_a_close_frame_is_not_a_protocol_error() {
        let (mut peer, state, task) = start(Config::default(), "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        let reset = tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        );
        peer.to_session.unbounded_send(Err(axum::Error::new(reset))).unwrap();
        task.await.unwrap();
        let rest = peer.rest().await;
        assert!(
            !rest.iter().any(|m| matches!(m, WsMessage::Close(_))),
            "no close frame (1002 or any) is sent to a vanished peer: {rest:?}"
        );
        assert_eq!(state.hub().connection_count(), 0);
    }

    #[test]
    fn read_errors_map_to_what_they_are() {
        use tungstenite::error::ProtocolError;
        let flow = |err: tungstenite::Error| read_error_flow(axum::Error::new(err));
        let dropped =
            flow(tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake));
        assert!(matches!(dropped, Flow::Gone(Ended::Dropped)), "{dropped:?}");
        let io = flow(tungstenite::Error::Io(std::io::ErrorKind::ConnectionReset.into()));
        assert!(matches!(io, Flow::Gone(Ended::NetworkError)), "{io:?}");
        let violation = flow(tungstenite::Error::Protocol(ProtocolError::UnmaskedFrameFromClient));
        assert!(matches!(violation, Flow::Close(CloseCode(1002), _)), "{violation:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_closed_after_the_timeout() {
        let mut config = Config::default();
        config.heartbeat.interval_ms = 1_000;
        config.heartbeat.timeout_ms = 2_500;
        let (mut peer, _state, task) = start(config, "alice");
        let started = Instant::now();
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        assert!(matches!(peer.next().await, WsMessage::Ping(_)));
        let close = loop {
            match peer.next().await {
                WsMessage::Ping(_) => continue,
                WsMessage::Close(frame) => break frame.unwrap(),
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(close.code, CloseCode::HEARTBEAT_TIMEOUT.0);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(2_500) && elapsed <= Duration::from_millis(3_500),
            "closed after {elapsed:?}"
        );
        drop(peer);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_stays_connected() {
        let mut config = Config::default();
        config.heartbeat.interval_ms = 1_000;
        config.heartbeat.timeout_ms = 2_500;
        let (mut peer, state, _task) = start(config, "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        for _ in 0..10 {
            assert!(matches!(peer.next().await, WsMessage::Ping(_)));
            peer.to_session.unbounded_send(Ok(WsMessage::Pong(Default::default()))).unwrap();
        }
        assert_eq!(state.hub().connection_count(), 1, "still connected after 10 s");
    }

    #[tokio::test]
    async fn malformed_frames_get_errors_and_the_session_goes_on() {
        let (mut peer, _state, _task) = start(Config::default(), "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        peer.send("{oops");
        match peer.next_frame().await {
            ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::MALFORMED),
            other => panic!("{other:?}"),
        }
        peer.send(r#"{"type":"join","id":"j","room":""}"#);
        match peer.next_frame().await {
            ServerFrame::Error(e) => {
                assert_eq!((e.code, e.id.as_deref()), (ErrorCode::INVALID_NAME, Some("j")))
            }
            other => panic!("{other:?}"),
        }
        peer.send(r#"{"type":"publish","id":"p","room":"general","event":"chat"}"#);
        match peer.next_frame().await {
            ServerFrame::Error(e) => assert_eq!(e.code, ErrorCode::NOT_JOINED),
            other => panic!("{other:?}"),
        }
        peer.send(r#"{"type":"ping","id":"7"}"#);
        assert_eq!(peer.next_frame().await, ServerFrame::Pong { id: Some("7".into()) });
    }

    #[tokio::test]
    async fn shutdown_closes_with_going_away() {
        let (mut peer, state, task) = start(Config::default(), "alice");
        assert!(matches!(peer.next_frame().await, ServerFrame::Welcome(_)));
        state.shutdown();
        match peer.next().await {
            WsMessage::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::GOING_AWAY.0),
            other => panic!("{other:?}"),
        }
        drop(peer);
        task.await.unwrap();
        assert_eq!(state.hub().connection_count(), 0);
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(truncate_reason(&"é".repeat(100)).len(), 122);
    }
}
