//! Numeric codes: [`ErrorCode`] for `error` frames and [`CloseCode`] for
//! WebSocket close frames.
//!
//! Both are open newtypes over `u16` rather than closed enums so that a client
//! built against this version still decodes a code that a newer hub invents;
//! the associated constants name every code this version knows.
//!
//! # Error code ranges (`error` frames; the connection stays open)
//! | range   | meaning | retry the same request? |
//! |---------|---------|-------------------------|
//! | 100–199 | the frame itself is wrong (not JSON, unknown type, bad field, bad name) | no: fix the client |
//! | 200–299 | the hub refused the request by policy (not joined, limits, the application's hooks) | no, except [`ErrorCode::RATE_LIMITED`] after a pause |
//! | 300–399 | the hub could not do it right now                                       | yes, with backoff |
//! | 1000–1999 | the application refused it (codes its hooks choose)                   | as the application documents |
//!
//! # Close code ranges (WebSocket close frames)
//! | range     | meaning | reconnect? |
//! |-----------|---------|------------|
//! | 1000–2999 | standard WebSocket codes (RFC 6455)      | yes, except 1008 (policy violation) |
//! | 4000–4499 | Switchboard, transient                   | yes, with backoff |
//! | 4500–4999 | Switchboard, terminal                    | no: not until the cause (credentials, an operator's decision) changes |

use serde::{Deserialize, Serialize};
use std::fmt;

