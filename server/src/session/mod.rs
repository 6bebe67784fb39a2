//! [`Session`]: one WebSocket connection's life, from `welcome` to close.
//!
//! A session runs in a single task that waits on five things at once: frames
//! from the client, frames queued for it by the hub, the heartbeat tick, its
//! token's alarm, and its close signal (which also carries the node's
//! shutdown). It is generic over its [`Socket`] (a stream and sink of
//! WebSocket messages and the byte stream under them), so unit tests drive
//! it through an in-memory socket with a paused clock, and production
//! through tokio-tungstenite's stream over the upgraded socket. Text frames
//! are framed by [`frames`] and written from their shared buffers.
//!
//! It answers requests that carry an `id` with `ack`/`error` written straight
//! to its socket. What a connection is whatever its transport (its place in
//! the hub, its rooms, its positions in each stream) is its
//! [`Connection`](connection::Connection), shared with SSE feeds; this
//! module adds the WebSocket framing, the heartbeat, the rate limit and the
//! token's life.

use std::future::poll_fn;
use std::num::NonZeroU32;
use std::sync::Arc;

use futures::future::Either;
use futures::{SinkExt, StreamExt};
use switchboard_protocol::{
    Ack, ClientFrame, CloseCode, DecodeError, ErrorCode, ErrorFrame, PROTOCOL_VERSION, Position,
    ServerFrame, Welcome,
};
use tokio::time::{Duration, Instant, MissedTickBehavior};
use tracing::{debug, info};
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message as WsMessage, Utf8Bytes};

pub(crate) mod connection;
mod flow;
pub(crate) mod frames;
mod membership;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod memory_socket;
mod publishing;
mod requests;
mod token_alarm;

use connection::{Connection, Verdict};
pub(crate) use flow::truncate_reason;
use flow::{Ended, Flow, frame_slot, read_error_flow, stalled, written};
pub(crate) use frames::Socket;
use frames::{FrameSocket, Out};
use token_alarm::TokenAlarm;

use crate::AppState;
use crate::config::Access;
use crate::deflate::Compressor;
use crate::engine::EngineError;
use crate::hub::Delivery;
use crate::hub::connections::{ConnectionInfo, Transport};
use crate::policy::admission::Ticket;
use crate::policy::auth::Identity;
use crate::state::SHUTDOWN;
use crate::wire::{encode, now_ms};

/// How long a closing session keeps reading so its close frame is not lost to
/// a TCP reset caused by unread input.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// Why a message off the socket is not a request to carry out.
enum Refused {
    /// An error frame to answer with (the request's id when it has one,
    /// the code, the message); the connection goes on.
    Answer(Option<String>, ErrorCode, String),
    /// What the connection does instead (ends, or goes on for a control frame).
    Flow(Flow),
}

/// What woke the session up.
enum Wake {
    Close(CloseCode, String),
    Queued(Arc<Delivery>),
    Incoming(Option<Result<WsMessage, tungstenite::Error>>),
    Tick,
    /// The token timer: true when it expired, false for the refresh warning.
    Token(bool),
}

/// How a connection starts: rooms to join at once (the URL's `room`, the
/// connect hook's), and where the client's inbox stood (to resume it) when
/// it reconnects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Start {
    pub(crate) rooms: Vec<String>,
    pub(crate) inbox_since: Option<Position>,
    /// The client's address, for the connection listing.
    pub(crate) address: Option<std::net::IpAddr>,
    /// The request's `User-Agent`, interned.
    pub(crate) user_agent: Option<Arc<str>>,
    /// The client asked for several frames per WebSocket message
    /// (`?batch=1`).
    pub(crate) batch: bool,
    /// The client speaks binary (`?binary=1`).
    pub(crate) binary: bool,
}

/// One WebSocket connection's state.
pub(crate) struct Session<S> {
    socket: FrameSocket<S>,
    conn: Connection,
    /// The expiry (Unix seconds) the last `refresh` warning was about: one
    /// warning per expiry, so a provider of short-lived tokens cannot make
    /// hub and client spin.
    warned_for: Option<u64>,
    token_alarm: TokenAlarm,
    limiter: governor::DefaultDirectRateLimiter,
    /// Frames refused by the rate limiter in the current 10-second window.
    refused: (Instant, u32),
    last_heard: Instant,
}

