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
//! drops its oldest events (logged, counted in
//! `switchboard_events_dropped_total`), and a node that dies loses what it
//! still held.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_protocol::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::EventsConfig;
use crate::wire::now_ms;

/// The queue of events on their way to the application.
pub(crate) struct Events {
    config: EventsConfig,
    kinds: HashSet<String>,
    secret: Option<Vec<u8>>,
    queue: Mutex<VecDeque<Value>>,
    pending: Notify,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl Events {
    pub(crate) fn new(config: EventsConfig, secret: Option<&str>) -> Arc<Events> {
        Arc::new(Events {
            kinds: config.kinds.iter().cloned().collect(),
            config,
            secret: secret.map(|s| s.as_bytes().to_vec()),
            queue: Mutex::new(VecDeque::new()),
            pending: Notify::new(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// A message published to a room (its offset assigned).
    pub(crate) fn published(&self, message: &Message, offset: u64) {
        if self.kinds.contains("published") {
            self.push(json!({
                "kind": "published", "room": message.room, "from": message.from,
                "event": message.event, "data": message.data, "ts": message.ts, "offset": offset,
            }));
        }
    }

    /// A private message sent (its offset in the receiver's inbox).
    pub(crate) fn sent(&self, message: &Message, offset: u64) {
        if self.kinds.contains("sent") {
            self.push(json!({
                "kind": "sent", "to": message.to, "from": message.from,
                "event": message.event, "data": message.data, "ts": message.ts, "offset": offset,
            }));
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
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    fn push(&self, event: Value) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= self.config.queue {
            queue.pop_front();
            if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(
                    queue = self.config.queue,
                    "the events queue is full: the oldest events are dropped"
                );
            }
        }
        queue.push_back(event);
        drop(queue);
        self.pending.notify_one();
    }

    /// Sends the queue to the backend until `shutdown`.
    pub(crate) async fn run(self: Arc<Events>, shutdown: CancellationToken) {
        let client = reqwest::Client::new();
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut failures: u32 = 0;
        loop {
            let batch: Vec<Value> = {
                let queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.iter().take(self.config.batch).cloned().collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = self.pending.notified() => continue,
                }
            }
            let body = json!({ "events": batch }).to_string();
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
                    let sent = batch.len();
                    let gone =
                        queue.iter().take(sent).zip(&batch).take_while(|(a, b)| a == b).count();
                    queue.drain(..gone);
                    self.delivered.fetch_add(sent as u64, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_its_oldest_events_and_counts_them() {
        let config = EventsConfig { url: "http://x".into(), queue: 2, ..EventsConfig::default() };
        let events = Events::new(config, None);
        for user in ["a", "b", "c"] {
            events.presence(user, true);
        }
        let queue = events.queue.lock().unwrap();
        let users: Vec<&str> = queue.iter().map(|e| e["user"].as_str().unwrap()).collect();
        assert_eq!(users, ["b", "c"]);
        assert_eq!(events.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn only_the_configured_kinds_are_kept() {
        let config = EventsConfig {
            url: "http://x".into(),
            kinds: vec!["offline".into()],
            ..EventsConfig::default()
        };
        let events = Events::new(config, None);
        events.presence("a", true);
        events.presence("a", false);
        let queue = events.queue.lock().unwrap();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0]["kind"], "offline");
    }
}