/// The code of an `error` frame. See the [module docs](self) for the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// The frame is not valid JSON, or not a JSON object with a string `type`.
    pub const MALFORMED: ErrorCode = ErrorCode(100);
    /// The frame's `type` is not one this hub knows.
    pub const UNKNOWN_TYPE: ErrorCode = ErrorCode(101);
    /// A field is missing or has the wrong JSON type.
    pub const INVALID_FRAME: ErrorCode = ErrorCode(102);
    /// A room name, event name or user id breaks the naming rules
    /// ([`validate_name`](crate::validate_name)).
    pub const INVALID_NAME: ErrorCode = ErrorCode(103);
    /// A binary WebSocket message arrived; this protocol version speaks JSON text only.
    pub const BINARY_UNSUPPORTED: ErrorCode = ErrorCode(104);
    /// The request is not allowed for this connection.
    pub const FORBIDDEN: ErrorCode = ErrorCode(200);
    /// A publish to a room this connection has not joined.
    pub const NOT_JOINED: ErrorCode = ErrorCode(201);
    /// A configured limit would be exceeded (for example rooms per connection).
    pub const LIMIT_EXCEEDED: ErrorCode = ErrorCode(202);
    /// Too many requests; retry after a pause.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(203);
    /// An `auth` frame's token was refused (the connection keeps its old one).
    pub const INVALID_TOKEN: ErrorCode = ErrorCode(204);
    /// The application refused the request (one of its hooks); the message says why.
    pub const REFUSED: ErrorCode = ErrorCode(205);
    /// An `rpc` to a method the hub has no handler for.
    pub const NO_HANDLER: ErrorCode = ErrorCode(206);
    /// The hub failed internally; the request may succeed if retried.
    pub const INTERNAL: ErrorCode = ErrorCode(300);
    /// A dependency of the hub (such as its broker) is unavailable; retry later.
    pub const UNAVAILABLE: ErrorCode = ErrorCode(301);
    /// An application hook failed (panicked) or took too long; retry later.
    pub const HOOK_FAILED: ErrorCode = ErrorCode(302);

    /// A short machine-readable name for a known code, `"unknown"` otherwise.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::MALFORMED => "malformed",
            ErrorCode::UNKNOWN_TYPE => "unknown_type",
            ErrorCode::INVALID_FRAME => "invalid_frame",
            ErrorCode::INVALID_NAME => "invalid_name",
            ErrorCode::BINARY_UNSUPPORTED => "binary_unsupported",
            ErrorCode::FORBIDDEN => "forbidden",
            ErrorCode::NOT_JOINED => "not_joined",
            ErrorCode::LIMIT_EXCEEDED => "limit_exceeded",
            ErrorCode::RATE_LIMITED => "rate_limited",
            ErrorCode::INVALID_TOKEN => "invalid_token",
            ErrorCode::REFUSED => "refused",
            ErrorCode::NO_HANDLER => "no_handler",
            ErrorCode::INTERNAL => "internal",
            ErrorCode::UNAVAILABLE => "unavailable",
            ErrorCode::HOOK_FAILED => "hook_failed",
            _ => "unknown",
        }
    }

    /// Whether sending the same request again, after a pause, may succeed.
    pub fn is_retryable(self) -> bool {
        self == ErrorCode::RATE_LIMITED || (300..400).contains(&self.0)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// The code of a WebSocket close frame. See the [module docs](self) for the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// The client closed on purpose (RFC 6455).
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// The hub is shutting down or restarting; reconnect, possibly to another node.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// A text frame was not valid UTF-8, or a compressed message was not
    /// valid deflate data.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// Generic policy refusal (RFC 6455); do not reconnect.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// A message exceeded the hub's maximum message size.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// The hub hit an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// The connection's outbound queue overflowed: it did not read fast enough.
    pub const SLOW_CONSUMER: CloseCode = CloseCode(4000);
    /// Nothing was heard from the client within the heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode(4001);
    /// The client kept sending faster than its rate limit; reconnect later.
    pub const RATE_LIMITED: CloseCode = CloseCode(4002);
    /// The user (or the client's address) holds too many connections.
    pub const CONNECTION_LIMIT: CloseCode = CloseCode(4003);
    /// The connection's token expired; reconnect with a fresh one.
    pub const TOKEN_EXPIRED: CloseCode = CloseCode(4004);
    /// In multi-node mode, the hub lost messages of a stream this connection
    /// follows on their way between nodes and could not repair the gap:
    /// reconnect and resume from the last position seen, which recovers
    /// them (or says `recovered: false`).
    pub const RESUME: CloseCode = CloseCode(4005);
    /// The credentials were refused; do not reconnect until they change.
    pub const UNAUTHORIZED: CloseCode = CloseCode(4500);
    /// An operator disconnected this user and asked it not to come back.
    pub const KICKED: CloseCode = CloseCode(4501);
    /// The application's connect hook refused this connection.
    pub const REFUSED: CloseCode = CloseCode(4502);

    /// A short machine-readable name for a known code, `"unknown"` otherwise.
    pub fn name(self) -> &'static str {
        match self {
            CloseCode::NORMAL => "normal",
            CloseCode::GOING_AWAY => "going_away",
            CloseCode::INVALID_PAYLOAD => "invalid_payload",
            CloseCode::POLICY_VIOLATION => "policy_violation",
            CloseCode::MESSAGE_TOO_BIG => "message_too_big",
            CloseCode::INTERNAL_ERROR => "internal_error",
            CloseCode::SLOW_CONSUMER => "slow_consumer",
            CloseCode::HEARTBEAT_TIMEOUT => "heartbeat_timeout",
            CloseCode::RATE_LIMITED => "rate_limited",
            CloseCode::CONNECTION_LIMIT => "connection_limit",
            CloseCode::TOKEN_EXPIRED => "token_expired",
            CloseCode::RESUME => "resume",
            CloseCode::UNAUTHORIZED => "unauthorized",
            CloseCode::KICKED => "kicked",
            CloseCode::REFUSED => "refused",
            _ => "unknown",
        }
    }

    /// Whether a client that was closed with this code should reconnect.
    ///
    /// Everything reconnects except the terminal range 4500–4999 and 1008.
    pub fn should_reconnect(self) -> bool {
        !(self == CloseCode::POLICY_VIOLATION || (4500..5000).contains(&self.0))
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_say_whether_to_reconnect() {
        for code in [
            CloseCode::GOING_AWAY,
            CloseCode::MESSAGE_TOO_BIG,
            CloseCode::SLOW_CONSUMER,
            CloseCode::HEARTBEAT_TIMEOUT,
            CloseCode::RESUME,
            CloseCode(4499),
            CloseCode::INTERNAL_ERROR,
        ] {
            assert!(code.should_reconnect(), "{code} should reconnect");
        }
        for code in [
            CloseCode::UNAUTHORIZED,
            CloseCode::KICKED,
            CloseCode(4999),
            CloseCode::POLICY_VIOLATION,
        ] {
            assert!(!code.should_reconnect(), "{code} should not reconnect");
        }
    }

    #[test]
    fn error_codes_say_whether_to_retry() {
        assert!(ErrorCode::INTERNAL.is_retryable());
        assert!(ErrorCode::UNAVAILABLE.is_retryable());
        assert!(ErrorCode::RATE_LIMITED.is_retryable());
        assert!(!ErrorCode::MALFORMED.is_retryable());
        assert!(!ErrorCode::NOT_JOINED.is_retryable());
    }

    #[test]
    fn codes_encode_as_plain_integers() {
        assert_eq!(serde_json::to_string(&ErrorCode::MALFORMED).unwrap(), "100");
        assert_eq!(serde_json::from_str::<CloseCode>("4000").unwrap(), CloseCode::SLOW_CONSUMER);
        assert_eq!(ErrorCode(999).name(), "unknown");
    }
}
