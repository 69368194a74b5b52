//! Bounded logging of peer misbehaviour: a peer decides how often it misbehaves, so it must
//! not decide how many log lines we write.
//!
//! Within a session, the first fault is logged at WARN and the rest at DEBUG, counted, and
//! summed up in one WARN line when the session closes (see [`peer_fault!`]). Requests that
//! belong to no session (bad handshakes, unknown sids, limit refusals) share a [`LogBudget`]:
//! a few WARN lines per window, then one line saying how many were held back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Logs a peer fault on a session: at WARN the first time, at DEBUG afterwards; every fault is
/// counted for the summary logged when the session closes.
///
/// `$faults` is the session's [`FaultCounter`]; the rest are `tracing` event arguments.
macro_rules! peer_fault {
    ($faults:expr, $($arg:tt)+) => {
        if $faults.record() {
            ::tracing::warn!($($arg)+)
        } else {
            ::tracing::debug!($($arg)+)
        }
    };
}
pub(crate) use peer_fault;

/// How many faults one session's peer committed.
#[derive(Debug, Default)]
pub(crate) struct FaultCounter(AtomicU32);

impl FaultCounter {
    /// Counts one fault; true if it is the first, the one to log loudly.
    pub(crate) fn record(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .is_ok_and(|before| before == 0)
    }

    /// Faults counted so far.
    pub(crate) fn count(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A budget of log lines per time window, shared by events no single session owns.
#[derive(Debug)]
pub struct LogBudget {
    per_window: u32,
    window: Duration,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    window_start: Option<Instant>,
    logged: u32,
    held_back: u64,
}

impl LogBudget {
    /// At most `per_window` lines every `window`.
    pub const fn new(per_window: u32, window: Duration) -> Self {
        LogBudget {
            per_window,
            window,
            state: Mutex::new(BudgetState {
                window_start: None,
                logged: 0,
                held_back: 0,
            }),
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the number of lines held back
    /// since the last one logged (to be reported with it), or `None` to hold this one back.
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let expired = state
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            state.window_start = Some(now);
            state.logged = 0;
        }
        if state.logged >= self.per_window {
            state.held_back = state.held_back.saturating_add(1);
            return None;
        }
        state.logged += 1;
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_fault_of_a_session_is_loud_and_all_are_counted() {
        let faults = FaultCounter::default();
        assert!(faults.record());
        for _ in 0..500_000 {
            assert!(!faults.record());
        }
        assert_eq!(faults.count(), 500_001);
    }

    #[test]
    fn the_macro_counts_each_fault() {
        let faults = FaultCounter::default();
        for i in 0..10 {
            peer_fault!(faults, i, "a fault");
        }
        assert_eq!(faults.count(), 10);
    }

    #[test]
    fn the_budget_logs_a_few_lines_per_window_and_reports_the_rest() {
        let budget = LogBudget::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(budget.allow(t0), Some(0));
        assert_eq!(budget.allow(t0), Some(0));
        assert_eq!(budget.allow(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(budget.allow(t0 + Duration::from_secs(5)), None);
        }
        // The next window's first line says how many were held back.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(budget.allow(later), Some(1000));
        assert_eq!(budget.allow(later), Some(0));
    }
}
