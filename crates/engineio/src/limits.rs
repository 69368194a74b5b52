//! Admission limits: how many sessions, from where, how fast, and from which origins.
//!
//! Each limit is checked when a handshake arrives, before a session exists, so a flood costs
//! a map lookup and a short answer. Refusals are HTTP errors with a JSON body (plain text for
//! a WebSocket upgrade), and a log line.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
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

/// A token bucket for a [`Rate`]: full (`burst` tokens) at first, refilled at `per_second`.
/// The one bucket behind every rate limit: handshakes per address here, events per connection
/// in the Socket.IO layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenBucket {
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// Takes one token at `now` if there is one.
    pub fn try_take(&mut self, now: Instant, rate: Rate) -> bool {
        let burst = f64::from(rate.burst);
        let tokens = match self.last {
            None => burst,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                (self.tokens + elapsed * rate.per_second).min(burst)
            }
        };
        self.last = Some(now);
        if tokens >= 1.0 {
            self.tokens = tokens - 1.0;
            true
        } else {
            self.tokens = tokens;
            false
        }
    }

    /// When a token was last asked for.
    pub fn last_used(&self) -> Option<Instant> {
        self.last
    }
}

/// Limits on sessions, checked at each handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most live sessions in total (default 100,000).
    pub max_sessions: Option<usize>,
    /// Most live sessions from one address (default: no limit; the server binary sets one).
    /// An IPv6 peer counts as its prefix of [`EngineConfig::ipv6_prefix_len`] bits (a /64 by
    /// default), see [`address_key`].
    ///
    /// [`EngineConfig::ipv6_prefix_len`]: crate::EngineConfig::ipv6_prefix_len
    pub max_sessions_per_ip: Option<usize>,
    /// Handshakes allowed per address, keyed like `max_sessions_per_ip` (default: no limit;
    /// the server binary sets one). Only an admitted handshake takes a token.
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
    /// The server is shutting down: its sessions are closing and no new one is opened.
    #[error("Server shutting down")]
    ShuttingDown,
    /// The handshake's headers are bigger than `max_header_bytes`.
    #[error("Request headers too large")]
    HeadersTooLarge,
}

impl Refusal {
    /// Every kind of refusal.
    pub const ALL: [Refusal; 6] = [
        Refusal::TooManySessions,
        Refusal::TooManySessionsFromAddress,
        Refusal::HandshakeRate,
        Refusal::OriginNotAllowed,
        Refusal::ShuttingDown,
        Refusal::HeadersTooLarge,
    ];

    /// A short name for the kind, for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManySessions => "max_connections",
            Refusal::TooManySessionsFromAddress => "max_connections_per_ip",
            Refusal::HandshakeRate => "handshake_rate",
            Refusal::OriginNotAllowed => "origin_not_allowed",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::HeadersTooLarge => "headers_too_large",
        }
    }

    /// The HTTP status of the refusal.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::TooManySessions | Refusal::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManySessionsFromAddress | Refusal::HandshakeRate => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Refusal::OriginNotAllowed => StatusCode::FORBIDDEN,
            Refusal::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }

    /// The JSON body: the engine's `Forbidden` code (4), or `Bad request` (3) for oversized
    /// headers, with a message saying which limit.
    pub fn json_body(self) -> String {
        let code = match self {
            Refusal::HeadersTooLarge => 3,
            _ => 4,
        };
        format!(r#"{{"code":{code},"message":"{self}"}}"#)
    }
}

/// The address the per-address limits count a peer under.
///
/// An IPv4 address counts as itself, and so does an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`,
/// as a dual-stack listener sees IPv4 peers). Any other IPv6 address counts as its first
/// `ipv6_prefix_len` bits (at most 128): one host usually holds a whole /64, so counting per
/// /128 would let it open sessions without limit.
pub fn address_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix_len.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// What the admission limits hold right now: every count here is given back when its session
/// ends, so an idle engine reads all zeroes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdmissionStats {
    /// Sessions admitted and not yet ended.
    pub sessions: usize,
    /// Addresses (see [`address_key`]) holding at least one session; counted only when
    /// [`Limits::max_sessions_per_ip`] is set.
    pub addresses: usize,
}

/// The live state behind [`Limits`]: session counts, per address too, and handshake buckets.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    sessions: usize,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, TokenBucket>,
    last_sweep: Option<Instant>,
    /// Set by [`Admission::shut_down`]: every handshake from then on is refused.
    shutting_down: bool,
}

/// One admitted session's place in the counts. Dropping it gives the place back, so a session
/// that never opens, or a handshake abandoned on any path, cannot keep it.
#[must_use = "dropping the slot gives the place back at once"]
pub(crate) struct Slot {
    admission: Arc<Mutex<Admission>>,
    /// The address key counted for this session, if per-address counting is on.
    counted: Option<IpAddr>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("counted", &self.counted)
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.admission).release(self.counted);
    }
}

