//! The RollingUpdate strategy's decisions (kube-controller-manager's rolling.go): scale the new
//! ReplicaSet up as far as maxSurge allows, then scale old ones down as far as maxUnavailable
//! allows — unhealthy pods first, then the oldest sets.
//!
//! One deliberate difference makes the bounds hold while ReplicaSets lag their spec: a set
//! still scaling down counts the pods it has not yet removed ([`Rs::pods_at_most`]) against
//! the surge, and counts only the available pods it will keep ([`Rs::available_at_least`])
//! towards availability. Once every set has caught up both are Kubernetes' numbers.

use super::view::{by_creation, wanted, Rs, Scale};

/// A rolling update's numbers: `spec.replicas` and the resolved fenceposts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub replicas: i32,
    pub max_surge: i32,
    pub max_unavailable: i32,
}

impl Bounds {
    pub fn min_available(&self) -> i32 {
        self.replicas - self.max_unavailable
    }
}

/// The size the new set may grow to now (NewRSNewReplicas): up to the wanted replicas, while
/// all sets together stay within replicas + maxSurge. `all` includes `new`.
pub fn new_replicas(b: &Bounds, all: &[&Rs], new: &Rs) -> i32 {
    let current: i32 = all.iter().map(|r| r.pods_at_most()).sum();
    let max_total = b.replicas + b.max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let up = (max_total - current).min(b.replicas - new.replicas).max(0);
    new.replicas + up
}

/// How the new set changes (reconcileNewReplicaSet): down to the wanted replicas if it is
/// larger, else up as far as [`new_replicas`] allows.
pub fn scale_new(b: &Bounds, all: &[&Rs], new: &Rs) -> Option<Scale> {
    let to = if new.replicas > b.replicas {
        b.replicas
    } else {
        new_replicas(b, all, new)
    };
    (to != new.replicas).then(|| Scale::of(new, to))
}

/// How the old sets shrink (reconcileOldReplicaSets): `all` is every set (the new one
/// included), `old` the old ones wanting pods.
///
/// Nothing shrinks while the new set's unavailable pods already use the whole allowance. Then
/// unhealthy pods go first (they cost no availability), oldest set first; then available ones,
/// oldest set first, while availability stays at replicas − maxUnavailable.
pub fn scale_old(b: &Bounds, all: &[&Rs], old: &[&Rs], new: &Rs) -> Vec<Scale> {
    if wanted(old) == 0 {
        return Vec::new();
    }
    let new_unavailable = new.replicas - new.available_at_least();
    let max_scaled_down = wanted(all) - b.min_available() - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut old: Vec<Rs> = old.iter().copied().cloned().collect();
    old.sort_by(by_creation);
    let mut scales = cleanup_unhealthy(&mut old, max_scaled_down);
    scales.extend(scale_down_available(b, &old, new));
    scales
}

/// Removes up to `max` pods that are not available, oldest set first (cleanupUnhealthyReplicas);
/// `old` is updated to the new sizes.
fn cleanup_unhealthy(old: &mut [Rs], max: i32) -> Vec<Scale> {
    let mut scales = Vec::new();
    let mut total = 0;
    for rs in old.iter_mut() {
        if total >= max {
            break;
        }
        let unhealthy = rs.replicas - rs.available_at_least();
        if rs.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max - total).min(unhealthy);
        scales.push(Scale::of(rs, rs.replicas - down));
        rs.replicas -= down;
        total += down;
    }
    scales
}

