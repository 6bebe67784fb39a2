//! Streams in Redis: publishing (one script: offset, history, fan-out) and
//! reading (one script: position and history, optionally the inbox's
//! undelivered messages).
//!
//! History entries have the offset as their id (`<offset>-0`), so reading
//! after an offset is one `XRANGE`. A stream's `max_bytes` and `size` are
//! kept exactly by the publish script; its `ttl_secs` expires the whole
//! history key after the last publish, and reads leave out single entries
//! older than the TTL, as the in-memory store does.

use switchboard_protocol::{Message, Position};
use tungstenite::Utf8Bytes;

use super::keys::{ONLINE, room_scope};
use super::scripts::{MARK_DELIVERED, PUBLISH, READ};
use super::{Cluster, ClusterError};
use crate::config::HistoryLimits;
use crate::store::{Replay, STREAM_IDLE_MS, Stored, StreamKey, new_epoch};

/// A message appended to a stream and published to every node.
pub(crate) struct Appended {
    pub(crate) position: Position,
    pub(crate) frame: Utf8Bytes,
    /// The target's connections across the cluster when it was published.
    pub(crate) connections: usize,
}

/// Where a stream stands, and the entries read from it.
pub(crate) struct Read {
    pub(crate) position: Position,
    pub(crate) entries: Vec<Stored>,
}

/// Where a read starts.
pub(crate) enum After {
    Offset(u64),
    /// After the inbox's delivered mark.
    Delivered,
}

/// What a read asks for.
pub(crate) struct Reading {
    /// Create a missing stream (with a fresh epoch); without, a missing
    /// stream reads as `None`.
    pub(crate) create: bool,
    pub(crate) after: After,
    /// At most this many entries.
    pub(crate) count: usize,
    /// Move the inbox's delivered mark to the head.
    pub(crate) mark: bool,
}

impl Reading {
    /// Where the stream stands, and nothing of its history; creates it.
    pub(crate) fn head() -> Reading {
        Reading { create: true, after: After::Offset(0), count: 0, mark: false }
    }

    /// Up to `count` entries after `after`, without creating the stream.
    pub(crate) fn page(after: u64, count: usize) -> Reading {
        Reading { create: false, after: After::Offset(after), count, mark: false }
    }
}

/// How long a stream's metadata outlives its last use: the history's TTL,
/// and at least as long as the in-memory store keeps an idle stream.
fn meta_ttl_secs(limits: &HistoryLimits) -> u64 {
    limits.ttl_secs.max(STREAM_IDLE_MS / 1000)
}

impl Cluster {
    /// Appends `message` to `key`'s stream and publishes it to every node;
    /// with `request` (user, request id), once per id within `window`.
    pub(crate) async fn append(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        message: &Message,
        request: Option<(&str, &str)>,
        window: std::time::Duration,
        except: Option<&uuid::Uuid>,
    ) -> Result<Appended, ClusterError> {
        let open = super::wire::open_frame(message);
        let (scope, user) = match key {
            StreamKey::Room(room) => (room_scope(room), String::new()),
            StreamKey::Inbox(user) => (ONLINE.to_owned(), user.to_string()),
        };
        let scope = self.keys.scope(&scope);
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(self.keys.meta(key))
            .key(self.keys.history(key))
            .key(format!("{scope}:u"))
            .key(format!("{scope}:n"))
            .key(request.map_or_else(|| self.keys.channel(), |(u, id)| self.keys.request_id(u, id)))
            .arg(self.keys.channel())
            .arg(&open)
            .arg(message.ts)
            .arg(limits.size)
            .arg(limits.ttl_secs)
            .arg(limits.max_bytes)
            .arg(meta_ttl_secs(limits))
            .arg(new_epoch())
            .arg(match (key, except) {
                (StreamKey::Room(room), Some(except)) => super::wire::except_target(room, except),
                _ => super::wire::target_of(key),
            })
            .arg(user)
            .arg(if request.is_some() { "1" } else { "0" })
            .arg(window.as_millis() as u64);
        let mut connection = self.connection();
        let (epoch, offset, connections, repeated): (String, u64, u64, u8) =
            self.call("publish", invocation.invoke_async(&mut connection)).await?;
        if repeated == 1 {
            tracing::info!(stream = %key.encode(), offset, "a retried request was appended before: not again");
        }
        let frame = Utf8Bytes::from(format!("{open},\"offset\":{offset}}}"));
        Ok(Appended {
            position: Position { epoch, offset },
            frame,
            connections: connections as usize,
        })
    }

