//! The hub's configuration: every tunable with its default, loaded from TOML.
//!
//! [`Config::default()`] is what `switchboard` runs with when given nothing:
//! it serves on `127.0.0.1:8080`. The binary layers a TOML file, then
//! `SWITCHBOARD_…` environment variables, then command-line flags on top
//! (see [`crate::cli`]); an embedding application builds a [`Config`] itself.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::error::ConfigError;
use crate::patterns::RoomPatterns;

/// Everything the hub can be told. Every field has a default, so a TOML file
/// only names what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the binary listens on (default `127.0.0.1:8080`). Ignored by
    /// [`crate::run`], which is handed a bound listener.
    pub bind: SocketAddr,
    /// How many connections the kernel may hold completed but not yet
    /// accepted (the `listen(2)` backlog, default 4096; Linux caps it at
    /// `net.core.somaxconn`). A reconnect storm after a restart arrives all at
    /// once: a short queue drops SYNs, and those clients wait for a 1 s, then
    /// 3 s retransmit. Used by [`crate::bind`], so by the binary.
    pub backlog: u32,
    /// The `from` of messages sent through the HTTP API (default `"server"`).
    pub server_name: String,
    /// Heartbeat timing.
    pub heartbeat: HeartbeatConfig,
    /// Size and count limits.
    pub limits: LimitsConfig,
    /// Room rules.
    pub rooms: RoomsConfig,
    /// How long and how much history streams keep.
    pub history: HistoryConfig,
    /// Delivery guarantees that are not history.
    pub delivery: DeliveryConfig,
    /// Who connections are.
    pub auth: AuthConfig,
    /// The HTTP admin API.
    pub api: ApiConfig,
    /// Who may do what in which room.
    pub permissions: PermissionsConfig,
    /// How long shutdown waits for connections to close, in milliseconds (default 5000).
    pub shutdown_grace_ms: u64,
    /// Multi-node mode: several hubs sharing one Redis behave as one hub.
    /// Off (a single node, nothing shared) unless `redis.url` is set.
    pub redis: RedisConfig,
    /// The application's hooks ([`crate::hooks`]).
    pub hooks: HooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            backlog: 4096,
            server_name: "server".to_owned(),
            heartbeat: HeartbeatConfig::default(),
            limits: LimitsConfig::default(),
            rooms: RoomsConfig::default(),
            history: HistoryConfig::default(),
            delivery: DeliveryConfig::default(),
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            permissions: PermissionsConfig::default(),
            shutdown_grace_ms: 5_000,
            redis: RedisConfig::default(),
            hooks: HooksConfig::default(),
        }
    }
}

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
    /// How many bytes of frames a connection gathers before writing them to
    /// its socket (default 8192; the frames queued at one wake-up are always
    /// written together at its end). The buffer keeps its largest size for
    /// the connection's life: tungstenite's own 128 KiB let every connection
    /// that saw a burst of large messages hold that much.
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

/// Rules for rooms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Whether a connection must have joined a room to publish to it
    /// (default `true`; refused with error code 201 otherwise).
    pub publish_requires_join: bool,
    /// How many users a `join` ack lists at most (default 100); the ack also
    /// carries the room's `member_count` and a `cursor` for the rest, read
    /// with `members` requests. Keeps a join's cost independent of the room's
    /// size.
    pub join_ack_members: usize,
    /// Above this many users a room is large (default 500) and stays large
    /// until it empties: its joins and leaves are no longer announced one by
    /// one (N²/2 frames to fill a room of N) but as an `occupancy` count.
    pub large_room: usize,
    /// How often a large room whose count changed sends `occupancy`, in
    /// milliseconds (default 1000).
    pub occupancy_interval_ms: u64,
    /// Managed rooms that exist from the start, whether or not anyone is in
    /// them, and cannot be deleted (default none).
    pub default_rooms: Vec<String>,
    /// The most managed rooms (default 0: no limit); creating one more is
    /// refused with 409 `room_limit`.
    pub max_rooms: usize,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            publish_requires_join: true,
            join_ack_members: 100,
            large_room: 500,
            occupancy_interval_ms: 1_000,
            default_rooms: Vec::new(),
            max_rooms: 0,
        }
    }
}

