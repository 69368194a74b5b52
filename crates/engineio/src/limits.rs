//! Admission limits: how many sessions, from where, how fast, and from which origins.
//!
//! Each limit is checked when a handshake arrives, before a session exists, so a flood costs
//! a map lookup and a short answer. Refusals are HTTP errors with a JSON body (plain text for
//! a WebSocket upgrade), and a log line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::StatusCode;

/// A token bucket rate: `per_second` on average, with bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Most tokens held at once.
    pub burst: u32,
}

impl Rate {
    /// A rate of `per_second`, with bursts of `burst`.
    pub fn new(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }
}

/// Limits on sessions, checked at each handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most live sessions in total (default 100,000).
    pub max_sessions: Option<usize>,
    /// Most live sessions from one IP address (default: no limit; the server binary sets one).
    pub max_sessions_per_ip: Option<usize>,
    /// Handshakes allowed per IP address (default: no limit; the server binary sets one).
    pub handshake_rate_per_ip: Option<Rate>,
    /// Origins allowed to open sessions, e.g. `https://app.example.com` (default: any). A
    /// handshake with an `Origin` header not in the list is refused; requests without one
    /// (non-browser clients) are not concerned.
    pub allowed_origins: Option<Vec<String>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: Some(100_000),
            max_sessions_per_ip: None,
            handshake_rate_per_ip: None,
            allowed_origins: None,
        }
    }
}

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server holds `max_sessions` already.
    #[error("Too many connections")]
    TooManySessions,
    /// This address holds `max_sessions_per_ip` already.
    #[error("Too many connections from this address")]
    TooManySessionsFromAddress,
    /// This address handshakes faster than allowed.
    #[error("Too many handshakes from this address")]
    HandshakeRate,
    /// The `Origin` header is not in the allow-list.
    #[error("Origin not allowed")]
    OriginNotAllowed,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TooManySessions => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManySessionsFromAddress | Refusal::HandshakeRate => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Refusal::OriginNotAllowed => StatusCode::FORBIDDEN,
        }
    }

    /// The JSON body: the engine's `Forbidden` code (4) with a message saying which limit.
    pub fn json_body(self) -> String {
        format!(r#"{{"code":4,"message":"{self}"}}"#)
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The live state behind [`Limits`]: session counts per address and handshake buckets.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

impl Admission {
    /// Checks a handshake from `ip` (if known) with `origin` (if sent), when `live` sessions
    /// exist; on success the session is counted for its address.
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        now: Instant,
        live: usize,
        ip: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Result<(), Refusal> {
        if let (Some(allowed), Some(origin)) = (&limits.allowed_origins, origin) {
            if !allowed.iter().any(|o| o == origin) {
                return Err(Refusal::OriginNotAllowed);
            }
        }
        if limits.max_sessions.is_some_and(|max| live >= max) {
            return Err(Refusal::TooManySessions);
        }
        let Some(ip) = ip else {
            return Ok(());
        };
        if let Some(rate) = limits.handshake_rate_per_ip {
            self.sweep(now, rate);
            let bucket = self.buckets.entry(ip).or_insert(Bucket {
                tokens: f64::from(rate.burst),
                last: now,
            });
            let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
            bucket.last = now;
            if bucket.tokens < 1.0 {
                return Err(Refusal::HandshakeRate);
            }
            bucket.tokens -= 1.0;
        }
        // Sessions are counted per address only when that limit is on.
        if let Some(max) = limits.max_sessions_per_ip {
            let count = self.per_ip.entry(ip).or_insert(0);
            if *count >= max {
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
                return Err(Refusal::TooManySessionsFromAddress);
            }
            *count += 1;
        }
        Ok(())
    }

    /// A session from `ip` ended.
    pub(crate) fn release(&mut self, ip: Option<IpAddr>) {
        let Some(ip) = ip else {
            return;
        };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Forgets buckets that have refilled, so the map only holds recently active addresses.
    fn sweep(&mut self, now: Instant, rate: Rate) {
        if self
            .last_sweep
            .is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(10))
        {
            return;
        }
        self.last_sweep = Some(now);
        let refill = if rate.per_second > 0.0 {
            Duration::from_secs_f64(f64::from(rate.burst) / rate.per_second)
        } else {
            Duration::MAX
        };
        self.buckets
            .retain(|_, bucket| now.saturating_duration_since(bucket.last) < refill);
    }

    #[cfg(test)]
    fn sessions_from(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn total_sessions_are_capped() {
        let limits = Limits {
            max_sessions: Some(2),
            ..Limits::default()
        };
        let mut admission = Admission::default();
        let now = Instant::now();
        assert_eq!(admission.admit(&limits, now, 1, ip(1), None), Ok(()));
        assert_eq!(
            admission.admit(&limits, now, 2, ip(1), None),
            Err(Refusal::TooManySessions)
        );
    }

    #[test]
    fn sessions_per_address_are_capped_and_released() {
        let limits = Limits {
            max_sessions_per_ip: Some(2),
            ..Limits::default()
        };
        let mut admission = Admission::default();
        let now = Instant::now();
        assert_eq!(admission.admit(&limits, now, 0, ip(1), None), Ok(()));
        assert_eq!(admission.admit(&limits, now, 1, ip(1), None), Ok(()));
        assert_eq!(
            admission.admit(&limits, now, 2, ip(1), None),
            Err(Refusal::TooManySessionsFromAddress)
        );
        // Another address is not affected.
        assert_eq!(admission.admit(&limits, now, 2, ip(2), None), Ok(()));
        admission.release(ip(1));
        assert_eq!(admission.sessions_from(IpAddr::from([127, 0, 0, 1])), 1);
        assert_eq!(admission.admit(&limits, now, 2, ip(1), None), Ok(()));
    }

    #[test]
    fn handshake_rate_allows_a_burst_then_refills() {
        let limits = Limits {
            handshake_rate_per_ip: Some(Rate::new(10.0, 3)),
            ..Limits::default()
        };
        let mut admission = Admission::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(admission.admit(&limits, t0, 0, ip(1), None), Ok(()));
        }
        assert_eq!(
            admission.admit(&limits, t0, 0, ip(1), None),
            Err(Refusal::HandshakeRate)
        );
        assert_eq!(admission.admit(&limits, t0, 0, ip(2), None), Ok(()));
        // 100 ms later one token is back.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(admission.admit(&limits, later, 0, ip(1), None), Ok(()));
        assert_eq!(
            admission.admit(&limits, later, 0, ip(1), None),
            Err(Refusal::HandshakeRate)
        );
    }

    #[test]
    fn origins_outside_the_allow_list_are_refused() {
        let limits = Limits {
            allowed_origins: Some(vec!["https://app.test".into()]),
            ..Limits::default()
        };
        let mut admission = Admission::default();
        let now = Instant::now();
        assert_eq!(
            admission.admit(&limits, now, 0, ip(1), Some("https://app.test")),
            Ok(())
        );
        assert_eq!(
            admission.admit(&limits, now, 0, ip(1), Some("https://evil.test")),
            Err(Refusal::OriginNotAllowed)
        );
        // No Origin header: not a browser, not a cross-site request.
        assert_eq!(admission.admit(&limits, now, 0, ip(1), None), Ok(()));
    }

    #[test]
    fn refusals_have_status_and_json() {
        assert_eq!(
            Refusal::TooManySessions.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Refusal::HandshakeRate.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(Refusal::OriginNotAllowed.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            Refusal::TooManySessionsFromAddress.json_body(),
            r#"{"code":4,"message":"Too many connections from this address"}"#
        );
    }
}
