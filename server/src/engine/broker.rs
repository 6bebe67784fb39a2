//! [`Broker`]: the owner of a stream's life, and of every delivery that
//! must reach other nodes.
//!
//! What an implementation promises, whatever it keeps streams in:
//! - **Offsets** are assigned in one place per stream, consecutively from
//!   1 under an epoch; a publish stores the message and reaches every
//!   node's followers, and a stream's messages reach each connection in
//!   offset order.
//! - **Resuming is exact**: the caller registers its connection with the
//!   hub first and reads second, so every message is in the read, or on
//!   its way to the connection live, or both (the connection drops what
//!   both carry by its offset), never neither.
//! - **Followed streams live**: while a connection anywhere follows a
//!   stream (a member of the room, a connection of the inbox's user), its
//!   epoch and offsets are kept, however long it stays quiet; only its
//!   history expires. If the epoch changes anyway (the backend lost its
//!   data), every follower is sent a [`DeliveryKind::Reset`] before the
//!   first message of the new epoch.
//! - **Request ids** make a publish happen once per (user, id) within
//!   `delivery.id_window_secs`: a repeat gets the first offset back. The
//!   id is claimed and recorded in the same step as the append, so a
//!   request cancelled before that step leaves nothing behind and its
//!   retry is carried out.
//!
//! [`DeliveryKind::Reset`]: crate::hub::DeliveryKind::Reset

use std::sync::Arc;

use switchboard_protocol::{Message, Position};

use super::{EngineError, EngineFuture};
use crate::hub::{Delivery, Target};
use crate::stream::{Replay, Stored, StreamKey};

/// A message to append to a stream and deliver.
#[derive(Debug)]
pub(crate) struct Publication {
    /// The stream it goes into.
    pub(crate) key: StreamKey,
    /// Its recipients: the stream's target, or the room but one session.
    pub(crate) target: Target,
    /// The message, without its offset.
    pub(crate) message: Message,
    /// The user and request id that make it happen once, if it has one.
    pub(crate) request: Option<(Arc<str>, String)>,
}

/// A message appended: where it landed and whom it reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Published {
    /// Its offset in the stream (for a repeated request id: the first one's).
    pub(crate) offset: u64,
    /// How many connections the target has (on a single node: how many got
    /// it now; across a cluster: how many it is on its way to).
    pub(crate) reached: usize,
    /// Whether the stream keeps history (a private message to nobody is
    /// then queued, not dropped).
    pub(crate) kept: bool,
    /// True when the request id was seen before: nothing was appended.
    pub(crate) repeated: bool,
}

/// Where a stream stands, and what came after a position when one was given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resumed {
    /// The stream's epoch and last offset.
    pub(crate) position: Position,
    /// With a `since`: the messages after it, or [`Replay::Lost`].
    pub(crate) replay: Option<Replay>,
}

