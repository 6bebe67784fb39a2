//! [`ApiError`]: every way an HTTP request can fail, with its status and the
//! `{"error":{"code","message"}}` body, and [`ApiJson`], the JSON body
//! extractor whose rejections use that same shape.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use switchboard_protocol::NameError;

use crate::engine::EngineError;
use crate::policy::auth::AuthError;

/// An HTTP API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (400 `bad_request`).
    #[error("{0}")]
    BadRequest(String),
    /// The JSON body could not be used (its own status, `invalid_body`).
    #[error("{message}")]
    InvalidBody {
        /// 400, 413, 415 or 422, as the rejection says.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// A name breaks the naming rules (422 `invalid_name`).
    #[error("invalid `{field}`: {reason}")]
    InvalidName {
        /// Which field.
        field: &'static str,
        /// Which rule.
        reason: NameError,
    },
    /// The connection could not be identified: 400 `invalid_identity` for a
    /// bad `user_id`, else 401 with `token_required`, `token_expired` or
    /// `invalid_token`.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The admin API needs its key (401 `unauthorized`).
    #[error("this API needs `Authorization: Bearer <api key>`")]
    Unauthorized,
    /// The request's origin or address is not allowed (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// A per-user or per-address limit is reached (429 `too_many_requests`).
    #[error("{0}")]
    TooMany(String),
    /// `GET /ws` without a WebSocket upgrade (the rejection's status, `not_websocket`).
    #[error("{0}")]
    NotWebSocket(String),
    /// The resource does not exist (404 `not_found`).
    #[error("{0}")]
    NotFound(String),
    /// The method is not allowed on this path (405 `method_not_allowed`).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `limits.max_connections` is reached (503 `too_many_connections`).
    #[error("the hub is at its connection limit; retry later")]
    TooManyConnections,
    /// The hub is shutting down (503 `shutting_down`).
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The engine failed: the history store, or Redis (503 `unavailable`).
    #[error(transparent)]
    Unavailable(#[from] EngineError),
    /// The application refused the request in a hook (403 `refused`).
    #[error("{0}")]
    Refused(String),
    /// An application hook panicked or took too long (503 `hook_failed`).
    #[error(transparent)]
    HookFailed(#[from] crate::hooks::HookFailure),
    /// The request conflicts with what exists (409 with `code`:
    /// `room_exists`, `default_room`, `room_limit`).
    #[error("{message}")]
    Conflict {
        /// The machine-readable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
}

impl From<crate::policy::admission::Refused> for ApiError {
    fn from(refused: crate::policy::admission::Refused) -> Self {
        use crate::policy::admission::Refused;
        match refused {
            Refused::Forbidden(message) => ApiError::Forbidden(message),
            Refused::TooMany(message) => ApiError::TooMany(message),
            Refused::Full => ApiError::TooManyConnections,
            Refused::ShuttingDown => ApiError::ShuttingDown,
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(AuthError::MissingUser | AuthError::InvalidUser(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Auth(AuthError::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Auth(_) | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidBody { status, .. } => *status,
            ApiError::InvalidName { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotWebSocket(_) => StatusCode::UPGRADE_REQUIRED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooManyConnections
            | ApiError::ShuttingDown
            | ApiError::Unavailable(_)
            | ApiError::HookFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The machine-readable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidBody { .. } => "invalid_body",
            ApiError::InvalidName { .. } => "invalid_name",
            ApiError::Auth(err) => err.code(),
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooMany(_) => "too_many_requests",
            ApiError::NotWebSocket(_) => "not_websocket",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooManyConnections => "too_many_connections",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Refused(_) => "refused",
            ApiError::HookFailed(_) => "hook_failed",
            ApiError::Conflict { code, .. } => code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

/// A JSON request body whose rejections answer with [`ApiError`].
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(body_error(rejection)),
        }
    }
}

fn body_error(rejection: JsonRejection) -> ApiError {
    ApiError::InvalidBody { status: rejection.status(), message: rejection.body_text() }
}
