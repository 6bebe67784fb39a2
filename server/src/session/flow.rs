//! How a session's step ends ([`Flow`]), why a session ended without a
//! close frame ([`Ended`]), and the small mappings around them: a read
//! error to its close code, a write's outcome, a client frame to its slot
//! in the figures, a close reason cut to fit its frame.

use switchboard_protocol::{ClientFrame, CloseCode};
use tokio::time::Duration;

use crate::deflate::InflateError;
use crate::deflate::inflating::inflate_error;

/// What to do after handling one event.
#[derive(Debug)]
pub(super) enum Flow {
    Continue,
    /// Close with this code and reason.
    Close(CloseCode, String),
    /// The peer is gone or the socket failed: stop without a close frame.
    Gone(Ended),
}

/// Why a session ended without sending a close frame, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// The client sent a close frame (the stack answers it).
    ClientClosed,
    /// The connection ended without a close frame: a network drop, a
    /// killed client, a laptop lid. Not a protocol error.
    Dropped,
    /// Reading or writing failed at the network level.
    NetworkError,
    /// The hub no longer knows the connection.
    Unregistered,
}

impl Ended {
    /// The `how` label of `switchboard_disconnects_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            Ended::ClientClosed => "client_closed",
            Ended::Dropped => "dropped",
            Ended::NetworkError => "network_error",
            Ended::Unregistered => "unregistered",
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::ClientClosed => "the client closed the connection",
            Ended::Dropped => "the connection dropped without a close frame",
            Ended::NetworkError => "network error",
            Ended::Unregistered => "removed from the hub",
        })
    }
}

/// The close for a session whose writes made no progress for `stall`.
pub(super) fn stalled(stall: Duration) -> Flow {
    Flow::Close(
        CloseCode::SLOW_CONSUMER,
        format!("a write made no progress for {} ms: read faster", stall.as_millis()),
    )
}

/// A write's outcome as a [`Flow`]: a failed write means the peer is gone.
pub(super) fn written(result: Result<(), tungstenite::Error>) -> Flow {
    match result {
        Ok(()) => Flow::Continue,
        Err(_) => Flow::Gone(Ended::NetworkError),
    }
}

/// A client frame's index in [`FRAME_TYPES`](crate::hub::stats::FRAME_TYPES).
pub(super) fn frame_slot(frame: &ClientFrame) -> usize {
    match frame {
        ClientFrame::Join { .. } => 0,
        ClientFrame::Leave { .. } => 1,
        ClientFrame::Publish { .. } => 2,
        ClientFrame::Send { .. } => 3,
        ClientFrame::History { .. } => 4,
        ClientFrame::Members { .. } => 5,
        ClientFrame::Auth { .. } => 6,
        ClientFrame::Rpc { .. } => 7,
        ClientFrame::Ping { .. } => 8,
    }
}

/// Maps a read error to the close code RFC 6455 prescribes for it; a
/// connection that simply ended is no protocol error.
pub(super) fn read_error_flow(err: tungstenite::Error) -> Flow {
    match err {
        // The TCP stream ended without a close frame: the client vanished
        // (network drop, killed process). Nobody is left to send 1002 to.
        tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        )
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => Flow::Gone(Ended::Dropped),
        tungstenite::Error::Capacity(cause) => {
            Flow::Close(CloseCode::MESSAGE_TOO_BIG, format!("message too big: {cause}"))
        }
        tungstenite::Error::Utf8(_) => {
            Flow::Close(CloseCode::INVALID_PAYLOAD, "text frame is not valid UTF-8".to_owned())
        }
        tungstenite::Error::Protocol(cause) => {
            Flow::Close(CloseCode(1002), format!("protocol error: {cause}"))
        }
        // A compressed message the hub would not inflate, or the socket.
        tungstenite::Error::Io(err) => match inflate_error(&err) {
            Some(err @ InflateError::TooLarge { .. }) => {
                Flow::Close(CloseCode::MESSAGE_TOO_BIG, format!("message too big: {err}"))
            }
            Some(err @ InflateError::Corrupt) => {
                Flow::Close(CloseCode::INVALID_PAYLOAD, err.to_string())
            }
            Some(err @ InflateError::Framing(_)) => {
                Flow::Close(CloseCode(1002), format!("protocol error: {err}"))
            }
            None => Flow::Gone(Ended::NetworkError),
        },
        _ => Flow::Gone(Ended::NetworkError),
    }
}

/// A close reason must fit in a control frame: at most 123 bytes.
pub(crate) fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}
