//! [`Events`]: what the hub tells the application after the fact, off the
//! hot path: messages published to rooms, private messages sent, users
//! coming online and going offline (`[hooks.events]`), so an application
//! can keep its own history or user status without sitting in the way of
//! a message.
//!
//! Recording an event pushes it onto a bounded in-memory queue (a lock and
//! a push; never a wait). One background task sends the queue in order, in
//! batches (`POST {"events": [...]}`, signed like the hooks), removing a
//! batch only once the backend answered 2xx, and retrying with full-jitter
//! backoff up to `retry_max_ms` otherwise. So delivery is **at least once**
//! (a batch whose answer was lost is sent again) and **in order per node**,
//! as long as the node lives and the queue holds: a queue that overflows
//! (`queue` events or `queue_bytes` bytes) drops its oldest events (logged,
//! counted in `switchboard_events_dropped_total`), and a node that dies
//! loses what it still held. An event is serialized once, when recorded;
//! the sender takes a batch under the lock as shared pointers, never
//! copying an event there.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::binary::with_encoding;
use crate::config::EventsConfig;
use crate::wire::now_ms;

/// The queue of events on their way to the application.
pub(crate) struct Events {
    config: EventsConfig,
    kinds: HashSet<String>,
    secret: Option<Vec<u8>>,
    /// The hooks' HTTP client (`http_client.rs`).
    client: reqwest::Client,
    queue: Mutex<Queue>,
    pending: Notify,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// Events in order, with what they weigh.
#[derive(Default)]
struct Queue {
    events: VecDeque<Queued>,
    bytes: usize,
    /// The next event's number.
    next: u64,
}

/// One recorded event, serialized.
struct Queued {
    /// Its number: the sender removes what it sent by number, whatever
    /// overflow dropped from the front meanwhile.
    seq: u64,
    json: Arc<str>,
}

impl Queue {
    fn pop_front(&mut self) -> Option<Queued> {
        let event = self.events.pop_front()?;
        self.bytes -= event.json.len();
        Some(event)
    }
}

impl Events {
    pub(crate) fn new(
        config: EventsConfig,
        secret: Option<&str>,
        client: reqwest::Client,
    ) -> Arc<Events> {
        Arc::new(Events {
            kinds: config.kinds.iter().cloned().collect(),
            config,
            secret: secret.map(|s| s.as_bytes().to_vec()),
            client,
            queue: Mutex::new(Queue::default()),
            pending: Notify::new(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// A message published to a room (its offset assigned).
    pub(crate) fn published(&self, message: &Message, offset: u64) {
        if self.kinds.contains("published") {
            self.push(message_event("published", ("room", &message.room), message, offset));
        }
    }

    /// A private message sent (its offset in the receiver's inbox).
    pub(crate) fn sent(&self, message: &Message, offset: u64) {
        if self.kinds.contains("sent") {
            self.push(message_event("sent", ("to", &message.to), message, offset));
        }
    }

    /// A user's first connection (anywhere, in multi-node mode) opened
    /// (`true`) or their last one closed.
    pub(crate) fn presence(&self, user: &str, online: bool) {
        let kind = if online { "online" } else { "offline" };
        if self.kinds.contains(kind) {
            self.push(json!({"kind": kind, "user": user, "ts": now_ms()}));
        }
    }

    /// Events waiting to be delivered.
    pub(crate) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).events.len()
    }

    fn push(&self, event: Value) {
        let json: Arc<str> = event.to_string().into();
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut dropped = 0;
        if json.len() > self.config.queue_bytes {
            // Larger than the whole queue may hold: it alone is dropped.
            dropped += 1;
        } else {
            while queue.events.len() >= self.config.queue
                || queue.bytes + json.len() > self.config.queue_bytes
            {
                queue.pop_front();
                dropped += 1;
            }
            let seq = queue.next;
            queue.next += 1;
            queue.bytes += json.len();
            queue.events.push_back(Queued { seq, json });
        }
        drop(queue);
        if dropped > 0 && self.dropped.fetch_add(dropped, Ordering::Relaxed) == 0 {
            tracing::warn!(
                queue = self.config.queue,
                queue_bytes = self.config.queue_bytes,
                "the events queue is full: the oldest events are dropped"
            );
        }
        self.pending.notify_one();
    }

    /// Sends the queue to the backend until `shutdown`.
    pub(crate) async fn run(self: Arc<Events>, shutdown: CancellationToken) {
        let client = self.client.clone();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut failures: u32 = 0;
        loop {
            // Pointers under the lock; the body is built outside it.
            let batch: Vec<(u64, Arc<str>)> = {
                let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                let front = queue.events.iter().take(self.config.batch);
                front.map(|event| (event.seq, event.json.clone())).collect()
            };
            let Some(&(last, _)) = batch.last() else {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.pending.notified() => continue,
                }
            };
            let body = body_of(&batch);
            let mut request = client
                .post(&self.config.url)
                .header("content-type", "application/json")
                .timeout(timeout);
            if let Some(secret) = &self.secret {
                for (name, value) in
                    crate::policy::webhooks::signed_headers(secret, body.as_bytes())
                {
                    request = request.header(name, value);
                }
            }
            match request.body(body).send().await {
                Ok(response) if response.status().is_success() => {
                    failures = 0;
                    let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    // The batch is the front of the queue, unless overflow
                    // dropped some of it meanwhile.
                    while queue.events.front().is_some_and(|event| event.seq <= last) {
                        queue.pop_front();
                    }
                    self.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                outcome => {
                    if failures == 0 {
                        let why = match outcome {
                            Ok(response) => format!("HTTP {}", response.status()),
                            Err(err) => err.without_url().to_string(),
                        };
                        tracing::warn!(url = %self.config.url, %why, "events not delivered; retrying");
                    }
                    failures = failures.saturating_add(1);
                    let cap = Duration::from_millis(
                        (100u64 << failures.min(10)).min(self.config.retry_max_ms),
                    );
                    let wait = cap.mul_f64(fastrand::f64());
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// `{"events":[…]}` from events serialized already.
fn body_of(batch: &[(u64, Arc<str>)]) -> String {
    let bytes = batch.iter().map(|(_, json)| json.len() + 1).sum::<usize>();
    let mut body = String::with_capacity(bytes + 12);
    body.push_str(r#"{"events":["#);
    for (n, (_, json)) in batch.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(json);
    }
    body.push_str("]}");
    body
}

/// The record of a message event: its `kind`, where it went (`room` or
/// `to`), the message's fields and its offset, and `encoding` for bytes.
fn message_event(
    kind: &str,
    (field, place): (&str, &Option<String>),
    message: &Message,
    offset: u64,
) -> Value {
    // Fields in the order the records always had: kind, room or to, then
    // the message's.
    let mut record = serde_json::Map::new();
    record.insert("kind".to_owned(), json!(kind));
    record.insert(field.to_owned(), json!(place));
    let rest = json!({
        "from": message.from, "event": message.event, "data": message.data,
        "ts": message.ts, "offset": offset,
    });
    if let Value::Object(rest) = rest {
        record.extend(rest);
    }
    with_encoding(Value::Object(record), message.encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the queue holds, as values.
    fn held(events: &Events) -> Vec<Value> {
        let queue = events.queue.lock().unwrap();
        queue.events.iter().map(|e| serde_json::from_str(&e.json).unwrap()).collect()
    }

    #[test]
    fn a_full_queue_drops_its_oldest_events_and_counts_them() {
        let config = EventsConfig { url: "http://x".into(), queue: 2, ..EventsConfig::default() };
        let events = Events::new(config, None, reqwest::Client::new());
        for user in ["a", "b", "c"] {
            events.presence(user, true);
        }
        let users: Vec<Value> = held(&events).iter().map(|e| e["user"].clone()).collect();
        assert_eq!(users, ["b", "c"]);
        assert_eq!(events.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_queue_is_bounded_in_bytes_too() {
        let message = |n: usize| Message {
            encoding: None,
            room: Some("r".into()),
            to: None,
            from: "a".into(),
            event: "e".into(),
            data: json!("x".repeat(n)),
            ts: 0,
            offset: None,
            binary: None,
        };
        let config =
            EventsConfig { url: "http://x".into(), queue_bytes: 3_000, ..EventsConfig::default() };
        let events = Events::new(config, None, reqwest::Client::new());
        for offset in 1..=3 {
            events.published(&message(1_000), offset);
        }
        // Three events of about 1.1 KB do not fit in 3,000 bytes: the
        // oldest went.
        let offsets: Vec<Value> = held(&events).iter().map(|e| e["offset"].clone()).collect();
        assert_eq!(offsets, [2, 3]);
        assert!(events.queue.lock().unwrap().bytes <= 3_000);
        // One larger than the whole queue is dropped alone.
        events.published(&message(5_000), 4);
        assert_eq!(held(&events).len(), 2);
        assert_eq!(events.dropped.load(Ordering::Relaxed), 2);
        let batch: Vec<(u64, Arc<str>)> = {
            let queue = events.queue.lock().unwrap();
            queue.events.iter().map(|e| (e.seq, e.json.clone())).collect()
        };
        let body: Value = serde_json::from_str(&body_of(&batch)).unwrap();
        assert_eq!(body["events"].as_array().unwrap().len(), 2);
        assert_eq!(body["events"][1]["offset"], 3);
    }

    #[test]
    fn only_the_configured_kinds_are_kept() {
        let config = EventsConfig {
            url: "http://x".into(),
            kinds: vec!["offline".into()],
            ..EventsConfig::default()
        };
        let events = Events::new(config, None, reqwest::Client::new());
        events.presence("a", true);
        events.presence("a", false);
        let held = held(&events);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0]["kind"], "offline");
    }
}
