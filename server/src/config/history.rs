//! `[history]` and `[delivery]`: what each stream keeps, where, and how
//! long request ids are remembered.

use serde::{Deserialize, Serialize};

use crate::patterns::RoomPatterns;

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
