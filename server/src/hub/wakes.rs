//! Deferred wakes: while a [`WakeBatch`] lives on a thread, a push that
//! would wake a connection's task records the waker instead, and the batch
//! wakes every recorded task once when it ends.
//!
//! A broker that hands the hub many deliveries at once (the Redis
//! subscriber, draining what arrived from the other nodes) opens a batch
//! around them. Without it a member whose task runs on the other worker as
//! soon as the first message reaches its queue writes that one message,
//! and is woken again by the second: one wake and one `write` per member
//! per message. With it, every member finds the whole batch queued when it
//! runs and writes it in one go.
//!
//! The batch is per thread and `!Send`, so it cannot be held across an
//! `.await`: a batch covers synchronous work only, and no wake is ever
//! postponed past the end of the step that made it.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::task::Waker;

thread_local! {
    static DEFERRED: RefCell<Deferred> = const { RefCell::new(Deferred { depth: 0, wakers: Vec::new() }) };
}

/// The wakes this thread holds back, and how many batches are open.
struct Deferred {
    depth: u32,
    wakers: Vec<Waker>,
}

/// Wakes held back until this value drops. Batches nest: the outermost one
/// wakes.
pub(crate) struct WakeBatch {
    /// Keeps the batch on the thread that opened it.
    _not_send: PhantomData<*const ()>,
}

impl WakeBatch {
    /// Opens a batch on this thread.
    pub(crate) fn begin() -> WakeBatch {
        DEFERRED.with(|deferred| deferred.borrow_mut().depth += 1);
        WakeBatch { _not_send: PhantomData }
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        let wakers = DEFERRED.with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            deferred.depth -= 1;
            if deferred.depth > 0 {
                return Vec::new();
            }
            std::mem::take(&mut deferred.wakers)
        });
        // Woken outside the borrow: a waker may run code that pushes (a
        // task polled inline), which would borrow again.
        for waker in wakers {
            waker.wake();
        }
    }
}

/// Wakes `waker` now, or when this thread's batch ends if one is open.
pub(crate) fn wake(waker: Waker) {
    let waker = DEFERRED.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        if deferred.depth == 0 {
            return Some(waker);
        }
        deferred.wakers.push(waker);
        None
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
    fn wakes_wait_for_the_outermost_batch_and_go_without_one() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        wake(waker.clone());
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "no batch: woken at once");
        let outer = WakeBatch::begin();
        wake(waker.clone());
        {
            let _inner = WakeBatch::begin();
            wake(waker.clone());
        }
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "held while the outer batch lives");
        drop(outer);
        assert_eq!(counter.0.load(Ordering::SeqCst), 3);
        wake(waker);
        assert_eq!(counter.0.load(Ordering::SeqCst), 4, "a closed batch holds nothing back");
    }
}
