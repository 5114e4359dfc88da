//! Builders for the nodes, pods and snapshots the scheduler's tests are written over, so a test
//! states only what matters to it (a label, a taint, a request, a port, a spread constraint)
//! and not a whole object; and one-call runs of a filter or score plugin over a snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PreferredSchedulingTerm, ResourceRequirements,
    Taint, Toleration, TopologySpreadConstraint, WeightedPodAffinityTerm,
};
use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};

use crate::framework::{CycleState, Filter, NodeInfo, PodInfo, Rejection, Score, Snapshot};
pub use crate::plugins::pod_topology_spread::{LABEL_HOSTNAME as HOSTNAME, LABEL_ZONE as ZONE};

fn quantities(list: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn string_map(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn add_labels(meta: &mut ObjectMeta, labels: &[(&str, &str)]) {
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(string_map(labels));
}

/// An empty string as an unset field.
fn given(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// A node under construction, with the pods it will count.
#[derive(Clone, Default)]
pub struct NodeBuilder {
    node: Node,
    pods: Vec<PodBuilder>,
}

/// A node called `name` labelled `kubernetes.io/hostname=<name>` (as the kubelet labels it),
/// with nothing allocatable, no other labels, no taints and no pods.
pub fn node(name: &str) -> NodeBuilder {
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    node.metadata.labels = Some(string_map(&[(HOSTNAME, name)]));
    node.spec = Some(NodeSpec::default());
    node.status = Some(NodeStatus::default());
    NodeBuilder {
        node,
        pods: Vec::new(),
    }
}

/// A node called `name` in zone `zone` (labelled `topology.kubernetes.io/zone=<zone>`).
pub fn node_in_zone(name: &str, zone: &str) -> NodeBuilder {
    node(name).labels(&[(ZONE, zone)])
}

impl NodeBuilder {
    /// Sets allocatable amounts, e.g. `[("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]`.
    pub fn allocatable(mut self, list: &[(&str, &str)]) -> Self {
        let status = self.node.status.get_or_insert_with(Default::default);
        status
            .allocatable
            .get_or_insert_with(BTreeMap::new)
            .extend(quantities(list));
        self
    }

    pub fn label(self, key: &str, value: &str) -> Self {
        self.labels(&[(key, value)])
    }

    /// Adds `labels`, replacing the values of keys already set (the hostname among them).
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        add_labels(&mut self.node.metadata, labels);
        self
    }

    /// Adds a taint; an empty `value` leaves the value unset.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.node.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.to_string(),
            value: given(value),
            effect: effect.to_string(),
            time_added: None,
        });
        self
    }

    pub fn unschedulable(mut self) -> Self {
        self.node
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        self
    }

    /// Reports an image present on the node under `names`.
    pub fn image(mut self, names: &[&str], size_bytes: i64) -> Self {
        let status = self.node.status.get_or_insert_with(Default::default);
        status
            .images
            .get_or_insert_with(Vec::new)
            .push(ContainerImage {
                names: Some(names.iter().map(|n| n.to_string()).collect()),
                size_bytes: Some(size_bytes),
            });
        self
    }

    /// Counts `pod` on this node, bound to it.
    pub fn pod(mut self, pod: PodBuilder) -> Self {
        let name = self.node.metadata.name.clone().unwrap_or_default();
        self.pods.push(pod.node_name(&name));
        self
    }

    /// The Node object (the pods are not part of it).
    pub fn build(self) -> Node {
        self.node
    }

    /// The node with its pods counted on it.
    pub fn info(self) -> NodeInfo {
        let mut info = NodeInfo::new(Arc::new(self.node));
        for pod in self.pods {
            info.add_pod(Arc::new(pod.info()));
        }
        info
    }

    /// The node with `pods` counted on it, besides any added before.
    pub fn with_pods(self, pods: Vec<PodBuilder>) -> NodeInfo {
        pods.into_iter().fold(self, NodeBuilder::pod).info()
    }
}

/// A pod under construction.
#[derive(Clone, Default)]
pub struct PodBuilder {
    pod: Pod,
}

/// A pod `default/name` with uid `uid-<name>`, no labels and no containers.
pub fn pod(name: &str) -> PodBuilder {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some("default".to_string());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.spec = Some(PodSpec::default());
    PodBuilder { pod }
}

/// A pod `default/name` labelled `app=<app>`, the label the affinity and spread tests select on.
pub fn app_pod(name: &str, app: &str) -> PodBuilder {
    pod(name).labels(&[("app", app)])
}

