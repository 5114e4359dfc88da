//! The scheduling framework's data: a pod as the scheduler sees it ([`PodInfo`]), a node with
//! the pods counted on it ([`NodeInfo`]), a consistent view of the cluster ([`Snapshot`]), and the
//! contracts of filter and score plugins. Everything here is plain data: no I/O, no clock.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::memo::Memo;
use crate::resources::{self, Resources};
use crate::terms::{self, AffinityTerms};

/// The largest score a score plugin gives one node (kube-scheduler's `MaxNodeScore`).
pub const MAX_NODE_SCORE: i64 = 100;

/// A pod and what the scheduler derives from it once, not in every cycle.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Requests as Kubernetes counts them (init containers, sidecars, overhead); `pods` is 0.
    pub requests: Resources,
    /// CPU (milli) and memory requests with defaults for containers that request none; scoring
    /// only.
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub priority: i32,
    /// Host ports the pod's app and sidecar containers ask for.
    pub host_ports: Vec<HostPort>,
    /// Inter-pod affinity and anti-affinity terms, with their selectors parsed.
    pub affinity: AffinityTerms,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let requests = resources::pod_requests(&pod);
        let (non_zero_cpu, non_zero_memory) = resources::pod_non_zero_requests(&pod);
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        // Regular init containers have exited before the app containers start (the kubelet
        // binds no host port for them); sidecars run beside the app and hold theirs.
        let host_ports = spec
            .into_iter()
            .flat_map(|s| {
                s.init_containers
                    .iter()
                    .flatten()
                    .filter(|c| c.restart_policy.as_deref() == Some("Always"))
                    .chain(s.containers.iter())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|p| *p > 0)?;
                Some(HostPort {
                    ip: match p.host_ip.as_deref() {
                        None | Some("") => DEFAULT_BIND_ALL_HOST_IP.to_string(),
                        Some(ip) => ip.to_string(),
                    },
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    port,
                })
            })
            .collect();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            requests,
            non_zero_cpu,
            non_zero_memory,
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            host_ports,
            affinity: terms::parse(&pod),
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// The node the pod is bound (or nominated by assumption) to, "" if none.
    pub fn node_name(&self) -> &str {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("")
    }

    /// Whether the pod is being deleted.
    pub fn terminating(&self) -> bool {
        self.pod.metadata.deletion_timestamp.is_some()
    }
}

/// The host IP a port without `hostIP` binds: every address.
pub const DEFAULT_BIND_ALL_HOST_IP: &str = "0.0.0.0";

/// One host port a container asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Whether two host ports cannot both be bound on one node: same protocol and port, and
    /// the same IP or either binding every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip
                || self.ip == DEFAULT_BIND_ALL_HOST_IP
                || other.ip == DEFAULT_BIND_ALL_HOST_IP)
    }
}

/// A node with the pods the scheduler counts on it (bound ones and assumed ones).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    /// `spec.unschedulable` and `spec.taints`, copied here because every decision reads
    /// them for every node it filters: reading them from `node` costs each node a cache miss.
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    /// Sum of the counted pods' requests; `pods` is the number of pods.
    pub requested: Resources,
    /// CPU and memory counted with defaults for pods that request none (scoring).
    pub non_zero_cpu: i64,
    pub non_zero_memory: i64,
    pub pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have terms that score other pods (required affinity, preferred
    /// affinity or anti-affinity: see [`AffinityTerms::scores_others`]).
    pub pods_scoring_others: usize,
    /// How many of `pods` have a required anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Image name (every name a node reports for it) → size in bytes.
    pub images: HashMap<String, i64>,
    /// Bumped on every change, so a snapshot can tell which nodes moved.
    pub generation: u64,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            node: node.clone(),
            unschedulable: false,
            taints: Vec::new(),
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            pods_scoring_others: 0,
            pods_with_required_anti_affinity: 0,
            used_ports: Vec::new(),
            images: HashMap::new(),
            generation: 0,
        };
        info.set_node(node);
        info
    }

    /// Replaces the Node object, keeping the pods counted on it.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = Resources::from_list(status.and_then(|s| s.allocatable.as_ref()));
        self.images.clear();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            let size = image.size_bytes.unwrap_or(0);
            for name in image.names.iter().flatten() {
                self.images.insert(normalized_image_name(name), size);
            }
        }
        self.name = node.metadata.name.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.node = node;
        self.generation += 1;
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    /// Counts `pod` on this node.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.requested.pods += 1;
        self.non_zero_cpu += pod.non_zero_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        if pod.affinity.scores_others() {
            self.pods_scoring_others += 1;
        }
        if !pod.affinity.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Stops counting the pod with `uid`; false if it was not counted here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.requested.pods -= 1;
        self.non_zero_cpu -= pod.non_zero_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        if pod.affinity.scores_others() {
            self.pods_scoring_others -= 1;
        }
        if !pod.affinity.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        self.generation += 1;
        true
    }
}

