//! How the load client speaks to each server: Switchboard's JSON frames
//! (which the Node `ws` hub mimics) or Socket.IO's (Engine.IO 4 packets over
//! a WebSocket). The client writes and matches raw text, never a client
//! library, so the load client is not what is measured.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error, Message, Utf8Bytes};

use crate::inflate::{self, Inflate};

/// A client WebSocket (inflating what the server compressed, when it
/// offered permessage-deflate: [`crate::inflate`]).
pub type Socket = tokio_tungstenite::WebSocketStream<Inflate<tokio::net::TcpStream>>;

/// A server's wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Switchboard's JSON frames (`docs/PROTOCOL.md`); the Node `ws` hub
    /// speaks the subset the benchmark uses.
    Json,
    /// The same, connected with `?batch=1` as the SDKs connect: several
    /// frames to a WebSocket message, newline-separated.
    JsonBatched,
    /// Socket.IO 5 over Engine.IO 4, WebSocket transport only.
    SocketIo,
}

impl Proto {
    /// The URL a connection of `user` opens.
    pub fn url(self, addr: std::net::SocketAddr, user: &str) -> String {
        match self {
            Proto::Json => format!("ws://{addr}/ws?user_id={user}"),
            Proto::JsonBatched => format!("ws://{addr}/ws?user_id={user}&batch=1"),
            Proto::SocketIo => {
                format!("ws://{addr}/socket.io/?EIO=4&transport=websocket&user_id={user}")
            }
        }
    }

