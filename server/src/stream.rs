//! Streams as plain data, shared by every layer: which stream a message
//! belongs to ([`StreamKey`]), a message as a stream keeps it ([`Stored`]),
//! what a resume finds ([`Replay`]), and epochs.
//!
//! Every room and every user's inbox is a stream: a sequence of messages
//! with consecutive offsets under an epoch. An epoch is a random string
//! that changes whenever the stream's history is lost, so an offset of one
//! epoch is never mistaken for the same offset of another. Who assigns
//! offsets and keeps history is the engine's business (`engine/`); this
//! module only names things.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tungstenite::Utf8Bytes;

/// Which stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StreamKey {
    /// A room's messages.
    Room(Arc<str>),
    /// A user's private messages.
    Inbox(Arc<str>),
}

impl StreamKey {
    /// A stable text form, used by the disk store and in logs.
    pub fn encode(&self) -> String {
        match self {
            StreamKey::Room(room) => format!("r:{room}"),
            StreamKey::Inbox(user) => format!("u:{user}"),
        }
    }

    /// The key whose [`encode`](StreamKey::encode) form is `text`, if any.
    pub fn decode(text: &str) -> Option<StreamKey> {
        match text.split_once(':')? {
            ("r", room) => Some(StreamKey::Room(room.into())),
            ("u", user) => Some(StreamKey::Inbox(user.into())),
            _ => None,
        }
    }
}

/// One stored message: its offset, when it was accepted, and its `message`
/// frame exactly as it went out.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Its offset in the stream.
    pub offset: u64,
    /// When the hub accepted it, Unix milliseconds.
    pub ts: u64,
    /// The serialized `message` frame.
    pub frame: Utf8Bytes,
}

/// What a resume request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Replay {
    /// Every message after the requested position, in order (possibly none).
    Complete(Vec<Stored>),
    /// The gap cannot be filled: another epoch, or older than the history.
    Lost,
}

/// A fresh random epoch: 12 hex digits.
pub(crate) fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// An epoch as a number, for the places that compare epochs on every
/// delivery (a connection's queue holds this instead of a string). Never 0,
/// which stands for "no stream". Tags are compared within one process only;
/// two epochs sharing a tag would need a 64-bit hash collision.
pub(crate) fn epoch_tag(epoch: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    epoch.hash(&mut hasher);
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_as_written_whatever_the_name() {
        for key in [StreamKey::Room("a:b:c".into()), StreamKey::Inbox("u:x".into())] {
            assert_eq!(StreamKey::decode(&key.encode()), Some(key));
        }
        assert_eq!(StreamKey::decode("x:y"), None);
    }

    #[test]
    fn epochs_are_twelve_hex_digits_and_their_tags_differ() {
        let (a, b) = (new_epoch(), new_epoch());
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(epoch_tag(&a), epoch_tag(&b));
        assert_eq!(epoch_tag(&a), epoch_tag(&a.clone()));
        assert_ne!(epoch_tag(""), 0);
    }
}
