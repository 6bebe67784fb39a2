//! Fixtures for the end-to-end tests: a real hub on a loopback port, SDK
//! clients whose events arrive on a channel, raw WebSocket and raw TCP
//! clients for what the SDK would never send, and an HTTP client.
//!
//! Nothing here sleeps to wait: every receive has a deadline
//! ([`TIMEOUT`]) and fails the test when it passes.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use switchboard_protocol::{ServerFrame, Welcome};
use switchboard_sdk::{Client, ReconnectPolicy};
use switchboard_server::Config;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

pub mod deflate;
mod process;
mod proxy;
mod redis;
pub mod scripted;
mod sse;
mod tls;

pub use process::HubProcess;
pub use proxy::Proxy;
pub use redis::TestRedis;
pub use scripted::ScriptedHub;
pub use sse::{SseEvent, SseReader};
pub use switchboard_protocol as protocol;
pub use switchboard_sdk as sdk;
pub use switchboard_server as server;
pub use tls::TlsFront;

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A hub running in this process on a loopback port.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a hub with [`test_config`] on a free port.
    pub async fn start() -> TestServer {
        TestServer::start_with(test_config()).await
    }

    /// Starts a hub with `config` on a free port.
    pub async fn start_with(config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        TestServer::serve(listener, config)
    }

    /// Starts a hub on a given address, retrying the bind until [`TIMEOUT`]
    /// (the previous server on that port may still be letting go of it).
    pub async fn start_on(addr: SocketAddr, config: Config) -> TestServer {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match TcpListener::bind(addr).await {
                Ok(listener) => return TestServer::serve(listener, config),
                Err(err) if tokio::time::Instant::now() < deadline => {
                    let _ = err;
                    tokio::task::yield_now().await;
                }
                Err(err) => panic!("cannot bind {addr} again: {err}"),
            }
        }
    }

    fn serve(listener: TcpListener, config: Config) -> TestServer {
        log_if_asked();
        TestServer::serve_state(listener, switchboard_server::AppState::new(config).expect("state"))
    }

    /// Serves a state the test built (and keeps a clone of, to call the
    /// in-process API) on a free port.
    pub async fn start_state(state: switchboard_server::AppState) -> TestServer {
        log_if_asked();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        TestServer::serve_state(listener, state)
    }

    fn serve_state(listener: TcpListener, state: switchboard_server::AppState) -> TestServer {
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            switchboard_server::serve(listener, state, shutdown).await.expect("hub runs");
        });
        TestServer { addr, stop: Some(stop), task: Some(task) }
    }

    /// The WebSocket endpoint, without a query.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// An HTTP URL on this hub.
    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts the hub down gracefully and waits until it has stopped.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("hub stops in time")
                .expect("hub task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// [`test_config`] for a node of a cluster on `redis`, with a short node
/// TTL so that a dead node's presence goes quickly.
pub fn cluster_config(redis: &TestRedis) -> Config {
    let mut config = test_config();
    redis.configure(&mut config);
    config.redis.node_ttl_ms = 1_500;
    config
}

/// With `SWITCHBOARD_TEST_LOG` set (an EnvFilter, e.g. `debug`), the hubs
/// of a test run log to stderr: `cargo test -- --nocapture` shows them.
fn log_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("SWITCHBOARD_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The default configuration with a short shutdown grace, for tests.
pub fn test_config() -> Config {
    Config { shutdown_grace_ms: 2_000, ..Config::default() }
}

/// A reconnect policy fast enough for tests.
pub fn fast_reconnect() -> ReconnectPolicy {
    ReconnectPolicy {
        enabled: true,
        min_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_attempts: 0,
    }
}

/// Everything an SDK client reports, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message.
    Message(protocol::Message),
    /// A presence change.
    Presence(protocol::Presence),
    /// A large room's user count.
    Occupancy(protocol::Occupancy),
    /// A connection attempt.
    Connecting(u32),
    /// A connection established.
    Connected,
    /// A connection lost.
    Disconnected(sdk::Disconnected),
    /// A room joined or rejoined.
    Joined(sdk::Joined),
    /// The server took the client out of a room.
    Left(sdk::Left),
    /// A stream the client follows started over under a new epoch.
    Reset(sdk::Reset),
    /// A connection after the first one, with its inbox recovery flag.
    Reconnected(Option<bool>),
    /// An error report.
    Error(sdk::Error),
}

/// The events of one SDK client.
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; fails the test after [`TIMEOUT`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(TIMEOUT, self.rx.recv())
            .await
            .expect("an event within the timeout")
            .expect("the client is alive")
    }

    /// Skips events until one matches, and returns it.
    pub async fn wait_for(&mut self, what: &str, matches: impl Fn(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("the client is alive");
            if matches(&event) {
                return event;
            }
        }
    }

    /// The next event, or `None` once the client is gone; no deadline.
    pub async fn next_raw(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next message, skipping lifecycle and presence events.
    pub async fn next_message(&mut self) -> protocol::Message {
        match self.wait_for("a message", |e| matches!(e, Event::Message(_))).await {
            Event::Message(message) => message,
            _ => unreachable!(),
        }
    }

    /// The next presence event, skipping messages and lifecycle events.
    pub async fn next_presence(&mut self) -> protocol::Presence {
        match self.wait_for("a presence event", |e| matches!(e, Event::Presence(_))).await {
            Event::Presence(presence) => presence,
            _ => unreachable!(),
        }
    }

    /// The attempt numbers of the `connecting` events received so far, without waiting.
    pub fn attempts(&mut self) -> Vec<u32> {
        self.drain()
            .into_iter()
            .filter_map(|e| match e {
                Event::Connecting(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Every event received so far, without waiting.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.rx.try_recv() {
            events.push(event);
        }
        events
    }
}

/// An SDK client for `user`, connected, with every event recorded.
pub async fn connect(server: &TestServer, user: &str) -> (Client, Events) {
    let (client, events) = client(server, user, fast_reconnect());
    tokio::time::timeout(TIMEOUT, client.connect())
        .await
        .expect("connects within the timeout")
        .expect("connects");
    (client, events)
}

/// An SDK client for `user`, not yet connected, with every event recorded.
pub fn client(server: &TestServer, user: &str, reconnect: ReconnectPolicy) -> (Client, Events) {
    client_at(&server.ws_url(), user, reconnect)
}

/// An SDK client for `user` on any hub URL (a [`Proxy`]'s, say), not yet connected.
pub fn client_at(url: &str, user: &str, reconnect: ReconnectPolicy) -> (Client, Events) {
    let client =
        Client::builder(url).user(user).reconnect(reconnect).build().expect("client builds");
    let events = record(&client);
    (client, events)
}

/// Records every event of `client`.
pub fn record(client: &Client) -> Events {
    let (tx, rx) = mpsc::unbounded_channel();
    let t = tx.clone();
    client.on_any(move |m| {
        let _ = t.send(Event::Message(m.clone()));
    });
    let t = tx.clone();
    client.on_presence(move |p| {
        let _ = t.send(Event::Presence(p.clone()));
    });
    let t = tx.clone();
    client.on_occupancy(move |o| {
        let _ = t.send(Event::Occupancy(o.clone()));
    });
    let t = tx.clone();
    client.on_connecting(move |c| {
        let _ = t.send(Event::Connecting(c.attempt));
    });
    let t = tx.clone();
    client.on_connected(move |c| {
        let _ = t.send(Event::Connected);
        if c.inbox_recovered.is_some() {
            let _ = t.send(Event::Reconnected(c.inbox_recovered));
        }
    });
    let t = tx.clone();
    client.on_joined(move |j| {
        let _ = t.send(Event::Joined(j.clone()));
    });
    let t = tx.clone();
    client.on_left(move |l| {
        let _ = t.send(Event::Left(l.clone()));
    });
    let t = tx.clone();
    client.on_reset(move |r| {
        let _ = t.send(Event::Reset(r.clone()));
    });
    let t = tx.clone();
    client.on_disconnected(move |d| {
        let _ = t.send(Event::Disconnected(d.clone()));
    });
    client.on_error(move |e| {
        let _ = tx.send(Event::Error(e.clone()));
    });
    Events { rx }
}

/// A raw WebSocket connection, for frames the SDK would never send.
pub type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a raw WebSocket as `user` and reads the `welcome`.
pub async fn raw_connect(server: &TestServer, user: &str) -> (RawSocket, Welcome) {
    let url = format!("{}?user_id={user}", server.ws_url());
    let (mut socket, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade within the timeout")
        .expect("upgrade accepted");
    match raw_next(&mut socket).await {
        ServerFrame::Welcome(welcome) => (socket, welcome),
        other => panic!("expected welcome, got {other:?}"),
    }
}

/// A raw WebSocket for `user`, upgraded but not read from (for a
/// connection the hub closes before its `welcome`).
pub async fn raw_upgrade(server: &TestServer, user: &str) -> RawSocket {
    let url = format!("{}?user_id={user}", server.ws_url());
    let (socket, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(url))
        .await
        .expect("upgrade within the timeout")
        .expect("upgrade accepted");
    socket
}

/// Sends a text frame on a raw socket.
pub async fn raw_send(socket: &mut RawSocket, text: &str) {
    socket.send(WsMessage::Text(text.into())).await.expect("send");
}

/// The next server frame on a raw socket, skipping control frames.
pub async fn raw_next(socket: &mut RawSocket) -> ServerFrame {
    loop {
        match raw_next_message(socket).await {
            WsMessage::Text(text) => return serde_json::from_str(&text).expect("a server frame"),
            WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next WebSocket message of any kind on a raw socket.
pub async fn raw_next_message(socket: &mut RawSocket) -> WsMessage {
    tokio::time::timeout(TIMEOUT, socket.next())
        .await
        .expect("a frame within the timeout")
        .expect("the socket is open")
        .expect("a readable frame")
}

/// Reads a raw socket until its close frame, returning the close code.
pub async fn raw_close_code(socket: &mut RawSocket) -> u16 {
    loop {
        let message =
            tokio::time::timeout(TIMEOUT, socket.next()).await.expect("a close within the timeout");
        match message {
            Some(Ok(WsMessage::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(WsMessage::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("socket failed before a close frame: {err}"),
            None => panic!("socket ended before a close frame"),
        }
    }
}

/// An HTTP client for the admin API.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).build().expect("http client")
}

/// `GET path` on the hub's HTTP API, as JSON.
pub async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    let response = http().get(server.http(path)).send().await.expect("HTTP request");
    response.json().await.expect("a JSON body")
}

/// POSTs `body` as JSON to `path` on `server`; the JSON answer.
pub async fn post_json(
    server: &TestServer,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let response = http().post(server.http(path)).json(&body).send().await.expect("HTTP request");
    response.json().await.expect("a JSON body")
}

/// Polls `probe` until it returns `Some`, for at most [`TIMEOUT`]. For
/// conditions only visible by asking (such as the hub's counters).
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A WebSocket spoken by hand over TCP: it never answers pings and reads
/// only when told to, which no WebSocket library will do.
pub struct RawTcp {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
    /// The head of the hub's `101` answer.
    pub head: String,
}

/// One frame read by [`RawTcp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong).
    pub opcode: u8,
    /// The unmasked payload, as sent (compressed when `rsv1` is set).
    pub payload: Vec<u8>,
    /// RSV1: the payload is compressed (permessage-deflate).
    pub rsv1: bool,
}

impl RawFrame {
    /// The text of a text frame, inflated when it came compressed.
    pub fn text(&self) -> String {
        let bytes =
            if self.rsv1 { crate::deflate::inflate(&self.payload) } else { self.payload.clone() };
        String::from_utf8(bytes).expect("text frames are UTF-8")
    }

    /// The close code, for a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawTcp {
    /// Performs the upgrade handshake for `GET /ws?{query}`.
    pub async fn connect(server: &TestServer, query: &str) -> RawTcp {
        RawTcp::connect_with_headers(server, query, "").await
    }

    /// [`RawTcp::connect`] with more request headers (`Name: value\r\n` each).
    pub async fn connect_with_headers(server: &TestServer, query: &str, headers: &str) -> RawTcp {
        RawTcp::connect_with(server, query, headers, None).await
    }

    /// The same with a small TCP receive window (`SO_RCVBUF` of `bytes`), so
    /// that a client that stops reading backs up into the hub's queue after
    /// kilobytes rather than the megabytes loopback buffers hold by default.
    pub async fn connect_with_window(server: &TestServer, query: &str, bytes: u32) -> RawTcp {
        RawTcp::connect_with(server, query, "", Some(bytes)).await
    }

    /// The most general connect: more request headers (`Name: value\r\n`
    /// each) and, when given, a small TCP receive window.
    pub async fn connect_with(
        server: &TestServer,
        query: &str,
        headers: &str,
        window: Option<u32>,
    ) -> RawTcp {
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        if let Some(bytes) = window {
            socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        }
        let stream = socket.connect(server.addr).await.expect("tcp connect");
        RawTcp::handshake(stream, server, query, headers).await
    }

    async fn handshake(
        mut stream: tokio::net::TcpStream,
        server: &TestServer,
        query: &str,
        headers: &str,
    ) -> RawTcp {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!(
            "GET /ws?{query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n",
            server.addr
        );
        stream.write_all(request.as_bytes()).await.expect("send handshake");
        let mut buffer = Vec::new();
        let end = tokio::time::timeout(TIMEOUT, async {
            loop {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.expect("read handshake");
                assert!(n > 0, "connection closed during the handshake");
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    return at + 4;
                }
            }
        })
        .await
        .expect("handshake answered within the timeout");
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        buffer.drain(..end);
        RawTcp { stream, buffer, head }
    }

    /// The value of `name` in the hub's `101` answer.
    pub fn answer_header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// Sends a masked frame (a zero mask, which RFC 6455 allows).
    pub async fn send_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.send_frame_rsv1(opcode, fin, false, payload).await;
    }

    /// [`RawTcp::send_frame`] with RSV1 set or not: a compressed message's
    /// first frame has it (permessage-deflate).
    pub async fn send_frame_rsv1(&mut self, opcode: u8, fin: bool, rsv1: bool, payload: &[u8]) {
        self.send_frame_bits(opcode, fin, if rsv1 { 0x40 } else { 0 }, payload).await;
    }

    /// [`RawTcp::send_frame`] with the reserved bits `rsv` (0x40 RSV1,
    /// 0x20 RSV2, 0x10 RSV3) set.
    pub async fn send_frame_bits(&mut self, opcode: u8, fin: bool, rsv: u8, payload: &[u8]) {
        self.send_bytes(&client_frame(opcode, fin, rsv, payload)).await;
    }

    /// Writes `bytes` as they are, in one write (several frames made with
    /// [`client_frame`] arrive together).
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("send frames");
    }

    /// Reads the next frame; `None` when the connection ended.
    pub async fn next_frame(&mut self) -> Option<RawFrame> {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some((frame, used)) = parse_frame(&self.buffer) {
                    self.buffer.drain(..used);
                    return Some(frame);
                }
                // On the heap: a 64 KiB array would sit in every future that
                // awaits a frame, and a test awaiting many overflows its stack.
                let mut chunk = vec![0u8; 65536];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await
        .expect("a frame or the end within the timeout")
    }

    /// Reads frames until a close frame, returning its code; fails the test
    /// if the connection ends without one.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match self.next_frame().await {
                Some(frame) if frame.opcode == 8 => {
                    return frame.close_code().expect("a close code");
                }
                Some(_) => continue,
                None => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// A masked client frame (a zero mask, which RFC 6455 allows) with the
/// reserved bits `rsv`.
pub fn client_frame(opcode: u8, fin: bool, rsv: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![if fin { 0x80 } else { 0 } | (rsv & 0x70) | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// Parses one unmasked server frame from the front of `bytes`.
fn parse_frame(bytes: &[u8]) -> Option<(RawFrame, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    let opcode = bytes[0] & 0x0f;
    let rsv1 = bytes[0] & 0x40 != 0;
    let (len, header) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(raw) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if bytes.len() < header + len {
        return None;
    }
    let payload = bytes[header..header + len].to_vec();
    Some((RawFrame { opcode, payload, rsv1 }, header + len))
}
