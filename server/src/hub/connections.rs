//! What the hub knows of each connection besides its queue, for operators:
//! [`ConnectionInfo`] (session id, transport, address, user agent, connect
//! time), listed by `GET /api/connections` and used to reach or close one
//! session (`POST /api/connections/{session}/send|disconnect`).
//!
//! Kept in the registry beside the connection's queue, boxed, so an idle
//! connection pays one pointer in the registry and one small allocation.
//! User agents repeat across connections (a few browsers, one SDK build):
//! they are interned, so a thousand connections of one browser share one
//! string.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

/// How a connection reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// A WebSocket (`GET /ws`).
    Websocket,
    /// A Server-Sent Events feed (`GET /sse`).
    Sse,
}

/// One connection as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectionInfo {
    /// The session id clients see in `welcome` (32 hex digits).
    pub(crate) session: uuid::Uuid,
    /// How it is connected.
    pub(crate) transport: Transport,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub(crate) address: IpAddr,
    /// The `User-Agent` of its request, when it sent one.
    pub(crate) user_agent: Option<Arc<str>>,
    /// When it connected, in Unix milliseconds.
    pub(crate) connected_at: u64,
}

impl ConnectionInfo {
    /// A connection of the unit tests.
    #[cfg(test)]
    pub(crate) fn test() -> ConnectionInfo {
        ConnectionInfo {
            session: uuid::Uuid::new_v4(),
            transport: Transport::Websocket,
            address: IpAddr::from([127, 0, 0, 1]),
            user_agent: None,
            connected_at: 0,
        }
    }
}

/// One connection as `GET /api/connections` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionSummary {
    /// The session id (as in its `welcome`).
    pub session: String,
    /// Its user.
    pub user: String,
    /// How it is connected.
    pub transport: Transport,
    /// The client's address.
    pub address: String,
    /// Its `User-Agent`, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When it connected, in Unix milliseconds.
    pub connected_at: u64,
    /// The rooms it is in, sorted.
    pub rooms: Vec<String>,
    /// In multi-node mode, the node it is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl ConnectionSummary {
    pub(crate) fn new(
        session: String,
        user: &str,
        info: &ConnectionInfo,
        rooms: Vec<String>,
    ) -> ConnectionSummary {
        ConnectionSummary {
            session,
            user: user.to_owned(),
            transport: info.transport,
            address: info.address.to_string(),
            user_agent: info.user_agent.as_deref().map(str::to_owned),
            connected_at: info.connected_at,
            rooms,
            node: None,
        }
    }
}

/// Distinct user agents kept for sharing; past this many, new ones are
/// stored per connection (a client that varies its agent cannot grow the
/// table).
const MAX_INTERNED: usize = 1024;
/// Longer user agents are cut to this many bytes.
const MAX_AGENT_BYTES: usize = 256;

/// The shared copy of `agent` (cut to [`MAX_AGENT_BYTES`]).
pub(crate) fn intern_agent(agent: &str) -> Arc<str> {
    let mut end = agent.len().min(MAX_AGENT_BYTES);
    while !agent.is_char_boundary(end) {
        end -= 1;
    }
    let agent = &agent[..end];
    static TABLE: OnceLock<Mutex<HashMap<Box<str>, Arc<str>>>> = OnceLock::new();
    let mut table =
        TABLE.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(shared) = table.get(agent) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(agent);
    if table.len() < MAX_INTERNED {
        table.insert(agent.into(), shared.clone());
    }
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agents_are_shared_and_cut() {
        let a = intern_agent("Mozilla/5.0 (X11; Linux x86_64)");
        let b = intern_agent("Mozilla/5.0 (X11; Linux x86_64)");
        assert!(Arc::ptr_eq(&a, &b));
        let long = "é".repeat(300);
        assert!(intern_agent(&long).len() <= MAX_AGENT_BYTES);
    }
}
