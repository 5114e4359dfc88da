//! The Recreate strategy's decisions (kube-controller-manager's recreate.go): every old
//! ReplicaSet goes to zero, and only when none of their pods runs any more — terminating ones
//! included — is the new set created and scaled to the full size.

use super::view::{Rs, Scale};

/// What a Recreate step does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Scale these old sets to zero, then report status.
    ScaleDownOld(Vec<Scale>),
    /// Old pods still run: report status and wait.
    WaitForOldPods,
    /// Create the new set if it is missing, and scale it to the full size.
    ScaleUpNew,
}

/// The next step, given the old sets and the phases of the pods the old sets control.
pub fn next_step<'a>(old: &[&Rs], old_pod_phases: impl IntoIterator<Item = &'a str>) -> Step {
    let downs: Vec<Scale> = old
        .iter()
        .filter(|r| r.is_active())
        .map(|r| Scale::of(r, 0))
        .collect();
    if !downs.is_empty() {
        return Step::ScaleDownOld(downs);
    }
    if old_pods_running(old, old_pod_phases) {
        return Step::WaitForOldPods;
    }
    Step::ScaleUpNew
}

/// Whether an old set still reports pods, or any of their pods has not finished
/// (oldPodsRunning): a pod being deleted still runs until it is gone.
fn old_pods_running<'a>(old: &[&Rs], phases: impl IntoIterator<Item = &'a str>) -> bool {
    old.iter().any(|r| r.status_replicas > 0)
        || phases
            .into_iter()
            .any(|p| !matches!(p, "Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::view::tests::rs;

    #[test]
    fn old_sets_go_to_zero_first() {
        let old = rs("old", 2, 3, 3);
        let empty = rs("older", 3, 0, 0);
        assert_eq!(
            next_step(&[&old, &empty], []),
            Step::ScaleDownOld(vec![Scale {
                name: "old".into(),
                from: 3,
                to: 0,
                operation: "down"
            }])
        );
    }

    #[test]
    fn the_new_set_waits_until_no_old_pod_runs() {
        let mut old = rs("old", 2, 0, 0);
        old.status_replicas = 2;
        assert_eq!(next_step(&[&old], []), Step::WaitForOldPods);
        let old = rs("old", 2, 0, 0);
        assert_eq!(next_step(&[&old], ["Running"]), Step::WaitForOldPods);
        assert_eq!(
            next_step(&[&old], ["Succeeded", "Failed"]),
            Step::ScaleUpNew
        );
        assert_eq!(next_step(&[], []), Step::ScaleUpNew);
    }
}
