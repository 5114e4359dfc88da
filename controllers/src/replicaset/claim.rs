//! Which pods a ReplicaSet owns, as Kubernetes' ControllerRefManager decides it: pods it
//! controls that still match its selector are its own; orphans that match are adopted (unless
//! the ReplicaSet is being deleted); pods it controls that no longer match are released; pods
//! another controller controls are never touched. Pure.

use std::sync::Arc;

use keel_client::k8s_openapi::api::core::v1::Pod;
use keel_types::selector::Selector;

use crate::pods::controller_of;

/// The outcome of claiming: what the ReplicaSet owns now, and the ownership writes to make.
#[derive(Debug, Default)]
pub struct Claim {
    /// Pods it controls and that match (adoptions included, as Kubernetes counts them once the
    /// adoption succeeds).
    pub owned: Vec<Arc<Pod>>,
    /// Matching orphans to adopt.
    pub adopt: Vec<Arc<Pod>>,
    /// Pods it controls that no longer match, to release.
    pub release: Vec<Arc<Pod>>,
}

/// Claims among `pods` (all in the ReplicaSet's namespace) for the owner with `uid`.
/// `deleting`: the owner is being deleted and adopts nothing.
pub fn claim(uid: &str, selector: &Selector, deleting: bool, pods: &[Arc<Pod>]) -> Claim {
    let mut claim = Claim::default();
    for pod in pods {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let matches = !selector.is_empty() && selector.matches(&labels);
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    claim.owned.push(pod.clone());
                } else if pod.metadata.deletion_timestamp.is_none() {
                    claim.release.push(pod.clone());
                }
            }
            Some(_) => {}
            None => {
                // A pod on its way out is not worth adopting (Kubernetes skips them too).
                if matches && !deleting && pod.metadata.deletion_timestamp.is_none() {
                    claim.adopt.push(pod.clone());
                    claim.owned.push(pod.clone());
                }
            }
        }
    }
    claim
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        ObjectMeta, OwnerReference, Time,
    };
    use keel_client::k8s_openapi::chrono::Utc;
    use std::collections::BTreeMap;

    fn pod(name: &str, app: &str, controller: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                owner_references: controller.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap_or(""))
            .collect()
    }

    fn web() -> Selector {
        Selector::from_set(&BTreeMap::from([("app".to_string(), "web".to_string())]))
    }

    #[test]
    fn matching_orphans_are_adopted_and_strangers_left_alone() {
        let pods = vec![
            pod("mine", "web", Some("rs")),
            pod("orphan", "web", None),
            pod("other-controller", "web", Some("someone")),
            pod("unrelated", "db", None),
        ];
        let claim = claim("rs", &web(), false, &pods);
        assert_eq!(names(&claim.owned), vec!["mine", "orphan"]);
        assert_eq!(names(&claim.adopt), vec!["orphan"]);
        assert!(claim.release.is_empty());
    }

    #[test]
    fn a_pod_that_stopped_matching_is_released() {
        let pods = vec![pod("relabelled", "db", Some("rs"))];
        let claim = claim("rs", &web(), false, &pods);
        assert!(claim.owned.is_empty());
        assert_eq!(names(&claim.release), vec!["relabelled"]);
    }

    #[test]
    fn a_deleting_owner_adopts_nothing() {
        let pods = vec![pod("orphan", "web", None)];
        let claim = claim("rs", &web(), true, &pods);
        assert!(claim.owned.is_empty() && claim.adopt.is_empty());
    }

    #[test]
    fn an_empty_selector_claims_nothing() {
        let pods = vec![pod("orphan", "web", None)];
        let claim = claim("rs", &Selector::everything(), false, &pods);
        assert!(claim.owned.is_empty() && claim.adopt.is_empty());
    }

    #[test]
    fn terminating_orphans_are_not_adopted() {
        let mut p = (*pod("orphan", "web", None)).clone();
        p.metadata.deletion_timestamp = Some(Time(Utc::now()));
        let claim = claim("rs", &web(), false, &[Arc::new(p)]);
        assert!(claim.adopt.is_empty());
    }
}
