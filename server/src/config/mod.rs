//! The hub's configuration: every tunable with its default, loaded from TOML.
//!
//! [`Config::default()`] is what `switchboard` runs with when given nothing:
//! it serves on `127.0.0.1:8080`. The binary layers a TOML file, then
//! `SWITCHBOARD_…` environment variables, then command-line flags on top
//! (see [`crate::cli`]); an embedding application builds a [`Config`] itself.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

use crate::error::ConfigError;

mod auth;
mod compression;
mod history;
mod hooks;
mod limits;
mod redis;
mod rooms;

pub use auth::{ApiConfig, AuthConfig};
pub use compression::CompressionConfig;
pub use history::{DeliveryConfig, HistoryConfig, HistoryLimits, HistoryRule, StoreKind};
pub use hooks::{EventsConfig, HooksConfig, OnError, WebhookConfig};
pub use limits::{HeartbeatConfig, LimitsConfig};
pub use redis::RedisConfig;
pub use rooms::{Access, PermissionsConfig, RoomRule, RoomsConfig};

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
    /// Multi-node mode: several hubs sharing Redis (one server, several, or
    /// a Redis Cluster) behave as one hub.
    /// Off (a single node, nothing shared) unless `redis.url` is set.
    pub redis: RedisConfig,
    /// The application's hooks ([`crate::hooks`]).
    pub hooks: HooksConfig,
    /// permessage-deflate for WebSocket connections.
    pub compression: CompressionConfig,
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
            compression: CompressionConfig::default(),
        }
    }
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
        if let Some(problem) = self.compression.problem() {
            return invalid(problem);
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
                "auth: set auth.jwt_secret, auth.jwt_public_key_pem or auth.jwks_url, \
                 or auth.insecure = true",
            );
        }
        if let Some(url) = &self.auth.jwks_url {
            // Whoever can change the keys in transit can sign any token:
            // plain http only to this machine.
            let loopback =
                ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|prefix| {
                    url.strip_prefix(prefix).is_some_and(|rest| rest.starts_with([':', '/']))
                });
            if !(url.starts_with("https://") || loopback) {
                return invalid("auth.jwks_url must be an https:// URL (http:// only on loopback)");
            }
            if self.auth.jwks_refresh_secs == 0 || self.auth.jwks_min_interval_secs == 0 {
                return invalid(
                    "auth.jwks_refresh_secs and auth.jwks_min_interval_secs must be at least 1",
                );
            }
        }
        if self.auth.leeway_secs > 300 {
            return invalid("auth.leeway_secs is seconds of clock skew: at most 300");
        }
        if self.auth.audience.iter().any(String::is_empty)
            || self.auth.issuer.as_deref() == Some("")
        {
            return invalid("auth.audience and auth.issuer cannot be empty strings");
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
        if let Err(err) = hooks.ca_certificates() {
            return Err(ConfigError::Invalid(format!("hooks.ca_pem: {err}")));
        }
        for (name, hook) in [
            ("connect", &hooks.connect),
            ("join", &hooks.join),
            ("publish", &hooks.publish),
            ("send", &hooks.send),
            ("rpc", &hooks.rpc),
            ("disconnect", &hooks.disconnect),
        ] {
            let Some(hook) = hook else { continue };
            if !is_http_url(&hook.url) {
                return Err(ConfigError::Invalid(format!(
                    "hooks.{name}.url must start with http:// or https://"
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
            if !is_http_url(&events.url) {
                return invalid("hooks.events.url must start with http:// or https://");
            }
            if events.queue == 0
                || events.queue_bytes == 0
                || events.batch == 0
                || events.timeout_ms == 0
            {
                return invalid(
                    "hooks.events.queue, queue_bytes, batch and timeout_ms must be above 0",
                );
            }
            let known = ["published", "sent", "online", "offline"];
            if let Some(kind) = events.kinds.iter().find(|k| !known.contains(&k.as_str())) {
                return Err(ConfigError::Invalid(format!(
                    "hooks.events.kinds: unknown kind `{kind}` (published, sent, online, offline)"
                )));
            }
        }
        if self.redis.url.is_some() && !self.redis.shards.is_empty() {
            return invalid("set redis.url or redis.shards, not both");
        }
        if self.redis.cluster && self.redis.url.is_none() {
            return invalid(
                "redis.cluster needs redis.url (any node of the cluster), not redis.shards",
            );
        }
        if self.redis.enabled() {
            for url in self.redis.urls() {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return invalid(
                        "redis.url and redis.shards must start with redis:// (or rediss://)",
                    );
                }
            }
            let mut distinct = self.redis.shards.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != self.redis.shards.len() {
                return invalid("redis.shards lists a server twice");
            }
            if self.redis.prefix.contains(['{', '}']) {
                return invalid("redis.prefix must not hold { or }: they mark the keys' hash tags");
            }
            if self.redis.prefix.is_empty() || self.redis.prefix.chars().any(char::is_control) {
                return invalid("redis.prefix must be non-empty, without control characters");
            }
            if self.redis.timeout_ms == 0 || self.redis.node_ttl_ms < 3 * 100 {
                return invalid("redis.timeout_ms must be > 0 and redis.node_ttl_ms at least 300");
            }
            if self.redis.coalesce_us > 50_000 {
                return invalid("redis.coalesce_us must be at most 50000 (50 ms)");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

/// Whether a backend URL is one the hooks' HTTP client calls.
fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}
