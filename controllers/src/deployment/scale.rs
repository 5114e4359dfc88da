//! Scaling a Deployment that is not rolling out (kube-controller-manager's sync.go `scale`):
//! a changed `spec.replicas` while a rollout is paused or under way is spread over every set
//! with pods in proportion to its size, so that scaling neither hastens nor reverses the
//! rollout.

use std::cmp::Ordering;

use super::view::{by_creation, Rs, Scale};

/// The Deployment's numbers scaling reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// `spec.replicas`.
    pub replicas: i32,
    /// Resolved maxSurge (0 for Recreate).
    pub max_surge: i32,
    pub rolling: bool,
    /// `status.replicas`: the size to assume for a set that lost its `max-replicas`.
    pub status_replicas: i32,
}

/// The sets with pods, or the newest, to take the whole size (FindActiveOrLatest): the only
/// active set, or the newest set when none is active; None when several are active.
fn active_or_latest<'a>(new: Option<&'a Rs>, old: &[&'a Rs]) -> Option<&'a Rs> {
    let mut all: Vec<&Rs> = old.to_vec();
    all.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&Rs> = all
        .iter()
        .copied()
        .chain(new)
        .filter(|r| r.is_active())
        .collect();
    match active.as_slice() {
        [] => new.or_else(|| all.first().copied()),
        [one] => Some(one),
        _ => None,
    }
}

/// Whether the new set holds the whole Deployment (IsSaturated): its size and its
/// `desired-replicas` both equal `spec.replicas`.
pub fn is_saturated(t: &Target, new: Option<&Rs>) -> bool {
    new.is_some_and(|n| n.replicas == t.replicas && n.desired_annotation == Some(t.replicas))
}

/// What to scale. Every set listed for proportional scaling is returned, changed in size or
/// not, because its `desired-replicas`/`max-replicas` annotations follow the new size too.
pub fn scale(t: &Target, new: Option<&Rs>, old: &[&Rs]) -> Vec<Scale> {
    if let Some(only) = active_or_latest(new, old) {
        if only.replicas == t.replicas {
            return Vec::new();
        }
        return vec![Scale::of(only, t.replicas)];
    }
    if is_saturated(t, new) {
        return old
            .iter()
            .filter(|r| r.is_active())
            .map(|r| Scale::of(r, 0))
            .collect();
    }
    if !t.rolling {
        return Vec::new();
    }
    let mut active: Vec<&Rs> = old
        .iter()
        .copied()
        .chain(new)
        .filter(|r| r.is_active())
        .collect();
    let current: i32 = active.iter().map(|r| r.replicas).sum();
    let allowed = if t.replicas > 0 {
        t.replicas + t.max_surge
    } else {
        0
    };
    let to_add = allowed - current;
    let operation = match to_add.cmp(&0) {
        // Larger sets first; among equals, newer first when growing and older first when
        // shrinking.
        Ordering::Greater => {
            active.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(by_creation(b, a)));
            "up"
        }
        Ordering::Less => {
            active.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(by_creation(a, b)));
            "down"
        }
        Ordering::Equal => "",
    };
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    let mut added = 0;
    for rs in &active {
        if to_add == 0 {
            sizes.push(rs.replicas);
        } else {
            let share = proportion(rs, t, to_add, added);
            sizes.push(rs.replicas + share);
            added += share;
        }
    }
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            // Whatever rounding left over goes to (or comes from) the largest set.
            *first = (*first + to_add - added).max(0);
        }
    }
    active
        .iter()
        .zip(sizes)
        .map(|(rs, to)| Scale {
            name: rs.name.clone(),
            from: rs.replicas,
            to,
            operation: if operation.is_empty() {
                Scale::of(rs, to).operation
            } else {
                operation
            },
        })
        .collect()
}

