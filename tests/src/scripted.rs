//! [`ScriptedHub`]: a WebSocket endpoint whose every connection the test
//! plays by hand (welcome, read, answer, drop, stall), for what a real hub
//! would never do on cue.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use switchboard_protocol::ClientFrame;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::TIMEOUT;

/// A `welcome` as a hub would send it, with a frame rate of `rate`.
pub fn welcome(rate: Option<u32>) -> String {
    match rate {
        Some(rate) => format!(
            r#"{{"type":"welcome","session":"s","user":"alice","protocol":1,"heartbeat_ms":25000,"rate":{rate}}}"#
        ),
        None => {
            r#"{"type":"welcome","session":"s","user":"alice","protocol":1,"heartbeat_ms":25000}"#
                .to_owned()
        }
    }
}

/// Accepts WebSocket upgrades and hands each connection to the test.
pub struct ScriptedHub {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: mpsc::UnboundedReceiver<Connection>,
    accept: AbortHandle,
}

impl ScriptedHub {
    /// Listens on a free loopback port.
    pub async fn start() -> ScriptedHub {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, connections) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(socket) = tokio_tungstenite::accept_async(tcp).await {
                    let _ = tx.send(Connection { socket });
                }
            }
        })
        .abort_handle();
        ScriptedHub { addr, connections, accept }
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Connects `client` and welcomes it; the hub's side of the connection.
    pub async fn welcomed(&mut self, client: &switchboard_sdk::Client) -> Connection {
        let connecting = tokio::spawn({
            let client = client.clone();
            async move { client.connect().await }
        });
        let mut connection = self.next().await;
        connection.send(&welcome(None)).await;
        connecting.await.expect("the connect task").expect("the client connects");
        connection
    }

    /// The next connection, within [`TIMEOUT`].
    pub async fn next(&mut self) -> Connection {
        tokio::time::timeout(TIMEOUT, self.connections.recv())
            .await
            .expect("a connection in time")
            .expect("the hub listens")
    }
}

impl Drop for ScriptedHub {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One client connection to a [`ScriptedHub`].
pub struct Connection {
    /// The socket, for whatever the test does by hand.
    pub socket: WebSocketStream<TcpStream>,
}

impl Connection {
    /// Sends a text frame.
    pub async fn send(&mut self, text: &str) {
        self.socket.send(WsMessage::Text(text.into())).await.expect("send");
    }

    /// The next client frame, within [`TIMEOUT`]; `None` once the client
    /// closed.
    pub async fn frame(&mut self) -> Option<ClientFrame> {
        loop {
            let next = tokio::time::timeout(TIMEOUT, self.socket.next())
                .await
                .expect("a client frame in time");
            match next {
                Some(Ok(WsMessage::Text(text))) => {
                    return Some(ClientFrame::decode(&text).expect("a client frame"));
                }
                Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next WebSocket message of any kind (text, binary, control),
    /// within [`TIMEOUT`]; `None` once the client closed.
    pub async fn message(&mut self) -> Option<WsMessage> {
        let next = tokio::time::timeout(TIMEOUT, self.socket.next())
            .await
            .expect("a client message in time");
        next.and_then(Result::ok)
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.socket.send(WsMessage::Binary(bytes.into())).await.expect("send");
    }

    /// The next client frame that is not a ping.
    pub async fn request(&mut self) -> ClientFrame {
        loop {
            match self.frame().await.expect("the client is still connected") {
                ClientFrame::Ping { .. } => {}
                frame => return frame,
            }
        }
    }

    /// Acknowledges request `id`.
    pub async fn ack(&mut self, id: &str) {
        self.send(&format!(r#"{{"type":"ack","id":"{id}"}}"#)).await;
    }
}
