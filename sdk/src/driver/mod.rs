//! The driver: the one task that owns a client's connection and runs its
//! state machine, the same on every target.
//!
//! ```text
//!  Idle ──connect()──▶ Connecting ──welcome──▶ Connected
//!   ▲                   │    ▲                    │
//!   │   gave up /       │    └──backoff delay─────┤ connection lost
//!   └── disconnect() ───┴─────────────────────────┘
//! ```
//!
//! The [`Client`](crate::Client) handles talk to it only through [`Command`]s.
//! It remembers the rooms the app joined and rejoins them after every
//! reconnect, keeps requests made while offline in a bounded queue and sends
//! them once connected (`requests.rs`), and matches `ack`/`error` frames to
//! the futures waiting on them (`inbound.rs`).
//!
//! Every wait has an end, and every wait still takes commands, so
//! `disconnect()` and `close()` are answered at once: the token provider is
//! bounded by the request timeout, an attempt by the connect timeout, the
//! socket's writes never block the loop (`transport/`), and closing the
//! socket is bounded too (natively one second, `transport/native.rs`).
//! Failures that trying again cannot heal end the attempts at once.

mod inbound;
mod pacer;
mod requests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use std::future::poll_fn;
use std::task::Poll;

use futures::{FutureExt, StreamExt, pin_mut, select_biased};
use switchboard_protocol::{ClientFrame, CloseCode, Position, ServerFrame, Welcome};

use crate::builder::{Options, TokenProvider, Tokens};
use crate::client::Shared;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Connected, Connecting, ConnectionState, Disconnected};
use crate::runtime::{self, BoxFuture, Wait};
use crate::transport::{Incoming, OpenError, Socket};
use inbound::After;
use pacer::Pacer;
use requests::{Loss, Pending, Reply};
pub(crate) use requests::{Op, Request};

/// In a browser, attempts in a row that close before the socket opens
/// (1006, the upgrade's status hidden) after which `connect()` fails with
/// [`Error::Unreachable`], unless a connection was welcomed since
/// `connect()` was called. Once connected, a lost connection is retried per
/// the reconnect policy alone.
pub const UNOPENED_ATTEMPTS: u32 = 10;

/// Tokens from the provider the hub refuses (4500) in a row after which
/// the client stops with [`Error::Refused`].
const TOKEN_REFUSALS: u32 = 3;

/// A message from a [`Client`](crate::Client) handle to its driver.
pub(crate) enum Command {
    /// Start connecting if idle; resolve once connected.
    Connect(oneshot::Sender<Result<()>>),
    /// Carry out a request.
    Request(Request),
    /// Close the connection and stay idle; resolve when done.
    Disconnect(oneshot::Sender<()>),
    /// Close for good; resolve when done.
    Close(oneshot::Sender<()>),
}

/// What a token provider answered.
type TokenResult = Result<String, String>;

/// How a connection attempt or a connection ended.
enum End {
    /// `disconnect()` was called: go idle.
    Idle,
    /// `close()` was called or every handle is gone: stop.
    Close,
    /// The socket could not be opened or was lost. With `stop`, the client
    /// does not try again and everything waiting fails with it.
    Lost { code: Option<CloseCode>, reason: String, welcomed: bool, stop: Option<Error> },
}

