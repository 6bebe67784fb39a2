//! What the load client's readers share: [`Received`] counts the messages
//! every reader got (with their latencies), [`read_on`] keeps a socket read,
//! [`join_room`] joins and then reads on.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::SinkExt;
use indicatif::ProgressBar;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::percentiles::Percentiles;
use crate::wire::{self, Proto, Socket, latency_of};

type Failure = Box<dyn std::error::Error>;

/// Messages received by all readers together, with their latencies.
#[derive(Default)]
pub struct Received {
    /// Messages received so far.
    pub count: AtomicUsize,
    changed: Notify,
    latencies: Mutex<Vec<Duration>>,
    /// When the last message arrived.
    last: Mutex<Option<Instant>>,
}

/// How a wait for messages ended.
#[derive(Debug, Clone, Copy)]
pub struct Arrived {
    /// Messages received, all of them or fewer.
    pub count: usize,
    /// When the last of them arrived (when the wait ended if none did), so
    /// that a phase whose messages never all arrive is timed to its last
    /// delivery, not to the wait that gave up on the rest.
    pub at: Instant,
}

/// How long a wait goes on with no message arriving before it gives up:
/// a hub that drops messages (a full per-connection buffer, say) never
/// sends them.
const SILENCE: Duration = Duration::from_secs(10);

impl Received {
    /// Counts one message, and its latency if it carries a send time.
    pub fn add(&self, text: &str) {
        if let Some(latency) = latency_of(text) {
            self.latencies.lock().unwrap_or_else(|e| e.into_inner()).push(latency);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.count.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// The latencies recorded so far, leaving none behind.
    pub fn take_latencies(&self) -> Percentiles {
        Percentiles::of(std::mem::take(
            &mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()),
        ))
    }

    /// Waits until `total` messages arrived, or gives up after 10 s in
    /// which none did.
    pub async fn wait_for(&self, total: usize, bar: &ProgressBar) -> Arrived {
        let mut seen = self.count.load(Ordering::Relaxed);
        let mut quiet_since = Instant::now();
        loop {
            let count = self.count.load(Ordering::Relaxed);
            bar.set_position(count as u64);
            if count != seen {
                (seen, quiet_since) = (count, Instant::now());
            }
            if count >= total || quiet_since.elapsed() >= SILENCE {
                let last = *self.last.lock().unwrap_or_else(|e| e.into_inner());
                let at = if count >= total { Instant::now() } else { last.unwrap_or(quiet_since) };
                return Arrived { count, at };
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), self.changed.notified()).await;
        }
    }
}

/// Keeps reading `socket` in the background, as a live client does,
/// counting the messages.
pub fn read_on(mut socket: Socket, proto: Proto, received: Arc<Received>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(text) = wire::next_text(&mut socket, proto).await {
            // Batched, a WebSocket message holds one frame per line.
            for frame in text.split('\n') {
                if proto.is_message(frame) {
                    received.add(frame);
                }
            }
        }
    })
}

/// Joins `room`, waits for the ack, then reads on (presence, counts,
/// messages).
pub async fn join_room(
    mut socket: Socket,
    proto: Proto,
    room: &str,
    received: Arc<Received>,
) -> Result<JoinHandle<()>, Failure> {
    socket.send(Message::text(proto.join(room))).await?;
    wire::read_until(&mut socket, proto, |text| proto.is_ack(text)).await?;
    Ok(read_on(socket, proto, received))
}
