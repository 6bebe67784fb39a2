//! [`Admission`]: who may open a connection (WebSocket or SSE), decided
//! before any connection state exists: allowed browser origins, new
//! connections per second and concurrent connections per IP address (the
//! client's, behind trusted proxies: `client_addr.rs`), connections per
//! user, and the hub's total.
//!
//! The IP allow and deny lists are wider: [`address_gate`] applies them to
//! every request on every route (`/ws`, `/sse`, `/api/…`, `/health`), so a
//! denied address reaches nothing, the admin API included.
//!
//! An admitted connection holds a [`Ticket`]; dropping it gives back the
//! slots it took.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, header::ORIGIN};
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::OwnedSemaphorePermit;

use crate::AppState;
use crate::api::ApiError;
use crate::config::LimitsConfig;
use crate::transport::client_addr::client_ip;

/// Open connections per IP address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The connection gates of one hub.
pub(crate) struct Admission {
    per_ip: PerIp,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

/// An admitted connection's claim on the limits.
#[derive(Debug)]
pub(crate) struct Ticket {
    _slot: OwnedSemaphorePermit,
    ip: Option<(PerIp, IpAddr)>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((counts, ip)) = &self.ip {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// Whether the lists let `ip` in: deny wins over allow, and an empty allow
/// list allows everyone.
pub(crate) fn check_address(limits: &LimitsConfig, ip: IpAddr) -> Result<(), ApiError> {
    if limits.deny_ips.iter().any(|net| net.contains(&ip)) {
        return Err(ApiError::Forbidden(format!("address {ip} is denied")));
    }
    if !limits.allow_ips.is_empty() && !limits.allow_ips.iter().any(|net| net.contains(&ip)) {
        return Err(ApiError::Forbidden(format!("address {ip} is not allowed")));
    }
    Ok(())
}

/// Middleware on every route: refuses requests from addresses the IP lists
/// exclude with 403 `forbidden`. Requests without a known peer address (an
/// embedding app that serves without connect info) pass.
pub(crate) async fn address_gate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let limits = &state.config().limits;
    if !(limits.deny_ips.is_empty() && limits.allow_ips.is_empty()) {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            check_address(
                limits,
                client_ip(peer.ip(), request.headers(), &limits.trusted_proxies),
            )?;
        }
    }
    Ok(next.run(request).await)
}

impl Admission {
    pub(crate) fn new(limits: &LimitsConfig) -> Admission {
        let rate = NonZeroU32::new(limits.connections_per_ip_per_sec).map(|per_sec| {
            let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
        });
        Admission { per_ip: Arc::default(), rate }
    }

    /// Checks every gate; `user` is known before the upgrade unless the
    /// connection will authenticate with an `auth` frame.
    pub(crate) fn admit(
        &self,
        state: &AppState,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        user: Option<&str>,
    ) -> Result<Ticket, ApiError> {
        let limits = &state.config().limits;
        if !limits.allowed_origins.is_empty() {
            // Native clients send no Origin; browsers always do.
            if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
                if !limits.allowed_origins.iter().any(|allowed| allowed == origin) {
                    return Err(ApiError::Forbidden(format!("origin `{origin}` is not allowed")));
                }
            }
        }
        // The address lists were already applied to this request by
        // `address_gate`, like to every route.
        let ip = peer.map(|p| client_ip(p.ip(), headers, &limits.trusted_proxies));
        if state.is_shutting_down() {
            return Err(ApiError::ShuttingDown);
        }
        if let (Some(ip), Some(rate)) = (ip, &self.rate) {
            if rate.check_key(&ip).is_err() {
                return Err(ApiError::TooMany(format!(
                    "too many new connections from {ip}; slow down"
                )));
            }
        }
        if let Some(user) = user {
            if state.hub().connections_of(user) >= limits.max_connections_per_user {
                return Err(ApiError::TooMany(format!(
                    "user `{user}` already holds {} connections",
                    limits.max_connections_per_user
                )));
            }
        }
        let Ok(slot) = state.slots().clone().try_acquire_owned() else {
            tracing::warn!("connection refused: max_connections reached");
            return Err(ApiError::TooManyConnections);
        };
        let ip = match ip {
            Some(ip) if limits.max_connections_per_ip > 0 => {
                let mut counts = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                let count = counts.entry(ip).or_insert(0);
                if *count >= limits.max_connections_per_ip {
                    return Err(ApiError::TooMany(format!(
                        "{ip} already holds {} connections",
                        limits.max_connections_per_ip
                    )));
                }
                *count += 1;
                Some((self.per_ip.clone(), ip))
            }
            _ => None,
        };
        Ok(Ticket { _slot: slot, ip })
    }

    /// Forgets rate-limit state of addresses that have been quiet.
    pub(crate) fn sweep(&self) {
        if let Some(rate) = &self.rate {
            rate.retain_recent();
        }
    }
}
