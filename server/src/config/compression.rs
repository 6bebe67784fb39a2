//! `[compression]`: permessage-deflate (RFC 7692) for WebSocket connections.

use serde::{Deserialize, Serialize};

/// permessage-deflate, negotiated per connection: every browser offers it,
/// so browser clients get it with nothing to set on their side. The hub
/// answers without context takeover either way, so a room's message is
/// compressed once and the same bytes go to every member that negotiated
/// it, and no connection holds zlib state while idle (docs/COMPRESSION.md).
///
/// ```toml
/// [compression]
/// enabled = true
/// threshold_bytes = 1024
/// level = 6
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompressionConfig {
    /// Whether the hub accepts a client's offer (default `true`). Off, every
    /// connection goes uncompressed.
    pub enabled: bool,
    /// Frames shorter than this many bytes go uncompressed (default 1024):
    /// a small frame gains little and costs a compression.
    pub threshold_bytes: usize,
    /// zlib level, 1 (fastest) to 9 (smallest, slowest); default 6. (Level
    /// 0 would only store: never smaller, so refused.)
    pub level: u32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        CompressionConfig { enabled: true, threshold_bytes: 1024, level: 6 }
    }
}

impl CompressionConfig {
    /// Why these settings cannot be used, if they cannot.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        (!(1..=9).contains(&self.level)).then_some("compression.level must be between 1 and 9")
    }
}