/// An image name as nodes report it and pods name it, with Docker Hub's implied parts made
/// explicit so `nginx` and `docker.io/library/nginx:latest` are one image.
pub fn normalized_image_name(name: &str) -> String {
    let (repo, digest) = match name.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (name, None),
    };
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let tagged = last.contains(':');
    let mut repo = repo.to_string();
    let first = repo.split('/').next().unwrap_or("").to_string();
    let has_registry =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_registry {
        repo = if repo.contains('/') {
            format!("docker.io/{repo}")
        } else {
            format!("docker.io/library/{repo}")
        };
    }
    match digest {
        Some(d) => format!("{repo}@{d}"),
        None if tagged => repo,
        None => format!("{repo}:latest"),
    }
}

/// A consistent view of the cluster for one scheduling cycle.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    index: HashMap<String, usize>,
    /// Positions in `nodes` of the nodes with at least one pod whose terms score other pods.
    pub have_pods_scoring_others: Vec<usize>,
    /// Positions in `nodes` of the nodes with a pod with a required anti-affinity term.
    pub have_pods_with_required_anti_affinity: Vec<usize>,
    /// Labels of each namespace (for affinity terms' namespaceSelector).
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// Image name → how many nodes have it (ImageLocality's spread factor).
    pub image_nodes: HashMap<String, usize>,
    /// Bumped by every update that replaces nodes.
    version: u64,
    /// By position: the version in which the node was last replaced.
    changed: Vec<u64>,
    /// Counts kept across cycles (shared by clones; unused by scratch copies).
    pub memo: Arc<Memo>,
    /// A what-if copy whose nodes differ from the lineage's: the memo is not consulted.
    scratch: bool,
}

impl Snapshot {
    /// A snapshot of `nodes` (each once, in the order given).
    pub fn new(nodes: Vec<Arc<NodeInfo>>) -> Snapshot {
        let mut s = Snapshot {
            changed: vec![0; nodes.len()],
            nodes,
            ..Default::default()
        };
        s.reindex();
        s.recount_images();
        s
    }

    /// Rebuilds the name index and the affinity lists after `nodes` changed.
    pub fn reindex(&mut self) {
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        self.recount_affinity();
    }

    /// Recomputes the lists of nodes with affinity pods.
    pub fn recount_affinity(&mut self) {
        self.have_pods_scoring_others.clear();
        self.have_pods_with_required_anti_affinity.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            if n.pods_scoring_others > 0 {
                self.have_pods_scoring_others.push(i);
            }
            if n.pods_with_required_anti_affinity > 0 {
                self.have_pods_with_required_anti_affinity.push(i);
            }
        }
    }

    /// Recomputes how many nodes hold each image.
    pub fn recount_images(&mut self) {
        self.image_nodes.clear();
        for n in &self.nodes {
            for image in n.images.keys() {
                *self.image_nodes.entry(image.clone()).or_insert(0) += 1;
            }
        }
    }

    /// Replaces the nodes at the given positions, as one update: their counts in the memo are
    /// redone the next time they are asked for.
    pub fn replace_nodes(&mut self, nodes: impl IntoIterator<Item = (usize, Arc<NodeInfo>)>) {
        self.version += 1;
        let flags = |n: &NodeInfo| {
            (
                n.pods_scoring_others > 0,
                n.pods_with_required_anti_affinity > 0,
            )
        };
        // The lists of nodes with affinity pods are redone only when a node joins or leaves
        // one; walking every node for it on each update would cost more than the decision.
        let mut lists_changed = false;
        for (pos, node) in nodes {
            if let (Some(slot), Some(changed)) =
                (self.nodes.get_mut(pos), self.changed.get_mut(pos))
            {
                lists_changed |= flags(slot) != flags(&node);
                *slot = node;
                *changed = self.version;
            }
        }
        if lists_changed {
            self.recount_affinity();
        }
    }

    /// The version of the last update.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Positions of the nodes replaced after `version`.
    pub fn changed_since(&self, version: u64) -> impl Iterator<Item = usize> + '_ {
        self.changed
            .iter()
            .enumerate()
            .filter(move |(_, &v)| v > version)
            .map(|(pos, _)| pos)
    }

    /// Whether this is a what-if copy (see [`Snapshot::with_node`]).
    pub fn is_scratch(&self) -> bool {
        self.scratch
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The same snapshot with node `position` replaced (preemption's "what if these pods were
    /// gone").
    pub fn with_node(&self, position: usize, node: Arc<NodeInfo>) -> Snapshot {
        let mut s = self.clone();
        s.nodes[position] = node;
        s.scratch = true;
        s.recount_affinity();
        s
    }
}

/// Why a filter turned a node down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: &'static str,
    /// Unresolvable: evicting pods from the node would not help (preemption skips it).
    pub unresolvable: bool,
    /// The reasons, each as kube-scheduler words it (`Insufficient cpu`, …); the
    /// FailedScheduling summary counts nodes per reason.
    pub reasons: Vec<String>,
}

