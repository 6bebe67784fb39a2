//! [`RoomPatterns`]: room-name rules compiled once, first match wins. Both
//! history limits and permissions are chosen this way, on every publish and
//! join, so the patterns are parsed when the hub starts and not per lookup.

use wildmatch::WildMatch;

/// Values chosen by room-name pattern (`*` any run of characters, `?` one).
#[derive(Debug, Clone)]
pub struct RoomPatterns<T> {
    rules: Vec<(WildMatch, T)>,
}

impl<T> RoomPatterns<T> {
    /// Compiles `(pattern, value)` pairs, keeping their order.
    pub fn new<P: AsRef<str>>(rules: impl IntoIterator<Item = (P, T)>) -> RoomPatterns<T> {
        RoomPatterns {
            rules: rules
                .into_iter()
                .map(|(pattern, value)| (WildMatch::new(pattern.as_ref()), value))
                .collect(),
        }
    }

    /// The value of the first pattern that matches `room`.
    pub fn first(&self, room: &str) -> Option<&T> {
        self.rules.iter().find(|(pattern, _)| pattern.matches(room)).map(|(_, value)| value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_matching_pattern_wins() {
        let rules = RoomPatterns::new([("chat:*", 1), ("chat:vip", 2), ("t?ck", 3)]);
        assert_eq!(rules.first("chat:vip"), Some(&1));
        assert_eq!(rules.first("tick"), Some(&3));
        assert_eq!(rules.first("general"), None);
    }
}
