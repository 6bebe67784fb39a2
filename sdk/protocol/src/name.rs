//! Naming rules for room names, event names and user ids.
//!
//! Both ends check names with [`validate_name`]: the hub refuses a bad name
//! with [`ErrorCode::INVALID_NAME`](crate::ErrorCode::INVALID_NAME), and an SDK
//! can refuse it before anything is sent.

use std::fmt;

/// The longest room name, event name or user id, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is the empty string.
    Empty,
    /// The name has only whitespace (spaces, tabs, other Unicode spaces).
    Blank,
    /// The name is longer than [`MAX_NAME_BYTES`].
    TooLong,
    /// The name contains a control character (U+0000 to U+001F, U+007F to U+009F).
    ControlCharacter,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("must not be empty"),
            NameError::Blank => f.write_str("must not be only whitespace"),
            NameError::TooLong => write!(f, "must be at most {MAX_NAME_BYTES} bytes"),
            NameError::ControlCharacter => f.write_str("must not contain control characters"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a room name, event name or user id against the protocol's rules:
/// non-empty, not only whitespace, at most [`MAX_NAME_BYTES`] bytes, no
/// control characters.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if name.trim().is_empty() {
        return Err(NameError::Blank);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        assert_eq!(validate_name("general"), Ok(()));
        assert_eq!(validate_name("chat:fr/paris"), Ok(()));
        assert_eq!(validate_name("café ☕"), Ok(()));
        assert_eq!(validate_name(" padded "), Ok(()), "inner names may have spaces around");
        assert_eq!(validate_name(&"a".repeat(MAX_NAME_BYTES)), Ok(()));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(" "), Err(NameError::Blank));
        assert_eq!(validate_name(" \u{3000}\u{a0} "), Err(NameError::Blank));
        assert_eq!(validate_name("\t"), Err(NameError::ControlCharacter));
        assert_eq!(validate_name(&"a".repeat(MAX_NAME_BYTES + 1)), Err(NameError::TooLong));
        assert_eq!(validate_name("a\nb"), Err(NameError::ControlCharacter));
        assert_eq!(validate_name("a\u{0}"), Err(NameError::ControlCharacter));
        assert_eq!(validate_name("\u{85}"), Err(NameError::ControlCharacter));
    }
}
