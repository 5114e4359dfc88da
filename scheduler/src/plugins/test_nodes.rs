//! Small builders for the nodes and pods the node-local plugins' tests are written over, so a
//! test states only what matters to it (a taint, a request, a port) and not a whole object.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerImage, ContainerPort, Node, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, NodeStatus, Pod, PodSpec,
    PreferredSchedulingTerm, ResourceRequirements, Taint, Toleration,
};
use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::framework::{NodeInfo, PodInfo};

fn quantities(list: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    list.iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

/// A node under construction.
#[derive(Clone, Default)]
pub struct NodeBuilder {
    node: Node,
}

/// A node called `name` with nothing allocatable, no labels and no taints.
pub fn node(name: &str) -> NodeBuilder {
    let mut node = Node::default();
    node.metadata.name = Some(name.to_string());
    node.spec = Some(NodeSpec::default());
    node.status = Some(NodeStatus::default());
    NodeBuilder { node }
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

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.node
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_string(), value.to_string());
        self
    }

    /// Adds a taint; an empty `value` leaves the value unset.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        let spec = self.node.spec.get_or_insert_with(Default::default);
        spec.taints.get_or_insert_with(Vec::new).push(Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
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

    pub fn build(self) -> Node {
        self.node
    }

    /// The node with no pods counted on it.
    pub fn info(self) -> NodeInfo {
        NodeInfo::new(Arc::new(self.node))
    }

    /// The node with `pods` counted on it.
    pub fn with_pods(self, pods: Vec<PodBuilder>) -> NodeInfo {
        let mut info = self.info();
        for p in pods {
            info.add_pod(Arc::new(p.info()));
        }
        info
    }
}

/// A pod under construction.
#[derive(Clone, Default)]
pub struct PodBuilder {
    pod: Pod,
}

/// A pod `default/name` with no containers.
pub fn pod(name: &str) -> PodBuilder {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some("default".to_string());
    pod.metadata.uid = Some(format!("uid-{name}"));
    pod.spec = Some(PodSpec::default());
    PodBuilder { pod }
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

    fn node_affinity(&mut self) -> &mut NodeAffinity {
        self.spec()
            .affinity
            .get_or_insert_with(Affinity::default)
            .node_affinity
            .get_or_insert_with(NodeAffinity::default)
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

    /// Adds a toleration; empty strings leave the field unset.
    pub fn toleration(mut self, key: &str, operator: &str, value: &str, effect: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        self.spec()
            .tolerations
            .get_or_insert_with(Vec::new)
            .push(Toleration {
                key: opt(key),
                operator: opt(operator),
                value: opt(value),
                effect: opt(effect),
                toleration_seconds: None,
            });
        self
    }

    /// Asks for `host_port` in a new app container; empty `ip`/`protocol` are left unset.
    pub fn host_port(mut self, host_port: i32, protocol: &str, ip: &str) -> Self {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let n = self.spec().containers.len();
        let mut c = container(format!("c{n}"), "busybox", &[]);
        c.ports = Some(vec![ContainerPort {
            container_port: host_port,
            host_port: Some(host_port),
            host_ip: opt(ip),
            protocol: opt(protocol),
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

/// A node-selector requirement; `values` may be empty.
pub fn req(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
    NodeSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
    }
}

/// A term ANDing label expressions.
pub fn labels_term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: Some(expressions),
        match_fields: None,
    }
}

/// A term ANDing field expressions.
pub fn fields_term(expressions: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
    NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(expressions),
    }
}
