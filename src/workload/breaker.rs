//! A circuit breaker shared by all virtual users, as one application
//! instance would share it: after `threshold` consecutive Redis failures it
//! opens for `cooldown`, during which callers skip Redis entirely; then one
//! probe is let through, and its outcome closes or re-opens the breaker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// Whether a caller may use Redis now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    Go,
    /// The one call that tests whether Redis is back.
    Probe,
    Skip,
}

pub struct Breaker {
    threshold: Option<u32>,
    cooldown: Duration,
    state: Mutex<State>,
    /// How many times the breaker has opened: connections made before the
    /// latest opening are presumed dead (the pool is invalidated).
    opened: AtomicU64,
}

impl Breaker {
    /// `threshold = None` is a breaker that never opens.
    pub fn new(threshold: Option<u32>, cooldown: Duration) -> Self {
        Breaker {
            threshold,
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn permit(&self, now: Instant) -> Permit {
        let mut st = self.lock();
        match *st {
            State::Closed { .. } => Permit::Go,
            State::Open { until } if now >= until => {
                *st = State::HalfOpen;
                Permit::Probe
            }
            State::Open { .. } | State::HalfOpen => Permit::Skip,
        }
    }

    fn open(&self, st: &mut State, now: Instant) -> bool {
        *st = State::Open {
            until: now + self.cooldown,
        };
        self.opened.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Changes each time the breaker opens.
    pub fn epoch(&self) -> u64 {
        self.opened.load(Ordering::Acquire)
    }

    pub fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// Records a failure; returns true when this failure opened the breaker.
    pub fn failure(&self, now: Instant) -> bool {
        let Some(threshold) = self.threshold else {
            return false;
        };
        let mut st = self.lock();
        match *st {
            State::Closed { failures } if failures + 1 >= threshold => self.open(&mut st, now),
            State::Closed { failures } => {
                *st = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen => self.open(&mut st, now),
            State::Open { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new(Some(3), Duration::from_secs(1));
        let t = Instant::now();
        assert!(!b.failure(t));
        assert!(!b.failure(t));
        assert!(b.failure(t), "third consecutive failure opens");
        assert_eq!(b.epoch(), 1);
        assert_eq!(b.permit(t + Duration::from_millis(500)), Permit::Skip);
        assert_eq!(b.permit(t + Duration::from_millis(1001)), Permit::Probe);
        assert_eq!(
            b.permit(t + Duration::from_millis(1002)),
            Permit::Skip,
            "one probe at a time"
        );
        assert!(
            b.failure(t + Duration::from_millis(1003)),
            "a failed probe re-opens"
        );
        assert_eq!(b.permit(t + Duration::from_millis(2004)), Permit::Probe);
        b.success();
        assert_eq!(b.permit(t + Duration::from_millis(2005)), Permit::Go);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = Breaker::new(Some(2), Duration::from_secs(1));
        let t = Instant::now();
        assert!(!b.failure(t));
        b.success();
        assert!(!b.failure(t));
        assert!(b.failure(t));
    }

    #[test]
    fn no_threshold_never_opens() {
        let b = Breaker::new(None, Duration::from_secs(1));
        let t = Instant::now();
        for _ in 0..100 {
            assert!(!b.failure(t));
        }
        assert_eq!(b.permit(t), Permit::Go);
    }
}
