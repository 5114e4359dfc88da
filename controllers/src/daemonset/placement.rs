//! Where a DaemonSet's pods belong and what they look like, as Kubernetes' daemon set
//! controller decides it: a node should run the daemon pod if the pod's nodeSelector and
//! required node affinity match it and it tolerates the node's NoSchedule and NoExecute
//! taints; a pod already there may stay through a new NoSchedule taint but not a NoExecute one.
//! A daemon pod is its template, bound by node affinity to one node (the scheduler places it),
//! with the tolerations every daemon pod gets. Pure.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::apps::v1::DaemonSet;
use keel_client::k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Toleration,
};
use keel_scheduler::plugins::node_selector::pod_matches_node_selector_and_affinity;
use keel_scheduler::plugins::taint_toleration::tolerations_tolerate_taint;

use crate::pods::{controller_reference, pod_from_template};

pub use crate::history::REVISION_LABEL;

/// Whether `node` should run the daemon pod, and whether a daemon pod already on it may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    pub should_run: bool,
    pub may_stay: bool,
}

/// Judges `node` for `pod` (a daemon pod as [`template_pod`] makes it, before it is bound to
/// a node: its own selector and affinity, the default tolerations included).
pub fn fit(pod: &Pod, node: &Node) -> Fit {
    if !pod_matches_node_selector_and_affinity(pod, node) {
        return Fit {
            should_run: false,
            may_stay: false,
        };
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations_tolerate_taint(&tolerations, t))
    };
    let execute = untolerated("NoExecute");
    let schedule = untolerated("NoSchedule");
    Fit {
        should_run: !execute && !schedule,
        may_stay: !execute,
    }
}

/// The tolerations every daemon pod gets (Kubernetes' AddOrUpdateDaemonPodTolerations):
/// it keeps running through not-ready and unreachable nodes, pressure, and cordons.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut list = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list.into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        })
        .collect()
}

/// The daemon pod for `ds`, not yet bound to a node: its template with the revision label and
/// the default tolerations (added where the template lacks one with the same key and effect).
pub fn template_pod(ds: &DaemonSet, name: String, revision: &str) -> Option<Pod> {
    let template = ds.spec.as_ref()?.template.clone();
    let namespace = ds.metadata.namespace.clone().unwrap_or_default();
    let mut pod = pod_from_template(&template, &namespace, name, controller_reference(ds));
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for default in default_tolerations(host_network) {
        let present = tolerations
            .iter()
            .any(|t| t.key == default.key && t.effect == default.effect);
        if !present {
            tolerations.push(default);
        }
    }
    Some(pod)
}

/// `pod` bound by required node affinity to `node` (Kubernetes'
/// ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become one term selecting the
/// node by name; the pod's own terms were already checked against the node).
pub fn for_node(mut pod: Pod, node: &str) -> Pod {
    let spec = pod.spec.get_or_insert_with(Default::default);
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.to_string()]),
            }]),
            match_expressions: None,
        }],
    });
    pod
}

/// The node a daemon pod is for: where it is bound, or else the node its affinity names
/// (Kubernetes' GetTargetNodeName), so a pod not yet scheduled still counts for its node.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref())
        .and_then(|v| (v.len() == 1).then(|| v[0].clone()))
}

/// The revision a daemon pod was made from.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::apps::v1::DaemonSetSpec;
    use keel_client::k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodTemplateSpec, Taint};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ds(node_selector: Option<(&str, &str)>) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("kube-system".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(BTreeMap::from([("app".into(), "agent".into())])),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        node_selector: node_selector
                            .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())])),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: k.to_string(),
                            effect: e.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(ds: &DaemonSet) -> Pod {
        template_pod(ds, "agent-x".into(), "h1").unwrap_or_default()
    }

    #[test]
    fn daemon_pods_run_where_their_selector_matches() {
        let p = pod(&ds(Some(("disk", "ssd"))));
        assert!(fit(&p, &node("a", &[("disk", "ssd")], &[])).should_run);
        assert_eq!(
            fit(&p, &node("b", &[], &[])),
            Fit {
                should_run: false,
                may_stay: false
            }
        );
    }

    #[test]
    fn cordons_and_unhealthy_nodes_are_tolerated_but_other_taints_are_not() {
        let p = pod(&ds(None));
        for (key, effect) in [
            ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ("node.kubernetes.io/not-ready", "NoExecute"),
            ("node.kubernetes.io/unreachable", "NoExecute"),
        ] {
            assert!(
                fit(&p, &node("n", &[], &[(key, effect)])).should_run,
                "{key}"
            );
        }
        assert_eq!(
            fit(&p, &node("n", &[], &[("dedicated", "NoSchedule")])),
            Fit {
                should_run: false,
                may_stay: true
            }
        );
        assert_eq!(
            fit(&p, &node("n", &[], &[("dedicated", "NoExecute")])),
            Fit {
                should_run: false,
                may_stay: false
            }
        );
    }

    #[test]
    fn a_daemon_pod_is_bound_to_its_node_by_affinity_and_labelled_with_its_revision() {
        let p = for_node(pod(&ds(None)), "node-7");
        assert_eq!(target_node(&p).as_deref(), Some("node-7"));
        assert_eq!(revision_of(&p), Some("h1"));
        assert_eq!(p.metadata.name.as_deref(), Some("agent-x"));
        let tolerations = p.spec.and_then(|s| s.tolerations).unwrap_or_default();
        assert_eq!(tolerations.len(), 6);
        assert!(tolerations.iter().all(|t| t.toleration_seconds.is_none()));
    }
}
