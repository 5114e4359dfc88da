//! The delay before a job replaces failed pods: 10 s after a failure, doubling with each
//! further failure since the last success, at most 10 minutes (kube-controller-manager 1.32's
//! DefaultJobPodFailureBackOff and MaxJobPodFailureBackOff). Kept per job in memory, as
//! Kubernetes keeps its backoff records: a new term starts without delays.

use std::time::Duration;

use keel_client::k8s_openapi::chrono::{DateTime, Utc};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(10 * 60);

/// Failures seen since the job's last success, and when the latest one was seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: u32,
    pub last_failure: Option<DateTime<Utc>>,
}

impl Record {
    /// The record after newly finished pods: any success resets the count (Kubernetes orders
    /// them by finish time; within one observation, failures after a success still count).
    pub fn after(self, new_successes: usize, new_failures: usize, now: DateTime<Utc>) -> Record {
        let mut next = self;
        if new_successes > 0 {
            next.failures_after_last_success = 0;
            next.last_failure = None;
        }
        if new_failures > 0 {
            next.failures_after_last_success = next
                .failures_after_last_success
                .saturating_add(u32::try_from(new_failures).unwrap_or(u32::MAX));
            next.last_failure = Some(now);
        }
        next
    }

    /// How long, from `now`, new pods must wait.
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let exponent = self.failures_after_last_success.saturating_sub(1).min(16);
        let delay = INITIAL.saturating_mul(1 << exponent).min(MAX);
        let elapsed = (now - last).to_std().unwrap_or_default();
        delay.saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::chrono::TimeDelta;

    #[test]
    fn the_delay_doubles_per_failure_up_to_ten_minutes() {
        let t0 = DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap_or_default();
        let one = Record::default().after(0, 1, t0);
        assert_eq!(one.remaining(t0), Duration::from_secs(10));
        assert_eq!(
            one.remaining(t0 + TimeDelta::seconds(4)),
            Duration::from_secs(6)
        );
        let three = one.after(0, 2, t0);
        assert_eq!(three.remaining(t0), Duration::from_secs(40));
        let many = three.after(0, 20, t0);
        assert_eq!(many.remaining(t0), MAX);
    }

    #[test]
    fn a_success_clears_the_delay() {
        let t0 = DateTime::<Utc>::from_timestamp(1_000_000, 0).unwrap_or_default();
        let failed = Record::default().after(0, 3, t0);
        assert_eq!(failed.after(1, 0, t0).remaining(t0), Duration::ZERO);
        assert_eq!(Record::default().remaining(t0), Duration::ZERO);
    }
}