/// History kept per stream: the first rule whose `pattern` matches a room
/// name applies, else `default`; `inbox` applies to every user's inbox.
///
/// ```toml
/// [history.default]
/// size = 300
/// ttl_secs = 300
///
/// [[history.rules]]
/// pattern = "chat:*"
/// size = 1000
/// ttl_secs = 86400
///
/// [[history.rules]]
/// pattern = "ticker:*"
/// size = 0          # live only
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Rules by room-name pattern (`*` matches any run of characters, `?`
    /// one character); the first match wins.
    pub rules: Vec<HistoryRule>,
    /// For rooms no rule matches (default: 300 messages, 5 minutes, 1 MiB).
    pub default: HistoryLimits,
    /// For every user's inbox of private messages (default: 100 messages,
    /// 24 hours, 1 MiB): what an offline user finds on their next connection.
    pub inbox: HistoryLimits,
    /// Most messages one history read returns (default 1000).
    pub max_page: usize,
    /// Where history lives: `memory` (default; lost on restart, when every
    /// stream gets a new epoch) or `disk` (kept across restarts in `path`).
    pub store: StoreKind,
    /// The database file of the `disk` store (default `switchboard-data/history.redb`).
    pub path: std::path::PathBuf,
}

/// Which history store a hub uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process's memory.
    #[default]
    Memory,
    /// In an embedded database file.
    Disk,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            rules: Vec::new(),
            default: HistoryLimits { size: 300, ttl_secs: 300, max_bytes: 1024 * 1024 },
            inbox: HistoryLimits { size: 100, ttl_secs: 24 * 3600, max_bytes: 1024 * 1024 },
            max_page: 1_000,
            store: StoreKind::Memory,
            path: std::path::PathBuf::from("switchboard-data/history.redb"),
        }
    }
}

impl HistoryConfig {
    /// The per-room rules, compiled; rooms no rule matches use `default`.
    pub fn patterns(&self) -> RoomPatterns<HistoryLimits> {
        RoomPatterns::new(
            self.rules.iter().map(|rule| (rule.pattern.as_str(), rule.limits.clone())),
        )
    }
}

/// History for the rooms a pattern matches. (Unknown keys are refused by
/// [`HistoryLimits`]; serde cannot also check them here, beside `flatten`.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRule {
    /// Room-name pattern, for example `chat:*`.
    pub pattern: String,
    /// The limits.
    #[serde(flatten)]
    pub limits: HistoryLimits,
}

/// How much of a stream is kept. A message goes when any limit is passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryLimits {
    /// Most messages kept; 0 keeps none (live delivery only).
    pub size: usize,
    /// Oldest message kept, in seconds.
    pub ttl_secs: u64,
    /// Most bytes of messages kept.
    pub max_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryConfig::default().default
    }
}

/// Idempotent requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How long the hub remembers a user's request ids, in seconds
    /// (default 300): a `publish` or `send` repeating an id within it gets
    /// the original answer and is not carried out twice.
    pub id_window_secs: u64,
    /// Most ids remembered per user (default 10000); the oldest go first.
    pub max_ids_per_user: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { id_window_secs: 300, max_ids_per_user: 10_000 }
    }
}

