//! One connection's outbound queue: the hub's only way to reach a session.
//!
//! The hub holds an [`Outbound`] per connection and pushes already-serialized
//! frames into it without ever waiting, so one slow reader can never stall a
//! fan-out. The queue is bounded twice, by frame count and by bytes; when a
//! push would overflow either bound the connection is marked a slow consumer
//! and told to close with [`CloseCode::SLOW_CONSUMER`], and the frame is
//! dropped for that connection only. The session drains the queue with
//! [`OutboundQueue`].
//!
//! The same handle carries the close signal that the hub, an operator or a
//! limit uses to end the connection with a chosen code.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use switchboard_protocol::CloseCode;

use crate::hub::Delivery;

/// A drained queue keeps at most this many slots (of one pointer each); a
/// burst's larger buffer is given back, so an idle connection holds no more
/// than this (none at all until its first frame).
const KEPT_SLOTS: usize = 8;

/// The hub's side of a connection's queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The hub-local connection key.
    pub(crate) key: u64,
    /// The connection's user id.
    pub(crate) user: Arc<str>,
    shared: Arc<Shared>,
}

/// The session's side of a connection's queue. There is one reader: the
/// connection's own task.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    shared: Arc<Shared>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// The frame is queued.
    Queued,
    /// The queue was full: the connection is being closed as a slow consumer.
    Overflowed,
    /// The connection is already gone or closing.
    Gone,
}

/// Both sides' shared state. One small allocation per connection: the frames
/// live in a `VecDeque` that allocates on the first push and shrinks back
/// when drained, where a channel would hold a block of slots for good. One
/// lock guards the frames, the byte count, the close request and the two
/// wakers, so a push is one uncontended lock and at most one wake.
#[derive(Debug)]
struct Shared {
    max_frames: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each slot is a pointer to a delivery shared by every recipient: a
    /// burst to a big room grows every member's queue for a moment, by 8
    /// bytes a message rather than by a whole [`Delivery`].
    frames: VecDeque<Arc<Delivery>>,
    bytes: usize,
    close: Option<Box<(CloseCode, String)>>,
    /// The connection's task, waiting for a frame.
    reader: Option<Waker>,
    /// The connection's task, waiting for the close request.
    closer: Option<Waker>,
}

/// Creates a connection's queue bounded to `max_frames` frames and `max_bytes` bytes.
pub(crate) fn channel(
    key: u64,
    user: Arc<str>,
    max_frames: usize,
    max_bytes: usize,
) -> (Outbound, OutboundQueue) {
    let shared = Arc::new(Shared { max_frames, max_bytes, state: Mutex::new(State::default()) });
    (Outbound { key, user, shared: shared.clone() }, OutboundQueue { shared })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the state
        // is still consistent (every update is a single step).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Outbound {
    /// Queues a delivery without waiting. Every recipient shares it (one
    /// reference count each), so a fan-out serializes once and allocates
    /// nothing per recipient.
    pub(crate) fn push(&self, delivery: &Arc<Delivery>) -> Pushed {
        let mut state = self.shared.lock();
        if state.close.is_some() {
            return Pushed::Gone;
        }
        let len = delivery.frame.len();
        if state.frames.len() >= self.shared.max_frames || state.bytes + len > self.shared.max_bytes
        {
            let wakers = request_close(
                &mut state,
                CloseCode::SLOW_CONSUMER,
                "outbound queue overflowed: read faster",
            );
            drop(state);
            wake(wakers);
            return Pushed::Overflowed;
        }
        state.bytes += len;
        state.frames.push_back(delivery.clone());
        let reader = state.reader.take();
        drop(state);
        if let Some(reader) = reader {
            // Held back while a batch of deliveries is handed over
            // (`wakes.rs`), so the reader finds them all when it runs.
            super::wakes::wake(reader);
        }
        Pushed::Queued
    }

    /// Asks the session to close with `code`. The first request wins.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.close_signal().close(code, reason)
    }

    /// The close signal the session waits on.
    pub(crate) fn close_signal(&self) -> CloseSignal {
        CloseSignal { shared: self.shared.clone() }
    }
}

/// Records a close request unless one came first (`None` then); `Some` holds
/// the waiting task to wake once the lock is released.
fn request_close(state: &mut State, code: CloseCode, reason: &str) -> Option<Option<Waker>> {
    if state.close.is_some() {
        return None;
    }
    state.close = Some(Box::new((code, reason.to_owned())));
    Some(state.closer.take())
}

fn wake(closer: Option<Option<Waker>>) {
    if let Some(Some(closer)) = closer {
        closer.wake();
    }
}

