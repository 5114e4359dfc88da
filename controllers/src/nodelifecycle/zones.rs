//! How fast unreachable nodes may get the NoExecute taint that evicts their pods, per zone, as
//! Kubernetes limits it: normally one node every ten seconds (`--node-eviction-rate` 0.1); in
//! a zone where most nodes are unhealthy (at least 55 % and more than two) only one every 100
//! seconds, and only in zones larger than 50 nodes; in a zone where every node is unhealthy,
//! none (the trouble is more likely the network or this side than the nodes). Pure; the
//! clock is an argument.

use std::time::Instant;

/// kube-controller-manager's defaults.
pub const EVICTION_RATE: f64 = 0.1;
pub const SECONDARY_EVICTION_RATE: f64 = 0.01;
pub const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
pub const LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// The state of a zone with `unhealthy` of `total` nodes unhealthy.
pub fn zone_state(total: usize, unhealthy: usize) -> ZoneState {
    if total > 0 && unhealthy == total {
        ZoneState::FullDisruption
    } else if unhealthy > 2 && unhealthy as f64 / total as f64 >= UNHEALTHY_ZONE_THRESHOLD {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// Taints per second allowed in a zone of `total` nodes in `state`.
pub fn rate(state: ZoneState, total: usize) -> f64 {
    match state {
        ZoneState::Normal => EVICTION_RATE,
        ZoneState::PartialDisruption if total > LARGE_CLUSTER_SIZE_THRESHOLD => {
            SECONDARY_EVICTION_RATE
        }
        _ => 0.0,
    }
}

/// A token bucket of burst one: the first taint passes at once, the next after 1/rate.
#[derive(Debug, Clone)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(now: Instant) -> Bucket {
        Bucket {
            tokens: 1.0,
            last: now,
        }
    }

    /// Takes a token if one is there at `rate` per second.
    pub fn try_take(&mut self, rate: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(1.0);
        if rate > 0.0 && self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn zone_states_follow_kubernetes_thresholds() {
        assert_eq!(zone_state(4, 1), ZoneState::Normal);
        assert_eq!(
            zone_state(4, 2),
            ZoneState::Normal,
            "two unhealthy is never partial"
        );
        assert_eq!(zone_state(5, 3), ZoneState::PartialDisruption);
        assert_eq!(zone_state(3, 3), ZoneState::FullDisruption);
        assert_eq!(zone_state(1, 1), ZoneState::FullDisruption);
    }

    #[test]
    fn only_large_partially_disrupted_zones_keep_evicting_slowly() {
        assert_eq!(rate(ZoneState::Normal, 3), EVICTION_RATE);
        assert_eq!(rate(ZoneState::PartialDisruption, 10), 0.0);
        assert_eq!(
            rate(ZoneState::PartialDisruption, 100),
            SECONDARY_EVICTION_RATE
        );
        assert_eq!(rate(ZoneState::FullDisruption, 100), 0.0);
    }

    #[test]
    fn the_bucket_lets_one_through_then_one_per_period() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        assert!(bucket.try_take(0.1, t0));
        assert!(!bucket.try_take(0.1, t0 + Duration::from_secs(5)));
        assert!(bucket.try_take(0.1, t0 + Duration::from_secs(10)));
        assert!(!bucket.try_take(0.0, t0 + Duration::from_secs(100)));
    }
}
