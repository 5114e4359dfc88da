//! Revisions: which number a Deployment's new ReplicaSet carries, the annotations it gets from
//! its Deployment, the history it keeps when a rollback makes an old set new again, and which
//! old sets `revisionHistoryLimit` lets go (kube-controller-manager's deployment_util.go and
//! `cleanupDeployment`).

use std::collections::BTreeMap;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Longest revision-history annotation kept, in characters (Kubernetes' limit).
pub const MAX_HISTORY_CHARS: usize = 2000;

/// Annotations a Deployment does not pass on to its ReplicaSets.
fn skipped(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | ROLLBACK_TO
    )
}

/// The highest revision among `revisions` (0 for none).
pub fn max_revision(revisions: impl IntoIterator<Item = i64>) -> i64 {
    revisions.into_iter().max().unwrap_or(0).max(0)
}

/// Brings the new set's `annotations` up to date (SetNewReplicaSetAnnotations): the
/// Deployment's own annotations, the revision raised to `new_revision` (remembering the one it
/// replaces, as a rollback does), and for a set about to be created the replica annotations.
/// Returns whether anything changed.
pub fn set_new_rs_annotations(
    deployment: &BTreeMap<String, String>,
    annotations: &mut BTreeMap<String, String>,
    new_revision: i64,
    replicas: Option<(i32, i32)>,
) -> bool {
    let mut changed = false;
    for (k, v) in deployment {
        if skipped(k) || annotations.get(k) == Some(v) {
            continue;
        }
        annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = annotations.get(REVISION).cloned();
    let old_number = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            // An unreadable revision is left alone, as Kubernetes leaves it.
            Err(_) => return changed,
        },
    };
    if old_number < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if let Some(history) = appended_history(&history, &old) {
                annotations.insert(REVISION_HISTORY.into(), history);
            }
        }
    }
    if let Some((desired, max)) = replicas {
        changed |= set_replicas_annotations(annotations, desired, max);
    }
    changed
}

/// `history` with `old` appended, dropping the oldest entries to stay within
/// [`MAX_HISTORY_CHARS`]; None when even `old` alone does not fit.
fn appended_history(history: &str, old: &str) -> Option<String> {
    if history.is_empty() {
        return Some(old.to_string());
    }
    let mut entries: Vec<&str> = history.split(',').collect();
    let mut total = history.len() + old.len() + 1;
    let mut start = 0;
    while total > MAX_HISTORY_CHARS && start < entries.len() {
        total -= entries[start].len() + 1;
        start += 1;
    }
    if total > MAX_HISTORY_CHARS {
        return None;
    }
    entries.drain(..start);
    entries.push(old);
    Some(entries.join(","))
}

/// Records the Deployment size a set was scaled for; returns whether anything changed.
pub fn set_replicas_annotations(
    annotations: &mut BTreeMap<String, String>,
    desired: i32,
    max: i32,
) -> bool {
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

/// What history cleanup knows of an old set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Old {
    pub name: String,
    pub revision: i64,
    /// Creation time as sortable text (RFC 3339), breaking ties between equal revisions.
    pub created: String,
    pub replicas: i32,
    pub status_replicas: i32,
    /// Its status has caught up with its spec (observedGeneration ≥ generation).
    pub observed: bool,
    pub deleting: bool,
}

/// The old sets to delete so that at most `limit` remain (cleanupDeployment): the lowest
/// revisions first, skipping any that still want or have pods or whose status lags.
pub fn to_clean_up(old: &[Old], limit: i32) -> Vec<String> {
    let mut alive: Vec<&Old> = old.iter().filter(|o| !o.deleting).collect();
    let excess = i64::try_from(alive.len()).unwrap_or(i64::MAX) - i64::from(limit.max(0));
    if excess <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| a.created.cmp(&b.created))
    });
    alive
        .into_iter()
        .take(usize::try_from(excess).unwrap_or(usize::MAX))
        .filter(|o| o.replicas == 0 && o.status_replicas == 0 && o.observed)
        .map(|o| o.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_new_set_gets_the_next_revision_and_the_deployments_annotations() {
        let d = map(&[("team", "web"), (REVISION, "7"), (LAST_APPLIED, "{}")]);
        let mut a = BTreeMap::new();
        assert!(set_new_rs_annotations(&d, &mut a, 3, Some((4, 5))));
        assert_eq!(
            a,
            map(&[
                ("team", "web"),
                (REVISION, "3"),
                (DESIRED_REPLICAS, "4"),
                (MAX_REPLICAS, "5")
            ])
        );
        assert!(!set_new_rs_annotations(&d, &mut a, 3, None), "idempotent");
    }

    #[test]
    fn a_set_made_new_again_remembers_its_earlier_revisions() {
        let mut a = map(&[(REVISION, "1")]);
        assert!(set_new_rs_annotations(&BTreeMap::new(), &mut a, 3, None));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        set_new_rs_annotations(&BTreeMap::new(), &mut a, 5, None);
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1,3"));
    }

    #[test]
    fn a_revision_is_never_lowered() {
        let mut a = map(&[(REVISION, "9")]);
        assert!(!set_new_rs_annotations(&BTreeMap::new(), &mut a, 4, None));
        assert_eq!(a.get(REVISION).map(String::as_str), Some("9"));
    }

    #[test]
    fn the_history_drops_its_oldest_entries_to_stay_short() {
        let long = vec!["1234567890"; 181].join(",");
        let kept = appended_history(&long, "99").unwrap_or_default();
        assert!(kept.len() <= MAX_HISTORY_CHARS);
        assert!(kept.ends_with(",99"));
    }

    fn old(name: &str, revision: i64, replicas: i32) -> Old {
        Old {
            name: name.into(),
            revision,
            created: format!("2026-01-0{revision}T00:00:00Z"),
            replicas,
            status_replicas: replicas,
            observed: true,
            deleting: false,
        }
    }

    #[test]
    fn history_beyond_the_limit_goes_lowest_revision_first_if_empty() {
        let sets = [
            old("r3", 3, 0),
            old("r1", 1, 0),
            old("r2", 2, 2),
            old("r4", 4, 0),
        ];
        assert_eq!(to_clean_up(&sets, 1), ["r1", "r3"], "r2 still has pods");
        assert!(to_clean_up(&sets, 4).is_empty());
        assert_eq!(to_clean_up(&sets, 0).len(), 3);
    }
}
