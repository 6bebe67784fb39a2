//! [`IdWindow`]: the request ids each user published with recently, and the
//! offset each got, so that a retried `publish` or `send` (same id, after a
//! lost ack or a reconnect) gets the first offset back instead of a second
//! message. The memory engine's; the Redis engine keeps the same record in
//! Redis, written by the publish script.
//!
//! Ids are per user and stream, not per connection: a retry arrives on a
//! new connection, and names the same room (or user) as the request it
//! repeats; an id used again for another stream is another request. (The
//! Redis engine keeps them under the stream's tag, with its keys.) Entries expire after the window; each user keeps at most a
//! fixed number. An id is recorded in the same step as its append (the
//! caller holds the stream's order while it looks the id up, appends and
//! records), so there is no "in flight" state that a cancelled request
//! could leave behind.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Recently seen request ids, per user.
#[derive(Debug)]
pub(crate) struct IdWindow {
    users: Mutex<HashMap<Arc<str>, UserIds>>,
    window: Duration,
    max_per_user: usize,
}

#[derive(Debug, Default)]
struct UserIds {
    offsets: HashMap<String, u64>,
    order: VecDeque<(Instant, String)>,
}

impl UserIds {
    fn expire(&mut self, now: Instant, window: Duration, max: usize) {
        while let Some((at, id)) = self.order.front() {
            if now.duration_since(*at) >= window || self.order.len() > max {
                self.offsets.remove(id);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

/// The name under which a request `id` for `key`'s stream is kept. The
/// stream's length comes first: names may hold the separator.
pub(crate) fn in_stream(key: &crate::stream::StreamKey, id: &str) -> String {
    let stream = key.encode();
    format!("{}:{stream}:{id}", stream.len())
}

impl IdWindow {
    pub(crate) fn new(window: Duration, max_per_user: usize) -> IdWindow {
        IdWindow { users: Mutex::new(HashMap::new()), window, max_per_user: max_per_user.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, UserIds>> {
        self.users.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The offset `user`'s request `id` got, if it was carried out within
    /// the window.
    pub(crate) fn get(&self, user: &Arc<str>, id: &str) -> Option<u64> {
        let now = Instant::now();
        let mut users = self.lock();
        let ids = users.get_mut(user)?;
        ids.expire(now, self.window, self.max_per_user);
        ids.offsets.get(id).copied()
    }

    /// Records that `user`'s request `id` was carried out at `offset`.
    pub(crate) fn record(&self, user: &Arc<str>, id: &str, offset: u64) {
        let now = Instant::now();
        let mut users = self.lock();
        let ids = users.entry(user.clone()).or_default();
        if ids.offsets.insert(id.to_owned(), offset).is_none() {
            ids.order.push_back((now, id.to_owned()));
        }
        ids.expire(now, self.window, self.max_per_user);
    }

    /// Forgets that `user`'s request `id` was carried out (its step was not
    /// kept after all: the store could not commit it), so its retry is.
    pub(crate) fn forget(&self, user: &Arc<str>, id: &str) {
        let mut users = self.lock();
        if let Some(ids) = users.get_mut(user) {
            ids.offsets.remove(id);
        }
    }

    /// Forgets users whose ids have all expired.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, ids| {
            ids.expire(now, self.window, self.max_per_user);
            !ids.order.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_recorded_id_is_found_until_the_window_ends() {
        let window = IdWindow::new(Duration::from_secs(300), 100);
        let alice: Arc<str> = "alice".into();
        assert_eq!(window.get(&alice, "p1"), None);
        window.record(&alice, "p1", 7);
        assert_eq!(window.get(&alice, "p1"), Some(7));
        assert_eq!(window.get(&"bob".into(), "p1"), None, "ids are per user");
        // Names with separators stay apart: the map is keyed by user, then id.
        window.record(&"kay".into(), "x:1", 1);
        assert_eq!(window.get(&"kay:x".into(), "1"), None);
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(window.get(&alice, "p1"), None, "forgotten after the window");
    }

    #[tokio::test(start_paused = true)]
    async fn each_user_keeps_a_bounded_number_of_ids() {
        let window = IdWindow::new(Duration::from_secs(300), 3);
        let alice: Arc<str> = "alice".into();
        for (offset, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            window.record(&alice, id, offset as u64);
        }
        assert_eq!(window.get(&alice, "a"), None, "the oldest went first");
        assert_eq!(window.get(&alice, "d"), Some(3));
        window.sweep();
        tokio::time::advance(Duration::from_secs(301)).await;
        window.sweep();
        assert!(window.lock().is_empty());
    }
}