/// How connections prove who they are.
///
/// With `jwt_secret` and/or `jwt_public_key_pem` set, every connection needs
/// a JWT (HS256 with the secret; RS256 or ES256 with the public key) whose
/// `sub` is the user id, and `?user_id=` is refused. Without either, the hub
/// trusts `?user_id=` only when `insecure` is true (the default, for
/// development: the hub then warns at start and `/health` says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Trust `?user_id=` when no key is configured (default true).
    pub insecure: bool,
    /// The shared secret for HS256 tokens.
    pub jwt_secret: Option<String>,
    /// A PEM public key (RSA or EC) for RS256 or ES256 tokens.
    pub jwt_public_key_pem: Option<String>,
    /// How long a connection without a token in its URL or headers has to
    /// send an `auth` frame, in milliseconds (default 5000); then it is
    /// closed with 4500.
    pub auth_timeout_ms: u64,
    /// The token claim listing the room patterns a user may enter when a
    /// permission says `claim` (default `rooms`).
    pub rooms_claim: String,
    /// How long before a token expires the hub asks for a new one, in
    /// milliseconds (default 30000).
    pub refresh_before_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            insecure: true,
            jwt_secret: None,
            jwt_public_key_pem: None,
            auth_timeout_ms: 5_000,
            rooms_claim: "rooms".to_owned(),
            refresh_before_ms: 30_000,
        }
    }
}

impl AuthConfig {
    /// Whether tokens are required.
    pub fn uses_tokens(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key_pem.is_some()
    }
}

/// Multi-node mode on Redis (7.0 or later). With `url` set, streams
/// (offsets, history, inboxes), fan-out, presence and request ids live in
/// Redis, shared by every hub pointed at it; see `docs/SCALING.md`.
///
/// ```toml
/// [redis]
/// url = "redis://127.0.0.1:6379"
/// prefix = "chat-prod"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; none for a single node
    /// (the default).
    pub url: Option<String>,
    /// Starts every key and channel the hub uses (default `"switchboard"`),
    /// so several deployments can share one Redis server.
    pub prefix: String,
    /// How long one Redis request may take before the client's request
    /// fails with `unavailable` (default 1000 ms). Also the connect timeout.
    pub timeout_ms: u64,
    /// A node that has not refreshed its heartbeat for this long is dead:
    /// another node removes its presence entries and announces its users'
    /// leaves (default 10,000 ms; heartbeats go every third of it).
    pub node_ttl_ms: u64,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            prefix: "switchboard".to_owned(),
            timeout_ms: 1_000,
            node_ttl_ms: 10_000,
        }
    }
}

/// How the application's hooks ([`crate::hooks`]) are called, and the HTTP
/// webhooks that answer them for a backend in any language (`docs/HOOKS.md`):
///
/// ```toml
/// [hooks]
/// secret = "shared-with-the-backend"   # X-Switchboard-Signature: sha256=<HMAC of the body>
///
/// [hooks.publish]
/// url = "http://app.internal/hooks/publish"
/// rooms = ["chat:*"]                   # only these rooms; every room when empty
/// on_error = "refuse"                  # or "allow" while the backend is down
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HooksConfig {
    /// How long one hook call may take before its action is refused with
    /// error 302 `hook_failed` (close 1011 at connect), default 1000 ms.
    pub timeout_ms: u64,
    /// A secret shared with the webhook backend: each request then carries
    /// `X-Switchboard-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    pub secret: Option<String>,
    /// Webhook for connections, before `welcome`.
    pub connect: Option<WebhookConfig>,
    /// Webhook for joins.
    pub join: Option<WebhookConfig>,
    /// Webhook for client publishes.
    pub publish: Option<WebhookConfig>,
    /// Webhook for client-to-client sends.
    pub send: Option<WebhookConfig>,
    /// Webhook answering client `rpc` calls.
    pub rpc: Option<WebhookConfig>,
    /// Webhook told of ended connections (its answer is not awaited for
    /// anything).
    pub disconnect: Option<WebhookConfig>,
    /// Events after the fact (messages published and sent, users online
    /// and offline), delivered in batches with retries.
    pub events: Option<EventsConfig>,
}

