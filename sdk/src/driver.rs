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
//! them once connected, and matches `ack`/`error` frames to the futures
//! waiting on them.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt, pin_mut, select_biased};
use serde_json::Value;
use switchboard_protocol::{Ack, ClientFrame, CloseCode, Message, Position, ServerFrame};

use crate::builder::Tokens;
use crate::client::Shared;
use crate::codec;
use crate::error::{Error, Result};
use crate::event::{Connected, Connecting, ConnectionState, Disconnected, Joined, Left, Reset};
use crate::runtime;
use crate::transport::{Incoming, Socket};

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

/// A request and where its answer goes.
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Ack>>,
    /// Set once the request was first sent; a re-send after a reconnect
    /// keeps it, so the hub recognises a retry and does not act twice.
    pub(crate) id: Option<String>,
}

/// What a request asks.
pub(crate) enum Op {
    Join { room: String },
    Leave { room: String },
    Publish { room: String, event: String, data: Value, exclude_self: bool },
    Send { to: String, event: String, data: Value },
    History { room: String, since: Option<u64>, limit: Option<u32> },
    Members { room: String, cursor: Option<String>, limit: Option<u32> },
    Rpc { method: String, data: Value },
}

type Reply = oneshot::Sender<Result<Ack>>;

/// A request sent and not yet answered.
enum Pending {
    /// Joins survive a lost connection: the rejoin answers them.
    Join { room: String, replies: Vec<Reply>, rejoin: bool },
    /// A leave whose connection is lost has left anyway.
    Leave { reply: Reply },
    /// Publishes, sends and history reads: re-sent with the same id after a
    /// reconnect (the hub answers a repeated id without acting twice).
    Resend { seq: u64, request: Request },
    /// An `rpc`: the hub keeps no record of it, so one whose connection is
    /// lost fails with [`Error::ConnectionLost`] rather than being called
    /// twice.
    Once { reply: Reply },
}

/// What a token provider answered.
type TokenResult = Result<String, String>;

/// How a connection attempt or a connection ended.
enum End {
    /// `disconnect()` was called: go idle.
    Idle,
    /// `close()` was called or every handle is gone: stop.
    Close,
    /// The socket could not be opened or was lost.
    Lost { code: Option<CloseCode>, reason: String, welcomed: bool, retry: bool },
}

/// Something a wait was interrupted by.
enum Wake {
    Command(Option<Command>),
    Incoming(Incoming),
    Tick,
    /// The host reported the network gone (a browser's `offline` event).
    Offline,
    /// A token fetched after the hub's `refresh` warning.
    Token(Option<Result<String, String>>),
}

pub(crate) struct Driver {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Rooms the app wants to be in; rejoined after every reconnect.
    rooms: BTreeSet<String>,
    /// Joins made while offline, answered by the rejoin.
    join_waiters: HashMap<String, Vec<Reply>>,
    /// Publishes and sends made while offline.
    queue: VecDeque<Request>,
    pending: HashMap<String, Pending>,
    /// Per joined room: its epoch and the offset of the last message seen.
    positions: HashMap<String, Position>,
    /// The same for this user's inbox of private messages.
    inbox: Option<Position>,
    connect_waiters: Vec<oneshot::Sender<Result<()>>>,
    close_waiters: Vec<oneshot::Sender<()>>,
    id_prefix: String,
    next_id: u64,
    /// Tokens fetched in the background after a `refresh` warning.
    tokens: (mpsc::UnboundedSender<TokenResult>, mpsc::UnboundedReceiver<TokenResult>),
    /// The token sent on the current (or last) connection.
    token: Option<String>,
    /// A token the hub refused (4500): not offered again.
    rejected: Option<String>,
    /// Which of the hub's URLs the next attempt opens.
    endpoint: usize,
}

