//! A circuit breaker per backend: after `threshold` consecutive failures to reach a backend the
//! gateway stops trying for `open_for` and answers at once, instead of making every caller wait
//! for a connection that will not come. When the time is up, one call goes through as a trial:
//! its success closes the circuit, its failure opens it again.
//!
//! Only failures to reach the backend count (connection refused, reset, timed out). A backend
//! that answers — even with an error status — is up.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    /// No calls until `until`; the first call after it is the trial (which moves `until` on,
    /// so calls behind it still fail fast while the trial is in flight).
    Open {
        until: Instant,
    },
}

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self { threshold: threshold.max(1), open_for, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    /// `Err(wait)` when the circuit is open: the caller should try again after `wait`.
    pub fn admit(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *state = State::Open { until: now + self.open_for };
                Ok(())
            }
        }
    }

    /// The backend answered.
    pub fn succeeded(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    /// The backend could not be reached.
    pub fn failed(&self, now: Instant) {
        let mut state = self.lock();
        *state = match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                State::Closed { failures: failures + 1 }
            }
            _ => State::Open { until: now + self.open_for },
        };
    }

    pub fn is_open(&self, now: Instant) -> bool {
        matches!(*self.lock(), State::Open { until } if now < until)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a plain value: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(5);

    #[test]
    fn opens_after_threshold_consecutive_failures() {
        let breaker = CircuitBreaker::new(3, OPEN_FOR);
        let t0 = Instant::now();
        breaker.failed(t0);
        breaker.failed(t0);
        assert_eq!(breaker.admit(t0), Ok(()), "two failures of three: still closed");
        breaker.failed(t0);
        assert_eq!(breaker.admit(t0 + Duration::from_secs(1)), Err(Duration::from_secs(4)));
        assert!(breaker.is_open(t0));
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = CircuitBreaker::new(3, OPEN_FOR);
        let t0 = Instant::now();
        breaker.failed(t0);
        breaker.failed(t0);
        breaker.succeeded();
        breaker.failed(t0);
        breaker.failed(t0);
        assert_eq!(breaker.admit(t0), Ok(()));
    }

    #[test]
    fn one_trial_after_the_open_time_then_closed_or_open_again() {
        let breaker = CircuitBreaker::new(1, OPEN_FOR);
        let t0 = Instant::now();
        breaker.failed(t0);
        let later = t0 + OPEN_FOR;
        assert_eq!(breaker.admit(later), Ok(()), "the trial call");
        assert!(breaker.admit(later).is_err(), "calls behind the trial still fail fast");
        breaker.failed(later);
        assert_eq!(
            breaker.admit(later + Duration::from_secs(1)),
            Err(Duration::from_secs(4)),
            "trial failed"
        );

        let again = later + OPEN_FOR;
        assert_eq!(breaker.admit(again), Ok(()));
        breaker.succeeded();
        assert_eq!(breaker.admit(again), Ok(()), "trial succeeded: closed");
        assert!(!breaker.is_open(again));
    }
}
