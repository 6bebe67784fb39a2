//! [`Client`]: the application's handle. Cheap to clone; every clone talks to
//! the same connection through its driver task.

use std::sync::{Arc, Mutex, PoisonError};

use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, pin_mut, select_biased};
use serde::Serialize;
use serde_json::Value;
use switchboard_protocol::{Ack, Message, Occupancy, Payload, Presence, validate_name};

use crate::builder::{ClientBuilder, Options};
use crate::driver::{Command, Op, Request};
use crate::error::{Error, Result};
use crate::event::{
    Connected, Connecting, ConnectionState, Disconnected, History, Joined, Left, MembersPage, Reset,
};
use crate::handlers::{Handler, HandlerId, Handlers};
use crate::runtime;

/// What the handles and the driver share.
pub(crate) struct Shared {
    pub(crate) options: Arc<Options>,
    pub(crate) handlers: Handlers,
    state: Mutex<ConnectionState>,
}

impl Shared {
    pub(crate) fn new(options: Options) -> Shared {
        Shared {
            // Not `Send` on wasm32 (a JS token provider); see `MaybeSend`.
            #[allow(clippy::arc_with_non_send_sync)]
            options: Arc::new(options),
            handlers: Handlers::default(),
            state: Mutex::new(ConnectionState::Disconnected),
        }
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn state(&self) -> ConnectionState {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Switchboard client: one logical connection to the hub that reconnects
/// by itself, rejoins its rooms, and delivers what was queued while offline.
///
/// ```no_run
/// # async fn example() -> switchboard_sdk::Result<()> {
/// use switchboard_sdk::Client;
///
/// let client = Client::builder("ws://127.0.0.1:8080/ws").user("alice").build()?;
/// client.on("chat", |message| println!("{}: {}", message.from, message.data));
/// client.connect().await?;
/// client.join("general").await?;
/// client.publish("general", "chat", serde_json::json!({"text": "hello"})).await?;
/// client.send("bob", "dm", "psst").await?;
/// client.close().await;
/// # Ok(()) }
/// ```
///
/// Dropping every handle stops the client; handlers that capture a handle
/// keep it alive, so call [`Client::close`] when done.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.shared.options.endpoints[0].as_str())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts configuring a client for the hub's WebSocket URL
    /// (for example `ws://127.0.0.1:8080/ws`).
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder::new(url)
    }

    pub(crate) fn start(options: Options) -> Result<Client> {
        if !runtime::can_spawn() {
            return Err(Error::NoRuntime);
        }
        // On wasm32 handlers are not `Send` (see `MaybeSend`), so neither is
        // `Shared`; one `Arc` still serves both targets without a second copy.
        #[allow(clippy::arc_with_non_send_sync)]
        let shared = Arc::new(Shared::new(options));
        let (commands, inbox) = mpsc::unbounded();
        runtime::spawn(crate::driver::Driver::new(shared.clone(), inbox).run());
        Ok(Client { shared, commands })
    }

    /// Connects, and resolves once the server's `welcome` arrives. With
    /// reconnect on, failed attempts are retried per the policy; this fails
    /// only when the client gives up, is disconnected, or is closed.
    pub async fn connect(&self) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.command(Command::Connect(done))?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Joins a room and resolves with the users present. While offline the
    /// join is remembered and resolves once a connection is (re)established;
    /// joined rooms are rejoined after every reconnect.
    pub async fn join(&self, room: &str) -> Result<Vec<String>> {
        check_name("room", room)?;
        let ack = self.request(Op::Join { room: room.to_owned() }).await?;
        Ok(ack.members.unwrap_or_default())
    }

    /// Leaves a room.
    pub async fn leave(&self, room: &str) -> Result<()> {
        check_name("room", room)?;
        self.request(Op::Leave { room: room.to_owned() }).await.map(drop)
    }

    /// Publishes `data` as `event` to every connection in `room` (this one
    /// included, if it joined). Queued while offline.
    pub async fn publish(&self, room: &str, event: &str, data: impl Serialize) -> Result<()> {
        self.publish_with(room, event, data, false).await
    }

    /// Like [`Client::publish`], but this connection does not get the
    /// message back (the user's other connections do): for a sender that
    /// already shows what it sent. The message is in the room's history all
    /// the same, so a replay after a reconnect includes it.
    pub async fn publish_to_others(
        &self,
        room: &str,
        event: &str,
        data: impl Serialize,
    ) -> Result<()> {
        self.publish_with(room, event, data, true).await
    }

    async fn publish_with(
        &self,
        room: &str,
        event: &str,
        data: impl Serialize,
        exclude_self: bool,
    ) -> Result<()> {
        check_name("room", room)?;
        check_name("event", event)?;
        let data = Payload::Json(to_value(data)?);
        self.publish_payload(room, event, data, exclude_self).await
    }

    /// Publishes `bytes` as `event` to every connection in `room`, like
    /// [`Client::publish`]: as a binary message, without base64 on the wire.
    /// Receivers get them in [`Message::binary`]; clients that speak only
    /// JSON get their base64 text in `data`, with `encoding: "base64"`.
    pub async fn publish_bytes(
        &self,
        room: &str,
        event: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.publish_payload(room, event, Payload::Bytes(bytes.into()), false).await
    }

    /// Like [`Client::publish_bytes`], leaving out this connection, like
    /// [`Client::publish_to_others`].
    pub async fn publish_bytes_to_others(
        &self,
        room: &str,
        event: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.publish_payload(room, event, Payload::Bytes(bytes.into()), true).await
    }

    /// Publishes a payload, JSON or bytes: what [`Client::publish`] and
    /// [`Client::publish_bytes`] (with `exclude_self`, their `_to_others`
    /// forms) do, for bindings that hold either.
    pub async fn publish_payload(
        &self,
        room: &str,
        event: &str,
        data: Payload,
        exclude_self: bool,
    ) -> Result<()> {
        check_name("room", room)?;
        check_name("event", event)?;
        let op = Op::Publish { room: room.to_owned(), event: event.to_owned(), data, exclude_self };
        self.request(op).await.map(drop)
    }

    /// Sends `data` as `event` privately to every connection of user `to`;
    /// resolves with how many connections it reached. Queued while offline.
    pub async fn send(&self, to: &str, event: &str, data: impl Serialize) -> Result<u64> {
        self.send_payload(to, event, Payload::Json(to_value(data)?)).await
    }

    /// Sends `bytes` as `event` privately to every connection of user
    /// `to`, like [`Client::send`]: as a binary message, without base64 on
    /// the wire.
    pub async fn send_bytes(
        &self,
        to: &str,
        event: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<u64> {
        self.send_payload(to, event, Payload::Bytes(bytes.into())).await
    }

    /// Sends a payload, JSON or bytes: what [`Client::send`] and
    /// [`Client::send_bytes`] do, for bindings that hold either.
    pub async fn send_payload(&self, to: &str, event: &str, data: Payload) -> Result<u64> {
        check_name("to", to)?;
        check_name("event", event)?;
        let op = Op::Send { to: to.to_owned(), event: event.to_owned(), data };
        let ack = self.request(op).await?;
        Ok(ack.delivered.unwrap_or(0))
    }

    /// Calls the application's `method` on the hub with `data` (answered by
    /// the hub's `rpc` hook or webhook); resolves with its result. Queued
    /// while offline; one in flight when the connection is lost fails with
    /// [`Error::ConnectionLost`](crate::Error::ConnectionLost) instead of being called twice. A hub with
    /// no handler answers [`ErrorCode::NO_HANDLER`](switchboard_protocol::ErrorCode::NO_HANDLER).
    pub async fn rpc(&self, method: &str, data: impl Serialize) -> Result<serde_json::Value> {
        check_name("method", method)?;
        let data = to_value(data)?;
        let ack = self.request(Op::Rpc { method: method.to_owned(), data }).await?;
        Ok(ack.data.unwrap_or(serde_json::Value::Null))
    }

    /// Reads up to `limit` stored messages of `room` after offset `since`
    /// (from the oldest kept when `None`), oldest first, with the room's
    /// epoch and last offset. The hub caps `limit` (default cap 1000).
    pub async fn history(
        &self,
        room: &str,
        since: Option<u64>,
        limit: Option<u32>,
    ) -> Result<History> {
        check_name("room", room)?;
        let ack = self.request(Op::History { room: room.to_owned(), since, limit }).await?;
        Ok(History {
            epoch: ack.epoch,
            offset: ack.offset.unwrap_or(0),
            messages: ack
                .messages
                .unwrap_or_default()
                .into_iter()
                .map(|mut message| {
                    // Bytes come as base64 text in a page: shown as bytes.
                    crate::codec::take_base64(&mut message);
                    message
                })
                .collect(),
        })
    }

    /// Reads one page of a joined room's members (up to `limit`, default 100,
    /// the hub caps it at 1000) after `cursor` (from the first when `None`).
    pub async fn members_page(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<MembersPage> {
        check_name("room", room)?;
        let op = Op::Members { room: room.to_owned(), cursor: cursor.map(str::to_owned), limit };
        let ack = self.request(op).await?;
        Ok(MembersPage {
            members: ack.members.unwrap_or_default(),
            member_count: ack.member_count.unwrap_or(0),
            cursor: ack.cursor,
        })
    }

    /// Reads every member of a joined room, page after page, in byte order.
    /// Users who join or leave meanwhile may or may not be in the list; in a
    /// large room, follow [`Client::on_occupancy`] and read again when the
    /// count matters.
    pub async fn members(&self, room: &str) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .members_page(room, cursor.as_deref(), Some(switchboard_protocol::MAX_MEMBERS_PAGE))
                .await?;
            all.extend(page.members);
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Closes the connection and stops reconnecting. Rooms and queued
    /// requests are kept: [`Client::connect`] resumes them.
    pub async fn disconnect(&self) {
        let (done, finished) = oneshot::channel();
        if self.command(Command::Disconnect(done)).is_ok() {
            let _ = finished.await;
        }
    }

    /// Closes for good: every waiting request fails with [`Error::Closed`].
    pub async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.command(Command::Close(done)).is_ok() {
            let _ = finished.await;
        }
    }

    /// Where the client is now.
    pub fn state(&self) -> ConnectionState {
        self.shared.state()
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.state() == ConnectionState::Connected
    }

    /// Calls `handler` for every message whose event is `event`.
    pub fn on(&self, event: &str, handler: impl Handler<Message>) -> HandlerId {
        self.shared.handlers.on(event, handler)
    }

    /// Calls `handler` for every message, whatever its event.
    pub fn on_any(&self, handler: impl Handler<Message>) -> HandlerId {
        self.shared.handlers.on_any(handler)
    }

    /// Calls `handler` when a user joins or leaves one of this client's rooms.
    pub fn on_presence(&self, handler: impl Handler<Presence>) -> HandlerId {
        self.shared.handlers.on_presence(handler)
    }

    /// Calls `handler` when the user count of one of this client's large
    /// rooms changes (at most once per the hub's `occupancy_interval_ms`):
    /// large rooms report counts instead of each join and leave.
    pub fn on_occupancy(&self, handler: impl Handler<Occupancy>) -> HandlerId {
        self.shared.handlers.on_occupancy(handler)
    }

    /// Calls `handler` each time a room is joined, by [`Client::join`], by
    /// the automatic rejoin after a reconnect, or by the server, with the
    /// users present.
    pub fn on_joined(&self, handler: impl Handler<Joined>) -> HandlerId {
        self.shared.handlers.on_joined(handler)
    }

    /// Calls `handler` when the server takes the client out of a room (a
    /// server-side leave).
    pub fn on_left(&self, handler: impl Handler<Left>) -> HandlerId {
        self.shared.handlers.on_left(handler)
    }

    /// Calls `handler` when a room the client is in, or its inbox, started
    /// over under a new epoch (the hub lost its history): the client goes
    /// on from the new position; what it shows may have a gap to reload.
    pub fn on_reset(&self, handler: impl Handler<Reset>) -> HandlerId {
        self.shared.handlers.on_reset(handler)
    }

    /// Calls `handler` before each connection attempt.
    pub fn on_connecting(&self, handler: impl Handler<Connecting>) -> HandlerId {
        self.shared.handlers.on_connecting(handler)
    }

    /// Calls `handler` when a connection is established.
    pub fn on_connected(&self, handler: impl Handler<Connected>) -> HandlerId {
        self.shared.handlers.on_connected(handler)
    }

    /// Calls `handler` when a connection is lost or the client gives up.
    pub fn on_disconnected(&self, handler: impl Handler<Disconnected>) -> HandlerId {
        self.shared.handlers.on_disconnected(handler)
    }

    /// Calls `handler` for errors no request is waiting for: failed connection
    /// attempts, server errors without an id, undecodable frames, handler panics.
    pub fn on_error(&self, handler: impl Handler<Error>) -> HandlerId {
        self.shared.handlers.on_error(handler)
    }

    /// Removes a handler; returns whether it was registered.
    pub fn off(&self, id: HandlerId) -> bool {
        self.shared.handlers.off(id)
    }

    fn command(&self, command: Command) -> Result<()> {
        self.commands.unbounded_send(command).map_err(|_| Error::Closed)
    }

    /// Hands a request to the driver and waits for its answer, at most the
    /// request timeout. Dropping the answer channel on timeout tells the
    /// driver not to send a request that is still queued.
    async fn request(&self, op: Op) -> Result<Ack> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Request(Request { op, reply, id: None }))?;
        let answer = answer.fuse();
        let timeout = runtime::sleep(self.shared.options.request_timeout).fuse();
        pin_mut!(answer, timeout);
        select_biased! {
            answer = answer => answer.unwrap_or(Err(Error::Closed)),
            () = timeout => Err(Error::Timeout),
        }
    }
}

fn check_name(field: &'static str, name: &str) -> Result<()> {
    validate_name(name).map_err(|reason| Error::InvalidName { field, reason })
}

fn to_value(data: impl Serialize) -> Result<Value> {
    serde_json::to_value(data).map_err(|e| Error::Protocol(format!("data is not JSON: {e}")))
}
