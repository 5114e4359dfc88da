//! When one simulated kubelet renews its node's Lease and posts its node's status. Pure: the
//! caller passes the time and reports what happened; this says when to wake next.
//!
//! Renewals of a fleet are spread evenly over the renew interval — node `i` of `n` renews at
//! `epoch + i/n × interval`, then every interval — so the masters see a steady rate rather
//! than a burst per interval. Status posts follow kubelet's rule: when something changed, and
//! otherwise once per report period (five minutes), spread over the period the same way.
//! Both are checked on the renewal tick, as kubelet checks its status every 10 s.

use std::time::{Duration, Instant};

use keel_client::runtime::Backoff;

/// kubelet's `nodeStatusReportFrequency`: an unchanged status is posted this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(300);

/// Retries of a failed renewal: kubelet's lease controller backs off from 200 ms to 7 s.
const RETRY: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(7),
};

#[derive(Debug, Clone)]
pub struct Schedule {
    epoch: Instant,
    interval: Duration,
    /// This node's place within each renew interval.
    renew_offset: Duration,
    /// This node's place within each report period.
    report_offset: Duration,
    next_renew: Instant,
    next_report: Instant,
    failures: u32,
}

impl Schedule {
    /// Node `i` of `count`, renewing every `interval` from `epoch` (shared by the fleet).
    /// It renews first at `now` — a kubelet creates its Lease right after registering — and
    /// reports first at its first slot after `now`, having just posted its status.
    pub fn new(i: usize, count: usize, epoch: Instant, interval: Duration, now: Instant) -> Self {
        let share = |period: Duration| {
            let nanos = period.as_nanos() * i as u128 / count.max(1) as u128;
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        };
        let report_offset = share(REPORT_EVERY);
        Self {
            epoch,
            interval,
            renew_offset: share(interval),
            report_offset,
            next_renew: now,
            next_report: next_slot(epoch, report_offset, REPORT_EVERY, now),
            failures: 0,
        }
    }

    /// When to wake to renew (and check the status).
    pub fn next_wake(&self) -> Instant {
        self.next_renew
    }

    /// The renewal at `now` succeeded: the next one is at this node's next slot.
    pub fn renewed(&mut self, now: Instant) {
        self.failures = 0;
        self.next_renew = next_slot(self.epoch, self.renew_offset, self.interval, now);
    }

    /// The renewal at `now` failed: retry after a backoff, but never later than a regular
    /// slot would have come.
    pub fn renew_failed(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        self.next_renew = now + RETRY.delay(self.failures).min(self.interval);
    }

    /// Whether to post the status at `now`: it `drifted` from what this kubelet would post,
    /// or a report period has passed.
    pub fn report_due(&self, now: Instant, drifted: bool) -> bool {
        drifted || now >= self.next_report
    }

    /// The status was posted at `now`.
    pub fn reported(&mut self, now: Instant) {
        self.next_report = next_slot(self.epoch, self.report_offset, REPORT_EVERY, now);
    }
}

/// The first `epoch + offset + k × period` (k ≥ 0) strictly after `now`.
fn next_slot(epoch: Instant, offset: Duration, period: Duration, now: Instant) -> Instant {
    let first = epoch + offset;
    if now < first || period.is_zero() {
        return first;
    }
    let periods = (now - first).as_nanos() / period.as_nanos() + 1;
    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
    first + period.saturating_mul(periods)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Duration = Duration::from_secs(10);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_first_renewal_is_immediate_and_the_next_at_the_node_s_slot() {
        let epoch = Instant::now();
        let now = epoch + secs(3.0);
        let mut s = Schedule::new(1, 4, epoch, TEN, now);

        assert_eq!(s.next_wake(), now);
        s.renewed(now);
        // Node 1 of 4 has the 2.5 s slot: 2.5 has passed, so 12.5.
        assert_eq!(s.next_wake(), epoch + secs(12.5));
        s.renewed(epoch + secs(12.5));
        assert_eq!(s.next_wake(), epoch + secs(22.5));
    }

    #[test]
    fn renewals_of_a_fleet_are_spread_evenly_over_the_interval() {
        let epoch = Instant::now();
        let now = epoch + secs(30.0);

        let offsets: Vec<Duration> = (0..5)
            .map(|i| {
                let mut s = Schedule::new(i, 5, epoch, TEN, now);
                s.renewed(now);
                s.next_wake() - now
            })
            .collect();

        assert_eq!(
            offsets,
            [secs(10.0), secs(2.0), secs(4.0), secs(6.0), secs(8.0)]
        );
    }

    #[test]
    fn a_late_renewal_skips_the_slots_it_missed() {
        let epoch = Instant::now();
        let mut s = Schedule::new(0, 1, epoch, TEN, epoch);

        s.renewed(epoch + secs(35.0));

        assert_eq!(s.next_wake(), epoch + secs(40.0));
    }

    #[test]
    fn failed_renewals_back_off_from_200ms_up_to_the_interval() {
        let epoch = Instant::now();
        let mut s = Schedule::new(0, 1, epoch, secs(1.0), epoch);

        let waits: Vec<Duration> = (0..5)
            .map(|_| {
                s.renew_failed(epoch);
                s.next_wake() - epoch
            })
            .collect();
        s.renewed(epoch);

        assert_eq!(
            waits,
            [secs(0.2), secs(0.4), secs(0.8), secs(1.0), secs(1.0)]
        );
        assert_eq!(s.next_wake(), epoch + secs(1.0));
    }

    #[test]
    fn status_is_reported_when_it_drifted_or_once_per_period() {
        let epoch = Instant::now();
        // Node 0 of 2 reports at 0, 300, 600 s; node 1 at 150, 450 s.
        let s0 = Schedule::new(0, 2, epoch, TEN, epoch + secs(1.0));
        let mut s1 = Schedule::new(1, 2, epoch, TEN, epoch + secs(1.0));

        assert!(!s0.report_due(epoch + secs(299.0), false));
        assert!(s0.report_due(epoch + secs(299.0), true));
        assert!(s0.report_due(epoch + secs(300.0), false));
        assert!(!s1.report_due(epoch + secs(149.0), false));
        assert!(s1.report_due(epoch + secs(150.0), false));
        s1.reported(epoch + secs(151.0));
        assert!(!s1.report_due(epoch + secs(449.0), false));
        assert!(s1.report_due(epoch + secs(450.0), false));
    }
}