impl Driver {
    pub(crate) fn new(shared: Arc<Shared>, commands: mpsc::UnboundedReceiver<Command>) -> Driver {
        Driver {
            shared,
            commands,
            rooms: BTreeSet::new(),
            join_waiters: HashMap::new(),
            queue: VecDeque::new(),
            pending: HashMap::new(),
            positions: HashMap::new(),
            inbox: None,
            connect_waiters: Vec::new(),
            close_waiters: Vec::new(),
            // Ids must not repeat across this user's clients and reconnects,
            // so the server can tell a retry from a new request.
            id_prefix: format!("{:08x}", fastrand::u32(..)),
            next_id: 0,
            tokens: mpsc::unbounded(),
            token: None,
            rejected: None,
            endpoint: 0,
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
        loop {
            self.set_state(ConnectionState::Connecting);
            // While the host knows it has no network (a browser's `offline`),
            // attempts would only burn the budget: wait for `online` instead.
            if !runtime::is_online() {
                if let Some(end) = self.wait_for_network().await {
                    return end;
                }
            }
            self.shared.handlers.emit_connecting(&Connecting { attempt: failed });
            let (code, reason, retry) = match self.session().await {
                End::Lost { code: Some(CloseCode::UNAUTHORIZED), reason, welcomed, .. }
                    if matches!(self.shared.options.tokens, Tokens::Provider(_)) =>
                {
                    // "Not until the token changes": try again only with a new one.
                    self.rejected = self.token.clone();
                    if !welcomed {
                        failed = failed.saturating_add(1);
                    }
                    (Some(CloseCode::UNAUTHORIZED), reason, true)
                }
                End::Lost { code, reason, welcomed, retry } => {
                    if welcomed {
                        failed = 0;
                    } else {
                        failed = failed.saturating_add(1);
                        // That URL did not take us: the next attempt tries
                        // the hub's next one (a node that died, say).
                        self.endpoint = (self.endpoint + 1) % self.shared.options.endpoints.len();
                    }
                    (code, reason, retry)
                }
                other => return other,
            };
            let will_reconnect = retry && policy.allows(failed);
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
                self.give_up(&reason);
                return End::Idle;
            }
            let delay = backoff.delay(failed.saturating_sub(1));
            match self.wait_offline(delay).await {
                Some(end) => return end,
                None => continue,
            }
        }
    }

    /// Sleeps for the backoff delay while still taking commands. The
    /// network coming back (a browser's `online` event) cuts the wait short.
    async fn wait_offline(&mut self, delay: std::time::Duration) -> Option<End> {
        let sleep = runtime::sleep(delay).fuse();
        let online = runtime::online().fuse();
        pin_mut!(sleep, online);
        loop {
            let command = select_biased! {
                command = self.commands.next() => command,
                () = sleep => return None,
                () = online => return None,
            };
            if let Some(end) = self.command_offline(command) {
                return Some(end);
            }
        }
    }