/// Something a wait was interrupted by.
enum Wake {
    Command(Option<Command>),
    Incoming(Incoming),
    Tick,
    /// The host reported the network gone (a browser's `offline` event).
    Offline,
    /// A token fetched after the hub's `refresh` warning.
    Token(TokenResult),
    /// The pacer's window ended: more may be sent.
    Window,
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Rooms the app wants to be in; rejoined after every reconnect, in no
    /// particular order. (A hash set: the browser package carries the hash
    /// table's code for the maps below anyway, and a B-tree's added about
    /// 3 KB gzipped.)
    rooms: HashSet<String>,
    /// Rooms joined while offline that the hub has not confirmed: withdrawn
    /// if every caller gave up before the join was sent.
    unconfirmed: HashSet<String>,
    /// Joins made while offline, answered by the rejoin.
    join_waiters: HashMap<String, Vec<Reply>>,
    /// Rooms still to rejoin on this connection; they go before the queue.
    rejoins: VecDeque<String>,
    /// Requests waiting to be sent: made offline, or waiting for the pacer
    /// or the socket's room.
    queue: VecDeque<Request>,
    /// Requests refused for the hub's rate and put back at the front of
    /// the queue during the current stall, so the next goes behind them.
    refused: usize,
    pending: HashMap<String, Pending>,
    /// Per joined room: its epoch and the offset of the last message seen.
    positions: HashMap<String, Position>,
    /// The same for this user's inbox of private messages.
    inbox: Option<Position>,
    connect_waiters: Vec<oneshot::Sender<Result<()>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    id_prefix: String,
    next_id: u64,
    /// The token sent on the current (or last) connection.
    token: Option<String>,
    /// A token the hub refused (4500): not offered again.
    rejected: Option<String>,
    /// Tokens refused in a row.
    refusals: u32,
    /// Which of the hub's URLs the next attempt opens.
    endpoint: usize,
    /// Since `connect()`: whether a connection was welcomed, and how many
    /// attempts in a row closed before opening.
    welcomed: bool,
    unopened: u32,
    pacer: Pacer,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Driver {
        Driver {
            shared,
            commands,
            rooms: HashSet::new(),
            unconfirmed: HashSet::new(),
            join_waiters: HashMap::new(),
            rejoins: VecDeque::new(),
            queue: VecDeque::new(),
            refused: 0,
            pending: HashMap::new(),
            positions: HashMap::new(),
            inbox: None,
            connect_waiters: Vec::new(),
            close_waiters: Vec::new(),
            // Ids must not repeat across this user's clients and reconnects,
            // so the server can tell a retry from a new request.
            id_prefix: format!("{:08x}", fastrand::u32(..)),
            next_id: 0,
            token: None,
            rejected: None,
            refusals: 0,
            endpoint: 0,
            welcomed: false,
            unopened: 0,
            pacer: Pacer::new(None),
        }
    }

    /// Runs until `close()` or until every client handle is dropped.
    pub(crate) async fn run(mut self) {
        while self.idle().await {
            if let End::Close = self.connect_loop().await {
                break;
            }
        }
        self.finish();
    }

    fn set_state(&self, state: ConnectionState) {
        self.shared.set_state(state);
    }

    /// Waits, disconnected, for `connect()`. Returns false to stop.
    async fn idle(&mut self) -> bool {
        self.set_state(ConnectionState::Disconnected);
        loop {
            match self.commands.next().await {
                Some(Command::Connect(waiter)) => {
                    self.connect_waiters.push(waiter);
                    return true;
                }
                Some(Command::Request(request)) => self.accept_offline(request),
                Some(Command::Disconnect(done)) => {
                    let _ = done.send(());
                }
                Some(Command::Close(done)) => {
                    self.close_waiters.push(done);
                    return false;
                }
                None => return false,
            }
        }
    }

