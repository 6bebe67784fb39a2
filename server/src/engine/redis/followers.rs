//! [`Followers`]: the streams this node follows (some connection here is a
//! member of the room, or a connection of the inbox's user), each with the
//! epoch and last offset delivered here: what the subscriber compares each
//! delivery against to find gaps and new epochs.
//!
//! A stream is recorded when a connection here first follows it, and
//! dropped when the last one stops ([`Followers::unfollow`], and the
//! maintenance tick for anything missed), so the map holds the streams
//! followed now, not every stream ever followed.
//!
//! A connection about to follow a stream is counted as pending from before
//! its read until it has followed ([`Followers::expect`]): meanwhile the
//! subscriber delivers messages at or below the record's last offset too,
//! since the pending follower may not have them (the connections' floors
//! drop what they have already).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

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
    /// Set when the subscription was lost while a repair was under way:
    /// once it ends, the stream is read up to its head.
    pub(crate) catch_up: bool,
    /// Which record this is: a repair ends only on the record it began on
    /// (the stream may have been dropped and followed again meanwhile).
    pub(crate) generation: u64,
    /// The epoch the stream left when it started over: its late messages
    /// are dropped, not taken for yet another start.
    pub(crate) dead: Option<String>,
}

/// The records, and the followers about to follow.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    followed: HashMap<StreamKey, Followed>,
    /// Connections that read a stream and have not followed it yet.
    pending: HashMap<StreamKey, usize>,
}

impl Streams {
    /// Whether a connection is about to follow `key`.
    pub(crate) fn is_pending(&self, key: &StreamKey) -> bool {
        self.pending.get(key).is_some_and(|n| *n > 0)
    }
}

impl std::ops::Deref for Streams {
    type Target = HashMap<StreamKey, Followed>;
    fn deref(&self) -> &Self::Target {
        &self.followed
    }
}

impl std::ops::DerefMut for Streams {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.followed
    }
}

/// The streams this node follows.
#[derive(Debug, Default)]
pub(crate) struct Followers {
    streams: Mutex<Streams>,
    generations: AtomicU64,
}

/// A connection about to follow a stream, counted until dropped.
pub(crate) struct Pending {
    followers: Arc<Followers>,
    key: StreamKey,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut streams = self.followers.lock();
        if let Some(n) = streams.pending.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                streams.pending.remove(&self.key);
            }
        }
    }
}

impl Followers {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Streams> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh record of `epoch` at `last`.
    pub(crate) fn record(&self, epoch: &str, last: u64) -> Followed {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        Followed {
            epoch: epoch.to_owned(),
            last,
            held: None,
            catch_up: false,
            generation,
            dead: None,
        }
    }

    /// Counts a connection that is about to read `key` and follow it,
    /// until the guard is dropped (after [`Followers::follow`], or when
    /// its read failed or was cancelled).
    pub(crate) fn expect(self: &Arc<Self>, key: &StreamKey) -> Pending {
        *self.lock().pending.entry(key.clone()).or_default() += 1;
        Pending { followers: self.clone(), key: key.clone() }
    }

    /// A connection here follows `key` from `position` (what it read);
    /// `alone` when it is the stream's only follower here. Counting starts
    /// at the lowest position a follower read: `last` never moves up here,
    /// because what is still on its way to the others must reach this one
    /// too (a message delivered twice is dropped by the connections'
    /// floors). A record of another epoch stays while others follow (the
    /// new epoch's first delivery then resets them); alone, the
    /// connection's read replaces it.
    pub(crate) fn follow(&self, key: &StreamKey, position: &Position, alone: bool) {
        let mut streams = self.lock();
        match streams.get_mut(key) {
            Some(followed) if followed.epoch == position.epoch => {
                followed.last = followed.last.min(position.offset);
            }
            Some(followed) if !alone || followed.held.is_some() => {}
            _ => {
                let followed = self.record(&position.epoch, position.offset);
                streams.insert(key.clone(), followed);
            }
        }
    }

    /// Nobody here follows `key` any more, unless `still` says otherwise
    /// when asked under the record's lock (a connection may have followed
    /// it again a moment ago), or a connection is about to.
    pub(crate) fn unfollow(&self, key: &StreamKey, still: impl Fn(&StreamKey) -> bool) {
        let mut streams = self.lock();
        if !still(key) && !streams.is_pending(key) {
            streams.remove(key);
        }
    }

    /// Keeps only the streams `followed` says someone here follows (asked
    /// per stream under the records' lock) or is about to.
    pub(crate) fn retain(&self, followed: impl Fn(&StreamKey) -> bool) {
        let mut streams = self.lock();
        let Streams { followed: records, pending } = &mut *streams;
        records.retain(|key, _| followed(key) || pending.contains_key(key));
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
    fn counting_starts_at_the_lowest_read_and_another_epoch_waits_for_its_reset() {
        let followers = Followers::default();
        let key = StreamKey::Room("r".into());
        let state = |followers: &Followers| {
            let streams = followers.lock();
            (streams[&key].epoch.clone(), streams[&key].last)
        };
        followers.follow(&key, &at("a", 9), true);
        // A second follower read the stream before messages the first one's
        // read already counted: they must reach it, so counting goes back.
        followers.follow(&key, &at("a", 5), false);
        assert_eq!(state(&followers), ("a".to_owned(), 5));
        followers.follow(&key, &at("a", 7), false);
        assert_eq!(state(&followers), ("a".to_owned(), 5), "never moves up");
        followers.follow(&key, &at("b", 2), false);
        assert_eq!(state(&followers).0, "a", "the others' epoch stays until its reset");
        followers.follow(&key, &at("b", 2), true);
        assert_eq!(state(&followers), ("b".to_owned(), 2));
        followers.unfollow(&key, |_| true);
        assert_eq!(followers.len(), 1, "followed again meanwhile");
        let followers = Arc::new(followers);
        let about_to = followers.expect(&key);
        followers.unfollow(&key, |_| false);
        assert_eq!(followers.len(), 1, "a connection is about to follow it");
        assert!(followers.lock().is_pending(&key));
        drop(about_to);
        assert!(!followers.lock().is_pending(&key));
        followers.unfollow(&key, |_| false);
        assert_eq!(followers.len(), 0);
        followers.follow(&key, &at("a", 1), true);
        followers.retain(|_| false);
        assert_eq!(followers.len(), 0);
    }
}
