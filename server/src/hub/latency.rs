//! [`Latency`]: how long requests take, per request type, as a histogram
//! that costs the request path two atomic additions and no lock.
//!
//! prometheus-client's own histogram takes a lock per observation; this one
//! keeps fixed buckets in atomics and hands them to the encoder at scrape
//! time (`/metrics`, `switchboard_request_duration_seconds`).

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

/// One histogram.
#[derive(Debug, Default)]
struct Buckets {
    /// Per bucket (the last one: above every bound).
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

/// Request durations by request type.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    kinds: [Buckets; KINDS.len()],
}

impl Latency {
    /// Records that a request of type `kind` (an index into [`KINDS`]) took `took`.
    pub(crate) fn observe(&self, kind: usize, took: Duration) {
        let Some(buckets) = self.kinds.get(kind) else { return };
        let seconds = took.as_secs_f64();
        let slot = BOUNDS.iter().position(|bound| seconds <= *bound).unwrap_or(BOUNDS.len());
        buckets.counts[slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        buckets.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Each request type's histogram, ready to register.
    pub(crate) fn snapshot(&self) -> Durations {
        Durations(
            KINDS
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

/// Every request type's histogram as read at a scrape, labelled `type`.
#[derive(Debug, Clone)]
pub(crate) struct Durations(Vec<(&'static str, Snapshot)>);

impl EncodeMetric for Durations {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (kind, snapshot) in &self.0 {
            let labels = [("type", *kind)];
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
        let latency = Latency::default();
        latency.observe(2, Duration::from_micros(80));
        latency.observe(2, Duration::from_millis(3));
        latency.observe(2, Duration::from_secs(9));
        let Durations(all) = latency.snapshot();
        let (kind, publish) = all[2].clone();
        assert_eq!(kind, "publish");
        assert_eq!(publish.counts[0], 1);
        assert_eq!(publish.counts[BOUNDS.iter().position(|b| *b == 0.005).unwrap()], 1);
        assert_eq!(publish.counts[BOUNDS.len()], 1);
        assert!((publish.sum - 9.00308).abs() < 1e-9);
    }
}
