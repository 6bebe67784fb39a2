//! [`Pacer`]: keeps what the client sends under the hub's frame rate, so
//! the flush after a reconnect (up to the whole offline queue) is spread
//! out rather than refused.
//!
//! The hub lets a connection send `rate` frames per second with bursts of
//! twice that (its `welcome` says the rate). The client allows itself
//! `rate` frames per one-second window, the window starting with its first
//! frame: even two full windows back to back stay within the hub's burst.
//! A refusal (error 203) empties the window and makes the next one longer.

use std::time::Duration;

use crate::runtime::{self, BoxFuture};

/// The longest pause after repeated refusals.
const MAX_STALL: Duration = Duration::from_secs(8);

/// A fixed-window frame budget.
pub(super) struct Pacer {
    /// Frames per window; `None` when the hub sets no limit.
    budget: Option<u32>,
    used: u32,
    /// When the current window ends; `None` before the first frame.
    window: Option<BoxFuture<()>>,
    /// A refusal emptied the window: nothing goes until it ends.
    stalled: bool,
    /// How long the next stall lasts: doubles with each refusal, back to a
    /// second once a window passes without one.
    stall: Duration,
}

impl Pacer {
    /// A pacer for a hub that allows `rate` frames per second (`None` or 0:
    /// no limit).
    pub(super) fn new(rate: Option<u32>) -> Pacer {
        Pacer {
            budget: rate.filter(|rate| *rate > 0),
            used: 0,
            window: None,
            stalled: false,
            stall: Duration::from_secs(1),
        }
    }

    /// Whether one more frame fits in the current window.
    pub(super) fn allows(&self) -> bool {
        !self.stalled && self.budget.is_none_or(|budget| self.used < budget)
    }

    /// Counts a frame sent, starting a window if none is running.
    pub(super) fn note(&mut self) {
        if self.budget.is_none() {
            return;
        }
        self.used = self.used.saturating_add(1);
        if self.window.is_none() {
            self.window = Some(Box::pin(runtime::sleep(Duration::from_secs(1))));
        }
    }

    /// The hub refused a frame for its rate: nothing more until a longer
    /// window than usual has passed.
    pub(super) fn stall(&mut self) {
        if self.stalled {
            return; // one refusal of several in flight
        }
        self.stalled = true;
        self.window = Some(Box::pin(runtime::sleep(self.stall)));
        self.stall = (self.stall * 2).min(MAX_STALL);
    }

    /// Resolves when the current window ends; pending while none runs.
    pub(super) async fn window_ends(&mut self) {
        match &mut self.window {
            Some(window) => window.await,
            None => std::future::pending().await,
        }
        self.window = None;
        self.used = 0;
        if !std::mem::take(&mut self.stalled) {
            self.stall = Duration::from_secs(1);
        }
    }
}

// On tokio's paused clock, so native only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_window_holds_the_rate_then_refills() {
        let mut pacer = Pacer::new(Some(3));
        for _ in 0..3 {
            assert!(pacer.allows());
            pacer.note();
        }
        assert!(!pacer.allows());
        let started = tokio::time::Instant::now();
        pacer.window_ends().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(pacer.allows());
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_stall_longer_each_time_up_to_a_cap() {
        let mut pacer = Pacer::new(None);
        assert!(pacer.allows(), "no limit before a refusal");
        let mut stalls = Vec::new();
        for _ in 0..6 {
            pacer.stall();
            pacer.stall(); // a second refusal from the same burst
            assert!(!pacer.allows());
            let started = tokio::time::Instant::now();
            pacer.window_ends().await;
            stalls.push(started.elapsed().as_secs());
        }
        assert_eq!(stalls, [1, 2, 4, 8, 8, 8]);
        assert!(pacer.allows(), "no limit after the stall");
        // A window that passes without a refusal brings the stall back to 1 s.
        let mut pacer = Pacer::new(Some(5));
        pacer.stall();
        pacer.window_ends().await;
        pacer.note();
        pacer.window_ends().await;
        pacer.stall();
        let started = tokio::time::Instant::now();
        pacer.window_ends().await;
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_runs_without_a_limit() {
        let mut pacer = Pacer::new(Some(0));
        for _ in 0..10_000 {
            pacer.note();
        }
        assert!(pacer.allows());
        let ended = tokio::time::timeout(Duration::from_secs(60), pacer.window_ends()).await;
        assert!(ended.is_err(), "a window ran with no limit");
    }
}
