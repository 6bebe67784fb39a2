//! [`Error`]: everything a client call or the connection can fail with, and
//! the crate's [`Result`] alias.

use switchboard_protocol::{ErrorCode, NameError};

/// A client failure. Cheap to clone, so one error can reach every waiter
/// and every `error` handler.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL cannot be used (found by the builder, or refused by
    /// the runtime when opening it).
    #[error("invalid server URL: {0}")]
    InvalidUrl(String),
    /// An option is out of range or malformed (a timer longer than the
    /// platform's timers take, a header name with a space, a PEM with no
    /// certificate); nothing was started.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// A room name, event name or user id breaks the protocol's naming rules;
    /// nothing was sent.
    #[error("invalid {field}: {reason}")]
    InvalidName {
        /// Which argument.
        field: &'static str,
        /// Which rule.
        reason: NameError,
    },
    /// The server answered the request with an `error` frame.
    #[error("server refused the request: {code}: {message}")]
    Server {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// No answer within the request timeout. A request still waiting in the
    /// offline queue is then dropped and never sent; one already sent may or
    /// may not have been carried out.
    #[error("timed out waiting for the server's answer")]
    Timeout,
    /// The offline queue is full; the request was not queued.
    #[error("the offline queue is full ({capacity} requests)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The connection was lost while the request was in flight, and it is
    /// not re-sent: an `rpc` (the hub keeps no record of it, so a second
    /// call could act twice), or any request when the hub closed with 1009
    /// (message too big), since it may be the cause.
    #[error("connection lost before the server answered")]
    ConnectionLost,
    /// The client was closed with [`Client::close`](crate::Client::close).
    #[error("the client is closed")]
    Closed,
    /// The client cannot connect and will not retry: reconnecting is off,
    /// attempts are exhausted, or the server said not to come back.
    #[error("not connected and not retrying: {0}")]
    GaveUp(String),
    /// The hub refused the connection and trying again will not change
    /// that: an HTTP answer to the upgrade other than 101, 5xx, 408 and 429
    /// (natively; browsers hide it), or a token the hub refused and the
    /// token provider cannot replace. Terminal: `connect()` fails with it.
    #[error("the hub refused the connection: {0}")]
    Refused(String),
    /// The hub's TLS certificate is not trusted, or its name is not a valid
    /// TLS server name. Terminal. Add the hub's CA with
    /// [`ClientBuilder::add_root_certificates`](crate::ClientBuilder::add_root_certificates)
    /// or `SSL_CERT_FILE`.
    #[error("TLS: {0}")]
    Tls(String),
    /// The runtime has no WebSocket (a JavaScript runtime without a global
    /// `WebSocket`). Terminal.
    #[error("no WebSocket: {0}")]
    NoWebSocket(String),
    /// In a browser, every attempt since `connect()` closed before the
    /// socket opened (close code 1006, the HTTP status hidden by the
    /// browser), [`UNOPENED_ATTEMPTS`](crate::UNOPENED_ATTEMPTS) times in a
    /// row: the hub is unreachable or refuses the upgrade (a wrong path, a
    /// forbidden origin, a missing identity). Terminal.
    #[error("unauthorized or unreachable: {0}")]
    Unreachable(String),
    /// Opening or using the socket failed; the client tries again.
    #[error("transport error: {0}")]
    Transport(String),
    /// The server sent something this client cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// An event handler panicked; the client goes on.
    #[error("an event handler panicked: {0}")]
    HandlerPanicked(String),
    /// `build()` was called outside an async runtime (natively: outside Tokio).
    #[error("no async runtime: build the client inside a Tokio runtime")]
    NoRuntime,
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
