//! [`Admission`]: who may open a connection (WebSocket or SSE), decided
//! before any connection state exists: allowed browser origins, new
//! connections per second and concurrent connections per IP address (the
//! client's, behind trusted proxies: `client_addr.rs`), connections per
//! user, and the hub's total.
//!
//! The IP allow and deny lists are wider: the API's address gate applies
//! them ([`check_address`]) to every request on every route (`/ws`, `/sse`,
//! `/api/…`, `/health`), so a denied address reaches nothing, the admin
//! API included.
//!
//! An admitted connection holds a [`Ticket`]; dropping it gives back the
//! slots it took.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::{HeaderMap, header::ORIGIN};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Hub;
use crate::config::LimitsConfig;
use crate::policy::client_addr::client_ip;

/// Open connections per IP address.
type PerIp = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Why a connection (or, for the address lists, any request) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The browser origin or the address is not allowed (403 `forbidden`).
    #[error("{0}")]
    Forbidden(String),
    /// Too many connections of this user or address, or too fast (429).
    #[error("{0}")]
    TooMany(String),
    /// `limits.max_connections` is reached (503 `too_many_connections`).
    #[error("the hub is at its connection limit")]
    Full,
    /// The hub is shutting down (503 `shutting_down`).
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// The connection gates of one hub.
pub(crate) struct Admission {
    limits: LimitsConfig,
    per_ip: PerIp,
    rate: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// One permit per open connection: `limits.max_connections`.
    slots: Arc<Semaphore>,
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
pub(crate) fn check_address(limits: &LimitsConfig, ip: IpAddr) -> Result<(), Refused> {
    if limits.deny_ips.iter().any(|net| net.contains(&ip)) {
        return Err(Refused::Forbidden(format!("address {ip} is denied")));
    }
    if !limits.allow_ips.is_empty() && !limits.allow_ips.iter().any(|net| net.contains(&ip)) {
        return Err(Refused::Forbidden(format!("address {ip} is not allowed")));
    }
    Ok(())
}

impl Admission {
    pub(crate) fn new(limits: &LimitsConfig) -> Admission {
        let rate = NonZeroU32::new(limits.connections_per_ip_per_sec).map(|per_sec| {
            let burst = per_sec.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
        });
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        Admission { limits: limits.clone(), per_ip: Arc::default(), rate, slots }
    }

    /// Checks every gate; `user` is known before the upgrade unless the
    /// connection will authenticate with an `auth` frame. `hub` says how
    /// many connections the user holds; `stopping` that the node shuts down.
    pub(crate) fn admit(
        &self,
        hub: &Hub,
        stopping: bool,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
        user: Option<&str>,
    ) -> Result<Ticket, Refused> {
        let limits = &self.limits;
        if !limits.allowed_origins.is_empty() {
            // Native clients send no Origin; browsers always do.
            if let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
                if !limits.allowed_origins.iter().any(|allowed| allowed == origin) {
                    return Err(Refused::Forbidden(format!("origin `{origin}` is not allowed")));
                }
            }
        }
        // The address lists were already applied to this request by the
        // address gate, like to every route.
        let ip = peer.map(|p| client_ip(p.ip(), headers, &limits.trusted_proxies));
        if stopping {
            return Err(Refused::ShuttingDown);
        }
        if let (Some(ip), Some(rate)) = (ip, &self.rate) {
            if rate.check_key(&ip).is_err() {
                return Err(Refused::TooMany(format!(
                    "too many new connections from {ip}; slow down"
                )));
            }
        }
        if let Some(user) = user {
            if hub.connections_of(user) >= limits.max_connections_per_user {
                return Err(Refused::TooMany(format!(
                    "user `{user}` already holds {} connections",
                    limits.max_connections_per_user
                )));
            }
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: max_connections reached");
            return Err(Refused::Full);
        };
        let ip = match ip {
            Some(ip) if limits.max_connections_per_ip > 0 => {
                let mut counts = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
                let count = counts.entry(ip).or_insert(0);
                if *count >= limits.max_connections_per_ip {
                    return Err(Refused::TooMany(format!(
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
