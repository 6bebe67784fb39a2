//! Bytes to frames: how connections reach the hub. The listening socket and
//! accept loop, the WebSocket upgrade, Server-Sent Events, the client's
//! address behind trusted proxies. Nothing here decides
//! who may do what (that is `policy`) or where a message goes (`hub`).

pub(crate) mod client_addr;
pub(crate) mod listen;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod memory_socket;
pub(crate) mod pooled_read;
pub(crate) mod sse;
pub(crate) mod upgrade;
pub(crate) mod ws;
