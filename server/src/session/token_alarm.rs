//! [`TokenAlarm`]: when a connection's token next needs attention (the
//! `refresh` warning, then the expiry).
//!
//! The timer is armed once per token and phase and kept between wake-ups, so
//! a busy connection does not register a new timer for every frame, and one
//! whose token never expires holds no timer at all.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// What the alarm is set for: the token's expiry (Unix seconds), whether it
/// rings for the expiry itself (true) or the warning before it (false), and
/// the instant it rings.
pub(super) type Due = (u64, bool, Instant);

/// A connection's token alarm.
#[derive(Debug, Default)]
pub(super) struct TokenAlarm {
    armed: Option<Armed>,
}

#[derive(Debug)]
struct Armed {
    expires_at: u64,
    expired: bool,
    sleep: Pin<Box<Sleep>>,
}

impl TokenAlarm {
    /// Points the alarm at `due`. The timer is kept when the token and the
    /// phase are the ones it is already armed for; `None` disarms it.
    pub(super) fn set(&mut self, due: Option<Due>) {
        let Some((expires_at, expired, at)) = due else {
            self.armed = None;
            return;
        };
        match &mut self.armed {
            Some(armed) if armed.expires_at == expires_at && armed.expired == expired => {}
            Some(armed) => {
                armed.sleep.as_mut().reset(at);
                (armed.expires_at, armed.expired) = (expires_at, expired);
            }
            None => {
                let sleep = Box::pin(tokio::time::sleep_until(at));
                self.armed = Some(Armed { expires_at, expired, sleep });
            }
        }
    }

    /// Resolves when the alarm rings, with true for the expiry and false for
    /// the warning; never while disarmed. Cancel-safe.
    pub(super) async fn rings(&mut self) -> bool {
        match &mut self.armed {
            Some(armed) => {
                armed.sleep.as_mut().await;
                armed.expired
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn rings_for_the_phase_it_was_set_for_and_keeps_its_deadline() {
        let mut alarm = TokenAlarm::default();
        let start = Instant::now();
        alarm.set(Some((100, false, start + Duration::from_secs(5))));
        // The same token and phase again, with a later instant (as a caller
        // computing "now + left" would pass): the first deadline stands.
        alarm.set(Some((100, false, start + Duration::from_secs(9))));
        assert!(!alarm.rings().await);
        assert_eq!(Instant::now(), start + Duration::from_secs(5));
        // The expiry phase re-arms it.
        alarm.set(Some((100, true, start + Duration::from_secs(8))));
        assert!(alarm.rings().await);
        assert_eq!(Instant::now(), start + Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_token_moves_the_alarm_and_none_disarms_it() {
        let mut alarm = TokenAlarm::default();
        let start = Instant::now();
        alarm.set(Some((100, false, start + Duration::from_secs(5))));
        alarm.set(Some((200, false, start + Duration::from_secs(50))));
        assert!(!alarm.rings().await);
        assert_eq!(Instant::now(), start + Duration::from_secs(50));
        alarm.set(None);
        let rang = tokio::time::timeout(Duration::from_secs(3600), alarm.rings()).await;
        assert!(rang.is_err(), "a disarmed alarm never rings");
    }
}