/// Removes available pods while availability stays at its minimum, oldest set first
/// (scaleDownOldReplicaSetsForRollingUpdate). `old` is sorted oldest first.
fn scale_down_available(b: &Bounds, old: &[Rs], new: &Rs) -> Vec<Scale> {
    let available: i32 = old
        .iter()
        .chain(std::iter::once(new))
        .map(Rs::available_at_least)
        .sum();
    if available <= b.min_available() {
        return Vec::new();
    }
    let total = available - b.min_available();
    let mut scales = Vec::new();
    let mut done = 0;
    for rs in old {
        if done >= total {
            break;
        }
        if rs.replicas == 0 {
            continue;
        }
        let down = rs.replicas.min(total - done);
        scales.push(Scale::of(rs, rs.replicas - down));
        done += down;
    }
    scales
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::view::tests::rs;

    const B: Bounds = Bounds {
        replicas: 3,
        max_surge: 1,
        max_unavailable: 1,
    };

    #[test]
    fn the_new_set_grows_by_the_surge_first() {
        let old = rs("old", 2, 3, 3);
        let new = rs("new", 1, 0, 0);
        assert_eq!(
            scale_new(&B, &[&old, &new], &new),
            Some(Scale {
                name: "new".into(),
                from: 0,
                to: 1,
                operation: "up"
            })
        );
    }

    #[test]
    fn the_new_set_never_grows_past_the_wanted_replicas_or_the_surge() {
        let old = rs("old", 2, 0, 0);
        let new = rs("new", 1, 3, 3);
        assert_eq!(scale_new(&B, &[&old, &new], &new), None);
        let old = rs("old", 2, 3, 3);
        let new = rs("new", 1, 1, 0);
        assert_eq!(scale_new(&B, &[&old, &new], &new), None, "4 = 3 + 1");
    }

    #[test]
    fn a_new_set_larger_than_wanted_shrinks_to_it() {
        let new = rs("new", 1, 5, 5);
        assert_eq!(scale_new(&B, &[&new], &new).map(|s| s.to), Some(3));
    }

    #[test]
    fn old_pods_still_being_removed_count_against_the_surge() {
        let mut old = rs("old", 2, 1, 1);
        old.status_replicas = 3;
        let new = rs("new", 1, 1, 1);
        assert_eq!(scale_new(&B, &[&old, &new], &new), None);
    }

    #[test]
    fn old_sets_wait_while_the_new_sets_unavailable_pods_use_the_allowance() {
        let old = rs("old", 2, 3, 3);
        let new = rs("new", 1, 1, 0);
        // 4 wanted − 2 minimum − 1 unavailable = 1: one old pod may go.
        assert_eq!(
            scale_old(&B, &[&old, &new], &[&old], &new)
                .iter()
                .map(|s| s.to)
                .collect::<Vec<_>>(),
            [2]
        );
        let b = Bounds {
            max_unavailable: 0,
            ..B
        };
        assert!(scale_old(&b, &[&old, &new], &[&old], &new).is_empty());
    }

    #[test]
    fn unhealthy_old_pods_go_first_and_then_the_oldest_sets() {
        let b = Bounds {
            replicas: 6,
            max_surge: 0,
            max_unavailable: 2,
        };
        let oldest = rs("oldest", 3, 2, 2);
        let older = rs("older", 2, 3, 1);
        let new = rs("new", 1, 1, 1);
        let scales = scale_old(&b, &[&oldest, &older, &new], &[&older, &oldest], &new);
        // Allowance 6 − 4 − 0 = 2: both unhealthy pods of "older"; then availability
        // 2 + 1 + 1 = 4 = minimum, so no available pod goes.
        assert_eq!(
            scales,
            [Scale {
                name: "older".into(),
                from: 3,
                to: 1,
                operation: "down"
            }]
        );
    }

    #[test]
    fn available_old_pods_go_oldest_set_first_down_to_the_minimum() {
        let b = Bounds {
            replicas: 4,
            max_surge: 2,
            max_unavailable: 1,
        };
        let oldest = rs("oldest", 3, 1, 1);
        let older = rs("older", 2, 3, 3);
        let new = rs("new", 1, 2, 2);
        let scales = scale_old(&b, &[&oldest, &older, &new], &[&older, &oldest], &new);
        let got: Vec<(&str, i32)> = scales.iter().map(|s| (s.name.as_str(), s.to)).collect();
        // Available 6, minimum 3: three go, the oldest set's one first.
        assert_eq!(got, [("oldest", 0), ("older", 1)]);
    }
}
