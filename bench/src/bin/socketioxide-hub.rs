//! The Rust Socket.IO peer for the scale benchmarks: the room hub a team
//! builds on socketioxide (axum + tokio) with its own primitives, the same
//! hub as `bench/node/socketio-hub.mjs`. Each connection joins a room named
//! after its user (`user:<id>`, from the `user_id` query parameter); `join`
//! joins a room and acks; `publish` emits to the room, sender included
//! (`socket.within(room)`, as `io.to(room)` in Node); `send` emits to the
//! user's room, reaching every connection of that user. WebSocket transport
//! only (socketioxide has no per-message compression, so the wire is the
//! other hubs'), `TCP_NODELAY` and a deeper per-connection queue than its
//! default, as a team tuning it for this load would set them.
//!
//! ```sh
//! target/release/socketioxide-hub --bind 127.0.0.1:8080
//! ```

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::serve::ListenerExt;
use clap::Parser;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::TransportType;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::handler::ConnectHandler;

/// Packets a connection may have queued before `emit` refuses more (and
/// the message is lost for it). socketioxide's default, 128, drops messages
/// in the private-message phase (a user's 10 connections sent 1,000
/// messages, 4 unacknowledged at a time: the acks run ahead of the
/// deliveries); Switchboard queues up to 1 MiB a connection in the
/// benchmark, which is thousands of these frames.
const BUFFERED_PACKETS: usize = 8192;

/// A socketioxide room hub for the benchmarks.
#[derive(Parser)]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
}

/// Milliseconds since the Unix epoch, as Node's `Date.now()`.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A string field of a request, or "".
fn field<'a>(frame: &'a Value, name: &str) -> &'a str {
    frame.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Registers a connection's handlers. A connect middleware rather than the
/// connect handler: socketioxide sends the namespace's connect packet and
/// only then spawns the connect handler, so a client that emits as soon as
/// it is connected (as the benchmark does: `join` right after `40`) races the
/// handler's registration, and an event that wins is dropped without an
/// ack. A middleware runs before the connect packet is sent. (Seen at 10,000
/// connections, about one join in several thousand.)
async fn register(socket: SocketRef) -> Result<(), std::convert::Infallible> {
    let user = socket
        .req_parts()
        .uri
        .query()
        .and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(key, _)| key == "user_id")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_else(|| "anonymous".to_owned());
    socket.join(format!("user:{user}"));
    socket.on("join", async |socket: SocketRef, Data(room): Data<String>, ack: AckSender| {
        socket.join(room);
        let _ = ack.send(&json!({}));
    });
    let from = user.clone();
    socket.on(
        "publish",
        async move |socket: SocketRef, Data(frame): Data<Value>, ack: AckSender| {
            let room = field(&frame, "room").to_owned();
            let message = json!({
                "room": room, "from": from, "event": field(&frame, "event"),
                "data": frame.get("data"), "ts": now_ms(),
            });
            let _ = socket.within(room).emit("message", &message).await;
            let _ = ack.send(&json!({}));
        },
    );
    socket.on("send", async move |socket: SocketRef, Data(frame): Data<Value>, ack: AckSender| {
        let to = field(&frame, "to");
        let message = json!({
            "to": to, "from": user, "event": field(&frame, "event"),
            "data": frame.get("data"), "ts": now_ms(),
        });
        let _ = socket.within(format!("user:{to}")).emit("message", &message).await;
        let _ = ack.send(&json!({}));
    });
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let (layer, io) = SocketIo::builder()
        .transports([TransportType::Websocket])
        .max_buffer_size(BUFFERED_PACKETS)
        .build_layer();
    io.ns("/", (async || {}).with(register));
    let app = axum::Router::new().route("/health", get(async || "ok")).layer(layer);
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(args.bind)?;
    // Node's hubs listen with a backlog of 4,096; tokio's default is 1,024.
    let listener = socket.listen(4096)?.tap_io(|tcp| {
        // Without it, Nagle's algorithm holds the second small frame of a
        // handshake (the namespace answer after the open packet) for the
        // client's delayed ack: about 40 ms a connection. The other hubs
        // set it too.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