/// Streams and deliveries across nodes.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Appends a message with the stream's next offset and delivers it to
    /// every node's followers of its target.
    fn publish(&self, publication: Publication) -> EngineFuture<'_, Published>;

    /// Publishes several publications of one connection, in the order
    /// given: each stream's offsets follow that order. Each gets its own
    /// answer. An engine that can do it in one step overrides this (Redis:
    /// one round trip); by default they go one after the other.
    fn publish_all(
        &self,
        publications: Vec<Publication>,
    ) -> EngineFuture<'_, Vec<Result<Published, EngineError>>> {
        Box::pin(async move {
            let mut answers = Vec::with_capacity(publications.len());
            for publication in publications {
                answers.push(self.publish(publication).await);
            }
            Ok(answers)
        })
    }

    /// Where `key`'s stream stands (created if it does not exist) and, with
    /// `since`, everything after it if the history still holds all of it.
    /// The caller has registered its connection with the hub already: from
    /// this read on, the connection follows the stream here (what this
    /// node delivers of it counts from this position at the latest).
    fn resume<'a>(
        &'a self,
        key: &'a StreamKey,
        since: Option<&'a Position>,
    ) -> EngineFuture<'a, Resumed>;

    /// For an inbox followed by a connection that did not say where it
    /// stopped: the messages no connection of the user has received yet,
    /// now marked delivered, and where the inbox stands. The connection
    /// follows the inbox from this read on, as with `resume`.
    fn undelivered<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, (Position, Vec<Stored>)>;

    /// Records that a connection of the inbox's user received everything up
    /// to `offset`.
    fn mark_delivered<'a>(&'a self, key: &'a StreamKey, offset: u64) -> EngineFuture<'a, ()>;

    /// Up to `limit` messages after offset `after` (from the oldest kept
    /// when `None`); `None` for a stream that does not exist. A read: it
    /// creates nothing.
    fn page<'a>(
        &'a self,
        key: &'a StreamKey,
        after: Option<u64>,
        limit: usize,
    ) -> EngineFuture<'a, Option<(Position, Vec<Stored>)>>;

    /// Hands a delivery outside any stream (presence, occupancy, a
    /// broadcast to everyone, a join or leave order) to every node's hub,
    /// this one's included; resolves with the connections its target has,
    /// as far as this engine counts them.
    fn deliver(&self, delivery: Delivery) -> EngineFuture<'_, usize>;

    /// Where `key`'s stream stands (created if it does not exist), for a
    /// reader that does not follow it.
    fn head<'a>(&'a self, key: &'a StreamKey) -> EngineFuture<'a, Position>;

    /// Nobody on this node follows `key` any more.
    fn unfollow(&self, key: &StreamKey);

    /// Periodic upkeep at `now_ms` (every minute): expired history out,
    /// streams that nobody follows and that are idle and empty dropped.
    fn maintain(&self, now_ms: u64) -> EngineFuture<'_, ()>;

    /// Makes everything stored so far durable (at shutdown).
    fn flush(&self) -> Result<(), super::EngineError>;

    /// How many streams this node keeps; `None` when they are not counted
    /// here (in Redis).
    fn stream_count(&self) -> Option<usize>;
}

/// Everything after `since` if `entries` (read after `since`, in order)
/// hold all of it up to `head`, else [`Replay::Lost`].
pub(crate) fn replay_of(head: &Position, since: &Position, entries: Vec<Stored>) -> Replay {
    if since.epoch != head.epoch || since.offset > head.offset {
        return Replay::Lost;
    }
    if since.offset == head.offset {
        return Replay::Complete(Vec::new());
    }
    match entries.first() {
        Some(first) if first.offset == since.offset + 1 => {
            let complete = entries.iter().zip(since.offset + 1..).all(|(e, n)| e.offset == n)
                && entries.last().is_some_and(|last| last.offset == head.offset);
            if complete { Replay::Complete(entries) } else { Replay::Lost }
        }
        _ => Replay::Lost,
    }
}

/// Decodes stored frames back into messages (for history reads).
pub(crate) fn messages(stored: &[Stored]) -> Vec<Message> {
    stored
        .iter()
        .filter_map(|s| match serde_json::from_str(&s.frame) {
            Ok(switchboard_protocol::ServerFrame::Message(message)) => Some(message),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Utf8Bytes;

    fn entries(offsets: &[u64]) -> Vec<Stored> {
        offsets
            .iter()
            .map(|&offset| Stored { offset, ts: 1, frame: Utf8Bytes::from("{}") })
            .collect()
    }

    #[test]
    fn a_replay_is_complete_only_when_nothing_after_since_is_missing() {
        let at = |epoch: &str, offset| Position { epoch: epoch.into(), offset };
        let head = at("e", 5);
        assert!(
            matches!(replay_of(&head, &at("e", 3), entries(&[4, 5])), Replay::Complete(m) if m.len() == 2)
        );
        assert_eq!(replay_of(&head, &at("e", 5), vec![]), Replay::Complete(vec![]));
        assert_eq!(replay_of(&head, &at("e", 2), entries(&[4, 5])), Replay::Lost, "3 was trimmed");
        assert_eq!(replay_of(&head, &at("e", 2), vec![]), Replay::Lost, "all expired");
        assert_eq!(replay_of(&head, &at("f", 3), entries(&[4, 5])), Replay::Lost, "another epoch");
        assert_eq!(replay_of(&head, &at("e", 9), vec![]), Replay::Lost, "ahead of the stream");
        assert_eq!(replay_of(&head, &at("e", 3), entries(&[4])), Replay::Lost, "5 is missing");
    }
}
