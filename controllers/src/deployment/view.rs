//! What the rollout decisions read of a ReplicaSet, as plain numbers: its wanted size, what
//! its status last said, its revision and the Deployment size it was last scaled for. The
//! decisions (`rolling`, `recreate`, `scale`) work on these and answer with [`Scale`]s.

use std::cmp::Ordering;

use keel_client::k8s_openapi::api::apps::v1::ReplicaSet;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

use super::revision::{DESIRED_REPLICAS, MAX_REPLICAS, REVISION};

/// One ReplicaSet of a Deployment, as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rs {
    pub name: String,
    pub created: DateTime<Utc>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.replicas`: the active pods it had when its status was last written.
    pub status_replicas: i32,
    pub ready: i32,
    pub available: i32,
    /// The `revision` annotation (0 when absent or unreadable).
    pub revision: i64,
    /// The Deployment's `spec.replicas` when this set was last scaled (`desired-replicas`).
    pub desired_annotation: Option<i32>,
    /// The Deployment's replicas plus surge when this set was last scaled (`max-replicas`).
    pub max_annotation: Option<i32>,
}

impl Rs {
    pub fn of(rs: &ReplicaSet) -> Rs {
        let annotations = rs.metadata.annotations.as_ref();
        let int = |key: &str| {
            annotations
                .and_then(|a| a.get(key))
                .and_then(|v| v.parse::<i32>().ok())
        };
        let status = rs.status.as_ref();
        Rs {
            name: rs.metadata.name.clone().unwrap_or_default(),
            created: rs
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            status_replicas: status.map(|s| s.replicas).unwrap_or(0),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            revision: annotations
                .and_then(|a| a.get(REVISION))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            desired_annotation: int(DESIRED_REPLICAS),
            max_annotation: int(MAX_REPLICAS),
        }
    }

    /// Pods this set may have right now: what it wants, or more while it has not yet caught
    /// up with a scale-down.
    pub fn pods_at_most(&self) -> i32 {
        self.replicas.max(self.status_replicas)
    }

    /// Available pods this set will keep: its last status, less what a pending scale-down
    /// removes once its unavailable pods (deleted first) are gone.
    pub fn available_at_least(&self) -> i32 {
        self.available.min(self.replicas).max(0)
    }

    /// Whether it wants pods at all (Kubernetes' "active" ReplicaSet).
    pub fn is_active(&self) -> bool {
        self.replicas > 0
    }
}

/// Oldest first, then by name: Kubernetes' ReplicaSetsByCreationTimestamp.
pub fn by_creation(a: &Rs, b: &Rs) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// Sum of `spec.replicas`.
pub fn wanted(sets: &[&Rs]) -> i32 {
    sets.iter().map(|r| r.replicas).sum()
}

/// One decision: set `name` to `to` replicas. `operation` is the word the event uses ("up" or
/// "down").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub name: String,
    pub from: i32,
    pub to: i32,
    pub operation: &'static str,
}

impl Scale {
    /// A change of `rs` to `to`, its direction taken from the change itself.
    pub fn of(rs: &Rs, to: i32) -> Scale {
        Scale {
            name: rs.name.clone(),
            from: rs.replicas,
            to,
            operation: if to > rs.replicas { "up" } else { "down" },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use keel_client::k8s_openapi::chrono::TimeDelta;

    /// A ReplicaSet view for tests: `age` orders creation (higher is older).
    pub fn rs(name: &str, age: i64, replicas: i32, available: i32) -> Rs {
        Rs {
            name: name.into(),
            created: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(1_000_000 - age),
            replicas,
            status_replicas: replicas,
            ready: available,
            available,
            revision: 0,
            desired_annotation: None,
            max_annotation: None,
        }
    }

    #[test]
    fn a_set_behind_its_scale_down_counts_its_old_pods_but_not_their_availability() {
        let mut r = rs("a", 1, 2, 3);
        r.status_replicas = 3;
        assert_eq!(r.pods_at_most(), 3);
        assert_eq!(r.available_at_least(), 2);
    }
}
