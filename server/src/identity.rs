//! Who is connecting: the one place a connection's user id is decided.
//!
//! Today identity comes from the `user_id` query parameter. Token-based
//! authentication replaces the body of [`resolve`] and nothing else: the
//! upgrade handler only ever sees an [`Identity`] or an [`IdentityError`].

use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;
use switchboard_protocol::{NameError, validate_name};

/// The query string of `GET /ws`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectQuery {
    /// The connecting user's id.
    pub user_id: Option<String>,
    /// A room to join as soon as the connection is open.
    pub room: Option<String>,
    /// With `inbox_offset`: resume the user's inbox after this position
    /// (a reconnecting client's last private message).
    pub inbox_epoch: Option<String>,
    /// See `inbox_epoch`.
    pub inbox_offset: Option<u64>,
}

/// The resolved identity of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user id every frame from this connection is attributed to.
    pub user: Arc<str>,
}

/// Why no identity could be resolved. Answered with HTTP 400 before the upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No `user_id` was given.
    #[error("the query parameter `user_id` is required")]
    MissingUser,
    /// The `user_id` breaks the naming rules.
    #[error("invalid `user_id`: {0}")]
    InvalidUser(NameError),
}

/// Decides who is connecting.
pub fn resolve(query: &ConnectQuery, _headers: &HeaderMap) -> Result<Identity, IdentityError> {
    let user = query.user_id.as_deref().ok_or(IdentityError::MissingUser)?;
    validate_name(user).map_err(IdentityError::InvalidUser)?;
    Ok(Identity { user: Arc::from(user) })
}
