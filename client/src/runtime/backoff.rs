//! Exponential backoff for keys whose reconcile keeps failing: each consecutive failure of a
//! key doubles its retry delay up to a cap, and one success resets it.
//!
//! Pure: the shell asks for delays and reports outcomes; no clocks here.

use std::collections::HashMap;
use std::time::Duration;

use crate::object_key::ObjectKey;

/// How retry delays grow: `initial`, `2 × initial`, `4 × initial`, … never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The delay after the `failures`-th consecutive failure (`failures >= 1`; 0 gives no delay).
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(doublings) = failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        let factor = 2u32.saturating_pow(doublings);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Consecutive failures per key.
#[derive(Debug, Default)]
pub(crate) struct Failures {
    policy: Backoff,
    counts: HashMap<ObjectKey, u32>,
}

impl Failures {
    pub(crate) fn new(policy: Backoff) -> Self {
        Self {
            policy,
            counts: HashMap::new(),
        }
    }

    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub(crate) fn failed(&mut self, key: &ObjectKey) -> Duration {
        let count = self.counts.entry(key.clone()).or_insert(0);
        *count = count.saturating_add(1);
        self.policy.delay(*count)
    }

    /// Forgets `key`'s failures (it succeeded, or is gone): its next failure starts from the
    /// initial delay again.
    pub(crate) fn reset(&mut self, key: &ObjectKey) {
        self.counts.remove(key);
    }

    /// Consecutive failures of `key` so far.
    #[cfg(test)]
    pub(crate) fn count(&self, key: &ObjectKey) -> u32 {
        self.counts.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn delay_doubles_per_failure_up_to_the_cap() {
        let delays: Vec<u128> = (1..=6).map(|n| POLICY.delay(n).as_millis()).collect();

        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn delay_never_overflows() {
        assert_eq!(POLICY.delay(u32::MAX), POLICY.max);
        assert_eq!(POLICY.delay(0), Duration::ZERO);
    }

    #[test]
    fn failures_are_counted_per_key_and_reset_by_success() {
        let a = ObjectKey::cluster("a");
        let b = ObjectKey::cluster("b");
        let mut failures = Failures::new(POLICY);

        let first = failures.failed(&a);
        let second = failures.failed(&a);
        let other = failures.failed(&b);
        failures.reset(&a);
        let after_success = failures.failed(&a);

        assert_eq!(first, Duration::from_millis(100));
        assert_eq!(second, Duration::from_millis(200));
        assert_eq!(other, Duration::from_millis(100));
        assert_eq!(after_success, Duration::from_millis(100));
        assert_eq!(failures.count(&b), 1);
    }
}
