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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use switchboard_protocol::CloseCode;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::broker::Delivery;

/// The hub's side of a connection's queue.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The hub-local connection key.
    pub(crate) key: u64,
    /// The connection's user id.
    pub(crate) user: Arc<str>,
    tx: mpsc::Sender<Delivery>,
    queued_bytes: Arc<AtomicUsize>,
    max_bytes: usize,
    close: CloseSignal,
}

/// The session's side of a connection's queue.
#[derive(Debug)]
pub(crate) struct OutboundQueue {
    rx: mpsc::Receiver<Delivery>,
    queued_bytes: Arc<AtomicUsize>,
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

/// Creates a connection's queue bounded to `max_frames` frames and `max_bytes` bytes.
pub(crate) fn channel(
    key: u64,
    user: Arc<str>,
    max_frames: usize,
    max_bytes: usize,
) -> (Outbound, OutboundQueue) {
    let (tx, rx) = mpsc::channel(max_frames);
    let queued_bytes = Arc::new(AtomicUsize::new(0));
    let outbound = Outbound {
        key,
        user,
        tx,
        queued_bytes: queued_bytes.clone(),
        max_bytes,
        close: CloseSignal::default(),
    };
    (outbound, OutboundQueue { rx, queued_bytes })
}

impl Outbound {
    /// Queues a delivery without waiting. Cloning it shares the frame's
    /// buffer, so a fan-out serializes once whatever the number of recipients.
    pub(crate) fn push(&self, delivery: &Delivery) -> Pushed {
        if self.close.is_closing() {
            return Pushed::Gone;
        }
        let len = delivery.frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.overflow();
            return Pushed::Overflowed;
        }
        match self.tx.try_send(delivery.clone()) {
            Ok(()) => Pushed::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                self.overflow();
                Pushed::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                Pushed::Gone
            }
        }
    }

    fn overflow(&self) {
        self.close.close(CloseCode::SLOW_CONSUMER, "outbound queue overflowed: read faster");
    }

    /// Asks the session to close with `code`. The first request wins.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.close.close(code, reason)
    }

    /// The close signal the session waits on.
    pub(crate) fn close_signal(&self) -> &CloseSignal {
        &self.close
    }
}

impl OutboundQueue {
    /// Waits for the next delivery; `None` once every [`Outbound`] is dropped.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.recv().await?;
        self.queued_bytes.fetch_sub(delivery.frame.len(), Ordering::AcqRel);
        Some(delivery)
    }

    /// Takes a delivery that is already waiting, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Delivery> {
        let delivery = self.rx.try_recv().ok()?;
        self.queued_bytes.fetch_sub(delivery.frame.len(), Ordering::AcqRel);
        Some(delivery)
    }
}

/// A one-shot request to close a connection with a code and reason.
#[derive(Debug, Clone, Default)]
pub(crate) struct CloseSignal {
    inner: Arc<CloseInner>,
}

#[derive(Debug, Default)]
struct CloseInner {
    reason: OnceLock<(CloseCode, String)>,
    token: CancellationToken,
}

impl CloseSignal {
    /// Requests the close; returns false when an earlier request already won.
    pub(crate) fn close(&self, code: CloseCode, reason: &str) -> bool {
        let won = self.inner.reason.set((code, reason.to_owned())).is_ok();
        if won {
            self.inner.token.cancel();
        }
        won
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.inner.token.is_cancelled()
    }

    /// Resolves once a close was requested, with its code and reason.
    pub(crate) async fn requested(&self) -> (CloseCode, String) {
        self.inner.token.cancelled().await;
        self.inner.reason.get().cloned().unwrap_or((CloseCode::INTERNAL_ERROR, String::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{DeliveryKind, Target};
    use axum::extract::ws::Utf8Bytes;

    fn d(text: &'static str) -> Delivery {
        Delivery {
            target: Target::All,
            frame: Utf8Bytes::from(text),
            kind: DeliveryKind::Message,
            offset: None,
        }
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
        assert_eq!(queue.recv().await.unwrap().frame, "x");
    }

    #[tokio::test]
    async fn overflowing_by_bytes_closes_as_slow_consumer() {
        let (outbound, mut queue) = channel(1, "u".into(), 100, 10);
        assert_eq!(outbound.push(&d("123456")), Pushed::Queued);
        // Draining frees the bytes again.
        assert_eq!(queue.recv().await.unwrap().frame, "123456");
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
}
