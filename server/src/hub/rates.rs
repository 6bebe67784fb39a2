//! [`RateWindow`]: messages, connections and deliveries per second over the
//! last minute, from the node's monotonic counters.
//!
//! A background task records the counters once a second; a rate is the
//! difference between the newest sample and the oldest one still inside the
//! window, divided by the time between them. Nothing on the message path
//! changes: the counters are the atomics it already increments.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// How far back the rates look, in milliseconds.
pub(crate) const WINDOW_MS: u64 = 60_000;

/// One reading of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) messages: u64,
    pub(crate) connections: u64,
    pub(crate) deliveries: u64,
}

/// Rates over the last minute, as `GET /api/stats` reports them under `rates`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rates {
    /// Messages accepted per second.
    pub messages_per_sec: f64,
    /// Connections accepted per second.
    pub connections_per_sec: f64,
    /// Frames queued to connections per second (one per recipient).
    pub deliveries_per_sec: f64,
    /// The seconds the rates cover: up to 60, less while the hub is younger
    /// than a minute (0 before the second sample).
    pub window_secs: f64,
}

/// The samples of the last minute.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    samples: Mutex<VecDeque<(u64, Totals)>>,
}

impl RateWindow {
    /// Records the counters as they stand at `now_ms`; drops samples that
    /// fell out of the window (keeping one at its edge to measure from).
    pub(crate) fn record(&self, now_ms: u64, totals: Totals) {
        let mut samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        samples.push_back((now_ms, totals));
        while samples.len() > 2 && samples[1].0 + WINDOW_MS <= now_ms {
            samples.pop_front();
        }
    }

    /// The rates between the oldest and the newest sample.
    pub(crate) fn rates(&self) -> Rates {
        let samples = self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (Some(&(from, old)), Some(&(to, new))) = (samples.front(), samples.back()) else {
            return Rates::default();
        };
        if to <= from {
            return Rates::default();
        }
        let secs = (to - from) as f64 / 1000.0;
        let per_sec = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
        Rates {
            messages_per_sec: per_sec(new.messages, old.messages),
            connections_per_sec: per_sec(new.connections, old.connections),
            deliveries_per_sec: per_sec(new.deliveries, old.deliveries),
            window_secs: secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(messages: u64) -> Totals {
        Totals { messages, connections: messages / 10, deliveries: messages * 3 }
    }

    #[test]
    fn rates_are_the_growth_over_the_window_divided_by_its_length() {
        let window = RateWindow::default();
        assert_eq!(window.rates(), Rates::default(), "no samples yet");
        window.record(1_000, totals(0));
        assert_eq!(window.rates().window_secs, 0.0, "one sample measures nothing");
        window.record(3_000, totals(100));
        let rates = window.rates();
        assert_eq!((rates.messages_per_sec, rates.window_secs), (50.0, 2.0));
        assert_eq!((rates.connections_per_sec, rates.deliveries_per_sec), (5.0, 150.0));
    }

    #[test]
    fn only_the_last_minute_counts() {
        let window = RateWindow::default();
        // A burst in the first second, then a minute and more of quiet.
        window.record(0, totals(0));
        window.record(1_000, totals(6_000));
        for second in 2..=120 {
            window.record(second * 1_000, totals(6_000));
        }
        let rates = window.rates();
        assert_eq!(rates.messages_per_sec, 0.0, "the burst left the window: {rates:?}");
        assert_eq!(rates.window_secs, 60.0);
        // Steady traffic again: 10 a second.
        for second in 121..=180 {
            window.record(second * 1_000, totals(6_000 + (second - 120) * 10));
        }
        assert_eq!(window.rates().messages_per_sec, 10.0);
    }
}
