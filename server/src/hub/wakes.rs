//! Wake-ups held back while a burst is handed over.
//!
//! A queue push wakes its session at once, and on a machine with more than
//! one worker thread the woken session may run (and write a single frame)
//! before the next message of the same burst is queued. Where several
//! deliveries are handed over in one go (the Redis subscriber draining what
//! has arrived), a [`Deferred`] guard keeps the wake-ups of this thread's
//! pushes and wakes every session once when it is dropped: each member then
//! writes the whole burst in one write. A push takes its session's waker
//! only once until the session waits again, so the guard holds at most one
//! waker per session however many messages it covers.
//!
//! Only for code that does not wait while the guard lives: the wake-ups are
//! kept per thread.

use std::cell::RefCell;
use std::task::Waker;

thread_local! {
    /// The held wake-ups while a guard lives on this thread.
    static HELD: RefCell<Option<Vec<Waker>>> = const { RefCell::new(None) };
}

/// Holds this thread's queue wake-ups until dropped.
#[must_use = "wake-ups are held only while the guard lives"]
pub(crate) struct Deferred {
    /// Whether this guard started the holding (an inner guard leaves it to
    /// the outer one).
    outer: bool,
}

impl Deferred {
    /// Starts holding this thread's wake-ups.
    pub(crate) fn start() -> Deferred {
        let outer = HELD.with(|held| {
            let mut held = held.borrow_mut();
            if held.is_some() {
                return false;
            }
            *held = Some(Vec::new());
            true
        });
        Deferred { outer }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let held = HELD.with(|held| held.borrow_mut().take()).unwrap_or_default();
        for waker in held {
            waker.wake();
        }
    }
}

/// Wakes `waker` now, or when this thread's guard is dropped.
pub(crate) fn wake(waker: Waker) {
    let waker = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(held) => {
            held.push(waker);
            None
        }
        None => Some(waker),
    });
    if let Some(waker) = waker {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn held_wake_ups_run_when_the_outer_guard_drops() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        wake(waker.clone());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "no guard: at once");
        let outer = Deferred::start();
        wake(waker.clone());
        let inner = Deferred::start();
        wake(waker.clone());
        drop(inner);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "held by the outer guard");
        drop(outer);
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
        wake(waker);
        assert_eq!(counter.0.load(Ordering::SeqCst), 4, "at once again");
    }
}
