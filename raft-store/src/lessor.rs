//! Lease expiry clocks, kept only by the leader.
//!
//! Grants and revocations go through the log; time does not. The leader holds a deadline per
//! lease, refreshed by keep-alives; when one passes, the leader proposes a revoke through the log,
//! so every member deletes the lease's keys at the same revision. A new leader starts every clock
//! afresh at the full TTL, as etcd does on promotion, so no lease expires early because of a
//! leader change.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Deadlines of the leases the state machine holds, on this leader's clock.
#[derive(Debug, Default)]
pub struct Lessor {
    deadlines: HashMap<i64, Instant>,
}

impl Lessor {
    /// Forgets every clock (this member is not the leader).
    pub fn demote(&mut self) {
        self.deadlines.clear();
    }

    /// Aligns clocks with the leases that exist (`id -> ttl`): new leases start at full TTL,
    /// revoked ones are dropped. Returns the leases whose deadline has passed.
    pub fn tick(&mut self, leases: &BTreeMap<i64, i64>, now: Instant) -> Vec<i64> {
        self.deadlines.retain(|id, _| leases.contains_key(id));
        for (id, ttl) in leases {
            self.deadlines
                .entry(*id)
                .or_insert_with(|| now + secs(*ttl));
        }
        let mut expired: Vec<i64> = self
            .deadlines
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable();
        expired
    }

    /// Restarts a lease's clock; returns its TTL, or `None` if the lease does not exist.
    pub fn renew(&mut self, id: i64, ttl: Option<i64>, now: Instant) -> Option<i64> {
        let ttl = ttl?;
        self.deadlines.insert(id, now + secs(ttl));
        Some(ttl)
    }

    /// Seconds left on a lease's clock (rounded up), or its full TTL if the clock has not started.
    pub fn remaining(&self, id: i64, ttl: i64, now: Instant) -> i64 {
        match self.deadlines.get(&id) {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(now);
                left.as_millis().div_ceil(1000) as i64
            }
            None => ttl,
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_expires_after_its_ttl_unless_renewed() {
        let mut l = Lessor::default();
        let t0 = Instant::now();
        let leases = BTreeMap::from([(1, 5), (2, 5)]);
        assert!(l.tick(&leases, t0).is_empty());
        assert_eq!(l.renew(2, Some(5), t0 + Duration::from_secs(4)), Some(5));
        assert_eq!(l.tick(&leases, t0 + Duration::from_secs(5)), vec![1]);
        assert_eq!(l.remaining(2, 5, t0 + Duration::from_secs(5)), 4);
    }

    #[test]
    fn demotion_restarts_clocks_at_full_ttl() {
        let mut l = Lessor::default();
        let t0 = Instant::now();
        let leases = BTreeMap::from([(1, 5)]);
        l.tick(&leases, t0);
        l.demote();
        assert!(l.tick(&leases, t0 + Duration::from_secs(6)).is_empty());
        assert_eq!(l.tick(&leases, t0 + Duration::from_secs(11)), vec![1]);
    }

    #[test]
    fn renewing_an_unknown_lease_fails() {
        assert_eq!(Lessor::default().renew(9, None, Instant::now()), None);
    }
}
