//! [`IdWindow`]: the request ids each user sent recently, with the answer
//! each got, so a retried `publish` or `send` (same id, after a lost ack or a
//! reconnect) is answered again instead of being carried out twice.
//!
//! Ids are per user, not per connection: a retry arrives on a new connection.
//! Entries expire after the window; each user keeps at most a fixed number.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tungstenite::Utf8Bytes;

/// What the window knows about an id.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Seen {
    /// Never seen: carry the request out, then [`IdWindow::finish`] it.
    New,
    /// Being carried out right now on another connection.
    InFlight,
    /// Done; this was the answer.
    Done(Utf8Bytes),
}

/// Recently seen request ids, per user.
#[derive(Debug)]
pub(crate) struct IdWindow {
    users: Mutex<HashMap<Arc<str>, UserIds>>,
    window: Duration,
    max_per_user: usize,
}

#[derive(Debug, Default)]
struct UserIds {
    answers: HashMap<String, Option<Utf8Bytes>>,
    order: VecDeque<(Instant, String)>,
}

impl UserIds {
    fn expire(&mut self, now: Instant, window: Duration, max: usize) {
        while let Some((at, id)) = self.order.front() {
            if now.duration_since(*at) >= window || self.order.len() > max {
                self.answers.remove(id);
                self.order.pop_front();
            } else {
                break;
            }
        }
    }
}

impl IdWindow {
    pub(crate) fn new(window: Duration, max_per_user: usize) -> IdWindow {
        IdWindow { users: Mutex::new(HashMap::new()), window, max_per_user: max_per_user.max(1) }
    }

    /// Looks an id up, and claims it when new.
    pub(crate) fn begin(&self, user: &Arc<str>, id: &str) -> Seen {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let ids = users.entry(user.clone()).or_default();
        ids.expire(now, self.window, self.max_per_user);
        match ids.answers.get(id) {
            Some(Some(answer)) => Seen::Done(answer.clone()),
            Some(None) => Seen::InFlight,
            None => {
                ids.answers.insert(id.to_owned(), None);
                ids.order.push_back((now, id.to_owned()));
                ids.expire(now, self.window, self.max_per_user);
                Seen::New
            }
        }
    }

    /// Records the answer of a claimed id.
    pub(crate) fn finish(&self, user: &Arc<str>, id: &str, answer: Utf8Bytes) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = users.get_mut(user).and_then(|ids| ids.answers.get_mut(id)) {
            *slot = Some(answer);
        }
    }

    /// Releases a claimed id whose request failed, so a retry is carried out.
    pub(crate) fn forget(&self, user: &Arc<str>, id: &str) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ids) = users.get_mut(user) {
            ids.answers.remove(id);
            ids.order.retain(|(_, seen)| seen != id);
        }
    }

    /// Forgets users whose ids have all expired.
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.retain(|_, ids| {
            ids.expire(now, self.window, self.max_per_user);
            !ids.order.is_empty()
        });
    }
}

/// Where request ids are remembered. On one node, in this [`IdWindow`]. In
/// Redis, the publish script is the window: it records each id with the
/// offset it got, in the same step as the append, and answers a repeat with
/// that offset (`cluster/scripts.rs`), so nothing needs claiming before
/// or recording after, and a request whose answer was lost to a timeout
/// cannot be appended twice.
pub(crate) enum RequestIds {
    Local(IdWindow),
    Cluster,
}

impl RequestIds {
    /// Looks an id up, and claims it when new.
    pub(crate) fn begin(&self, user: &Arc<str>, id: &str) -> Seen {
        match self {
            RequestIds::Local(window) => window.begin(user, id),
            RequestIds::Cluster => Seen::New,
        }
    }

    /// Records the answer of a claimed id.
    pub(crate) fn finish(&self, user: &Arc<str>, id: &str, answer: Utf8Bytes) {
        if let RequestIds::Local(window) = self {
            window.finish(user, id, answer);
        }
    }

    /// Releases a claimed id whose request failed, so a retry is carried out.
    pub(crate) fn forget(&self, user: &Arc<str>, id: &str) {
        if let RequestIds::Local(window) = self {
            window.forget(user, id);
        }
    }

    /// Forgets expired ids (Redis expires them itself).
    pub(crate) fn sweep(&self) {
        if let RequestIds::Local(window) = self {
            window.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_repeated_id_gets_the_original_answer_until_the_window_ends() {
        let window = IdWindow::new(Duration::from_secs(300), 100);
        let alice: Arc<str> = "alice".into();
        assert_eq!(window.begin(&alice, "p1"), Seen::New);
        assert_eq!(window.begin(&alice, "p1"), Seen::InFlight);
        window.finish(&alice, "p1", Utf8Bytes::from("ack p1"));
        assert_eq!(window.begin(&alice, "p1"), Seen::Done(Utf8Bytes::from("ack p1")));
        assert_eq!(window.begin(&"bob".into(), "p1"), Seen::New, "ids are per user");
        tokio::time::advance(Duration::from_secs(301)).await;
        assert_eq!(window.begin(&alice, "p1"), Seen::New, "forgotten after the window");
    }

    #[tokio::test(start_paused = true)]
    async fn each_user_keeps_a_bounded_number_of_ids() {
        let window = IdWindow::new(Duration::from_secs(300), 3);
        let alice: Arc<str> = "alice".into();
        for id in ["a", "b", "c", "d"] {
            assert_eq!(window.begin(&alice, id), Seen::New);
        }
        assert_eq!(window.begin(&alice, "a"), Seen::New, "the oldest went first");
        window.sweep();
        tokio::time::advance(Duration::from_secs(301)).await;
        window.sweep();
        assert!(window.users.lock().unwrap().is_empty());
    }
}
