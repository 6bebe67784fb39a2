//! [`HistoryRules`]: each stream's history limits, from `[history]` in the
//! configuration: `history.rules` by room pattern, compiled once (limits
//! are looked up on every publish), `history.default` for other rooms and
//! `history.inbox` for inboxes.

use crate::config::{HistoryConfig, HistoryLimits};
use crate::patterns::RoomPatterns;
use crate::stream::StreamKey;

/// Each stream's history limits.
#[derive(Clone)]
pub(crate) struct HistoryRules {
    config: HistoryConfig,
    rules: RoomPatterns<HistoryLimits>,
}

impl HistoryRules {
    pub(crate) fn new(config: HistoryConfig) -> HistoryRules {
        HistoryRules { rules: config.patterns(), config }
    }

    /// The limits of `key`'s stream.
    pub(crate) fn of(&self, key: &StreamKey) -> &HistoryLimits {
        match key {
            StreamKey::Room(room) => self.rules.first(room).unwrap_or(&self.config.default),
            StreamKey::Inbox(_) => &self.config.inbox,
        }
    }

    /// The limits with the longest TTL of all, for what is kept about
    /// streams whose own limits are not known where it is kept.
    pub(crate) fn longest(&self) -> HistoryLimits {
        let all = std::iter::once(&self.config.default)
            .chain(std::iter::once(&self.config.inbox))
            .chain(self.config.rules.iter().map(|rule| &rule.limits));
        all.max_by_key(|limits| limits.ttl_secs).cloned().unwrap_or_default()
    }

    /// The most messages one history read returns.
    pub(crate) fn max_page(&self) -> usize {
        self.config.max_page
    }
}
