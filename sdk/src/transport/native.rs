//! The native socket, on tokio-tungstenite.

use futures::{SinkExt, StreamExt};
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Incoming, OpenError};

/// A WebSocket connection.
pub(crate) struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Socket {
    /// Opens `url`, sending `headers` with the upgrade request.
    pub(crate) async fn open(url: &str, headers: &[(String, String)]) -> Result<Socket, OpenError> {
        let mut request =
            url.into_client_request().map_err(|e| OpenError::Failed(e.to_string()))?;
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| OpenError::Failed(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| OpenError::Failed(format!("header {name}: {e}")))?;
            request.headers_mut().insert(name, value);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _response)) => {
                if let MaybeTlsStream::Plain(tcp) = stream.get_ref() {
                    // Small frames must not wait for Nagle's algorithm.
                    let _ = tcp.set_nodelay(true);
                }
                Ok(Socket { stream })
            }
            Err(WsError::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                Err(OpenError::Refused { status, body })
            }
            Err(err) => Err(OpenError::Failed(err.to_string())),
        }
    }

    /// Sends one text frame.
    pub(crate) async fn send(&mut self, text: String) -> Result<(), String> {
        self.stream.send(WsMessage::Text(text.into())).await.map_err(|e| e.to_string())
    }

    /// The next text frame, a sign of life, or how the connection ended.
    /// Pings are answered by tungstenite itself.
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            match self.stream.next().await {
                Some(Ok(WsMessage::Text(text))) => return Incoming::Text(text.as_str().to_owned()),
                Some(Ok(WsMessage::Close(frame))) => {
                    return match frame {
                        Some(frame) => Incoming::Closed {
                            code: Some(CloseCode(u16::from(frame.code))),
                            reason: frame.reason.as_str().to_owned(),
                        },
                        None => Incoming::Closed { code: None, reason: "closed".to_owned() },
                    };
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => return Incoming::Alive,
                Some(Ok(_)) => continue,
                Some(Err(err)) => {
                    return Incoming::Closed { code: None, reason: err.to_string() };
                }
                None => {
                    return Incoming::Closed { code: None, reason: "connection closed".to_owned() };
                }
            }
        }
    }

    /// Sends a close frame and waits for the close handshake to finish.
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame =
            CloseFrame { code: WsCloseCode::from(code.0), reason: reason.to_owned().into() };
        let _ = self.stream.close(Some(frame)).await;
    }
}
