//! `[limits]` and `[heartbeat]`: what one connection, one address, one
//! user and the whole hub may hold, and how dead connections are found.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The hub pings every connection every `interval_ms` and closes one it has
/// heard nothing from (no frame, no pong) for `timeout_ms`, with close code
/// 4001. The check runs on each ping tick, so a dead connection is closed
/// between `timeout_ms` and `timeout_ms + interval_ms` after its last frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Ping interval in milliseconds (default 25000).
    pub interval_ms: u64,
    /// Silence after which a connection is closed, in milliseconds (default 60000).
    pub timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig { interval_ms: 25_000, timeout_ms: 60_000 }
    }
}

impl HeartbeatConfig {
    /// The ping interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The silence timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Limits that keep one client from hurting the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest WebSocket message (and HTTP API body) accepted, in bytes
    /// (default 524288). A larger WebSocket message closes with 1009.
    pub max_message_bytes: usize,
    /// Most concurrent WebSocket connections (default 10000); the next upgrade
    /// is refused with HTTP 503 before it happens.
    pub max_connections: usize,
    /// Most frames waiting to be written to one connection (default 1024).
    pub outbound_queue_messages: usize,
    /// Most bytes waiting to be written to one connection (default 16 MiB).
    /// Past either queue limit the connection is a slow consumer and is
    /// closed with 4000, so the hub's memory stays bounded.
    pub outbound_queue_bytes: usize,
    /// tungstenite's read buffer per connection, in bytes (default 128, at
    /// least 64), held for the connection's life. Reads from the socket go
    /// through a per-thread buffer (16 KiB, `transport/pooled_read.rs`), so
    /// this is no longer the most one system call takes, only how much
    /// tungstenite copies at a time from what was read: a larger value costs
    /// that much per idle connection for slightly fewer copies of large
    /// messages. A connection that receives a larger message keeps a buffer
    /// of that message's size.
    pub read_buffer_bytes: usize,
    /// How many bytes of control frames (ping, pong, close) tungstenite
    /// gathers before writing them (default 8192). Text frames never go
    /// through this buffer: they are written from the frame shared by every
    /// recipient, several in one vectored write (`session/frames.rs`), so a
    /// connection keeps no write buffer sized by its largest burst or
    /// message. Kept for compatibility; it costs at most a control frame's
    /// size per connection.
    pub write_buffer_bytes: usize,
    /// Most connections one user may hold at once (default 100); the next
    /// upgrade gets HTTP 429.
    pub max_connections_per_user: usize,
    /// Most concurrent connections from one IP address (default 0: no limit,
    /// since behind a reverse proxy every client shares the proxy's address;
    /// set it when clients connect directly, or list the proxies in
    /// `trusted_proxies`).
    pub max_connections_per_ip: usize,
    /// Most new connections per second from one IP address, with bursts of
    /// twice that (default 0: no limit, for the same reason); HTTP 429 past it.
    pub connections_per_ip_per_sec: u32,
    /// Most rooms one connection may be in (default 100); error 202 past it.
    pub max_rooms_per_connection: usize,
    /// Frames per second one connection may send, with bursts of twice that
    /// (default 100). An excess frame is refused with error 203; a connection
    /// refused `rate_abuse_threshold` times within 10 seconds is closed with 4002.
    pub messages_per_sec: u32,
    /// See `messages_per_sec` (default 200).
    pub rate_abuse_threshold: u32,
    /// How long a client has to send its HTTP request headers, in
    /// milliseconds (default 10000); a slower one is disconnected (slowloris).
    pub handshake_timeout_ms: u64,
    /// Deepest JSON nesting accepted in a frame (default 32); error 102 past it.
    pub max_json_depth: usize,
    /// Browser origins allowed to open connections (`Origin` header), e.g.
    /// `["https://app.example.com"]`; empty allows any (default). Others get 403.
    pub allowed_origins: Vec<String>,
    /// When not empty, only these networks (CIDR) may connect; others get 403.
    pub allow_ips: Vec<ipnet::IpNet>,
    /// These networks (CIDR) may not connect (403), even if allowed above.
    pub deny_ips: Vec<ipnet::IpNet>,
    /// Reverse proxies and load balancers (CIDR) whose `X-Forwarded-For`
    /// header names the client (default none: the header is ignored). The
    /// per-address limits and the IP lists then apply to that client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_message_bytes: switchboard_protocol::DEFAULT_MAX_MESSAGE_BYTES,
            max_connections: 10_000,
            outbound_queue_messages: 1_024,
            outbound_queue_bytes: 16 * 1024 * 1024,
            read_buffer_bytes: 128,
            write_buffer_bytes: 8 * 1024,
            max_connections_per_user: 100,
            max_connections_per_ip: 0,
            connections_per_ip_per_sec: 0,
            max_rooms_per_connection: 100,
            messages_per_sec: 100,
            rate_abuse_threshold: 200,
            max_json_depth: 32,
            handshake_timeout_ms: 10_000,
            allowed_origins: Vec::new(),
            allow_ips: Vec::new(),
            deny_ips: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}
