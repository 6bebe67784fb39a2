//! The native socket, on tokio-tungstenite, with TLS from rustls (no
//! OpenSSL): the platform's roots (and `SSL_CERT_FILE`), plus any the app
//! adds, or a whole rustls configuration of the app's own.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Sink, Stream};
use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use switchboard_protocol::CloseCode;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::TlsError;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{Connector as TlsConnector, MaybeTlsStream, WebSocketStream};

use super::{Incoming, OpenError};
use crate::builder::ClientBuilder;
use crate::error::Error;

/// How long [`Socket::close`] waits for queued frames and the close
/// handshake before it lets go of the connection anyway. (A browser's
/// `close()` returns at once and finishes on its own.)
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Frames queued beyond what tungstenite holds before the driver stops
/// handing the socket requests and rejoins (they wait in the driver's
/// queue). Pings and tokens are queued regardless: there are few of them.
const OUTBOUND_FRAMES: usize = 256;

/// How sockets are opened natively, which is how `wss://` URLs are
/// trusted: the platform's roots and the app's own PEM roots, or a rustls
/// configuration the app made. Built on the first
/// `wss://` connection, so a client on `ws://` never reads the system's
/// certificate store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connector {
    /// PEM documents of extra root certificates.
    roots: Vec<Vec<u8>>,
    /// The app's own configuration, used as is.
    preset: Option<Arc<ClientConfig>>,
    config: Arc<OnceLock<Arc<ClientConfig>>>,
}

impl Connector {
    /// Adds the certificates of a PEM document as trusted roots.
    pub(crate) fn add_roots_pem(&mut self, pem: Vec<u8>) {
        self.roots.push(pem);
    }

    /// Checks what the app gave: every PEM document holds at least one
    /// certificate, and nothing else is wrong with it.
    pub(crate) fn check(&self) -> Result<(), Error> {
        for pem in &self.roots {
            extra_roots(pem)?;
        }
        Ok(())
    }

    fn config(&self) -> Result<Arc<ClientConfig>, Error> {
        if let Some(preset) = &self.preset {
            return Ok(preset.clone());
        }
        if let Some(config) = self.config.get() {
            return Ok(config.clone());
        }
        let mut store = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped; if none is left and
        // the app added none, the handshake fails as "not trusted", which
        // names the cause.
        store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for pem in &self.roots {
            for cert in extra_roots(pem)? {
                store.add(cert).map_err(|e| Error::Tls(format!("a root certificate: {e}")))?;
            }
        }
        // ring, named rather than taken from the process default, so that
        // another crate enabling a second provider cannot make this panic.
        // rustls now steers towards aws-lc-rs for post-quantum key exchange;
        // ring keeps the build free of a second C library and of cmake.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(self.config.get_or_init(|| Arc::new(config)).clone())
    }
}

fn extra_roots(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidOptions(format!("root certificates: {e}")))?;
    if certs.is_empty() {
        return Err(Error::InvalidOptions("root certificates: no certificate in the PEM".into()));
    }
    Ok(certs)
}

impl ClientBuilder {
    /// Uses this rustls configuration for `wss://` URLs instead of the
    /// platform's roots: for client certificates, pinning, or a private CA
    /// set up in code (native only). Overrides
    /// [`ClientBuilder::add_root_certificates`].
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.connector.preset = Some(config);
        self
    }
}

/// A WebSocket connection.
pub(crate) struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames not yet handed to tungstenite, written while the driver waits
    /// in [`Socket::next`].
    outbound: VecDeque<WsMessage>,
    /// tungstenite holds written frames not yet flushed.
    unflushed: bool,
    /// The driver was told there is no room; it hears when there is.
    blocked: bool,
}