    /// Connects, serves, and reconnects per the policy until told to stop or giving up.
    async fn connect_loop(&mut self) -> End {
        let policy = self.shared.options.reconnect.clone();
        let backoff = policy.backoff();
        let mut failed: u32 = 0;
        self.welcomed = false;
        self.unopened = 0;
        loop {
            self.set_state(ConnectionState::Connecting);
            // While the host knows it has no network (a browser's `offline`),
            // attempts would only burn the budget: wait for `online` instead.
            if !runtime::is_online() {
                if let Some(end) = self.wait_for_network().await {
                    return self.stopped(end);
                }
            }
            self.shared.handlers.emit_connecting(&Connecting { attempt: failed });
            let (code, reason, welcomed, stop) = match self.session().await {
                End::Lost { code, reason, welcomed, stop } => (code, reason, welcomed, stop),
                other => return self.stopped(other),
            };
            // A hub that closed for sending too fast (4002) gets a growing
            // delay, not the minimum a welcome would reset it to.
            if welcomed && code != Some(CloseCode::RATE_LIMITED) {
                failed = 0;
            } else {
                failed = failed.saturating_add(1);
            }
            if !welcomed {
                // That URL did not take us: the next attempt tries the
                // hub's next one (a node that died, say).
                self.endpoint = (self.endpoint + 1) % self.shared.options.endpoints.len();
            }
            let will_reconnect = stop.is_none() && policy.allows(failed);
            self.set_state(if will_reconnect {
                ConnectionState::Connecting
            } else {
                ConnectionState::Disconnected
            });
            self.shared.handlers.emit_disconnected(&Disconnected {
                code,
                reason: reason.clone(),
                will_reconnect,
            });
            if !will_reconnect {
                let error = match stop {
                    // Terminal: said once, with its kind.
                    Some(Error::GaveUp(reason)) => Error::GaveUp(reason),
                    Some(error) => {
                        self.shared.handlers.emit_error(&error);
                        error
                    }
                    None => Error::GaveUp(reason),
                };
                self.give_up(error);
                return End::Idle;
            }
            let delay = backoff.delay(failed.saturating_sub(1));
            if let Some(end) = self.wait_offline(delay).await {
                return self.stopped(end);
            }
        }
    }

    /// `disconnect()` or `close()` ended the attempts: the app hears it like
    /// any other end of the connection.
    fn stopped(&mut self, end: End) -> End {
        let reason = match end {
            End::Idle => "disconnect() was called",
            _ => "the client was closed",
        };
        self.set_state(ConnectionState::Disconnected);
        self.shared.handlers.emit_disconnected(&Disconnected {
            code: None,
            reason: reason.to_owned(),
            will_reconnect: false,
        });
        end
    }

    /// Sleeps for the backoff delay while still taking commands. The
    /// network coming back (a browser's `online` event) cuts the wait short.
    async fn wait_offline(&mut self, delay: Duration) -> Option<End> {
        let sleep = runtime::sleep(delay);
        let online = runtime::online();
        pin_mut!(sleep, online);
        self.until(sleep, [Some(online), None]).await.err()
    }

    /// Waits for the network to come back, still taking commands.
    async fn wait_for_network(&mut self) -> Option<End> {
        let online = runtime::online();
        pin_mut!(online);
        self.until(online, [None, None]).await.err()
    }

