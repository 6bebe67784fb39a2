//! Reconnect timing: [`ReconnectPolicy`] (what the app configures) and
//! [`Backoff`] (the full-jitter exponential delay it produces).

use std::time::Duration;

/// How the client reconnects after losing its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all (default true).
    pub enabled: bool,
    /// The smallest delay before an attempt (default 500 ms).
    pub min_delay: Duration,
    /// The largest delay before an attempt (default 30 s).
    pub max_delay: Duration,
    /// Consecutive failed attempts after which the client gives up; 0 means
    /// never give up (default 0).
    pub max_attempts: u32,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_attempts: 0,
        }
    }
}

impl ReconnectPolicy {
    /// A policy that never reconnects.
    pub fn disabled() -> ReconnectPolicy {
        ReconnectPolicy { enabled: false, ..ReconnectPolicy::default() }
    }

    /// Whether another attempt is allowed after `failed` consecutive failures.
    pub fn allows(&self, failed: u32) -> bool {
        self.enabled && (self.max_attempts == 0 || failed < self.max_attempts)
    }

    /// The delay before attempt number `attempt` (0 for the first retry).
    pub fn backoff(&self) -> Backoff {
        Backoff { min: self.min_delay, max: self.max_delay }
    }
}

/// Full-jitter exponential backoff:
/// `delay = min(max, min + random(0, min(max, min · 2^attempt)))`.
///
/// The jitter spreads clients that lost the same server over the whole window
/// instead of letting them reconnect in lockstep; the exponent is capped so
/// the arithmetic never overflows however long the client keeps trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The base delay.
    pub min: Duration,
    /// The cap.
    pub max: Duration,
}

/// `2^20` times any sane base delay already exceeds any sane cap.
const MAX_EXPONENT: u32 = 20;

impl Backoff {
    /// The upper bound of the jitter window for `attempt`: `min(max, min · 2^attempt)`.
    pub fn window(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(MAX_EXPONENT);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay for `attempt`, given a uniform random number in `[0, 1)`.
    pub fn delay_with(&self, attempt: u32, unit_random: f64) -> Duration {
        let window = self.window(attempt);
        // `mul_f64` panics when float rounding overflows; the checked
        // conversion cannot, and the window bounds the result either way.
        let scaled = window.as_secs_f64() * unit_random.clamp(0.0, 1.0);
        let jitter = Duration::try_from_secs_f64(scaled).map_or(window, |j| j.min(window));
        self.min.saturating_add(jitter).min(self.max)
    }

    /// The delay for `attempt`, with fresh randomness.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_stay_within_the_formulas_bounds() {
        let backoff = Backoff { min: ms(100), max: ms(10_000) };
        for attempt in 0..200 {
            let upper = (ms(100) + backoff.window(attempt)).min(ms(10_000));
            for _ in 0..200 {
                let delay = backoff.delay(attempt);
                assert!(delay >= ms(100), "attempt {attempt}: {delay:?} below min");
                assert!(delay <= upper, "attempt {attempt}: {delay:?} above {upper:?}");
            }
        }
    }

    #[test]
    fn the_window_doubles_then_caps() {
        let backoff = Backoff { min: ms(100), max: ms(1_000) };
        assert_eq!(backoff.window(0), ms(100));
        assert_eq!(backoff.window(1), ms(200));
        assert_eq!(backoff.window(3), ms(800));
        assert_eq!(backoff.window(4), ms(1_000));
        assert_eq!(backoff.window(u32::MAX), ms(1_000), "huge attempts never overflow");
    }

    #[test]
    fn extremes_of_the_random_draw_hit_the_bounds() {
        let backoff = Backoff { min: ms(100), max: ms(1_000) };
        assert_eq!(backoff.delay_with(2, 0.0), ms(100));
        assert_eq!(backoff.delay_with(2, 1.0), ms(500));
        assert_eq!(backoff.delay_with(30, 1.0), ms(1_000), "never above max");
        let huge = Backoff { min: Duration::MAX / 2, max: Duration::MAX };
        assert_eq!(huge.delay_with(u32::MAX, 1.0), Duration::MAX);
    }

    #[test]
    fn jitter_spreads_clients() {
        let backoff = Backoff { min: ms(100), max: ms(10_000) };
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.delay(5)).collect();
        assert!(delays.len() > 40, "full jitter gives distinct delays, got {}", delays.len());
    }

    #[test]
    fn max_attempts_zero_means_unlimited() {
        let policy = ReconnectPolicy::default();
        assert!(policy.allows(1_000_000));
        let limited = ReconnectPolicy { max_attempts: 3, ..ReconnectPolicy::default() };
        assert!(limited.allows(2) && !limited.allows(3));
        assert!(!ReconnectPolicy::disabled().allows(0));
    }
}
