//! [`Followers`]: the streams this node follows (some connection here is a
//! member of the room, or a connection of the inbox's user), each with the
//! epoch and last offset delivered here: what the subscriber compares each
//! delivery against to find gaps and new epochs.
//!
//! A stream is recorded when a connection here first follows it, and
//! dropped when the last one stops ([`Followers::unfollow`], and the
//! maintenance tick for anything missed), so the map holds the streams
//! followed now, not every stream ever followed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use switchboard_protocol::Position;

use super::wire::Envelope;
use crate::stream::StreamKey;

/// What this node delivered of a followed stream.
#[derive(Debug)]
pub(crate) struct Followed {
    /// The epoch of the last delivery (or of the first follower's read).
    pub(crate) epoch: String,
    /// The last offset delivered here.
    pub(crate) last: u64,
    /// While a gap is being repaired: the deliveries that arrived
    /// meanwhile, to go out after the repair, in order.
    pub(crate) held: Option<Vec<Envelope>>,
}

/// The streams this node follows.
#[derive(Debug, Default)]
pub(crate) struct Followers {
    streams: Mutex<HashMap<StreamKey, Followed>>,
}

impl Followers {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<StreamKey, Followed>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection here follows `key` from `position`; `alone` when it is
    /// the stream's only follower here. With others following, the record
    /// of what was delivered to them stays the truth (even of another
    /// epoch: the new one's first delivery then resets them); alone, the
    /// connection's read is where counting starts.
    pub(crate) fn follow(&self, key: &StreamKey, position: &Position, alone: bool) {
        let mut streams = self.lock();
        match streams.get(key) {
            Some(followed) if !alone || followed.held.is_some() => {}
            _ => {
                let followed =
                    Followed { epoch: position.epoch.clone(), last: position.offset, held: None };
                streams.insert(key.clone(), followed);
            }
        }
    }

    /// Nobody here follows `key` any more.
    pub(crate) fn unfollow(&self, key: &StreamKey) {
        self.lock().remove(key);
    }

    /// Keeps only the streams `followed` says someone here follows.
    pub(crate) fn retain(&self, followed: impl Fn(&StreamKey) -> bool) {
        self.lock().retain(|key, _| followed(key));
    }

    /// How many streams are recorded.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position { epoch: epoch.into(), offset }
    }

    #[test]
    fn the_first_follower_sets_the_record_and_later_ones_leave_it() {
        let followers = Followers::default();
        let key = StreamKey::Room("r".into());
        followers.follow(&key, &at("a", 5), true);
        followers.follow(&key, &at("b", 9), false);
        assert_eq!(followers.lock()[&key].epoch, "a", "the others' record stays");
        followers.follow(&key, &at("b", 9), true);
        let (epoch, last) = {
            let streams = followers.lock();
            (streams[&key].epoch.clone(), streams[&key].last)
        };
        assert_eq!((epoch.as_str(), last), ("b", 9));
        followers.unfollow(&key);
        assert_eq!(followers.len(), 0);
        followers.follow(&key, &at("a", 1), true);
        followers.retain(|_| false);
        assert_eq!(followers.len(), 0);
    }
}
