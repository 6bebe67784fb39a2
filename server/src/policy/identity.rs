//! Who is connecting: the one place a connection's identity is decided,
//! from the upgrade request, before any WebSocket state exists.
//!
//! A token comes from `?token=` or an `Authorization: Bearer` header (native
//! clients; browsers cannot set headers). Without either, a hub that uses
//! tokens accepts the upgrade and waits for an `auth` frame (see
//! [`Resolved::AwaitAuthFrame`]); an insecure development hub trusts
//! `?user_id=` instead.

use axum::http::{HeaderMap, header::AUTHORIZATION};
use serde::Deserialize;

use crate::policy::auth::{AuthError, Authenticator, Identity};

/// The query string of `GET /ws`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConnectQuery {
    /// The connecting user's id (insecure mode only).
    pub user_id: Option<String>,
    /// A JWT.
    pub token: Option<String>,
    /// A room to join as soon as the connection is open.
    pub room: Option<String>,
    /// With `inbox_offset`: resume the user's inbox after this position
    /// (a reconnecting client's last private message).
    pub inbox_epoch: Option<String>,
    /// See `inbox_epoch`.
    pub inbox_offset: Option<u64>,
    /// `1` (or `true`): several server frames may share one WebSocket
    /// message, separated by newlines; `0` (or `false`, the default): one
    /// frame per message.
    pub batch: Option<String>,
    /// `1` (or `true`): the client speaks binary. It may send bytes as
    /// binary messages (`publish` and `send` envelopes), and gets messages
    /// whose payload is bytes as binary messages instead of base64 text.
    /// `0` (or `false`, the default): text only.
    pub binary: Option<String>,
}

impl ConnectQuery {
    /// Whether the client asked for batched messages; an error naming the
    /// accepted values when `batch` is something else.
    pub fn batch(&self) -> Result<bool, String> {
        flag("batch", self.batch.as_deref())
    }

    /// Whether the client speaks binary; an error naming the accepted
    /// values when `binary` is something else.
    pub fn binary(&self) -> Result<bool, String> {
        flag("binary", self.binary.as_deref())
    }
}

/// A yes-or-no query parameter: absent, `0` or `false` for no, `1` or
/// `true` for yes.
fn flag(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true") => Ok(true),
        Some(other) => Err(format!("`{name}` must be 1 or 0, not {other:?}")),
    }
}

/// The outcome of looking at the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The connection is this user.
    Known(Identity),
    /// Tokens are required and none came with the request: the first frame
    /// after the upgrade must be an `auth` frame.
    AwaitAuthFrame,
}

/// Decides who is connecting, or why not (fetching the identity
/// provider's keys again when a token names one the hub does not hold).
pub async fn resolve(
    query: &ConnectQuery,
    headers: &HeaderMap,
    auth: &Authenticator,
) -> Result<Resolved, AuthError> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if let Some(token) = query.token.as_deref().or(bearer) {
        return auth.authenticate(token).await.map(Resolved::Known);
    }
    if auth.uses_tokens() {
        return match query.user_id {
            Some(_) => Err(AuthError::UserIdRefused),
            None => Ok(Resolved::AwaitAuthFrame),
        };
    }
    auth.trust(query.user_id.as_deref()).map(Resolved::Known)
}