impl Rejection {
    pub fn new(plugin: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection {
            plugin,
            unresolvable: false,
            reasons: vec![reason.into()],
        }
    }

    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection {
            plugin,
            unresolvable: true,
            reasons: vec![reason.into()],
        }
    }
}

/// Per-cycle state plugins compute in pre-filter/pre-score and read in filter/score, keyed by
/// the plugin's name.
///
/// A handful of entries, read for every node by every plugin: a list searched in order costs
/// less than hashing the key on each read.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
    /// The profile's filters (by position, up to 64) that skip this pod.
    skipped_filters: u64,
}

impl CycleState {
    /// Marks the profile's filter at `position` as skipped for this pod.
    pub fn skip_filter(&mut self, position: usize) {
        if position < 64 {
            self.skipped_filters |= 1 << position;
        }
    }

    pub fn filter_skipped(&self, position: usize) -> bool {
        position < 64 && self.skipped_filters & (1 << position) != 0
    }

    pub fn insert<T: Any + Send + Sync>(&mut self, plugin: &'static str, value: T) {
        let value: Box<dyn Any + Send + Sync> = Box::new(value);
        match self.data.iter_mut().find(|(k, _)| *k == plugin) {
            Some(entry) => entry.1 = value,
            None => self.data.push((plugin, value)),
        }
    }

    pub fn get<T: Any + Send + Sync>(&self, plugin: &'static str) -> Option<&T> {
        self.data
            .iter()
            .find(|(k, _)| *k == plugin)
            .and_then(|(_, v)| v.downcast_ref())
    }
}

/// A change in the cluster that may make an unschedulable pod fit (kube-scheduler's
/// ClusterEvent, as queueing hints use them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    NodeAdded,
    NodeAllocatableChanged,
    NodeLabelsChanged,
    NodeTaintsChanged,
    NodeSchedulableChanged,
    NodeImagesChanged,
    AssignedPodAdded,
    AssignedPodLabelsChanged,
    AssignedPodDeleted,
    NamespaceLabelsChanged,
}

/// A filter plugin. Contract: `filter` is a pure function of the cycle state, the pod and the
/// node; it may be called concurrently for different nodes and any number of times.
pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;

    /// Once per pod per cycle, over the whole snapshot. A rejection here turns every node down
    /// for the same reason.
    fn pre_filter(
        &self,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
        _state: &mut CycleState,
    ) -> Result<(), Rejection> {
        Ok(())
    }

    /// Whether, after its `pre_filter`, this plugin has nothing to check for the pod on any
    /// node (kube-scheduler's Skip status from PreFilter): the cycle then leaves it out of
    /// every node's filtering. True only when `filter` would admit every node.
    fn skips_filter(&self, _pod: &PodInfo, _state: &CycleState) -> bool {
        false
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection>;

    /// The cluster events after which a pod this plugin rejected may fit.
    fn events(&self) -> &'static [ClusterEvent];
}

/// A score plugin. `score` gives each feasible node 0..=[`MAX_NODE_SCORE`] (before
/// normalisation); the profile multiplies the normalised score by the plugin's weight.
pub trait Score: Send + Sync {
    fn name(&self) -> &'static str;

    /// Once per pod per cycle, over the feasible nodes.
    fn pre_score(
        &self,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
        _feasible: &[Arc<NodeInfo>],
        _state: &mut CycleState,
    ) {
    }

    /// Whether this plugin would give every node the same score for the pod (kube-scheduler's
    /// Skip status from PreScore): the cycle then leaves it out, which changes no choice.
    fn skips_score(&self, _pod: &PodInfo, _snapshot: &Snapshot) -> bool {
        false
    }

    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    /// Rescales the raw scores of the feasible nodes (in their order) into 0..=MAX_NODE_SCORE.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

/// Scales `scores` so the largest becomes [`MAX_NODE_SCORE`] (and, if `reverse`, flips them so
/// the smallest raw score gets the most), as kube-scheduler's DefaultNormalizeScore.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                *s = MAX_NODE_SCORE;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * *s / max;
        *s = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}
