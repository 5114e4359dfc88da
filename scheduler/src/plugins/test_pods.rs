//! Pods, nodes and snapshots built from a few words, and one-call runs of a filter or score
//! plugin over a snapshot, for the inter-pod affinity and topology spread tests.

use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Map, Value};

use crate::framework::{CycleState, Filter, NodeInfo, PodInfo, Rejection, Score, Snapshot};

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";

fn label_map(labels: &[(&str, &str)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<Map<_, _>>(),
    )
}

/// A pod under construction, kept as its JSON form so any field can be set.
pub struct PodBuilder(Value);

/// A pod named `name` in namespace `default` with `labels`.
pub fn pod(name: &str, labels: &[(&str, &str)]) -> PodBuilder {
    PodBuilder(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("uid-{name}"),
            "labels": label_map(labels),
        },
        "spec": { "containers": [] },
    }))
}

/// A pod affinity term selecting `match_labels` within `topology_key`.
pub fn term(match_labels: &[(&str, &str)], topology_key: &str) -> Value {
    json!({
        "labelSelector": { "matchLabels": label_map(match_labels) },
        "topologyKey": topology_key,
    })
}

/// A topology spread constraint over pods with `match_labels`.
pub fn spread(
    max_skew: i32,
    topology_key: &str,
    when: &str,
    match_labels: &[(&str, &str)],
) -> Value {
    json!({
        "maxSkew": max_skew,
        "topologyKey": topology_key,
        "whenUnsatisfiable": when,
        "labelSelector": { "matchLabels": label_map(match_labels) },
    })
}

impl PodBuilder {
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }

    pub fn terminating(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        self
    }

    /// Sets `spec.<key>`.
    pub fn spec(mut self, key: &str, value: Value) -> Self {
        self.0["spec"][key] = value;
        self
    }

    pub fn node_selector(self, labels: &[(&str, &str)]) -> Self {
        self.spec("nodeSelector", label_map(labels))
    }

    pub fn required_affinity(self, term: Value) -> Self {
        self.push(
            &[
                "affinity",
                "podAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ],
            term,
        )
    }

    pub fn required_anti_affinity(self, term: Value) -> Self {
        self.push(
            &[
                "affinity",
                "podAntiAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ],
            term,
        )
    }

    pub fn preferred_affinity(self, weight: i32, term: Value) -> Self {
        self.push(
            &[
                "affinity",
                "podAffinity",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ],
            json!({ "weight": weight, "podAffinityTerm": term }),
        )
    }

    pub fn preferred_anti_affinity(self, weight: i32, term: Value) -> Self {
        self.push(
            &[
                "affinity",
                "podAntiAffinity",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ],
            json!({ "weight": weight, "podAffinityTerm": term }),
        )
    }

    pub fn spread(self, constraint: Value) -> Self {
        self.push(&["topologySpreadConstraints"], constraint)
    }

    pub fn toleration(self, toleration: Value) -> Self {
        self.push(&["tolerations"], toleration)
    }

    /// Appends `item` to the list at `spec.<path>`, creating it.
    fn push(mut self, path: &[&str], item: Value) -> Self {
        let mut at = &mut self.0["spec"];
        for key in path {
            at = &mut at[*key];
        }
        if at.is_null() {
            *at = json!([]);
        }
        at.as_array_mut().expect("a list").push(item);
        self
    }

    pub fn build(self) -> Arc<PodInfo> {
        let pod: Pod = serde_json::from_value(self.0).expect("a valid pod");
        Arc::new(PodInfo::new(Arc::new(pod)))
    }
}

/// A node under construction with the pods it will count.
pub struct NodeBuilder {
    value: Value,
    pods: Vec<Arc<PodInfo>>,
}

/// A node named `name` with `labels`, plus `kubernetes.io/hostname=<name>` unless `labels` sets
/// it (as the kubelet does).
pub fn node(name: &str, labels: &[(&str, &str)]) -> NodeBuilder {
    let mut all = label_map(labels);
    if all.get(HOSTNAME).is_none() {
        all[HOSTNAME] = json!(name);
    }
    NodeBuilder {
        value: json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": { "name": name, "labels": all },
            "spec": {},
        }),
        pods: Vec::new(),
    }
}

impl NodeBuilder {
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let taints = &mut self.value["spec"]["taints"];
        if taints.is_null() {
            *taints = json!([]);
        }
        taints
            .as_array_mut()
            .expect("a list")
            .push(json!({ "key": key, "value": value, "effect": effect }));
        self
    }

    /// Counts `pod` on this node (bound to it).
    pub fn pod(mut self, pod: PodBuilder) -> Self {
        let name = self.value["metadata"]["name"].clone();
        self.pods.push(pod.spec("nodeName", name).build());
        self
    }

    pub fn build(self) -> Arc<NodeInfo> {
        let node: Node = serde_json::from_value(self.value).expect("a valid node");
        let mut info = NodeInfo::new(Arc::new(node));
        for pod in self.pods {
            info.add_pod(pod);
        }
        Arc::new(info)
    }
}

pub fn snapshot(nodes: Vec<NodeBuilder>) -> Snapshot {
    Snapshot::new(nodes.into_iter().map(NodeBuilder::build).collect())
}

/// Runs `plugin`'s pre-filter, then its filter on every node: node name → outcome. A pre-filter
/// rejection is every node's outcome.
pub fn filter_each(
    plugin: &dyn Filter,
    pod: &PodInfo,
    snapshot: &Snapshot,
) -> Vec<(String, Result<(), Rejection>)> {
    let mut state = CycleState::default();
    if let Err(rejection) = plugin.pre_filter(pod, snapshot, &mut state) {
        return snapshot
            .nodes
            .iter()
            .map(|n| (n.name.clone(), Err(rejection.clone())))
            .collect();
    }
    snapshot
        .nodes
        .iter()
        .map(|n| (n.name.clone(), plugin.filter(&state, pod, n)))
        .collect()
}

/// The names of the nodes `plugin` admits for `pod`.
pub fn admitted(plugin: &dyn Filter, pod: &PodInfo, snapshot: &Snapshot) -> Vec<String> {
    filter_each(plugin, pod, snapshot)
        .into_iter()
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|(name, _)| name)
        .collect()
}

/// Runs `plugin`'s pre-score, score and normalisation with every node of `snapshot` feasible:
/// (raw, normalised) per node in snapshot order.
pub fn score_each(plugin: &dyn Score, pod: &PodInfo, snapshot: &Snapshot) -> (Vec<i64>, Vec<i64>) {
    score_feasible(plugin, pod, snapshot, &snapshot.nodes)
}

/// As [`score_each`], over `feasible` only.
pub fn score_feasible(
    plugin: &dyn Score,
    pod: &PodInfo,
    snapshot: &Snapshot,
    feasible: &[Arc<NodeInfo>],
) -> (Vec<i64>, Vec<i64>) {
    let mut state = CycleState::default();
    plugin.pre_score(pod, snapshot, feasible, &mut state);
    let raw: Vec<i64> = feasible
        .iter()
        .map(|n| plugin.score(&state, pod, n))
        .collect();
    let mut normalized = raw.clone();
    plugin.normalize(&state, pod, &mut normalized);
    (raw, normalized)
}