impl<S: Socket> Session<S> {
    /// Prepares the connection; it joins the hub when it starts running.
    pub(crate) fn new(socket: S, state: AppState, identity: Identity) -> Session<S> {
        let limits = &state.config().limits;
        // Bursts of twice the sustained rate.
        let per_sec = NonZeroU32::new(limits.messages_per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let limiter =
            governor::RateLimiter::direct(governor::Quota::per_second(per_sec).allow_burst(burst));
        Session {
            socket: FrameSocket::new(socket),
            conn: Connection::new(state, identity, None),
            warned_for: None,
            token_alarm: TokenAlarm::default(),
            limiter,
            refused: (Instant::now(), 0),
            last_heard: Instant::now(),
        }
    }

    /// Writes queued frames several to a WebSocket message, separated by
    /// newlines (the client asked with `?batch=1`).
    pub(crate) fn batched(mut self) -> Session<S> {
        self.socket.batch();
        self
    }

    /// Takes bytes as binary messages, and writes messages whose payload
    /// is bytes as binary messages (the client asked with `?binary=1`).
    pub(crate) fn speaking_binary(mut self) -> Session<S> {
        self.socket.speak_binary();
        self
    }

    /// Compresses what it writes from now on (the connection negotiated
    /// permessage-deflate).
    pub(crate) fn deflating(mut self, compressor: Arc<Compressor>) -> Session<S> {
        self.socket.deflate(compressor);
        self
    }

    /// Keeps the connection's admission slot until the session ends.
    pub(crate) fn holding(mut self, ticket: Ticket) -> Session<S> {
        self.conn.hold(ticket);
        self
    }

    /// Runs the connection to its end, then removes it from the hub and
    /// announces the rooms its user left.
    pub(crate) fn run(self, start: Start) -> impl Future<Output = ()> + Send {
        // Not an `async fn`: one taking `self` by value would keep the
        // session twice in its state (the argument and the moved-in local),
        // for the connection's whole life. The block below only borrows it.
        // `start` is needed once, at the beginning: boxed, it takes a
        // pointer's room in the task instead of its own.
        let mut session = self;
        let start = Box::new(start);
        async move {
            info!(session = %session.conn.id.simple(), user = %session.conn.user, "connected");
            let flow = session.serve(start).await;
            // Boxed for the same reason as in `serve`: it runs once, at the end.
            Box::pin(session.finish(flow)).await;
        }
    }

    /// Closes the connection as `flow` says, leaves the hub and announces
    /// the rooms its user left.
    async fn finish(&mut self, flow: Flow) {
        let counters = &self.conn.state.hub().counters;
        let reason = match flow {
            Flow::Close(code, reason) => {
                counters.ended(format!("close_{}", code.0));
                debug!(session = %self.conn.id.simple(), %code, %reason, "closing");
                self.close(code, &reason).await;
                format!("closed with {code}")
            }
            Flow::Gone(ended) => {
                if ended == Ended::ClientClosed {
                    // tungstenite queued the answer to the client's close
                    // frame while reading it: send it.
                    let _ = tokio::time::timeout(CLOSE_LINGER, self.socket.flush()).await;
                }
                counters.ended(ended.label().to_owned());
                ended.to_string()
            }
            Flow::Continue => "ended".to_owned(),
        };
        self.conn.close();
        if let Some((hooks, timeout)) = self.conn.state.hooks() {
            let hook = hooks.disconnect(&self.conn.identity, &reason);
            let _ = crate::policy::hooks::call("disconnect", timeout, hook).await;
        }
        info!(session = %self.conn.id.simple(), user = %self.conn.user, %reason, "disconnected");
    }

    async fn serve(&mut self, start: Box<Start>) -> Flow {
        let heartbeat = self.conn.state.config().heartbeat.clone();
        // A write that cannot finish within the heartbeat timeout means the
        // client stopped reading; the session must not wait on it forever.
        let stall = heartbeat.timeout();
        // Boxed, here and around `handle` below: a task keeps its future's
        // largest state for its whole life, and these two (the opening
        // replay, a request's handling) are the largest. Boxed, an idle
        // connection's task holds about 2 KiB instead of 4.
        match tokio::time::timeout(stall, Box::pin(self.open(start))).await {
            Err(_) => return stalled(stall),
            Ok(Flow::Continue) => {}
            Ok(flow) => return flow,
        }
        let close_signal = self.conn.outbound.close_signal();
        let mut ticker =
            tokio::time::interval_at(Instant::now() + heartbeat.interval(), heartbeat.interval());
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // The node's shutdown reaches every registered session through
            // its close signal (`AppState::shutdown`); this one atomic load
            // covers a session that registered just after that sweep, where
            // waiting on the shared token would lock one mutex shared by
            // every session at every wake-up.
            if self.conn.state.is_shutting_down() {
                return Flow::Close(CloseCode::GOING_AWAY, SHUTDOWN.to_owned());
            }
            self.token_alarm.set(self.token_due());
            // Matched as a temporary, not bound: a named `Wake` (it may hold
            // a delivery) would keep its room in the task's state.
            let work = match tokio::select! {
                biased;
                (code, reason) = close_signal.requested() => Wake::Close(code, reason),
                expired = self.token_alarm.rings() => Wake::Token(expired),
                frame = self.conn.queue.recv() => Wake::Queued(frame),
                incoming = self.socket.next() => Wake::Incoming(incoming),
                _ = ticker.tick() => Wake::Tick,
            } {
                // Writing queued frames is the hot path of a fan-out and its
                // future is small: it runs in place. Everything else (a
                // request, a heartbeat, a close) is boxed, so the task does
                // not keep that larger state reserved for the connection's
                // whole life.
                Wake::Queued(first) if !first.kind.is_order() => {
                    Either::Left(self.write_queued(first))
                }
                other => Either::Right(Box::pin(self.on_wake(other, heartbeat.timeout()))),
            };
            // Handling may write to a socket whose peer stopped reading (its
            // own answers, a replay, a ping: nothing the outbound queue
            // bounds). The close signals must still win then, and the
            // heartbeat ticker, which is not needed meanwhile, measures how
            // long the write has been stuck.
            let woke = Instant::now();
            let mut tick_owed = false;
            tokio::pin!(work);
            let flow = loop {
                break tokio::select! {
                    biased;
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
    /// waited in the inbox, and joins the rooms the URL and the connect
    /// hook named.
    async fn open(&mut self, start: Box<Start>) -> Flow {
        let heartbeat_ms = self.conn.state.config().heartbeat.interval_ms;
        let info = ConnectionInfo {
            session: self.conn.id,
            transport: Transport::Websocket,
            address: start.address.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            user_agent: start.user_agent.clone(),
            connected_at: now_ms(),
        };
        let opened = match self.conn.open(start.inbox_since.as_ref(), info).await {
            Ok(opened) => opened,
            Err(err) => return self.store_failed(err),
        };
        // The welcome names the position just before the messages that follow
        // it, so a client advances through the replay like through live ones.
        let head = opened.position;
        let offset = opened.missed.first().map_or(head.offset, |first| first.offset - 1);
        let welcome = ServerFrame::Welcome(Welcome {
            session: self.conn.id.simple().to_string(),
            user: self.conn.user.to_string(),
            protocol: PROTOCOL_VERSION,
            heartbeat_ms,
            inbox: Some(Position { epoch: head.epoch, offset }),
            recovered: opened.recovered,
            rate: Some(self.conn.state.config().limits.messages_per_sec),
        });
        if let flow @ (Flow::Close(..) | Flow::Gone(_)) = self.reply(&welcome).await {
            return flow;
        }
        if let Err(flow) = self.replay(opened.missed).await {
            return flow;
        }
        let Start { rooms, .. } = *start;
        for room in rooms {
            let flow = self.join(None, room, None).await;
            if !matches!(flow, Flow::Continue) {
                return flow;
            }
        }
        Flow::Continue
    }

    async fn on_wake(&mut self, wake: Wake, timeout: Duration) -> Flow {
        match wake {
            Wake::Close(code, reason) => Flow::Close(code, reason),
            Wake::Queued(order) if order.kind.is_order() => self.obey(order).await,
            Wake::Queued(first) => self.write_queued(first).await,
            Wake::Incoming(incoming) => {
                self.last_heard = Instant::now();
                self.on_incoming(incoming).await
            }
            Wake::Tick => self.on_tick(timeout).await,
            Wake::Token(true) => {
                Flow::Close(CloseCode::TOKEN_EXPIRED, "the token expired".to_owned())
            }
            Wake::Token(false) => {
                self.warned_for = self.conn.identity.expires_at;
                let left = self.token_left_ms().unwrap_or(0);
                self.reply(&ServerFrame::Refresh { expires_in_ms: left }).await
            }
        }
    }

    /// Milliseconds until the token expires, if it does.
    fn token_left_ms(&self) -> Option<u64> {
        let expires_ms = self.conn.identity.expires_at?.saturating_mul(1000);
        Some(expires_ms.saturating_sub(now_ms()))
    }

    /// When the token next needs attention: the `refresh` warning (false),
    /// then the expiry (true).
    fn token_due(&self) -> Option<token_alarm::Due> {
        let expires_at = self.conn.identity.expires_at?;
        let left = Duration::from_millis(self.token_left_ms()?);
        let before = Duration::from_millis(self.conn.state.config().auth.refresh_before_ms);
        let warned = self.warned_for == Some(expires_at);
        if warned {
            Some((expires_at, true, Instant::now() + left))
        } else {
            Some((expires_at, false, Instant::now() + left.saturating_sub(before)))
        }
    }

    /// Whether the rate limit lets another frame through; past the abuse
    /// threshold in a 10-second window, the connection is closed.
    fn admit_frame(&mut self) -> Result<(), Flow> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        self.conn.state.hub().counters.rate_limited();
        let now = Instant::now();
        if now.duration_since(self.refused.0) > Duration::from_secs(10) {
            self.refused = (now, 0);
        }
        self.refused.1 += 1;
        if self.refused.1 >= self.conn.state.config().limits.rate_abuse_threshold {
            return Err(Flow::Close(
                CloseCode::RATE_LIMITED,
                "sending too fast for too long".to_owned(),
            ));
        }
        Err(Flow::Continue)
    }

    /// Whether `access` lets this connection act in `room`.
    fn may(&self, room: &str, access: impl Fn(&crate::config::RoomRule) -> Access) -> bool {
        self.conn.state.permissions().allows(&self.conn.identity, room, access)
    }

    /// Writes a queued delivery and whatever else is already waiting (up to
    /// [`frames::FRAMES_PER_WRITE`] frames, in one vectored write when the
    /// socket takes them), then flushes once. Skips what a replay already
    /// sent.
    ///
    /// Written as a poll function rather than an `async fn`: it runs in
    /// place in the connection's task (it is the fan-out's hot path), and
    /// its state is then one frame.
    fn write_queued(&mut self, first: Arc<Delivery>) -> impl Future<Output = Flow> + Send + '_ {
        let first = match self.conn.wanted(&first) {
            Verdict::Write => Some(Out::Shared(first)),
            // Skipped: what waits behind it still goes in this write.
            Verdict::Skip => next_wanted(&mut self.conn),
        };
        self.write_with_queue(first, false)
    }

    /// Writes `first` and what the outbound queue holds behind it, in one
    /// vectored write where the socket takes it (`first_alone`: `first` is
    /// an answer, a message of its own even for a batching client).
    fn write_with_queue(
        &mut self,
        mut first: Option<Out>,
        first_alone: bool,
    ) -> impl Future<Output = Flow> + Send + '_ {
        poll_fn(move |cx| {
            let Session { socket, conn, .. } = &mut *self;
            socket.poll_write_texts(cx, &mut first, || next_wanted(conn), first_alone).map(written)
        })
    }

    fn store_failed(&self, err: EngineError) -> Flow {
        tracing::error!(session = %self.conn.id.simple(), %err, "history store failed");
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

    async fn on_incoming(
        &mut self,
        incoming: Option<Result<WsMessage, tungstenite::Error>>,
    ) -> Flow {
        match self.request_of(incoming) {
            Ok(frame) => self.carry_out(frame).await,
            Err(refused) => self.answer(refused).await,
        }
    }

    /// A message off the socket as a request, or why it is none (a close,
    /// a frame refused by the rate limit, a malformed one). Answers
    /// nothing itself: the caller answers in its turn ([`Self::answer`]).
    fn request_of(
        &mut self,
        incoming: Option<Result<WsMessage, tungstenite::Error>>,
    ) -> Result<ClientFrame, Refused> {
        match incoming {
            None => Err(Refused::Flow(Flow::Gone(Ended::Dropped))),
            Some(Ok(WsMessage::Close(_))) => Err(Refused::Flow(Flow::Gone(Ended::ClientClosed))),
            Some(Ok(WsMessage::Text(text))) => {
                self.decoded(text.as_str(), ClientFrame::decode_limited, |text, depth| {
                    ClientFrame::decode_limited(text, depth).ok()?.id().map(str::to_owned)
                })
            }
            Some(Ok(WsMessage::Binary(bytes))) if self.socket.speaks_binary() => {
                let max_bytes = self.conn.state.config().limits.max_message_bytes;
                self.decoded(
                    &bytes[..],
                    |bytes, depth| crate::binary::request_of(bytes, depth, max_bytes),
                    crate::binary::request_id,
                )
            }
            Some(Ok(WsMessage::Binary(_))) => Err(Refused::Answer(
                None,
                ErrorCode::BINARY_UNSUPPORTED,
                "binary messages need `?binary=1` on the URL; send JSON text".to_owned(),
            )),
            // Raw frames are only produced when writing, never read.
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_))) => {
                Err(Refused::Flow(Flow::Continue))
            }
            Some(Err(err)) => Err(Refused::Flow(read_error_flow(err))),
        }
    }

    /// A text or binary message `decode`d, past the rate limit and counted;
    /// `id_of` reads only its request id, for a refusal.
    fn decoded<T: ?Sized>(
        &mut self,
        message: &T,
        decode: impl FnOnce(&T, usize) -> Result<ClientFrame, DecodeError>,
        id_of: impl FnOnce(&T, usize) -> Option<String>,
    ) -> Result<ClientFrame, Refused> {
        let depth = self.conn.state.config().limits.max_json_depth;
        if let Err(flow) = self.admit_frame() {
            if let Flow::Continue = flow {
                // The refusal names the request, so a client can
                // retry it after a pause instead of timing out.
                let id = id_of(message, depth);
                let message = "rate limit: too many frames; slow down".to_owned();
                return Err(Refused::Answer(id, ErrorCode::RATE_LIMITED, message));
            }
            return Err(Refused::Flow(flow));
        }
        let counters = &self.conn.state.hub().counters;
        match decode(message, depth) {
            Ok(frame) => {
                counters.frame_in(frame_slot(&frame));
                Ok(frame)
            }
            Err(err) => {
                counters.frame_in(crate::hub::stats::FRAME_TYPES.len() - 1);
                Err(Refused::Answer(err.id, err.code, err.message))
            }
        }
    }

    /// Answers a refusal, or passes on the flow it stands for.
    async fn answer(&mut self, refused: Refused) -> Flow {
        match refused {
            Refused::Answer(id, code, message) => self.fail(id, code, message).await,
            Refused::Flow(flow) => flow,
        }
    }

    /// Carries out one request (a publish with those that arrived behind
    /// it: `publishing.rs`), timing it for the latency histogram.
    async fn carry_out(&mut self, frame: ClientFrame) -> Flow {
        if let ClientFrame::Publish { .. } = frame {
            return Box::pin(self.publish_gathered(frame)).await;
        }
        let slot = frame_slot(&frame);
        let started = Instant::now();
        let flow = Box::pin(self.handle(frame)).await;
        // Pings are not requests worth a histogram.
        if slot < crate::hub::latency::KINDS.len() {
            self.conn.state.hub().counters.latency.observe(slot, started.elapsed());
        }
        flow
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
        debug!(session = %self.conn.id.simple(), %code, %message, "request refused");
        self.reply(&ServerFrame::Error(ErrorFrame { id, code, message })).await
    }

    async fn reply(&mut self, frame: &ServerFrame) -> Flow {
        written(self.socket.send(WsMessage::Text(encode(frame))).await)
    }

    /// Writes `frame`, then what the outbound queue already holds, in one
    /// vectored write where the socket takes it: a publish's ack and the
    /// message's own delivery to this connection (it is in the room) then
    /// cost one system call, here and in the client, instead of two. The
    /// order is the one separate writes would give, the answer first, and
    /// the answer is a WebSocket message of its own even for a batching
    /// client (the protocol promises it). Not for answers a replay must
    /// follow (a join's), which live frames may not overtake, nor for any
    /// answer but the last of several (the queue would go out between them).
    async fn reply_then_queued(&mut self, frame: &ServerFrame) -> Flow {
        self.write_with_queue(Some(Out::Own(encode(frame))), true).await
    }

    /// Sends a close frame, then reads until the peer answers or hangs up,
    /// all within [`CLOSE_LINGER`]: a peer that stopped reading (a slow
    /// consumer) may never take the close frame, and is then simply dropped.
    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame =
            CloseFrame { code: code.0.into(), reason: Utf8Bytes::from(truncate_reason(reason)) };
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

/// The next queued frame the connection writes (up to an order), skipping
/// what a replay already sent.
fn next_wanted(conn: &mut Connection) -> Option<Out> {
    loop {
        let delivery = conn.queue.try_recv_frame()?;
        if conn.wanted(&delivery) == Verdict::Write {
            return Some(Out::Shared(delivery));
        }
    }
}

#[cfg(test)]
mod tests;