    /// Reads where `key`'s stream stands and the entries `reading` asks
    /// for, leaving out those past the TTL.
    pub(crate) async fn read(
        &self,
        key: &StreamKey,
        limits: &HistoryLimits,
        reading: Reading,
        now_ms: u64,
    ) -> Result<Option<Read>, ClusterError> {
        let Reading { create, after, count, mark } = reading;
        let mut invocation = READ.prepare_invoke();
        invocation
            .key(self.keys.meta(key))
            .key(self.keys.history(key))
            .arg(if create { "1" } else { "0" })
            .arg(new_epoch())
            .arg(meta_ttl_secs(limits))
            .arg(match after {
                After::Offset(offset) => offset.to_string(),
                After::Delivered => "delivered".to_owned(),
            })
            .arg(count)
            .arg(if mark { "1" } else { "0" });
        let mut connection = self.connection();
        type Entries = Vec<(String, Vec<String>)>;
        let read: Option<(String, u64, u64, Entries)> =
            self.call("read", invocation.invoke_async(&mut connection)).await?;
        let Some((epoch, last, _delivered, raw)) = read else { return Ok(None) };
        let oldest_kept = now_ms.saturating_sub(limits.ttl_secs.saturating_mul(1000));
        let mut entries = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            let stored = entry(&id, fields)
                .ok_or_else(|| ClusterError::Redis(format!("unreadable history entry {id}")))?;
            if stored.ts >= oldest_kept {
                entries.push(stored);
            }
        }
        Ok(Some(Read { position: Position { epoch, offset: last }, entries }))
    }

    /// What a client resuming `key` after `since` missed, and where the
    /// stream stands.
    pub(crate) async fn since(
        &self,
        key: &StreamKey,
        since: &Position,
        limits: &HistoryLimits,
        now_ms: u64,
    ) -> Result<(Position, Replay), ClusterError> {
        let read = self
            .read(
                key,
                limits,
                Reading { create: true, ..Reading::page(since.offset, limits.size + 1) },
                now_ms,
            )
            .await?
            .ok_or_else(|| ClusterError::Redis("stream not created".to_owned()))?;
        Ok((read.position.clone(), replay(&read, since)))
    }

    /// Moves an inbox's delivered mark forward to `offset`.
    pub(crate) async fn mark_delivered(
        &self,
        key: &StreamKey,
        offset: u64,
    ) -> Result<(), ClusterError> {
        let mut invocation = MARK_DELIVERED.prepare_invoke();
        invocation.key(self.keys.meta(key)).arg(offset);
        let mut connection = self.connection();
        let _: i64 = self.call("mark delivered", invocation.invoke_async(&mut connection)).await?;
        Ok(())
    }
}

/// A history entry: id `<offset>-0`, fields `ts` and `f`.
fn entry(id: &str, fields: Vec<String>) -> Option<Stored> {
    let offset = id.split_once('-')?.0.parse().ok()?;
    let mut ts = None;
    let mut frame = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match name.as_str() {
            "ts" => ts = value.parse().ok(),
            "f" => frame = Some(value),
            _ => {}
        }
    }
    Some(Stored { offset, ts: ts?, frame: Utf8Bytes::from(frame?) })
}

/// Everything after `since` if the read holds all of it, else `Lost`.
fn replay(read: &Read, since: &Position) -> Replay {
    let head = &read.position;
    if since.epoch != head.epoch || since.offset > head.offset {
        return Replay::Lost;
    }
    if since.offset == head.offset {
        return Replay::Complete(Vec::new());
    }
    match read.entries.first() {
        Some(first) if first.offset == since.offset + 1 => Replay::Complete(read.entries.clone()),
        _ => Replay::Lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(epoch: &str, last: u64, offsets: &[u64]) -> Read {
        Read {
            position: Position { epoch: epoch.into(), offset: last },
            entries: offsets
                .iter()
                .map(|&offset| Stored { offset, ts: 1, frame: Utf8Bytes::from("{}") })
                .collect(),
        }
    }

    #[test]
    fn a_replay_is_complete_only_when_nothing_after_since_is_missing() {
        let at = |epoch: &str, offset| Position { epoch: epoch.into(), offset };
        assert!(
            matches!(replay(&read("e", 5, &[4, 5]), &at("e", 3)), Replay::Complete(m) if m.len() == 2)
        );
        assert!(
            matches!(replay(&read("e", 5, &[]), &at("e", 5)), Replay::Complete(m) if m.is_empty())
        );
        assert_eq!(replay(&read("e", 5, &[4, 5]), &at("e", 2)), Replay::Lost, "3 was trimmed");
        assert_eq!(replay(&read("e", 5, &[]), &at("e", 2)), Replay::Lost, "all expired");
        assert_eq!(replay(&read("f", 5, &[4, 5]), &at("e", 3)), Replay::Lost, "another epoch");
        assert_eq!(replay(&read("e", 5, &[]), &at("e", 9)), Replay::Lost, "ahead of the stream");
    }

    #[test]
    fn entries_are_read_from_their_id_and_fields() {
        let fields = vec!["ts".to_owned(), "12".to_owned(), "f".to_owned(), "{\"a\":1}".to_owned()];
        let stored = entry("7-0", fields).unwrap();
        assert_eq!((stored.offset, stored.ts, stored.frame.as_str()), (7, 12, "{\"a\":1}"));
        assert!(entry("x-0", vec![]).is_none());
        assert!(entry("7-0", vec!["ts".to_owned(), "1".to_owned()]).is_none());
    }
}
