//! The reconnection policy of socket.io-client's `Manager`, as a sans-IO state machine.
//!
//! The driver reports what happened (the connection closed, an attempt failed or succeeded)
//! with the current time and a uniform random draw, and gets back what to do next. No clock
//! and no runtime inside, so the whole policy is tested with made-up instants.
//!
//! The rules, as in socket.io-client:
//! - after an established connection closes (not on purpose), the backoff starts over;
//! - a failed attempt (or a failed first connection) waits for the next, longer delay;
//! - `reconnection_attempts` counts the attempts since the last success; past it, give up;
//! - the events are `reconnect_attempt(n)` when attempt `n` starts (1-based) and
//!   `reconnect(n)` when attempt `n` opened the connection.

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// What the driver must do after a close or a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait until `at`, then make attempt number `attempt` (1-based).
    Retry {
        /// The attempt's number since the last successful connection.
        attempt: u32,
        /// When to start it.
        at: Instant,
    },
    /// The attempts are used up (`reconnect_failed`): stop until the application connects again.
    GiveUp,
    /// Reconnection is off: stop.
    Stop,
}

/// The reconnection state machine of one manager.
#[derive(Debug, Clone)]
pub struct Reconnection {
    enabled: bool,
    max_attempts: Option<u32>,
    backoff: Backoff,
    scheduled: Option<(u32, Instant)>,
}

impl Reconnection {
    /// A policy; `max_attempts` `None` means no limit.
    pub fn new(enabled: bool, max_attempts: Option<u32>, backoff: Backoff) -> Reconnection {
        Reconnection {
            enabled,
            max_attempts,
            backoff,
            scheduled: None,
        }
    }

    /// Attempts made since the last successful connection.
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// Whether a reconnection is under way (an attempt is scheduled or running).
    pub fn reconnecting(&self) -> bool {
        self.backoff.attempts() > 0
    }

    /// The instant the scheduled attempt is due, if one is.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.scheduled.map(|(_, at)| at)
    }

    /// The scheduled attempt is due at `now`: returns its number, or `None` when nothing is
    /// due yet (a spurious wake-up does nothing).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<u32> {
        match self.scheduled {
            Some((attempt, at)) if at <= now => {
                self.scheduled = None;
                Some(attempt)
            }
            _ => None,
        }
    }

    /// An established connection closed without the application asking for it.
    pub fn closed(&mut self, now: Instant, random: f64) -> Next {
        self.backoff.reset();
        self.schedule(now, random)
    }

    /// A connection attempt (the first one or a reconnection) failed.
    pub fn attempt_failed(&mut self, now: Instant, random: f64) -> Next {
        self.schedule(now, random)
    }

    /// A connection opened: returns `Some(n)` when it was reconnection attempt `n`, and starts
    /// the backoff over.
    pub fn opened(&mut self) -> Option<u32> {
        self.scheduled = None;
        let attempts = self.backoff.attempts();
        self.backoff.reset();
        (attempts > 0).then_some(attempts)
    }

    /// The application closed the connection: forget any scheduled attempt.
    pub fn stop(&mut self) {
        self.scheduled = None;
        self.backoff.reset();
    }

    fn schedule(&mut self, now: Instant, random: f64) -> Next {
        self.scheduled = None;
        if !self.enabled {
            return Next::Stop;
        }
        if self
            .max_attempts
            .is_some_and(|max| self.backoff.attempts() >= max)
        {
            self.backoff.reset();
            return Next::GiveUp;
        }
        let delay: Duration = self.backoff.duration_with(random);
        let attempt = self.backoff.attempts();
        let at = now + delay;
        self.scheduled = Some((attempt, at));
        Next::Retry { attempt, at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn policy(max_attempts: Option<u32>) -> Reconnection {
        Reconnection::new(true, max_attempts, Backoff::new(ms(100), ms(400), 0.5))
    }

    #[test]
    fn close_then_failures_back_off_then_success_reports_the_attempt() {
        let start = Instant::now();
        let mut r = policy(None);
        // r = 0.0: no jitter, so the delays are 100, 200, 400, 400.
        assert_eq!(
            r.closed(start, 0.0),
            Next::Retry {
                attempt: 1,
                at: start + ms(100)
            }
        );
        assert_eq!(r.poll_timeout(), Some(start + ms(100)));
        assert_eq!(r.handle_timeout(start + ms(99)), None);
        assert_eq!(r.handle_timeout(start + ms(100)), Some(1));
        assert_eq!(r.handle_timeout(start + ms(100)), None);
        let t1 = start + ms(101);
        assert_eq!(
            r.attempt_failed(t1, 0.0),
            Next::Retry {
                attempt: 2,
                at: t1 + ms(200)
            }
        );
        assert_eq!(r.handle_timeout(t1 + ms(200)), Some(2));
        let t2 = t1 + ms(201);
        assert_eq!(
            r.attempt_failed(t2, 0.0),
            Next::Retry {
                attempt: 3,
                at: t2 + ms(400)
            }
        );
        assert_eq!(r.handle_timeout(t2 + ms(400)), Some(3));
        assert!(r.reconnecting());
        assert_eq!(r.opened(), Some(3));
        assert!(!r.reconnecting());
        assert_eq!(r.poll_timeout(), None);
        // The next close starts from the first delay again.
        let t3 = t2 + ms(10_000);
        assert_eq!(
            r.closed(t3, 0.0),
            Next::Retry {
                attempt: 1,
                at: t3 + ms(100)
            }
        );
    }

    #[test]
    fn first_connection_success_is_not_a_reconnection() {
        let mut r = policy(None);
        assert_eq!(r.opened(), None);
    }

    #[test]
    fn failed_first_connection_retries_like_socket_io_client() {
        let start = Instant::now();
        let mut r = policy(None);
        // r = 0.35: odd tenth, deviation floor(0.35 * 0.5 * 100) = 17.
        assert_eq!(
            r.attempt_failed(start, 0.35),
            Next::Retry {
                attempt: 1,
                at: start + ms(117)
            }
        );
    }

    #[test]
    fn gives_up_after_the_allowed_attempts_and_can_start_again() {
        let start = Instant::now();
        let mut r = policy(Some(2));
        assert!(matches!(
            r.closed(start, 0.0),
            Next::Retry { attempt: 1, .. }
        ));
        assert!(matches!(
            r.attempt_failed(start, 0.0),
            Next::Retry { attempt: 2, .. }
        ));
        assert_eq!(r.attempt_failed(start, 0.0), Next::GiveUp);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.attempts(), 0);
        // After giving up, a new failure (the application connected again) starts over.
        assert!(matches!(
            r.attempt_failed(start, 0.0),
            Next::Retry { attempt: 1, .. }
        ));
    }

    #[test]
    fn zero_attempts_gives_up_at_once_and_disabled_stops() {
        let start = Instant::now();
        assert_eq!(policy(Some(0)).closed(start, 0.0), Next::GiveUp);
        let mut off = Reconnection::new(false, None, Backoff::default());
        assert_eq!(off.closed(start, 0.0), Next::Stop);
        assert_eq!(off.attempt_failed(start, 0.0), Next::Stop);
    }

    #[test]
    fn stop_forgets_the_scheduled_attempt() {
        let start = Instant::now();
        let mut r = policy(None);
        r.closed(start, 0.0);
        r.stop();
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_timeout(start + ms(1000)), None);
        assert_eq!(r.attempts(), 0);
    }
}
