//! Bytes to frames: how connections reach the hub. The listening socket and
//! accept loop, the WebSocket upgrade and what happens before a session
//! exists, and Server-Sent Events. Nothing here decides who may do what
//! (that is `policy`) or what a connection is (`session`): transports only
//! frame.

pub(crate) mod listen;
pub(crate) mod pooled_read;
pub(crate) mod sse;
pub(crate) mod upgrade;
pub(crate) mod ws;