/// Where events after the fact go, and how many wait while the backend is
/// down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// `http://…`: receives `POST {"events": [...]}`, signed like the hooks.
    pub url: String,
    /// Which events: `published`, `sent`, `online`, `offline` (default all).
    pub kinds: Vec<String>,
    /// Events held while the backend is down (default 10,000); past it the
    /// oldest are dropped, logged and counted.
    pub queue: usize,
    /// Most events in one request (default 100).
    pub batch: usize,
    /// One request's timeout, in milliseconds (default 2000).
    pub timeout_ms: u64,
    /// The longest wait between retries, in milliseconds (default 30,000).
    pub retry_max_ms: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            url: String::new(),
            kinds: ["published", "sent", "online", "offline"].map(str::to_owned).to_vec(),
            queue: 10_000,
            batch: 100,
            timeout_ms: 2_000,
            retry_max_ms: 30_000,
        }
    }
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            timeout_ms: 1_000,
            secret: None,
            connect: None,
            join: None,
            publish: None,
            send: None,
            rpc: None,
            disconnect: None,
            events: None,
        }
    }
}

impl HooksConfig {
    /// Whether any webhook is configured.
    pub fn has_webhooks(&self) -> bool {
        [&self.connect, &self.join, &self.publish, &self.send, &self.rpc, &self.disconnect]
            .iter()
            .any(|hook| hook.is_some())
    }
}

/// One webhook: where the hub POSTs, for which rooms, and what a backend
/// that fails means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://…` (plain HTTP: the backend is expected next to the hub).
    pub url: String,
    /// For `join` and `publish`: only rooms matching these patterns go to
    /// the backend, the others are allowed; every room when empty.
    pub rooms: Vec<String>,
    /// What a backend that is down, answers an error status or does not
    /// answer in time means: `refuse` the action (error 302, the default)
    /// or `allow` it.
    pub on_error: OnError,
    /// How long the backend may take, in milliseconds (default 800; must be
    /// below `hooks.timeout_ms`).
    pub timeout_ms: u64,
    /// Requests to this backend in flight at once (default 256); more wait,
    /// within the timeout.
    pub max_in_flight: usize,
    /// For `connect`: the request headers passed on in the body's
    /// `headers`, by name (case does not matter); none by default, so that
    /// cookies and credentials reach the backend only when listed.
    pub headers: Vec<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            rooms: Vec::new(),
            on_error: OnError::Refuse,
            timeout_ms: 800,
            max_in_flight: 256,
            headers: Vec::new(),
        }
    }
}

/// What a failed webhook means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Refuse the action (error 302 `hook_failed`; close 1011 at connect).
    Refuse,
    /// Carry the action out as if the backend had allowed it.
    Allow,
}

/// The HTTP admin API.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// When set, every `/api/…` request needs `Authorization: Bearer <key>`
    /// (401 otherwise). `/health` stays open. The binary refuses to listen
    /// on a non-loopback address without one.
    pub key: Option<String>,
    /// A second address serving only `GET /metrics`, without the key (for
    /// a Prometheus on a private network, e.g. `127.0.0.1:9100`). `/metrics`
    /// on the main address stays behind the key.
    pub metrics_bind: Option<std::net::SocketAddr>,
}

/// Who may do what in which room: the first rule whose pattern matches a
/// room applies; rooms no rule matches allow anything to anyone.
///
/// ```toml
/// [[permissions.rooms]]
/// pattern = "private:*"
/// join = "claim"      # the token's `rooms` claim must match the room
/// publish = "claim"
/// history = "claim"
/// presence = "claim"
///
/// [[permissions.rooms]]
/// pattern = "announcements"
/// publish = "server"  # only the HTTP API may publish
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PermissionsConfig {
    /// Rules by room-name pattern.
    pub rooms: Vec<RoomRule>,
    /// Whether clients may `send` private messages to each other (default
    /// `anyone`; `server` leaves private messages to the HTTP API).
    pub send: Access,
}

impl Default for PermissionsConfig {
    fn default() -> Self {
        PermissionsConfig { rooms: Vec::new(), send: Access::Anyone }
    }
}