    /// Waits, not connected, until `wait` finishes (`Ok(true)`) or one of
    /// the `deadlines` does (`Ok(false)`), taking commands meanwhile:
    /// `Err` when one ends the wait. Every wait outside a connection goes
    /// through here, so the browser package carries this loop once.
    async fn until(
        &mut self,
        mut wait: Wait<'_>,
        mut deadlines: [Option<Wait<'_>>; 2],
    ) -> Result<bool, End> {
        loop {
            let woke = poll_fn(|cx| {
                if let Poll::Ready(command) = self.commands.poll_next_unpin(cx) {
                    return Poll::Ready(Err(command));
                }
                if wait.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(true));
                }
                for deadline in deadlines.iter_mut().flatten() {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(false));
                    }
                }
                Poll::Pending
            })
            .await;
            match woke {
                Ok(finished) => return Ok(finished),
                Err(command) => {
                    if let Some(end) = self.command_offline(command) {
                        return Err(end);
                    }
                }
            }
        }
    }

    /// Handles a command while not connected; returns how to end, if it ends.
    fn command_offline(&mut self, command: Option<Command>) -> Option<End> {
        match command {
            Some(Command::Connect(waiter)) => self.connect_waiters.push(waiter),
            Some(Command::Request(request)) => self.accept_offline(request),
            Some(Command::Disconnect(done)) => {
                self.abandon_connect("disconnect() was called");
                let _ = done.send(());
                return Some(End::Idle);
            }
            Some(Command::Close(done)) => {
                self.close_waiters.push(done);
                return Some(End::Close);
            }
            None => return Some(End::Close),
        }
        None
    }

    /// The token for the next attempt: fixed, or asked of the provider
    /// (bounded by the request timeout, abandoned by `disconnect()` and
    /// `close()`).
    async fn attempt_token(&mut self) -> Result<Option<String>, End> {
        let provider = match &self.shared.options.tokens {
            Tokens::None => return Ok(None),
            Tokens::Fixed(token) => return Ok(Some(token.clone())),
            Tokens::Provider(provider) => provider.clone(),
        };
        let mut fetched = Err(String::new());
        {
            let fetch = fetch_token(provider, self.shared.options.request_timeout);
            let fetch = async {
                fetched = fetch.await;
            };
            pin_mut!(fetch);
            self.until(fetch, [None, None]).await?;
        }
        match fetched {
            Ok(token) if Some(&token) == self.rejected.as_ref() => Err(End::Lost {
                code: None,
                reason: "the hub refused the token and the provider has no other".to_owned(),
                welcomed: false,
                stop: Some(Error::Refused(
                    "the hub refused the token and the provider has no other".to_owned(),
                )),
            }),
            Ok(token) => Ok(Some(token)),
            Err(reason) => {
                self.shared.handlers.emit_error(&Error::Transport(reason.clone()));
                Err(lost(None, reason, false))
            }
        }
    }

    /// One connection: open, await `welcome`, rejoin, flush, serve.
    async fn session(&mut self) -> End {
        let options = self.shared.options.clone();
        self.token = match self.attempt_token().await {
            Ok(token) => token,
            Err(end) => return end,
        };
        let (mut socket, welcome) = match self.open(&options).await {
            Ok(opened) => opened,
            Err(end) => return end,
        };
        self.rejected = None;
        self.refusals = 0;
        self.welcomed = true;
        self.unopened = 0;
        self.pacer = Pacer::new(welcome.rate);
        self.refused = 0;
        self.set_state(ConnectionState::Connected);
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
        if welcome.inbox.is_some() {
            self.inbox = welcome.inbox;
        }
        self.shared.handlers.emit_connected(&Connected {
            session: welcome.session,
            user: welcome.user,
            heartbeat_ms: welcome.heartbeat_ms,
            inbox_recovered: welcome.recovered,
        });
        let end = self.serve(&mut socket).await;
        self.connection_lost(match &end {
            End::Close => Loss::Closing,
            // A message too big for the hub closes the connection with
            // 1009; re-sending it would only close the next one too.
            End::Lost { code: Some(CloseCode::MESSAGE_TOO_BIG), .. } => Loss::Poisoned,
            _ => Loss::Dropped,
        });
        end
    }

    /// Opens the socket and waits for the hub's `welcome`, within the
    /// connect timeout.
    async fn open(&mut self, options: &Options) -> Result<(Socket, Welcome), End> {
        // One deadline for TCP, TLS, the upgrade and the welcome.
        let deadline = runtime::sleep(options.connect_timeout);
        pin_mut!(deadline);
        let url = options.endpoints[self.endpoint].resume(self.inbox.as_ref());
        let mut opened = None;
        {
            let open = async {
                opened = Some(Socket::open(&url, &options.headers, &options.connector).await);
            };
            pin_mut!(open);
            if !self.until(open, [Some(deadline.as_mut()), None]).await? {
                return Err(self.timed_out());
            }
        }
        let mut socket = match opened {
            Some(Ok(socket)) => {
                self.unopened = 0; // it opened: not "closed before opening"
                socket
            }
            Some(Err(err)) => return Err(self.open_failed(err)),
            None => return Err(self.timed_out()),
        };
        if let Some(token) = self.token.clone() {
            socket.send(encode(ClientFrame::Auth { id: None, token }));
        }
        let mut welcome = None;
        {
            let first = async {
                welcome = Some(socket.next().await);
            };
            let wait = runtime::sleep(options.welcome_timeout);
            pin_mut!(first, wait);
            self.until(first, [Some(deadline.as_mut()), Some(wait)]).await?;
        }
        let welcome = match welcome {
            Some(Incoming::Text(text)) => match codec::decode(&text) {
                Ok(Some(ServerFrame::Welcome(welcome))) => welcome,
                _ => {
                    let reason = format!("expected a welcome frame, got {}", clip(&text));
                    return Err(lost(None, reason, false));
                }
            },
            Some(Incoming::Closed { code, reason }) => return Err(self.closed(code, reason, false)),
            Some(Incoming::Alive | Incoming::Writable | Incoming::Binary(_)) => {
                return Err(lost(None, "expected a welcome frame".into(), false));
            }
            None => return Err(self.timed_out()),
        };
        Ok((socket, welcome))
    }

    /// An attempt that could not open: terminal failures end the attempts;
    /// in a browser, too many closes before opening since `connect()` do too.
    fn open_failed(&mut self, err: OpenError) -> End {
        let reason = err.to_string();
        if let Some(error) = err.terminal() {
            return End::Lost { code: None, reason, welcomed: false, stop: Some(error) };
        }
        if let OpenError::Hidden(_) = err {
            self.unopened += 1;
            if !self.welcomed && self.unopened >= UNOPENED_ATTEMPTS {
                let error = Error::Unreachable(format!(
                    "{} attempts in a row closed before opening; the last: {reason}",
                    self.unopened
                ));
                return End::Lost { code: None, reason, welcomed: false, stop: Some(error) };
            }
        } else {
            self.unopened = 0;
        }
        self.shared.handlers.emit_error(&Error::Transport(reason.clone()));
        lost(None, reason, false)
    }

    /// The connect (or welcome) timeout passed before a `welcome`.
    fn timed_out(&mut self) -> End {
        let reason = "no welcome within the connect timeout (or the welcome timeout)".to_owned();
        self.shared.handlers.emit_error(&Error::Transport(reason.clone()));
        lost(None, reason, false)
    }

    /// The hub closed the connection. A token it refused is not offered
    /// again, and a provider whose tokens it keeps refusing ends the
    /// attempts; codes that say not to come back end them too.
    fn closed(&mut self, code: Option<CloseCode>, reason: String, welcomed: bool) -> End {
        let stop = match code {
            Some(CloseCode::UNAUTHORIZED)
                if matches!(self.shared.options.tokens, Tokens::Provider(_)) =>
            {
                // "Not until the token changes": try again only with a new one.
                self.rejected = self.token.clone();
                self.refusals += 1;
                (self.refusals >= TOKEN_REFUSALS).then(|| {
                    Error::Refused(format!(
                        "the hub refused {} tokens in a row: {reason}",
                        self.refusals
                    ))
                })
            }
            Some(CloseCode::UNAUTHORIZED) => Some(Error::Refused(reason.clone())),
            Some(code) if !code.should_reconnect() => Some(Error::GaveUp(reason.clone())),
            _ => None,
        };
        End::Lost { code, reason, welcomed, stop }
    }

    /// The connected loop.
    async fn serve(&mut self, socket: &mut Socket) -> End {
        // Rejoin first: the server handles frames in order, so the queued
        // publishes that follow find their rooms joined.
        self.rejoins = self.rooms.iter().cloned().collect();
        self.flush(socket);
        let options = self.shared.options.clone();
        let heartbeat = options.heartbeat.clone();
        let interval = heartbeat.as_ref().map_or(Duration::from_secs(3600), |h| h.interval);
        let mut heard = true;
        let mut silent = Duration::ZERO;
        // One tick for the whole connection: traffic only sets `heard`, so
        // steady traffic in either direction cannot postpone the silence check.
        let tick = runtime::sleep(interval).fuse();
        // A browser that reports the network gone has usually lost this
        // socket too, but the socket may take a heartbeat timeout to notice
        // (or never, under DevTools' offline emulation). Drop it now, so the
        // app hears `disconnected` at once and recovery starts on `online`.
        let offline = runtime::offline().fuse();
        // A token asked for after the hub's `refresh` warning. It belongs to
        // this connection: dropped with it, never sent on the next one.
        let mut refreshing: Option<BoxFuture<TokenResult>> = None;
        pin_mut!(tick, offline);
        loop {
            let wake = {
                let incoming = socket.next().fuse();
                let token = async {
                    match &mut refreshing {
                        Some(fetch) => fetch.await,
                        None => std::future::pending().await,
                    }
                }
                .fuse();
                let window = self.pacer.window_ends().fuse();
                pin_mut!(incoming, token, window);
                select_biased! {
                    incoming = incoming => Wake::Incoming(incoming),
                    command = self.commands.next() => Wake::Command(command),
                    token = token => Wake::Token(token),
                    () = window => Wake::Window,
                    () = tick => Wake::Tick,
                    () = offline => Wake::Offline,
                }
            };
            match wake {
                Wake::Incoming(Incoming::Closed { code, reason }) => {
                    return self.closed(code, reason, true);
                }
                Wake::Incoming(Incoming::Alive) => heard = true,
                Wake::Incoming(Incoming::Writable) | Wake::Window => self.flush(socket),
                Wake::Incoming(Incoming::Binary(bytes)) => {
                    heard = true;
                    if let After::FetchToken = self.on_binary(&bytes) {
                        refreshing = self.refresh_token();
                    }
                }
                Wake::Incoming(Incoming::Text(text)) => {
                    heard = true;
                    // Several frames to a message, newline-separated: the
                    // SDK asks for batches (`Endpoint`). A frame is compact
                    // JSON and never holds a raw newline. The welcome above
                    // always comes alone.
                    for frame in text.split('\n') {
                        if let After::FetchToken = self.on_frame(frame) {
                            refreshing = self.refresh_token();
                        }
                    }
                }
                Wake::Command(Some(Command::Request(request))) => {
                    self.accept_online(socket, request);
                }
                Wake::Command(Some(Command::Connect(waiter))) => {
                    let _ = waiter.send(Ok(()));
                }
                Wake::Command(Some(Command::Disconnect(done))) => {
                    socket.close(CloseCode::NORMAL, "client disconnected").await;
                    let _ = done.send(());
                    return End::Idle;
                }
                Wake::Command(Some(Command::Close(done))) => {
                    socket.close(CloseCode::NORMAL, "client closed").await;
                    self.close_waiters.push(done);
                    return End::Close;
                }
                Wake::Command(None) => {
                    socket.close(CloseCode::NORMAL, "client dropped").await;
                    return End::Close;
                }
                Wake::Token(Ok(token)) => {
                    refreshing = None;
                    self.token = Some(token.clone());
                    let id = self.next_id();
                    self.write(socket, ClientFrame::Auth { id: Some(id), token });
                }
                Wake::Token(Err(reason)) => {
                    refreshing = None;
                    self.shared.handlers.emit_error(&Error::Transport(reason));
                }
                Wake::Offline => {
                    socket.close(CloseCode::GOING_AWAY, "the network went offline").await;
                    return lost(None, "the network went offline".into(), true);
                }
                Wake::Tick => {
                    tick.set(runtime::sleep(interval).fuse());
                    let Some(heartbeat) = &heartbeat else {
                        continue;
                    };
                    if heard {
                        silent = Duration::ZERO;
                    } else {
                        silent += interval;
                        if silent >= heartbeat.timeout {
                            socket.close(CloseCode::HEARTBEAT_TIMEOUT, "heartbeat timeout").await;
                            return lost(
                                None,
                                "heartbeat timeout: the server went silent".into(),
                                true,
                            );
                        }
                    }
                    heard = false;
                    // Not while the hub is refusing for its rate: a refused
                    // ping would only count towards its 4002 limit.
                    if self.pacer.allows() {
                        self.write(socket, ClientFrame::Ping { id: None });
                    }
                }
            }
        }
    }

    /// Starts fetching a token after the hub's `refresh` warning, or says
    /// why none can be had.
    fn refresh_token(&self) -> Option<BoxFuture<TokenResult>> {
        match &self.shared.options.tokens {
            Tokens::Provider(provider) => {
                Some(fetch_token(provider.clone(), self.shared.options.request_timeout))
            }
            _ => {
                let reason = "the token expires soon and no token provider is set".to_owned();
                self.shared.handlers.emit_error(&Error::Protocol(reason));
                None
            }
        }
    }

    /// No more retries: everything waiting for a connection fails now with
    /// `error`, and rooms joined offline are not joined later.
    fn give_up(&mut self, error: Error) {
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        for (_, waiters) in self.join_waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(error.clone()));
            }
        }
        for room in std::mem::take(&mut self.unconfirmed) {
            self.rooms.remove(&room);
        }
        for request in self.queue.drain(..) {
            let _ = request.reply.send(Err(error.clone()));
        }
    }

    /// `disconnect()` during connecting: `connect()` callers learn it failed;
    /// queued requests wait for the next `connect()`.
    fn abandon_connect(&mut self, reason: &str) {
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(Error::GaveUp(reason.to_owned())));
        }
    }

    /// Closed for good: everything still waiting fails with [`Error::Closed`].
    fn finish(&mut self) {
        self.set_state(ConnectionState::Closed);
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(Error::Closed));
        }
        for (_, waiters) in self.join_waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(Error::Closed));
            }
        }
        for request in self.queue.drain(..) {
            let _ = request.reply.send(Err(Error::Closed));
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Connect(waiter) => {
                    let _ = waiter.send(Err(Error::Closed));
                }
                Command::Request(request) => {
                    let _ = request.reply.send(Err(Error::Closed));
                }
                Command::Disconnect(done) | Command::Close(done) => {
                    let _ = done.send(());
                }
            }
        }
        for done in self.close_waiters.drain(..) {
            let _ = done.send(());
        }
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}-{}", self.id_prefix, self.next_id)
    }
}