fn container(name: String, image: &str, requests: &[(&str, &str)]) -> Container {
    Container {
        name,
        image: Some(image.to_string()),
        resources: (!requests.is_empty()).then(|| ResourceRequirements {
            requests: Some(quantities(requests)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl PodBuilder {
    fn spec(&mut self) -> &mut PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }

    fn affinity(&mut self) -> &mut Affinity {
        self.spec().affinity.get_or_insert_with(Affinity::default)
    }

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.affinity()
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
    }

    fn pod_affinity(&mut self) -> &mut PodAffinity {
        self.affinity()
            .pod_affinity
            .get_or_insert_with(PodAffinity::default)
    }

    fn pod_anti_affinity(&mut self) -> &mut PodAntiAffinity {
        self.affinity()
            .pod_anti_affinity
            .get_or_insert_with(PodAntiAffinity::default)
    }

    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        add_labels(&mut self.pod.metadata, labels);
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.pod.metadata.namespace = Some(namespace.to_string());
        self
    }

    /// Marks the pod as being deleted.
    pub fn terminating(mut self) -> Self {
        self.pod.metadata.deletion_timestamp = Some(Time(Default::default()));
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.spec().priority = Some(priority);
        self
    }

    /// Adds an app container requesting `requests` (an empty list requests nothing).
    pub fn container(mut self, requests: &[(&str, &str)]) -> Self {
        let n = self.spec().containers.len();
        self.spec()
            .containers
            .push(container(format!("c{n}"), "busybox", requests));
        self
    }

    /// Adds an app container running `image` and requesting nothing.
    pub fn image(mut self, image: &str) -> Self {
        let n = self.spec().containers.len();
        self.spec()
            .containers
            .push(container(format!("c{n}"), image, &[]));
        self
    }

    /// Adds a regular init container (runs to completion before the app containers).
    pub fn init_container(mut self, requests: &[(&str, &str)]) -> Self {
        let inits = self.spec().init_containers.get_or_insert_with(Vec::new);
        let n = inits.len();
        inits.push(container(format!("i{n}"), "busybox", requests));
        self
    }

    /// Adds a sidecar: an init container with `restartPolicy: Always`.
    pub fn sidecar(mut self, requests: &[(&str, &str)]) -> Self {
        let inits = self.spec().init_containers.get_or_insert_with(Vec::new);
        let n = inits.len();
        let mut c = container(format!("s{n}"), "busybox", requests);
        c.restart_policy = Some("Always".to_string());
        inits.push(c);
        self
    }

    pub fn overhead(mut self, list: &[(&str, &str)]) -> Self {
        self.spec().overhead = Some(quantities(list));
        self
    }

    pub fn node_name(mut self, name: &str) -> Self {
        self.spec().node_name = Some(name.to_string());
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.spec()
            .node_selector
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a required node-affinity term (terms are ORed).
    pub fn required_term(mut self, term: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(NodeSelector::default)
            .node_selector_terms
            .push(term);
        self
    }

    /// Adds a preferred node-affinity term with `weight`.
    pub fn preferred_term(mut self, weight: i32, term: NodeSelectorTerm) -> Self {
        self.node_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(PreferredSchedulingTerm {
                preference: term,
                weight,
            });
        self
    }

    pub fn required_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn required_anti_affinity(mut self, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
        self
    }

    pub fn preferred_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(weighted(weight, term));
        self
    }

    pub fn preferred_anti_affinity(mut self, weight: i32, term: PodAffinityTerm) -> Self {
        self.pod_anti_affinity()
            .preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(weighted(weight, term));
        self
    }

    pub fn spread(mut self, constraint: TopologySpreadConstraint) -> Self {
        self.spec()
            .topology_spread_constraints
            .get_or_insert_with(Vec::new)
            .push(constraint);
        self
    }

    /// Adds a toleration; empty strings leave the field unset.
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: given(key),
                operator: given(operator),
                value: given(value),
                effect: given(effect),
                toleration_seconds: None,
            });
        self
    }

    /// Asks for `host_port` in a new app container; empty `ip`/`protocol` are left unset.
    pub fn host_port(mut self, host_port: i32, protocol: &str, ip: &str) -> Self {
        let n = self.spec().containers.len();
        let mut c = container(format!("c{n}"), "busybox", &[]);
        c.ports = Some(vec![ContainerPort {
            container_port: host_port,
            host_port: Some(host_port),
            host_ip: given(ip),
            protocol: given(protocol),
            ..Default::default()
        }]);
        self.spec().containers.push(c);
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }

    pub fn info(self) -> PodInfo {
        PodInfo::new(Arc::new(self.pod))
    }
}

/// A label selector ANDing `match_labels`.
pub fn match_labels(labels: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(string_map(labels)),
        match_expressions: None,
    }
}

/// A label selector that does not parse: `app Near`, an operator Kubernetes does not have.
pub fn selector_with_unknown_operator() -> LabelSelector {
    LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "app".to_string(),
            operator: "Near".to_string(),
            values: None,
        }]),
    }
}

/// A pod affinity term selecting pods with `labels` within `topology_key`.
pub fn term(labels: &[(&str, &str)], topology_key: &str) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(match_labels(labels)),
        topology_key: topology_key.to_string(),
        ..Default::default()
    }
}

fn weighted(weight: i32, term: PodAffinityTerm) -> WeightedPodAffinityTerm {
    WeightedPodAffinityTerm {
        weight,
        pod_affinity_term: term,
    }
}

/// A topology spread constraint over pods with `labels`.
pub fn spread(
    max_skew: i32,
    topology_key: &str,
    when_unsatisfiable: &str,
    labels: &[(&str, &str)],
) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew,
        topology_key: topology_key.to_string(),
        when_unsatisfiable: when_unsatisfiable.to_string(),
        label_selector: Some(match_labels(labels)),
        ..Default::default()
    }
}

/// A node-selector requirement; `values` may be empty.
pub fn req(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

/// A node-selector term ANDing label expressions.
pub fn labels_term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(expressions),
        match_fields: None,
    }
}

/// A node-selector term ANDing field expressions.
pub fn fields_term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(expressions),
    }
}

pub fn snapshot(nodes: Vec<NodeBuilder>) -> Snapshot {
    Snapshot::new(nodes.into_iter().map(|n| Arc::new(n.info())).collect())
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
