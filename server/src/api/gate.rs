//! The address gate: middleware on every route that refuses requests from
//! addresses the IP lists (`limits.allow_ips`, `limits.deny_ips`) exclude,
//! with 403 `forbidden`, before any route runs.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiError;
use crate::AppState;
use crate::policy::admission::check_address;
use crate::policy::client_addr::client_ip;

/// Refuses a request whose client the lists exclude. Requests without a
/// known peer address (an embedding app that serves without connect info)
/// pass.
pub(crate) async fn address_gate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limits = &state.config().limits;
    if !(limits.deny_ips.is_empty() && limits.allow_ips.is_empty()) {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            let ip = client_ip(peer.ip(), request.headers(), &limits.trusted_proxies);
            check_address(limits, ip)?;
        }
    }
    Ok(next.run(request).await)
}
