//! The socket under the client: open a WebSocket, queue text and binary
//! messages to send, receive them until it closes. One [`Socket`] type per target with the
//! same methods: `native.rs` (tokio-tungstenite, rustls) and `web.rs` (the
//! browser's `WebSocket`). This module, `codec/` and `runtime.rs` are the
//! only places that look at `target_arch`.
//!
//! Sending never waits: [`Socket::send`] queues a frame and the socket
//! writes it while the driver waits in [`Socket::next`], so a peer that
//! stops reading cannot stall the driver (its heartbeat and `close()` go on).
//! [`Socket::has_room`] tells the driver when to stop handing it the app's
//! requests (they wait in the driver's own bounded queue instead), and
//! [`Incoming::Writable`] when to start again.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::{Connector, Socket};
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub(crate) use web::{Connector, Socket};

use switchboard_protocol::CloseCode;

use crate::error::Error;

/// What a socket yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text frame.
    Text(String),
    /// A binary frame: an envelope of a frame's header and its bytes.
    Binary(Vec<u8>),
    /// A control frame arrived: the peer is alive. Browsers never report these.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Alive,
    /// The socket had no room for more requests and has some again.
    /// Browsers buffer without limit, so only native sockets report it.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Writable,
    /// The connection ended, with the peer's close code if it sent one.
    Closed {
        /// The close code, when a close frame arrived.
        code: Option<CloseCode>,
        /// The close reason, or what went wrong.
        reason: String,
    },
}

/// Why a socket could not be opened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OpenError {
    /// The server answered the upgrade with an HTTP error status. Browsers
    /// hide that status, so only native sockets report it.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body, if any.
        body: String,
    },
    /// The socket closed before it opened and the runtime does not say why
    /// (a 1006): the hub may be down, or may have refused the upgrade (401,
    /// 403). Only JavaScript runtimes report it (browsers, Node.js, Deno,
    /// Bun), whose WebSocket hides the upgrade's status.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Hidden(String),
    /// A failure that trying again cannot heal: no `WebSocket` in this
    /// runtime, a URL or header the runtime refuses, a certificate that is
    /// not trusted.
    Fatal(Error),
    /// Anything else: DNS, TCP, a malformed handshake. Worth another try.
    Failed(String),
}

impl OpenError {
    /// The error that ends the client's attempts, if this one does: an
    /// answer to the upgrade other than 101, 5xx, 408 and 429 (bad
    /// identity, forbidden, wrong path, a redirect) or a fatal failure.
    pub(crate) fn terminal(&self) -> Option<Error> {
        match self {
            OpenError::Refused { status, .. }
                if *status >= 500 || *status == 408 || *status == 429 =>
            {
                None
            }
            OpenError::Refused { .. } => Some(Error::Refused(self.to_string())),
            OpenError::Fatal(error) => Some(error.clone()),
            OpenError::Hidden(_) | OpenError::Failed(_) => None,
        }
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Refused { status, body } if body.is_empty() => {
                write!(f, "upgrade refused with HTTP {status}")
            }
            OpenError::Refused { status, body } => {
                write!(f, "upgrade refused with HTTP {status}: {body}")
            }
            OpenError::Fatal(error) => write!(f, "{error}"),
            OpenError::Hidden(reason) | OpenError::Failed(reason) => f.write_str(reason),
        }
    }
}
