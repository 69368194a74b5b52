//! The per-connection budget of incoming events and CONNECTs.

use std::time::Instant;

use switchyard_engineio::{Rate, TokenBucket};

/// The outcome of one event (or CONNECT) against a connection's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateVerdict {
    Allowed,
    /// The first event dropped since the client was last within its rate.
    FirstDrop,
    Dropped,
    /// A full burst dropped since the warning: time to disconnect.
    Disconnect,
}

/// A token bucket for what a client sends (events and CONNECTs), with a count of drops since
/// the rate was last kept. One per connection: leaving and re-joining a namespace does not
/// refill it.
#[derive(Debug, Default)]
pub(crate) struct EventBucket {
    bucket: TokenBucket,
    dropped: u32,
}

impl EventBucket {
    pub(crate) fn take(&mut self, now: Instant, rate: Rate) -> RateVerdict {
        if self.bucket.try_take(now, rate) {
            self.dropped = 0;
            return RateVerdict::Allowed;
        }
        self.dropped += 1;
        match self.dropped {
            1 => RateVerdict::FirstDrop,
            n if n > rate.burst.max(1) => RateVerdict::Disconnect,
            _ => RateVerdict::Dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn event_bucket_allows_burst_warns_once_then_disconnects() {
        let rate = Rate::new(10.0, 3);
        let mut bucket = EventBucket::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(t0, rate), RateVerdict::Allowed);
        }
        assert_eq!(bucket.take(t0, rate), RateVerdict::FirstDrop);
        assert_eq!(bucket.take(t0, rate), RateVerdict::Dropped);
        assert_eq!(bucket.take(t0, rate), RateVerdict::Dropped);
        assert_eq!(bucket.take(t0, rate), RateVerdict::Disconnect);
    }

    #[test]
    fn event_bucket_refills_and_forgives() {
        let rate = Rate::new(10.0, 1);
        let mut bucket = EventBucket::default();
        let t0 = Instant::now();
        assert_eq!(bucket.take(t0, rate), RateVerdict::Allowed);
        assert_eq!(bucket.take(t0, rate), RateVerdict::FirstDrop);
        let later = t0 + Duration::from_millis(100);
        assert_eq!(bucket.take(later, rate), RateVerdict::Allowed);
        assert_eq!(bucket.take(later, rate), RateVerdict::FirstDrop);
    }
}