impl OutboundQueue {
    /// Waits for the next delivery. Cancel-safe: a frame is taken only when
    /// the future completes.
    pub(crate) async fn recv(&mut self) -> Arc<Delivery> {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            match take(&mut state) {
                Some(delivery) => Poll::Ready(delivery),
                None => {
                    park(&mut state.reader, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Takes a delivery that is already waiting, if any.
    #[cfg(test)]
    pub(crate) fn try_recv(&mut self) -> Option<Arc<Delivery>> {
        take(&mut self.shared.lock())
    }

    /// Takes a waiting frame to write, if any; stops at an order (a
    /// server-side join or leave), which [`recv`](Self::recv) hands over
    /// next, so that a batch of writes never runs past one.
    pub(crate) fn try_recv_frame(&mut self) -> Option<Arc<Delivery>> {
        let mut state = self.shared.lock();
        if state.frames.front()?.kind.is_order() {
            return None;
        }
        take(&mut state)
    }
}

fn take(state: &mut State) -> Option<Arc<Delivery>> {
    let delivery = state.frames.pop_front()?;
    state.bytes -= delivery.frame.len();
    if state.frames.is_empty() && state.frames.capacity() > KEPT_SLOTS {
        state.frames = VecDeque::new();
    }
    Some(delivery)
}

fn park(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(parked) if parked.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// A one-shot request to close a connection with a code and reason.
#[derive(Debug, Clone)]
pub(crate) struct CloseSignal {
    shared: Arc<Shared>,
}

impl CloseSignal {
    /// Requests the close; returns false when an earlier request already won.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        let wakers = request_close(&mut self.shared.lock(), code, reason);
        let won = wakers.is_some();
        wake(wakers);
        won
    }

    /// Resolves once a close was requested, with its code and reason.
    /// Awaited by the connection's own task only.
    pub(crate) async fn requested(&self) -> (CloseCode, String) {
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            match &state.close {
                Some(close) => Poll::Ready((close.0, close.1.clone())),
                None => {
                    park(&mut state.closer, cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{DeliveryKind, Target};
    use tungstenite::Utf8Bytes;

    fn d(text: &'static str) -> Arc<Delivery> {
        Arc::new(Delivery::new(Target::All, Utf8Bytes::from(text), DeliveryKind::Message))
    }

    #[tokio::test]
    async fn overflowing_by_count_closes_as_slow_consumer() {
        let (outbound, mut queue) = channel(1, "u".into(), 2, 1 << 20);
        let frame = d("x");
        assert_eq!(outbound.push(&frame), Pushed::Queued);
        assert_eq!(outbound.push(&frame), Pushed::Queued);
        assert_eq!(outbound.push(&frame), Pushed::Overflowed);
        assert_eq!(outbound.push(&frame), Pushed::Gone, "closing connections take nothing more");
        let (code, _) = outbound.close_signal().requested().await;
        assert_eq!(code, CloseCode::SLOW_CONSUMER);
        assert_eq!(queue.recv().await.frame, "x");
    }

    #[tokio::test]
    async fn overflowing_by_bytes_closes_as_slow_consumer() {
        let (outbound, mut queue) = channel(1, "u".into(), 100, 10);
        assert_eq!(outbound.push(&d("123456")), Pushed::Queued);
        // Draining frees the bytes again.
        assert_eq!(queue.recv().await.frame, "123456");
        assert_eq!(outbound.push(&d("123456")), Pushed::Queued);
        assert_eq!(outbound.push(&d("123456")), Pushed::Overflowed);
        assert_eq!(outbound.close_signal().requested().await.0, CloseCode::SLOW_CONSUMER);
    }

    #[tokio::test]
    async fn first_close_request_wins() {
        let (outbound, _queue) = channel(1, "u".into(), 4, 100);
        assert!(outbound.close(CloseCode::KICKED, "bye"));
        assert!(!outbound.close(CloseCode::SLOW_CONSUMER, "late"));
        assert_eq!(
            outbound.close_signal().requested().await,
            (CloseCode::KICKED, "bye".to_owned())
        );
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_push_and_on_close() {
        let (outbound, mut queue) = channel(1, "u".into(), 4, 100);
        let reader = tokio::spawn(async move { queue.recv().await.frame.to_string() });
        tokio::task::yield_now().await;
        assert_eq!(outbound.push(&d("late")), Pushed::Queued);
        assert_eq!(reader.await.unwrap(), "late");
        let signal = outbound.close_signal();
        let closer = tokio::spawn(async move { signal.requested().await.0 });
        tokio::task::yield_now().await;
        outbound.close(CloseCode::KICKED, "bye");
        assert_eq!(closer.await.unwrap(), CloseCode::KICKED);
    }

    #[test]
    fn a_drained_queue_gives_a_burst_buffer_back() {
        let (outbound, mut queue) = channel(1, "u".into(), 1000, 1 << 20);
        assert_eq!(outbound.shared.lock().frames.capacity(), 0, "nothing held before a frame");
        for _ in 0..100 {
            outbound.push(&d("x"));
        }
        while queue.try_recv().is_some() {}
        assert_eq!(outbound.shared.lock().frames.capacity(), 0);
        assert_eq!(outbound.shared.lock().bytes, 0);
        // A trickle keeps its small buffer: no allocation per frame.
        outbound.push(&d("x"));
        queue.try_recv();
        assert!(outbound.shared.lock().frames.capacity() > 0);
    }
}
