//! [`Percentiles`]: the p50 and p99 of a set of latencies.

use std::time::Duration;

/// Latency percentiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

impl Percentiles {
    /// The percentiles of `samples` (nearest rank); zero for none.
    pub fn of(mut samples: Vec<Duration>) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Percentiles { p50: rank(0.50), p99: rank(0.99) }
    }

    /// `p50 1.20 ms / p99 3.40 ms`.
    pub fn cell(&self) -> String {
        format!("p50 {} / p99 {}", millis(self.p50), millis(self.p99))
    }
}

fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10.0 { format!("{ms:.0} ms") } else { format!("{ms:.2} ms") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_of_a_hundred_samples() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(samples);
        assert_eq!((p.p50, p.p99), (Duration::from_millis(51), Duration::from_millis(99)));
        assert_eq!(p.cell(), "p50 51 ms / p99 99 ms");
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }
}
