//! [`Latency`]: how long something takes, per kind, as histograms that
//! cost the measured path two atomic additions and no lock: client requests
//! by type (`switchboard_request_duration_seconds`) and history store
//! operations (`switchboard_store_duration_seconds`).
//!
//! prometheus-client's own histogram takes a lock per observation; this one
//! keeps fixed buckets in atomics and hands them to the encoder at scrape
//! time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// Upper bounds of the buckets, in seconds: 100 µs to 5 s.
pub(crate) const BOUNDS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The request types measured: the first eight of
/// [`FRAME_TYPES`](super::stats::FRAME_TYPES), in the same order.
pub(crate) const KINDS: [&str; 8] =
    ["join", "leave", "publish", "send", "history", "members", "auth", "rpc"];

/// The history store operations measured: storing a message (and, in
/// multi-node mode, publishing it), and reading where a stream stands or
/// what it holds.
pub(crate) const STORE_OPS: [&str; 2] = ["append", "read"];

/// One histogram.
#[derive(Debug, Default)]
struct Buckets {
    /// Per bucket (the last one: above every bound).
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// Durations by kind: `N` histograms.
#[derive(Debug)]
pub(crate) struct Latency<const N: usize> {
    kinds: [Buckets; N],
}

impl<const N: usize> Default for Latency<N> {
    fn default() -> Self {
        Latency { kinds: std::array::from_fn(|_| Buckets::default()) }
    }
}

impl<const N: usize> Latency<N> {
    /// Records that something of kind `kind` (an index into the kinds'
    /// names) took `took`.
    pub(crate) fn observe(&self, kind: usize, took: Duration) {
        let Some(buckets) = self.kinds.get(kind) else { return };
        let seconds = took.as_secs_f64();
        let slot = BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(BOUNDS.len());
        buckets.counts[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        buckets.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Each kind's histogram, ready to register, labelled `label` with the
    /// kinds' `names`.
    pub(crate) fn snapshot(&self, label: &'static str, names: &[&'static str; N]) -> Durations {
        Durations(
            label,
            names
                .iter()
                .zip(&self.kinds)
                .map(|(kind, buckets)| {
                    let counts: Vec<u64> =
                        buckets.counts.iter().map(|count| count.load(Ordering::Relaxed)).collect();
                    let sum = buckets.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                    (*kind, Snapshot { counts, sum })
                })
                .collect(),
        )
    }
}

/// Every kind's histogram as read at a scrape, with the label's name.
#[derive(Debug, Clone)]
pub(crate) struct Durations(&'static str, Vec<(&'static str, Snapshot)>);

impl EncodeMetric for Durations {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (kind, snapshot) in &self.1 {
            let labels = [(self.0, *kind)];
            snapshot.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One histogram as read at a scrape.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    counts: Vec<u64>,
    sum: f64,
}

impl EncodeMetric for Snapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(self.counts.iter().copied())
            .collect();
        let count = self.counts.iter().sum();
        encoder.encode_histogram::<NoLabelSet>(self.sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let latency = Latency::<8>::default();
        latency.observe(2, Duration::from_micros(80));
        latency.observe(2, Duration::from_millis(3));
        latency.observe(2, Duration::from_secs(9));
        let Durations(_, all) = latency.snapshot("type", &KINDS);
        let (kind, publish) = all[2].clone();
        assert_eq!(kind, "publish");
        assert_eq!(publish.counts[0], 1);
        assert_eq!(publish.counts[BOUNDS.iter().position(|b| *b == 0.005).unwrap()], 1);
        assert_eq!(publish.counts[BOUNDS.len()], 1);
        assert!((publish.sum - 9.00308).abs() < 1e-9);
    }
}