    /// Waits for the network to come back, still taking commands.
    async fn wait_for_network(&mut self) -> Option<End> {
        let online = runtime::online().fuse();
        pin_mut!(online);
        loop {
            let command = select_biased! {
                command = self.commands.next() => command,
                () = online => return None,
            };
            if let Some(end) = self.command_offline(command) {
                return Some(end);
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

    /// One connection: open, await `welcome`, rejoin, flush, serve.
    async fn session(&mut self) -> End {
        let options = self.shared.options.clone();
        self.token = match &options.tokens {
            Tokens::None => None,
            Tokens::Fixed(token) => Some(token.clone()),
            Tokens::Provider(provider) => match provider.token().await {
                Ok(token) => Some(token),
                Err(reason) => {
                    let reason = format!("the token provider failed: {reason}");
                    self.shared.handlers.emit_error(&Error::Transport(reason.clone()));
                    return lost(None, reason, false);
                }
            },
        };
        if self.token.is_some() && self.token == self.rejected {
            let reason = "the hub refused the token and the provider has no other".to_owned();
            return End::Lost { code: None, reason, welcomed: false, retry: false };
        }
        let url = options.endpoints[self.endpoint].resume(self.inbox.as_ref());
        let open = Socket::open(&url, &options.headers).fuse();
        pin_mut!(open);
        let opened = loop {
            let command = select_biased! {
                opened = open => break opened,
                command = self.commands.next() => command,
            };
            if let Some(end) = self.command_offline(command) {
                return end;
            }
        };
        let mut socket = match opened {
            Ok(socket) => socket,
            Err(err) => {
                self.shared.handlers.emit_error(&Error::Transport(err.to_string()));
                return End::Lost {
                    code: None,
                    reason: err.to_string(),
                    welcomed: false,
                    retry: err.is_transient(),
                };
            }
        };
        if let Some(token) = self.token.clone() {
            if let Err(reason) = socket.send(encode(ClientFrame::Auth { id: None, token })).await {
                return lost(None, reason, false);
            }
        }
        let welcome = {
            let first = socket.next().fuse();
            let deadline = runtime::sleep(options.welcome_timeout).fuse();
            pin_mut!(first, deadline);
            loop {
                let command = select_biased! {
                    incoming = first => break Some(incoming),
                    () = deadline => break None,
                    command = self.commands.next() => command,
                };
                if let Some(end) = self.command_offline(command) {
                    return end;
                }
            }
        };
        let welcome = match welcome {
            Some(Incoming::Text(text)) => match codec::decode(&text) {
                Ok(Some(ServerFrame::Welcome(welcome))) => welcome,
                _ => {
                    return lost(None, format!("expected a welcome frame, got {text:.200}"), false);
                }
            },
            Some(Incoming::Closed { code, reason }) => {
                let retry = code.is_none_or(CloseCode::should_reconnect);
                return End::Lost { code, reason, welcomed: false, retry };
            }
            Some(Incoming::Alive) => return lost(None, "expected a welcome frame".into(), false),
            None => return lost(None, "no welcome frame in time".into(), false),
        };
        self.rejected = None;
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
        // A message too big for the hub closes the connection with 1009;
        // re-sending it would only close the next one too.
        let poisoned = matches!(&end, End::Lost { code: Some(CloseCode::MESSAGE_TOO_BIG), .. });
        self.connection_lost(poisoned);
        end
    }

    /// The connected loop.
    async fn serve(&mut self, socket: &mut Socket) -> End {
        // Rejoin first: the server handles frames in order, so the queued
        // publishes that follow find their rooms joined.
        let rooms: Vec<String> = self.rooms.iter().cloned().collect();
        for room in rooms {
            let replies = self.join_waiters.remove(&room).unwrap_or_default();
            let id = self.next_id();
            self.pending
                .insert(id.clone(), Pending::Join { room: room.clone(), replies, rejoin: true });
            let since = self.positions.get(&room).cloned();
            if let Err(reason) =
                socket.send(encode(ClientFrame::Join { id: Some(id), room, since })).await
            {
                return lost(None, reason, true);
            }
        }
        while let Some(request) = self.queue.pop_front() {
            if let Err(reason) = self.send(socket, request).await {
                return lost(None, reason, true);
            }
        }
        let heartbeat = self.shared.options.heartbeat.clone();
        let interval =
            heartbeat.as_ref().map_or(std::time::Duration::from_secs(3600), |h| h.interval);
        let mut heard = true;
        let mut silent = std::time::Duration::ZERO;
        // One tick for the whole connection: traffic only sets `heard`, so
        // steady traffic in either direction cannot postpone the silence check.
        let tick = runtime::sleep(interval).fuse();
        // A browser that reports the network gone has usually lost this
        // socket too, but the socket may take a heartbeat timeout to notice
        // (or never, under DevTools' offline emulation). Drop it now, so the
        // app hears `disconnected` at once and recovery starts on `online`.
        let offline = runtime::offline().fuse();
        pin_mut!(tick, offline);
        loop {
            let wake = {
                let incoming = socket.next().fuse();
                pin_mut!(incoming);
                select_biased! {
                    incoming = incoming => Wake::Incoming(incoming),
                    command = self.commands.next() => Wake::Command(command),
                    token = self.tokens.1.next() => Wake::Token(token),
                    () = tick => Wake::Tick,
                    () = offline => Wake::Offline,
                }
            };
            match wake {
                Wake::Incoming(Incoming::Closed { code, reason }) => {
                    let retry = code.is_none_or(CloseCode::should_reconnect);
                    return End::Lost { code, reason, welcomed: true, retry };
                }
                Wake::Incoming(Incoming::Alive) => heard = true,
                Wake::Incoming(Incoming::Text(text)) => {
                    heard = true;
                    // Several frames to a message, newline-separated: the
                    // SDK asks for batches (`Endpoint`). A frame is compact
                    // JSON and never holds a raw newline. The welcome above
                    // always comes alone.
                    for frame in text.split('\n') {
                        self.on_frame(frame);
                    }
                }
                Wake::Command(Some(Command::Request(request))) => {
                    if let Err(reason) = self.send(socket, request).await {
                        return lost(None, reason, true);
                    }
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
                Wake::Token(Some(Ok(token))) => {
                    self.token = Some(token.clone());
                    let id = self.next_id();
                    if let Err(reason) =
                        socket.send(encode(ClientFrame::Auth { id: Some(id), token })).await
                    {
                        return lost(None, reason, true);
                    }
                }
                Wake::Token(Some(Err(reason))) => {
                    let reason = format!("the token provider failed: {reason}");
                    self.shared.handlers.emit_error(&Error::Transport(reason));
                }
                Wake::Token(None) => {}
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
                        silent = std::time::Duration::ZERO;
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
                    if let Err(reason) = socket.send(encode(ClientFrame::Ping { id: None })).await {
                        return lost(None, reason, true);
                    }
                }
            }
        }
    }

    /// Handles one frame from the server.
    fn on_frame(&mut self, text: &str) {
        let frame = match codec::decode(text) {
            Ok(Some(frame)) => frame,
            // A newer hub's frame type: skipped, as the protocol promises.
            Ok(None) => return,
            Err(err) => {
                let error = Error::Protocol(format!("undecodable frame ({err}): {text:.200}"));
                self.shared.handlers.emit_error(&error);
                return;
            }
        };
        match frame {
            ServerFrame::Message(message) => {
                if self.is_new(&message) {
                    self.shared.handlers.emit_message(&message);
                }
            }
            ServerFrame::Presence(presence) => self.shared.handlers.emit_presence(&presence),
            ServerFrame::Occupancy(occupancy) => self.shared.handlers.emit_occupancy(&occupancy),
            ServerFrame::Ack(ack) => match self.pending.remove(&ack.id) {
                Some(Pending::Join { room, replies, rejoin }) => {
                    if let (Some(epoch), Some(offset)) = (ack.epoch.clone(), ack.offset) {
                        // Already in the room under the same epoch (a join
                        // sent again): messages below the ack's offset may
                        // still be on their way, so the client's own
                        // position stands. Otherwise the ack's is where it is.
                        let keep = ack.recovered != Some(false)
                            && self.positions.get(&room).is_some_and(|own| own.epoch == epoch);
                        if !keep {
                            self.positions.insert(room.clone(), Position { epoch, offset });
                        }
                    }
                    let members = ack.members.clone().unwrap_or_default();
                    let member_count = ack.member_count.unwrap_or(members.len() as u64);
                    let large = ack.large.unwrap_or(false);
                    let recovered = ack.recovered;
                    for reply in replies {
                        let _ = reply.send(Ok(ack.clone()));
                    }
                    let (by_server, info) = (false, ack.info.clone());
                    let joined = Joined {
                        room,
                        members,
                        member_count,
                        large,
                        rejoin,
                        recovered,
                        by_server,
                        info,
                    };
                    self.shared.handlers.emit_joined(&joined);
                }
                Some(Pending::Leave { reply } | Pending::Once { reply }) => {
                    let _ = reply.send(Ok(ack));
                }
                Some(Pending::Resend { request, .. }) => {
                    let _ = request.reply.send(Ok(ack));
                }
                None => {}
            },
            ServerFrame::Error(error) => {
                let err = Error::Server { code: error.code, message: error.message };
                match error.id.and_then(|id| self.pending.remove(&id)) {
                    Some(Pending::Join { room, replies, .. }) => {
                        // A refused join is not rejoined later. A refused
                        // automatic rejoin has nobody waiting: report it.
                        self.rooms.remove(&room);
                        self.positions.remove(&room);
                        if replies.is_empty() {
                            self.shared.handlers.emit_error(&err);
                        }
                        for reply in replies {
                            let _ = reply.send(Err(err.clone()));
                        }
                    }
                    Some(Pending::Leave { reply } | Pending::Once { reply }) => {
                        let _ = reply.send(Err(err));
                    }
                    Some(Pending::Resend { request, .. }) => {
                        let _ = request.reply.send(Err(err));
                    }
                    None => self.shared.handlers.emit_error(&err),
                }
            }
            ServerFrame::Refresh { .. } => match &self.shared.options.tokens {
                Tokens::Provider(provider) => {
                    let (provider, results) = (provider.clone(), self.tokens.0.clone());
                    runtime::spawn(async move {
                        let _ = results.unbounded_send(provider.token().await);
                    });
                }
                _ => {
                    let reason = "the token expires soon and no token provider is set".to_owned();
                    self.shared.handlers.emit_error(&Error::Protocol(reason));
                }
            },
            ServerFrame::Joined(joined) => {
                // The server's join: from now on the room is one of the
                // client's, rejoined after a reconnect from this position.
                self.rooms.insert(joined.room.clone());
                let position = Position { epoch: joined.epoch, offset: joined.offset };
                self.positions.insert(joined.room.clone(), position);
                let members = joined.members.unwrap_or_default();
                let event = Joined {
                    member_count: joined.member_count.unwrap_or(members.len() as u64),
                    room: joined.room,
                    members,
                    large: joined.large.unwrap_or(false),
                    rejoin: false,
                    recovered: None,
                    by_server: true,
                    info: joined.info,
                };
                self.shared.handlers.emit_joined(&event);
            }
            ServerFrame::Left { room } => {
                self.rooms.remove(&room);
                self.positions.remove(&room);
                self.shared.handlers.emit_left(&Left { room });
            }
            ServerFrame::Reset(reset) => {
                // The stream started over: the next messages count from the
                // new epoch's offset, not from the old one's.
                let position = Position { epoch: reset.epoch, offset: reset.offset };
                match &reset.room {
                    Some(room) if self.rooms.contains(room) => {
                        self.positions.insert(room.clone(), position);
                    }
                    Some(_) => return,
                    None => self.inbox = Some(position),
                }
                self.shared.handlers.emit_reset(&Reset { room: reset.room });
            }
            ServerFrame::Welcome(_) | ServerFrame::Pong { .. } => {}
        }
    }

    /// Advances the stream position a message belongs to; false for a
    /// message at or below it, which this client already has.
    fn is_new(&mut self, message: &Message) -> bool {
        let Some(offset) = message.offset else { return true };
        let position = match (&message.room, &message.to) {
            (Some(room), _) => self.positions.get_mut(room),
            (None, Some(_)) => self.inbox.as_mut(),
            (None, None) => None,
        };
        match position {
            Some(position) if offset <= position.offset => false,
            Some(position) => {
                position.offset = offset;
                true
            }
            None => true,
        }
    }

    /// Sends a request now. On a send failure the request stays pending, and
    /// the lost connection settles it.
    async fn send(&mut self, socket: &mut Socket, mut request: Request) -> Result<(), String> {
        if request.reply.is_canceled() {
            return Ok(()); // its caller timed out while it waited offline
        }
        let (id, seq) = match request.id.clone() {
            Some(id) => (id, self.next_id),
            None => {
                let id = self.next_id();
                request.id = Some(id.clone());
                (id, self.next_id)
            }
        };
        let frame = match &request.op {
            Op::Join { room } => {
                self.rooms.insert(room.clone());
                let frame =
                    ClientFrame::Join { id: Some(id.clone()), room: room.clone(), since: None };
                let pending = Pending::Join {
                    room: room.clone(),
                    replies: vec![request.reply],
                    rejoin: false,
                };
                self.pending.insert(id, pending);
                return socket.send(encode(frame)).await;
            }
            Op::Leave { room } => {
                self.rooms.remove(room);
                self.positions.remove(room);
                let frame = ClientFrame::Leave { id: Some(id.clone()), room: room.clone() };
                self.pending.insert(id, Pending::Leave { reply: request.reply });
                return socket.send(encode(frame)).await;
            }
            Op::Publish { room, event, data, exclude_self } => ClientFrame::Publish {
                id: Some(id.clone()),
                room: room.clone(),
                event: event.clone(),
                data: data.clone(),
                exclude_self: *exclude_self,
            },
            Op::Send { to, event, data } => ClientFrame::Send {
                id: Some(id.clone()),
                to: to.clone(),
                event: event.clone(),
                data: data.clone(),
            },
            Op::History { room, since, limit } => ClientFrame::History {
                id: Some(id.clone()),
                room: room.clone(),
                since: *since,
                limit: *limit,
            },
            Op::Members { room, cursor, limit } => ClientFrame::Members {
                id: Some(id.clone()),
                room: room.clone(),
                cursor: cursor.clone(),
                limit: *limit,
            },
            Op::Rpc { method, data } => {
                let frame = ClientFrame::Rpc {
                    id: Some(id.clone()),
                    method: method.clone(),
                    data: data.clone(),
                };
                self.pending.insert(id, Pending::Once { reply: request.reply });
                return socket.send(encode(frame)).await;
            }
        };
        self.pending.insert(id, Pending::Resend { seq, request });
        socket.send(encode(frame)).await
    }

    /// Takes a request while not connected.
    fn accept_offline(&mut self, request: Request) {
        match request.op {
            Op::Join { room } => {
                self.rooms.insert(room.clone());
                self.join_waiters.entry(room).or_default().push(request.reply);
            }
            Op::Leave { room } => {
                // Nothing to tell the server: the next connection will not rejoin it.
                self.rooms.remove(&room);
                for waiter in self.join_waiters.remove(&room).unwrap_or_default() {
                    let _ = waiter
                        .send(Err(Error::Protocol(format!("left `{room}` before joining it"))));
                }
                let _ = request.reply.send(Ok(Ack::default()));
            }
            Op::Publish { .. }
            | Op::Send { .. }
            | Op::History { .. }
            | Op::Members { .. }
            | Op::Rpc { .. } => {
                let capacity = self.shared.options.offline_queue;
                self.queue.retain(|queued| !queued.reply.is_canceled());
                if self.queue.len() >= capacity {
                    let _ = request.reply.send(Err(Error::QueueFull { capacity }));
                } else {
                    self.queue.push_back(request);
                }
            }
        }
    }

    /// Settles what was in flight on a connection that is gone: joins wait
    /// for the rejoin, leaves are done, the rest goes back to the front of the
    /// queue in its original order, to be re-sent with the same ids; after a
    /// `poisoned` loss (1009) the rest fails with [`Error::ConnectionLost`].
    fn connection_lost(&mut self, poisoned: bool) {
        let mut resend = Vec::new();
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Join { room, replies, .. } => {
                    if self.rooms.contains(&room) {
                        self.join_waiters.entry(room).or_default().extend(replies);
                    }
                }
                Pending::Leave { reply } => {
                    let _ = reply.send(Ok(Ack::default()));
                }
                Pending::Once { reply } => {
                    let _ = reply.send(Err(Error::ConnectionLost));
                }
                Pending::Resend { request, .. } if poisoned => {
                    let _ = request.reply.send(Err(Error::ConnectionLost));
                }
                Pending::Resend { seq, request } => resend.push((seq, request)),
            }
        }
        // Sequence numbers are unique, so an unstable sort (less code) is exact.
        resend.sort_unstable_by_key(|(seq, _)| *seq);
        for (_, request) in resend.into_iter().rev() {
            if !request.reply.is_canceled() {
                self.queue.push_front(request);
            }
        }
    }

    /// No more retries: everything waiting for a connection fails now.
    fn give_up(&mut self, reason: &str) {
        let error = Error::GaveUp(reason.to_owned());
        for waiter in self.connect_waiters.drain(..) {
            let _ = waiter.send(Err(error.clone()));
        }
        for (_, waiters) in self.join_waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(Err(error.clone()));
            }
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

fn lost(code: Option<CloseCode>, reason: String, welcomed: bool) -> End {
    End::Lost { code, reason, welcomed, retry: true }
}

fn encode(frame: ClientFrame) -> String {
    codec::encode(&frame)
}