/// The replicas `rs` gains (or loses, negative) of `to_add`, `added` being handed out already
/// (GetReplicaSetProportion): its share by size, never beyond what is left.
fn proportion(rs: &Rs, t: &Target, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, t);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The change that keeps `rs`'s share of the Deployment (getReplicaSetFraction): its size
/// scaled from the maximum it was sized for to the maximum now, rounded half away from zero.
fn fraction(rs: &Rs, t: &Target) -> i32 {
    if t.replicas == 0 {
        return -rs.replicas;
    }
    let max_now = t.replicas + t.max_surge;
    let before = match rs.max_annotation {
        Some(m) if m != 0 => m,
        _ if t.status_replicas == 0 => return 0,
        _ => t.status_replicas,
    };
    let size = f64::from(rs.replicas) * f64::from(max_now) / f64::from(before);
    // In range: at most replicas × (replicas + surge), both i32.
    #[allow(clippy::cast_possible_truncation)]
    let rounded = size.round() as i32;
    rounded - rs.replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::view::tests::rs;

    fn sized(name: &str, age: i64, replicas: i32, max: i32) -> Rs {
        let mut r = rs(name, age, replicas, replicas);
        r.max_annotation = Some(max);
        r.desired_annotation = Some(max);
        r
    }

    fn sizes(scales: &[Scale]) -> Vec<(&str, i32)> {
        scales.iter().map(|s| (s.name.as_str(), s.to)).collect()
    }

    #[test]
    fn a_single_active_set_takes_the_whole_size() {
        let t = Target {
            replicas: 5,
            max_surge: 1,
            rolling: true,
            status_replicas: 3,
        };
        let old = rs("old", 2, 0, 0);
        let new = rs("new", 1, 3, 3);
        assert_eq!(sizes(&scale(&t, Some(&new), &[&old])), [("new", 5)]);
        assert!(scale(&Target { replicas: 3, ..t }, Some(&new), &[&old]).is_empty());
    }

    #[test]
    fn with_no_active_set_the_newest_takes_it() {
        let t = Target {
            replicas: 2,
            max_surge: 0,
            rolling: true,
            status_replicas: 0,
        };
        let older = rs("older", 2, 0, 0);
        let newer = rs("newer", 1, 0, 0);
        assert_eq!(sizes(&scale(&t, None, &[&older, &newer])), [("newer", 2)]);
    }

    #[test]
    fn scaling_mid_rollout_keeps_each_sets_share() {
        // Rolling 10 → 20 with surge 3 (25% of 10, then 5 of 20): sets sized for 13.
        let t = Target {
            replicas: 20,
            max_surge: 5,
            rolling: true,
            status_replicas: 13,
        };
        let old = sized("old", 2, 8, 13);
        let new = sized("new", 1, 5, 13);
        let got = scale(&t, Some(&new), &[&old]);
        // 8 × 25/13 = 15.4 → 15; 5 × 25/13 = 9.6 → 10; 25 in all.
        assert_eq!(sizes(&got), [("old", 15), ("new", 10)]);
        assert!(got.iter().all(|s| s.operation == "up"));
    }

    #[test]
    fn scaling_down_mid_rollout_takes_from_the_largest_older_sets_first() {
        let t = Target {
            replicas: 5,
            max_surge: 2,
            rolling: true,
            status_replicas: 13,
        };
        let old = sized("old", 2, 5, 13);
        let new = sized("new", 1, 5, 13);
        let got = scale(&t, Some(&new), &[&old]);
        // 7 allowed of 10: each would keep 5 × 7/13 = 2.7 → 3, losing 2; the older set loses
        // its 2 and the newer only the 1 still to go.
        assert_eq!(sizes(&got), [("old", 3), ("new", 4)]);
    }

    #[test]
    fn scaling_to_zero_empties_every_set() {
        let t = Target {
            replicas: 0,
            max_surge: 0,
            rolling: true,
            status_replicas: 6,
        };
        let old = sized("old", 2, 2, 4);
        let new = sized("new", 1, 4, 4);
        assert_eq!(
            sizes(&scale(&t, Some(&new), &[&old])),
            [("new", 0), ("old", 0)]
        );
    }

    #[test]
    fn a_saturated_new_set_empties_the_old_ones() {
        let t = Target {
            replicas: 3,
            max_surge: 1,
            rolling: true,
            status_replicas: 5,
        };
        let old = sized("adopted", 2, 2, 2);
        let new = sized("new", 1, 3, 3);
        assert_eq!(sizes(&scale(&t, Some(&new), &[&old])), [("adopted", 0)]);
    }
}