    /// A request to join `room`, acknowledged.
    pub fn join(self, room: &str) -> String {
        match self {
            Proto::Json | Proto::JsonBatched => {
                format!(r#"{{"type":"join","id":"j","room":"{room}"}}"#)
            }
            Proto::SocketIo => format!(r#"420["join","{room}"]"#),
        }
    }

    /// A publish to `room` carrying `data` (a JSON value); acknowledged under
    /// `id` when there is one.
    pub fn publish(self, room: &str, id: Option<usize>, data: &str) -> String {
        match (self, id) {
            (Proto::Json | Proto::JsonBatched, Some(id)) => format!(
                r#"{{"type":"publish","id":"p{id}","room":"{room}","event":"tick","data":{data}}}"#
            ),
            (Proto::Json | Proto::JsonBatched, None) => {
                format!(r#"{{"type":"publish","room":"{room}","event":"tick","data":{data}}}"#)
            }
            (Proto::SocketIo, Some(id)) => {
                format!(r#"42{id}["publish",{{"room":"{room}","event":"tick","data":{data}}}]"#)
            }
            (Proto::SocketIo, None) => {
                format!(r#"42["publish",{{"room":"{room}","event":"tick","data":{data}}}]"#)
            }
        }
    }

    /// A private message to every connection of `user`, acknowledged under `id`.
    pub fn send(self, user: &str, id: usize, data: &str) -> String {
        match self {
            Proto::Json | Proto::JsonBatched => format!(
                r#"{{"type":"send","id":"p{id}","to":"{user}","event":"tick","data":{data}}}"#
            ),
            Proto::SocketIo => {
                format!(r#"42{id}["send",{{"to":"{user}","event":"tick","data":{data}}}]"#)
            }
        }
    }

    /// Whether `text` acknowledges a request.
    pub fn is_ack(self, text: &str) -> bool {
        match self {
            Proto::Json | Proto::JsonBatched => text.starts_with(r#"{"type":"ack""#),
            Proto::SocketIo => text.starts_with("43"),
        }
    }

    /// Whether `text` delivers a message (room or private).
    pub fn is_message(self, text: &str) -> bool {
        match self {
            Proto::Json | Proto::JsonBatched => text.starts_with(r#"{"type":"message""#),
            Proto::SocketIo => text.starts_with(r#"42["message""#),
        }
    }

    /// Opens a connection for `user` and waits until the server has set it
    /// up (Switchboard's `welcome`; Socket.IO's namespace connect answer).
    pub async fn open(self, addr: std::net::SocketAddr, user: &str) -> Result<Socket, Error> {
        self.open_offering(addr, user, false).await
    }

    /// [`Proto::open`], offering permessage-deflate as a browser does when
    /// `deflate` is set.
    pub async fn open_offering(
        self,
        addr: std::net::SocketAddr,
        user: &str,
        deflate: bool,
    ) -> Result<Socket, Error> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        self.open_on(stream, addr, user, deflate).await
    }

    /// The same over a TCP connection whose receive window is at most
    /// `window` bytes, so that when it stops reading the server's queue for
    /// it fills after kilobytes rather than the megabytes loopback buffers
    /// hold by default.
    pub async fn open_small_window(
        self,
        addr: std::net::SocketAddr,
        user: &str,
        window: u32,
    ) -> Result<Socket, Error> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(window)?;
        let stream = socket.connect(addr).await?;
        self.open_on(stream, addr, user, false).await
    }

    async fn open_on(
        self,
        stream: tokio::net::TcpStream,
        addr: std::net::SocketAddr,
        user: &str,
        deflate: bool,
    ) -> Result<Socket, Error> {
        stream.set_nodelay(true)?;
        // tungstenite's default read buffer is 128 KiB, zeroed on first use:
        // across 10,000 connections that is the load client's biggest cost,
        // the same for every server. The frames here are small.
        let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
        let mut request = self.url(addr, user).into_client_request()?;
        if deflate {
            let offer = inflate::OFFER.parse().expect("a valid header");
            request.headers_mut().insert("sec-websocket-extensions", offer);
        }
        let (mut socket, _) = tokio_tungstenite::client_async_with_config(
            request,
            Inflate::new(stream, deflate),
            Some(config),
        )
        .await?;
        match self {
            Proto::Json | Proto::JsonBatched => {
                answer(&mut socket, self).await?;
            }
            Proto::SocketIo => {
                // Engine.IO's open packet, then connect to the main namespace.
                read_until(&mut socket, self, |text| text.starts_with('0')).await?;
                socket.send(Message::text("40")).await?;
                read_until(&mut socket, self, |text| text.starts_with("40")).await?;
            }
        }
        Ok(socket)
    }
}

/// The next text frame, answering Engine.IO's pings on the way (a Socket.IO
/// server drops a client that does not).
pub async fn next_text(socket: &mut Socket, proto: Proto) -> Result<Utf8Bytes, Error> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                if proto == Proto::SocketIo && text == "2" {
                    socket.send(Message::text("3")).await?;
                    continue;
                }
                return Ok(text);
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => return Err(err),
            None => return Err(Error::ConnectionClosed),
        }
    }
}

/// How long the client waits for an answer (an ack, its own message back)
/// before it counts the connection as lost, so that a server that drops a
/// frame fails the phase instead of hanging the benchmark.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The next text frame, or an error after [`ANSWER_WITHIN`] without one.
async fn answer(socket: &mut Socket, proto: Proto) -> Result<Utf8Bytes, Error> {
    match tokio::time::timeout(ANSWER_WITHIN, next_text(socket, proto)).await {
        Ok(answer) => answer,
        Err(_) => Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no answer from the server in 30 s",
        ))),
    }
}

/// Reads until a text frame that `wanted` accepts; fails after
/// [`ANSWER_WITHIN`] without a frame.
pub async fn read_until(
    socket: &mut Socket,
    proto: Proto,
    wanted: impl Fn(&str) -> bool,
) -> Result<Utf8Bytes, Error> {
    loop {
        let text = answer(socket, proto).await?;
        if wanted(&text) {
            return Ok(text);
        }
    }
}

/// Sends `count` requests made by `frame(n)`, `in_flight` unacknowledged at
/// a time, until every one is acknowledged; fails after [`ANSWER_WITHIN`]
/// without a frame.
pub async fn send_acked(
    socket: &mut Socket,
    proto: Proto,
    count: usize,
    in_flight: usize,
    frame: impl Fn(usize) -> String,
) -> Result<(), Error> {
    let (mut sent, mut acked) = (0, 0);
    while acked < count {
        while sent < count && sent - acked < in_flight.max(1) {
            socket.send(Message::text(frame(sent))).await?;
            sent += 1;
        }
        if proto.is_ack(&answer(socket, proto).await?) {
            acked += 1;
        }
    }
    Ok(())
}

/// The instant every timestamp in a message counts from.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Message data carrying a sequence number and the send time, so that the
/// receiver knows each delivery's latency ([`latency_of`]).
pub fn stamped(n: usize) -> String {
    format!(r#"{{"n":{n},"t":{}}}"#, epoch().elapsed().as_micros())
}

/// The same, padded with `pad` bytes of text.
pub fn stamped_padded(n: usize, pad: usize) -> String {
    format!(r#"{{"n":{n},"t":{},"pad":"{}"}}"#, epoch().elapsed().as_micros(), "x".repeat(pad))
}

/// The latency of a received message from the send time it carries.
pub fn latency_of(text: &str) -> Option<Duration> {
    let at = text.find(r#""t":"#)? + 4;
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    let sent = Duration::from_micros(digits.parse().ok()?);
    Some(epoch().elapsed().saturating_sub(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_as_a_latency() {
        let data = stamped(7);
        let frame = Proto::SocketIo.publish("r", None, &data);
        assert!(frame.starts_with(r#"42["publish",{"room":"r""#), "{frame}");
        assert!(latency_of(&frame).is_some_and(|latency| latency < Duration::from_secs(5)));
        assert_eq!(latency_of(r#"{"type":"message"}"#), None);
    }
}
