//! Exponential backoff with jitter, computed exactly as socket.io-client's `Backoff` does.
//!
//! The delay before attempt `n` (1-based) is `min * 2^(n-1)`, moved by a deviation of
//! `floor(r * jitter * ms)` down (when `floor(r * 10)` is even) or up (when it is odd), for one
//! uniform `r` in `[0, 1)`, then capped at `max` and truncated to whole milliseconds. So with the
//! defaults (1000 ms, 5000 ms, 0.5) the first delay lies in `[500, 1500]` ms, the second in
//! `[1000, 3000]` ms and every later one in `[2000, 5000]` ms.

use std::time::Duration;

use rand::Rng;

/// The growth factor between two attempts (socket.io-client always uses 2).
const FACTOR: f64 = 2.0;

/// Exponential backoff with jitter; a pure value: the randomness comes from the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    min_ms: f64,
    max_ms: f64,
    jitter: f64,
    attempts: u32,
}

impl Backoff {
    /// A backoff starting at `min`, never above `max`, with a jitter (randomization factor) in
    /// `(0, 1]`; any other jitter means none, as in socket.io-client.
    pub fn new(min: Duration, max: Duration, jitter: f64) -> Backoff {
        Backoff {
            min_ms: min.as_millis() as f64,
            max_ms: max.as_millis() as f64,
            jitter: if jitter > 0.0 && jitter <= 1.0 {
                jitter
            } else {
                0.0
            },
            attempts: 0,
        }
    }

    /// How many delays were handed out since the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Starts over from the first delay.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// The next delay, drawing the jitter from `rng`; counts one attempt.
    pub fn duration<R: Rng + ?Sized>(&mut self, rng: &mut R) -> Duration {
        let random: f64 = rng.gen();
        self.duration_with(random)
    }

    /// The next delay for the uniform draw `random` in `[0, 1)`; counts one attempt.
    pub fn duration_with(&mut self, random: f64) -> Duration {
        let exponent = i32::try_from(self.attempts).unwrap_or(i32::MAX);
        self.attempts = self.attempts.saturating_add(1);
        let mut ms = self.min_ms * FACTOR.powi(exponent);
        if self.jitter > 0.0 {
            let deviation = (random * self.jitter * ms).floor();
            let odd = ((random * 10.0).floor() as u64) & 1 == 1;
            ms = if odd { ms + deviation } else { ms - deviation };
        }
        // `powi` overflows to infinity, which the cap brings back; NaN cannot occur for finite
        // non-negative inputs, and `max(0)` keeps the conversion in range.
        let capped = ms.min(self.max_ms).max(0.0);
        Duration::from_millis(capped.trunc() as u64)
    }

    /// The smallest and largest delay the next attempt (0-based `attempt`) can get.
    pub fn bounds(&self, attempt: u32) -> (Duration, Duration) {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let ms = self.min_ms * FACTOR.powi(exponent);
        let low = (ms - (self.jitter * ms).floor()).min(self.max_ms).max(0.0);
        let high = (ms + (self.jitter * ms).floor()).min(self.max_ms).max(0.0);
        (
            Duration::from_millis(low.trunc() as u64),
            Duration::from_millis(high.trunc() as u64),
        )
    }
}

impl Default for Backoff {
    /// socket.io-client's reconnection defaults: 1000 ms, at most 5000 ms, jitter 0.5.
    fn default() -> Backoff {
        Backoff::new(
            Duration::from_millis(1000),
            Duration::from_millis(5000),
            0.5,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_randomness_the_delay_doubles_up_to_the_cap() {
        let mut backoff = Backoff::new(ms(1000), ms(5000), 0.0);
        let delays: Vec<Duration> = (0..6).map(|_| backoff.duration_with(0.7)).collect();
        assert_eq!(
            delays,
            vec![ms(1000), ms(2000), ms(4000), ms(5000), ms(5000), ms(5000)]
        );
        assert_eq!(backoff.attempts(), 6);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert_eq!(backoff.duration_with(0.7), ms(1000));
    }

    #[test]
    fn even_tenth_subtracts_the_deviation_and_odd_tenth_adds_it() {
        // r = 0.25: floor(2.5) = 2 is even, deviation floor(0.25 * 0.5 * 1000) = 125.
        assert_eq!(Backoff::default().duration_with(0.25), ms(875));
        // r = 0.35: floor(3.5) = 3 is odd, deviation floor(0.35 * 0.5 * 1000) = 175.
        assert_eq!(Backoff::default().duration_with(0.35), ms(1175));
        // r = 0.99 on the third attempt: 4000 + floor(0.99 * 0.5 * 4000) = 5980, capped.
        let mut backoff = Backoff::default();
        backoff.duration_with(0.0);
        backoff.duration_with(0.0);
        assert_eq!(backoff.duration_with(0.99), ms(5000));
        // r = 0: no deviation at all.
        assert_eq!(Backoff::default().duration_with(0.0), ms(1000));
    }

    #[test]
    fn out_of_range_jitter_means_none() {
        assert_eq!(
            Backoff::new(ms(100), ms(800), 1.5).duration_with(0.35),
            ms(100)
        );
        assert_eq!(
            Backoff::new(ms(100), ms(800), -0.2).duration_with(0.35),
            ms(100)
        );
        assert_eq!(
            Backoff::new(ms(100), ms(800), 1.0).duration_with(0.35),
            ms(135)
        );
    }

    #[test]
    fn seeded_sequences_stay_within_the_documented_bounds() {
        for seed in 0..200u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            for attempt in 0..12u32 {
                let (low, high) = backoff.bounds(attempt);
                let delay = backoff.duration(&mut rng);
                assert!(
                    low <= delay && delay <= high,
                    "seed {seed} attempt {attempt}: {delay:?} not in {low:?}..={high:?}"
                );
            }
        }
        let backoff = Backoff::default();
        assert_eq!(backoff.bounds(0), (ms(500), ms(1500)));
        assert_eq!(backoff.bounds(1), (ms(1000), ms(3000)));
        assert_eq!(backoff.bounds(2), (ms(2000), ms(5000)));
        assert_eq!(backoff.bounds(3), (ms(4000), ms(5000)));
        assert_eq!(backoff.bounds(40), (ms(5000), ms(5000)));
    }

    #[test]
    fn one_seed_gives_one_sequence() {
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            (0..5)
                .map(|_| backoff.duration(&mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let mut backoff = Backoff::default();
        for _ in 0..2000 {
            backoff.duration_with(0.5);
        }
        assert_eq!(backoff.duration_with(0.0), ms(5000));
        assert_eq!(backoff.attempts(), 2001);
    }
}
