//! The library's error types and its `Result` alias.
//!
//! HTTP API errors live with the API ([`crate::api::ApiError`]); engine errors
//! with the engine ([`crate::EngineError`]).

use std::path::PathBuf;

/// A failure to start or run the hub.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Serving failed on the socket level.
    #[error("serving failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The configuration could not be loaded or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`crate::Config`].
    #[error("invalid config file: {0}")]
    Parse(String),
    /// A `SWITCHBOARD_…` variable names no setting or holds a value of the
    /// wrong type.
    #[error("invalid setting from the environment: {0}")]
    Env(String),
    /// A value is out of range or contradicts another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The history store could not be opened.
    #[error("cannot open the history store: {0}")]
    Store(String),
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
