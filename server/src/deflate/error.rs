//! Why a client's compressed message was refused, and the close code each
//! reason earns.

/// A compressed message the hub would not inflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InflateError {
    /// It inflates past the largest message the hub accepts (close 1009).
    #[error("the message inflates past {limit} bytes")]
    TooLarge {
        /// `limits.max_message_bytes`.
        limit: usize,
    },
    /// It is not valid deflate data (close 1007).
    #[error("the message is not valid deflate data")]
    Corrupt,
    /// Its frames break the extension's framing rules (close 1002).
    #[error("{0}")]
    Framing(FramingError),
}

/// How a client's frames broke RFC 7692's (or RFC 6455's) framing around a
/// compressed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    /// RSV1 on a continuation frame: only a message's first frame says it
    /// is compressed.
    #[error("RSV1 set on a continuation frame")]
    Rsv1OnContinuation,
    /// RSV2 or RSV3, which no negotiated extension defines.
    #[error("RSV2 or RSV3 set")]
    OtherReservedBits,
    /// A new data frame while a compressed message was still unfinished.
    #[error("a message began inside another")]
    Interleaved,
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("client frames must be masked")]
    Unmasked,
}