/// The permissions of the rooms a pattern matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRule {
    /// Room-name pattern (`*`, `?`).
    pub pattern: String,
    /// Who may join (and so receive messages).
    #[serde(default)]
    pub join: Access,
    /// Who may publish.
    #[serde(default)]
    pub publish: Access,
    /// Who may read history (and so resume with `since`).
    #[serde(default)]
    pub history: Access,
    /// Who sees presence (join/leave events and the join ack's members).
    #[serde(default)]
    pub presence: Access,
}

/// Who an action is open to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Any connection.
    #[default]
    Anyone,
    /// Connections whose token's rooms claim matches the room.
    Claim,
    /// No connection; only the HTTP API.
    Server,
}

impl Config {
    /// Parses a TOML document; fields it does not name keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text)
    }

    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError::Invalid(message.to_owned()));
        if self.heartbeat.interval_ms == 0 {
            return invalid("heartbeat.interval_ms must be greater than 0");
        }
        if self.backlog == 0 {
            return invalid("backlog must be greater than 0");
        }
        if self.rooms.large_room == 0 || self.rooms.occupancy_interval_ms == 0 {
            return invalid(
                "rooms.large_room and rooms.occupancy_interval_ms must be greater than 0",
            );
        }
        for room in &self.rooms.default_rooms {
            if let Err(err) = switchboard_protocol::validate_name(room) {
                return Err(ConfigError::Invalid(format!(
                    "rooms.default_rooms: `{room}` is not a room name: {err}"
                )));
            }
        }
        if self.heartbeat.timeout_ms <= self.heartbeat.interval_ms {
            return invalid("heartbeat.timeout_ms must be greater than heartbeat.interval_ms");
        }
        if self.limits.max_message_bytes < 1024 {
            return invalid("limits.max_message_bytes must be at least 1024");
        }
        if self.limits.max_connections == 0 {
            return invalid("limits.max_connections must be greater than 0");
        }
        if self.limits.outbound_queue_messages == 0 {
            return invalid("limits.outbound_queue_messages must be greater than 0");
        }
        if self.limits.outbound_queue_bytes < self.limits.max_message_bytes {
            return invalid(
                "limits.outbound_queue_bytes must be at least limits.max_message_bytes",
            );
        }
        if self.limits.read_buffer_bytes < 64 {
            return invalid("limits.read_buffer_bytes must be at least 64");
        }
        if !self.auth.uses_tokens() && !self.auth.insecure {
            return invalid(
                "auth: set auth.jwt_secret or auth.jwt_public_key_pem, or auth.insecure = true",
            );
        }
        if self.limits.messages_per_sec == 0 || self.limits.max_json_depth == 0 {
            return invalid(
                "limits.messages_per_sec and limits.max_json_depth must be greater than 0",
            );
        }
        if self.history.max_page == 0 {
            return invalid("history.max_page must be greater than 0");
        }
        if self.server_name.is_empty() {
            return invalid("server_name must not be empty");
        }
        if self.hooks.timeout_ms == 0 {
            return invalid("hooks.timeout_ms must be greater than 0");
        }
        let hooks = &self.hooks;
        for (name, hook) in [
            ("connect", &hooks.connect),
            ("join", &hooks.join),
            ("publish", &hooks.publish),
            ("send", &hooks.send),
            ("rpc", &hooks.rpc),
            ("disconnect", &hooks.disconnect),
        ] {
            let Some(hook) = hook else { continue };
            if !hook.url.starts_with("http://") {
                return Err(ConfigError::Invalid(format!(
                    "hooks.{name}.url must start with http://"
                )));
            }
            if hook.timeout_ms == 0 || hook.timeout_ms >= hooks.timeout_ms {
                return Err(ConfigError::Invalid(format!(
                    "hooks.{name}.timeout_ms must be above 0 and below hooks.timeout_ms"
                )));
            }
            if hook.max_in_flight == 0 {
                return Err(ConfigError::Invalid(format!(
                    "hooks.{name}.max_in_flight must be above 0"
                )));
            }
        }
        if let Some(events) = &hooks.events {
            if !events.url.starts_with("http://") {
                return invalid("hooks.events.url must start with http://");
            }
            if events.queue == 0 || events.batch == 0 || events.timeout_ms == 0 {
                return invalid("hooks.events.queue, batch and timeout_ms must be above 0");
            }
            let known = ["published", "sent", "online", "offline"];
            if let Some(kind) = events.kinds.iter().find(|k| !known.contains(&k.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "hooks.events.kinds: unknown kind `{kind}` (published, sent, online, offline)"
                )));
            }
        }
        if let Some(url) = &self.redis.url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return invalid("redis.url must start with redis:// (or rediss://)");
            }
            if self.redis.prefix.is_empty() || self.redis.prefix.chars().any(char::is_control) {
                return invalid("redis.prefix must be non-empty, without control characters");
            }
            if self.redis.timeout_ms == 0 || self.redis.node_ttl_ms < 3 * 100 {
                return invalid("redis.timeout_ms must be > 0 and redis.node_ttl_ms at least 300");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_on_localhost_8080() {
        let config = Config::default();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.limits.max_message_bytes, 512 * 1024);
        config.validate().unwrap();
    }

    #[test]
    fn toml_overrides_only_what_it_names() {
        let config = Config::from_toml(
            "bind = \"0.0.0.0:9000\"\n[heartbeat]\ninterval_ms = 1000\ntimeout_ms = 3000\n",
        )
        .unwrap();
        assert_eq!(config.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(config.heartbeat.interval_ms, 1000);
        assert_eq!(config.limits, LimitsConfig::default());
    }

    #[test]
    fn history_rules_match_room_patterns_first_match_wins() {
        let config = Config::from_toml(
            "[[history.rules]]\npattern = \"chat:*\"\nsize = 1000\nttl_secs = 86400\n\
             [[history.rules]]\npattern = \"ticker:*\"\nsize = 0\nttl_secs = 0\n",
        )
        .unwrap();
        let rules = config.history.patterns();
        let for_room = |room| rules.first(room).unwrap_or(&config.history.default);
        assert_eq!(for_room("chat:fr").size, 1000);
        assert_eq!(for_room("chat:fr").max_bytes, 1024 * 1024, "unnamed limits default");
        assert_eq!(for_room("ticker:ACME").size, 0);
        assert_eq!(for_room("general").size, 300);
    }

    #[test]
    fn the_readme_sample_config_is_valid() {
        let readme = include_str!("../../README.md");
        let start = readme.find("# hub.toml").expect("the README has a sample hub.toml");
        let end = start + readme[start..].find("```").expect("the sample ends");
        let config = Config::from_toml(&readme[start..end]).expect("the sample parses");
        let rules = config.history.patterns();
        assert_eq!(rules.first("chat:x").map(|l| l.size), Some(1000));
        assert_eq!(rules.first("ticker:x").map(|l| l.size), Some(0));
    }

    #[test]
    fn redis_is_off_by_default_and_checked_when_on() {
        assert_eq!(Config::default().redis.url, None);
        let config =
            Config::from_toml("[redis]\nurl = \"redis://10.0.0.5:6379/2\"\nprefix = \"prod\"\n")
                .unwrap();
        assert_eq!(config.redis.url.as_deref(), Some("redis://10.0.0.5:6379/2"));
        assert_eq!((config.redis.prefix.as_str(), config.redis.timeout_ms), ("prod", 1_000));
        for bad in [
            "[redis]\nurl = \"http://10.0.0.5\"\n",
            "[redis]\nurl = \"redis://h\"\nprefix = \"\"\n",
            "[redis]\nurl = \"redis://h\"\ntimeout_ms = 0\n",
        ] {
            assert!(matches!(Config::from_toml(bad), Err(ConfigError::Invalid(_))), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(matches!(Config::from_toml("bnid = \"x\""), Err(ConfigError::Parse(_))));
        assert!(matches!(
            Config::from_toml("[heartbeat]\ninterval_ms = 5000\ntimeout_ms = 100\n"),
            Err(ConfigError::Invalid(_))
        ));
    }
}
