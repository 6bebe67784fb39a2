//! The socket under the client: open a WebSocket, send text, receive text
//! until it closes. One [`Socket`] type per target with the same methods:
//! `native.rs` (tokio-tungstenite) and `web.rs` (the browser's `WebSocket`).
//! This module, `codec/` and `runtime.rs` are the only places that look at
//! `target_arch`.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::Socket;
#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub(crate) use web::Socket;

use switchboard_protocol::CloseCode;

/// What a socket yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// A text frame.
    Text(String),
    /// A control frame arrived: the peer is alive. Browsers never report these.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    Alive,
    /// The connection ended, with the peer's close code if it sent one.
    Closed {
        /// The close code, when a close frame arrived.
        code: Option<CloseCode>,
        /// The close reason, or what went wrong.
        reason: String,
    },
}

/// Why a socket could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Anything else: DNS, TCP, TLS, a malformed handshake.
    Failed(String),
}

impl OpenError {
    /// Whether retrying later may succeed: network failures and 5xx/408/429
    /// do; any other refusal (bad identity, forbidden) will not by itself.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            OpenError::Refused { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            OpenError::Failed(_) => true,
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
            OpenError::Failed(reason) => f.write_str(reason),
        }
    }
}