fn lock(admission: &Mutex<Admission>) -> MutexGuard<'_, Admission> {
    // Admission updates cannot panic midway; the data stays consistent.
    admission
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checks a handshake from `ip` (already an [`address_key`], if known) with `origin` (if sent).
/// Only a handshake that passes every check takes anything: a handshake token, and a slot that
/// counts the session (in total and for its address) until it is dropped.
pub(crate) fn admit(
    admission: &Arc<Mutex<Admission>>,
    limits: &Limits,
    now: Instant,
    ip: Option<IpAddr>,
    origin: Option<&str>,
) -> Result<Slot, Refusal> {
    let counted = lock(admission).admit(limits, now, ip, origin)?;
    Ok(Slot {
        admission: admission.clone(),
        counted,
    })
}

impl Admission {
    /// Refuses every handshake from now on: the server is closing its sessions.
    pub(crate) fn shut_down(&mut self) {
        self.shutting_down = true;
    }

    /// Checks every limit first, then commits: returns the address counted, if any.
    fn admit(
        &mut self,
        limits: &Limits,
        now: Instant,
        ip: Option<IpAddr>,
        origin: Option<&str>,
    ) -> Result<Option<IpAddr>, Refusal> {
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if let (Some(allowed), Some(origin)) = (&limits.allowed_origins, origin) {
            if !allowed.iter().any(|o| o == origin) {
                return Err(Refusal::OriginNotAllowed);
            }
        }
        if limits.max_sessions.is_some_and(|max| self.sessions >= max) {
            return Err(Refusal::TooManySessions);
        }
        let mut counted = None;
        if let Some(ip) = ip {
            // Sessions are counted per address only when that limit is on.
            if let Some(max) = limits.max_sessions_per_ip {
                if self.per_ip.get(&ip).copied().unwrap_or(0) >= max {
                    return Err(Refusal::TooManySessionsFromAddress);
                }
                counted = Some(ip);
            }
            if let Some(rate) = limits.handshake_rate_per_ip {
                self.sweep(now, rate);
                if !self.buckets.entry(ip).or_default().try_take(now, rate) {
                    return Err(Refusal::HandshakeRate);
                }
            }
        }
        // Every check passed: nothing below can refuse.
        self.sessions += 1;
        if let Some(ip) = counted {
            *self.per_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(counted)
    }

    /// A session ended: gives back its place, and its address's if it was counted.
    fn release(&mut self, counted: Option<IpAddr>) {
        self.sessions = self.sessions.saturating_sub(1);
        let Some(ip) = counted else {
            return;
        };
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// What is counted now.
    pub(crate) fn stats(&self) -> AdmissionStats {
        AdmissionStats {
            sessions: self.sessions,
            addresses: self.per_ip.len(),
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
        self.buckets.retain(|_, bucket| {
            bucket
                .last_used()
                .is_some_and(|last| now.saturating_duration_since(last) < refill)
        });
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

    fn shared() -> Arc<Mutex<Admission>> {
        Arc::new(Mutex::new(Admission::default()))
    }

    fn stats(admission: &Arc<Mutex<Admission>>) -> AdmissionStats {
        lock(admission).stats()
    }

    #[test]
    fn total_sessions_are_capped_and_given_back() {
        let limits = Limits {
            max_sessions: Some(2),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        let first = admit(&admission, &limits, now, ip(1), None).unwrap();
        let _second = admit(&admission, &limits, now, None, None).unwrap();
        assert_eq!(
            admit(&admission, &limits, now, ip(2), None).unwrap_err(),
            Refusal::TooManySessions
        );
        drop(first);
        assert!(admit(&admission, &limits, now, ip(2), None).is_ok());
    }

    #[test]
    fn sessions_per_address_are_capped_and_released() {
        let limits = Limits {
            max_sessions_per_ip: Some(2),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        let first = admit(&admission, &limits, now, ip(1), None).unwrap();
        let _second = admit(&admission, &limits, now, ip(1), None).unwrap();
        assert_eq!(
            admit(&admission, &limits, now, ip(1), None).unwrap_err(),
            Refusal::TooManySessionsFromAddress
        );
        // Another address is not affected.
        let other = admit(&admission, &limits, now, ip(2), None).unwrap();
        drop(first);
        assert_eq!(
            lock(&admission).sessions_from(IpAddr::from([127, 0, 0, 1])),
            1
        );
        let _third = admit(&admission, &limits, now, ip(1), None).unwrap();
        drop(other);
        assert_eq!(
            stats(&admission),
            AdmissionStats {
                sessions: 2,
                addresses: 1
            }
        );
    }

    #[test]
    fn every_slot_dropped_leaves_every_count_at_zero() {
        let limits = Limits {
            max_sessions_per_ip: Some(3),
            handshake_rate_per_ip: Some(Rate::new(1.0, 100)),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        let slots: Vec<Slot> = (0..6)
            .filter_map(|i| admit(&admission, &limits, now, ip(i % 2), None).ok())
            .collect();
        assert_eq!(slots.len(), 6);
        assert_eq!(
            stats(&admission),
            AdmissionStats {
                sessions: 6,
                addresses: 2
            }
        );
        drop(slots);
        assert_eq!(stats(&admission), AdmissionStats::default());
    }

    #[test]
    fn a_refused_handshake_takes_no_token() {
        let limits = Limits {
            max_sessions_per_ip: Some(1),
            handshake_rate_per_ip: Some(Rate::new(0.001, 2)),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        let held = admit(&admission, &limits, now, ip(1), None).unwrap();
        // Refused by the per-address limit, many times: the bucket keeps its last token.
        for _ in 0..5 {
            assert_eq!(
                admit(&admission, &limits, now, ip(1), None).unwrap_err(),
                Refusal::TooManySessionsFromAddress
            );
        }
        drop(held);
        let _again = admit(&admission, &limits, now, ip(1), None).unwrap();
    }

    #[test]
    fn handshake_rate_allows_a_burst_then_refills() {
        let limits = Limits {
            handshake_rate_per_ip: Some(Rate::new(10.0, 3)),
            ..Limits::default()
        };
        let admission = shared();
        let t0 = Instant::now();
        let mut slots = Vec::new();
        for _ in 0..3 {
            slots.push(admit(&admission, &limits, t0, ip(1), None).unwrap());
        }
        assert_eq!(
            admit(&admission, &limits, t0, ip(1), None).unwrap_err(),
            Refusal::HandshakeRate
        );
        slots.push(admit(&admission, &limits, t0, ip(2), None).unwrap());
        // 100 ms later one token is back.
        let later = t0 + Duration::from_millis(100);
        slots.push(admit(&admission, &limits, later, ip(1), None).unwrap());
        assert_eq!(
            admit(&admission, &limits, later, ip(1), None).unwrap_err(),
            Refusal::HandshakeRate
        );
    }

    #[test]
    fn origins_outside_the_allow_list_are_refused() {
        let limits = Limits {
            allowed_origins: Some(vec!["https://app.test".into()]),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        assert!(admit(&admission, &limits, now, ip(1), Some("https://app.test")).is_ok());
        assert_eq!(
            admit(&admission, &limits, now, ip(1), Some("https://evil.test")).unwrap_err(),
            Refusal::OriginNotAllowed
        );
        // No Origin header: not a browser, not a cross-site request.
        assert!(admit(&admission, &limits, now, ip(1), None).is_ok());
    }

    fn v6(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_are_keyed_by_their_prefix() {
        // Two hosts of one /64 share a key; the next /64 does not.
        let a = address_key(v6("2001:db8:1:2:aaaa::1"), 64);
        let b = address_key(v6("2001:db8:1:2:bbbb:cccc:dddd:eeee"), 64);
        let other = address_key(v6("2001:db8:1:3::1"), 64);
        assert_eq!(a, v6("2001:db8:1:2::"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        // Other prefix lengths, the extremes included.
        assert_eq!(address_key(v6("2001:db8:1:2::1"), 48), v6("2001:db8:1::"));
        assert_eq!(address_key(v6("2001:db8::1"), 128), v6("2001:db8::1"));
        assert_eq!(address_key(v6("2001:db8::1"), 200), v6("2001:db8::1"));
        assert_eq!(address_key(v6("2001:db8::1"), 0), v6("::"));
    }

    #[test]
    fn ipv4_and_ipv4_mapped_ipv6_are_the_same_address() {
        let v4 = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(address_key(v4, 64), v4);
        assert_eq!(address_key(v6("::ffff:192.0.2.7"), 64), v4);
        assert_eq!(address_key(v6("::ffff:192.0.2.7"), 0), v4);
        // IPv4 addresses are never grouped.
        assert_ne!(address_key(IpAddr::from([192, 0, 2, 8]), 64), v4);
    }

    #[test]
    fn one_ipv6_slash_64_shares_its_per_address_limit() {
        let limits = Limits {
            max_sessions_per_ip: Some(2),
            ..Limits::default()
        };
        let admission = shared();
        let now = Instant::now();
        let key = |text: &str| Some(address_key(v6(text), 64));
        let _a = admit(&admission, &limits, now, key("2001:db8::1"), None).unwrap();
        let _b = admit(&admission, &limits, now, key("2001:db8::2"), None).unwrap();
        assert_eq!(
            admit(&admission, &limits, now, key("2001:db8::ffff:3"), None).unwrap_err(),
            Refusal::TooManySessionsFromAddress
        );
        assert!(admit(&admission, &limits, now, key("2001:db8:0:1::1"), None).is_ok());
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