/// Asks `provider` for a token, for at most `timeout`.
fn fetch_token(provider: Arc<dyn TokenProvider>, timeout: Duration) -> BoxFuture<TokenResult> {
    Box::pin(async move {
        let mut token = provider.token();
        let deadline = runtime::sleep(timeout);
        pin_mut!(deadline);
        poll_fn(|cx| {
            if let Poll::Ready(token) = token.as_mut().poll(cx) {
                return Poll::Ready(
                    token.map_err(|reason| format!("the token provider failed: {reason}")),
                );
            }
            deadline.as_mut().poll(cx).map(|()| {
                let timeout = timeout.as_millis() as u64;
                Err(format!("the token provider did not answer within {timeout} ms"))
            })
        })
        .await
    })
}

/// The start of `text`, at most 200 bytes, for an error message. (Cut by
/// hand: `{:.200}` would bring char counting into the browser package.)
fn clip(text: &str) -> &str {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // `get`: `end` is a boundary, and no panic path is compiled in.
    text.get(..end).unwrap_or_default()
}

fn lost(code: Option<CloseCode>, reason: String, welcomed: bool) -> End {
    End::Lost { code, reason, welcomed, stop: None }
}

fn encode(frame: ClientFrame) -> String {
    codec::encode(&frame)
}