impl Socket {
    /// Opens `url`, sending `headers` with the upgrade request.
    pub(crate) async fn open(
        url: &str,
        headers: &[(String, String)],
        connector: &Connector,
    ) -> Result<Socket, OpenError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| OpenError::Fatal(Error::InvalidUrl(format!("{e}: {url:?}"))))?;
        for (name, value) in headers {
            let (name, value) = header(name, value).map_err(OpenError::Fatal)?;
            request.headers_mut().insert(name, value);
        }
        let connector = if url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("wss://")) {
            Some(TlsConnector::Rustls(connector.config().map_err(OpenError::Fatal)?))
        } else {
            None
        };
        // `true`: small frames must not wait for Nagle's algorithm.
        match tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await
        {
            Ok((stream, _response)) => {
                Ok(Socket { stream, outbound: VecDeque::new(), unflushed: false, blocked: false })
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
            Err(err) => Err(classify(err)),
        }
    }

    /// Queues one text frame; it is written while the driver waits in
    /// [`Socket::next`]. A failed write surfaces there as the end.
    pub(crate) fn send(&mut self, text: String) {
        self.outbound.push_back(WsMessage::Text(text.into()));
    }

    /// Queues one binary message, like [`Socket::send`].
    pub(crate) fn send_binary(&mut self, bytes: Vec<u8>) {
        self.outbound.push_back(WsMessage::Binary(bytes.into()));
    }

    /// Whether the app's next request may be queued now; once this says no,
    /// [`Socket::next`] yields [`Incoming::Writable`] when it may again.
    pub(crate) fn has_room(&mut self) -> bool {
        let room = self.outbound.len() < OUTBOUND_FRAMES;
        self.blocked |= !room;
        room
    }

    /// The next text frame, a sign of life, room to write, or how the
    /// connection ended. Writes what is queued meanwhile; pings are
    /// answered by tungstenite itself.
    pub(crate) async fn next(&mut self) -> Incoming {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Incoming> {
        if let Err(err) = self.poll_write(cx) {
            return Poll::Ready(Incoming::Closed { code: None, reason: err.to_string() });
        }
        if self.blocked && self.outbound.len() < OUTBOUND_FRAMES / 2 {
            self.blocked = false;
            return Poll::Ready(Incoming::Writable);
        }
        loop {
            let incoming = match Pin::new(&mut self.stream).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(incoming) => incoming,
            };
            return Poll::Ready(match incoming {
                Some(Ok(WsMessage::Text(text))) => Incoming::Text(text.as_str().to_owned()),
                Some(Ok(WsMessage::Binary(bytes))) => Incoming::Binary(bytes.into()),
                Some(Ok(WsMessage::Close(Some(frame)))) => Incoming::Closed {
                    code: Some(CloseCode(u16::from(frame.code))),
                    reason: frame.reason.as_str().to_owned(),
                },
                Some(Ok(WsMessage::Close(None))) => {
                    Incoming::Closed { code: None, reason: "closed".to_owned() }
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Incoming::Alive,
                Some(Ok(_)) => continue,
                Some(Err(err)) => Incoming::Closed { code: None, reason: err.to_string() },
                None => Incoming::Closed { code: None, reason: "connection closed".to_owned() },
            });
        }
    }

    /// Hands queued frames to tungstenite while it takes them, then
    /// flushes; `Ok` also when the socket is full (the waker is set).
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Result<(), WsError> {
        let mut stream = Pin::new(&mut self.stream);
        while !self.outbound.is_empty() {
            match stream.as_mut().poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => return Ok(()),
            }
            if let Some(message) = self.outbound.pop_front() {
                stream.as_mut().start_send(message)?;
                self.unflushed = true;
            }
        }
        if self.unflushed {
            match stream.poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(err)) => return Err(err),
                Poll::Pending => {}
            }
        }
        Ok(())
    }

    /// Writes what is queued, sends a close frame and flushes it, for at
    /// most [`CLOSE_GRACE`]: a peer that stopped reading is let go.
    pub(crate) async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame =
            CloseFrame { code: WsCloseCode::from(code.0), reason: reason.to_owned().into() };
        let closing = async {
            let drained = poll_fn(|cx| match self.poll_write(cx) {
                Err(_) => Poll::Ready(false),
                Ok(()) if self.outbound.is_empty() && !self.unflushed => Poll::Ready(true),
                Ok(()) => Poll::Pending,
            })
            .await;
            if drained {
                let _ = self.stream.close(Some(frame)).await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
    }
}

/// A header for the upgrade request, or why it cannot be one.
pub(crate) fn header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), Error> {
    let invalid = |e: &dyn std::fmt::Display| Error::InvalidOptions(format!("header {name}: {e}"));
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(&e))?;
    let value = HeaderValue::from_str(value).map_err(|e| invalid(&e))?;
    Ok((header, value))
}

/// Sorts a failed connection attempt into what may heal and what will not.
fn classify(err: WsError) -> OpenError {
    match err {
        WsError::Url(e) => OpenError::Fatal(Error::InvalidUrl(e.to_string())),
        WsError::Tls(TlsError::InvalidDnsName) => {
            OpenError::Fatal(Error::Tls("the host is not a valid TLS server name".to_owned()))
        }
        WsError::Tls(TlsError::Rustls(e)) => rustls_failure(&e),
        WsError::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            Some(e) => rustls_failure(e),
            None => OpenError::Failed(io.to_string()),
        },
        other => OpenError::Failed(other.to_string()),
    }
}

/// A certificate the client does not trust will not become trusted by
/// trying again; other TLS failures (a reset mid-handshake) may heal.
fn rustls_failure(err: &rustls::Error) -> OpenError {
    match err {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => {
            OpenError::Fatal(Error::Tls(format!("the hub's certificate is not trusted: {err}")))
        }
        _ => OpenError::Failed(format!("TLS: {err}")),
    }
}
