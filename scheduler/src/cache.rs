//! The scheduler's cache: every node and the pods counted on it, bound pods as the API reports
//! them and assumed pods the scheduler has decided on but whose bind has not been confirmed.
//! An assumed pod counts on its node at once, so the next decision — even before the bind
//! returns — sees its requests and ports: concurrent decisions never overcommit a node.
//! [`Cache::update_snapshot`] copies only the nodes that changed into the cycle's snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::Node;

use crate::framework::{NodeInfo, PodInfo, Snapshot};

#[derive(Debug)]
struct PodState {
    info: Arc<PodInfo>,
    node: String,
    /// Decided by this scheduler, not yet seen bound through the API.
    assumed: bool,
}

/// Which way an assumption could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("pod {0} is already counted on a node")]
    AlreadyPlaced(String),
    #[error("node {0} is not in the cache")]
    UnknownNode(String),
}

/// Nodes, and the pods counted on each.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: HashMap<String, Arc<NodeInfo>>,
    /// Node names in the order they were added: the snapshot's order.
    order: Vec<String>,
    pods: HashMap<String, PodState>,
    /// Pods bound to nodes the cache has not seen (yet, or any more).
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    dirty: HashSet<String>,
    structure_changed: bool,
    images_changed: bool,
    namespaces_changed: bool,
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.nodes.get(name)
    }

    /// The pod `key` as counted, if it is.
    pub fn pod_info(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.pods.get(key).map(|p| &p.info)
    }

    /// Every pod counted on a node.
    pub fn pod_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.pods.keys().cloned()
    }

    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.order.iter()
    }

    pub fn namespace_labels(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        self.namespace_labels.get(name)
    }

    /// Whether the pod `key` is counted on a node, and whether only by assumption.
    pub fn placement(&self, key: &str) -> Option<(&str, bool)> {
        self.pods.get(key).map(|p| (p.node.as_str(), p.assumed))
    }

    fn node_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        let info = self.nodes.get_mut(name)?;
        self.dirty.insert(name.to_string());
        Some(Arc::make_mut(info))
    }

    /// A node was added or changed.
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(info) = self.node_mut(&name) {
            let before = info.images.clone();
            info.set_node(node);
            if info.images != before {
                self.images_changed = true;
            }
            return;
        }
        let mut info = NodeInfo::new(node);
        for pod in self.orphans.remove(&name).into_iter().flatten() {
            info.add_pod(pod);
        }
        if !info.images.is_empty() {
            self.images_changed = true;
        }
        self.nodes.insert(name.clone(), Arc::new(info));
        self.order.push(name);
        self.structure_changed = true;
    }

    /// A node was deleted. Pods still bound to it wait as orphans until they are deleted too.
    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.remove(name) else {
            return;
        };
        if !info.pods.is_empty() {
            self.orphans.insert(name.to_string(), info.pods.to_vec());
        }
        self.order.retain(|n| n != name);
        self.dirty.remove(name);
        self.structure_changed = true;
        self.images_changed = true;
    }

    /// A namespace's labels (for affinity terms' namespaceSelector).
    pub fn set_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        if self.namespace_labels.get(name) != Some(&labels) {
            self.namespace_labels.insert(name.to_string(), labels);
            self.namespaces_changed = true;
        }
    }

    pub fn remove_namespace(&mut self, name: &str) {
        if self.namespace_labels.remove(name).is_some() {
            self.namespaces_changed = true;
        }
    }

    fn count(&mut self, node: &str, info: Arc<PodInfo>) {
        match self.node_mut(node) {
            Some(n) => n.add_pod(info),
            None => self.orphans.entry(node.to_string()).or_default().push(info),
        }
    }

    fn uncount(&mut self, node: &str, uid: &str) {
        if let Some(n) = self.node_mut(node) {
            n.remove_pod(uid);
            return;
        }
        if let Some(list) = self.orphans.get_mut(node) {
            list.retain(|p| p.uid != uid);
            if list.is_empty() {
                self.orphans.remove(node);
            }
        }
    }

    /// The API reports a pod bound to `node` (added or changed). An assumed pod is confirmed.
    pub fn set_bound_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        let key = info.key();
        if let Some(old) = self.pods.remove(&key) {
            self.uncount(&old.node, &old.info.uid);
        }
        self.count(node, info.clone());
        self.pods.insert(
            key,
            PodState {
                info,
                node: node.to_string(),
                assumed: false,
            },
        );
    }

    /// The pod is gone (deleted, or finished: a finished pod holds nothing on its node).
    pub fn remove_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.remove(key) {
            self.uncount(&old.node, &old.info.uid);
        }
    }

    /// Counts `info` on `node` before its bind is confirmed.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) -> Result<(), CacheError> {
        let key = info.key();
        if self.pods.contains_key(&key) {
            return Err(CacheError::AlreadyPlaced(key));
        }
        if !self.nodes.contains_key(node) {
            return Err(CacheError::UnknownNode(node.to_string()));
        }
        self.count(node, info.clone());
        self.pods.insert(
            key,
            PodState {
                info,
                node: node.to_string(),
                assumed: true,
            },
        );
        Ok(())
    }

    /// The bind of an assumed pod failed: it no longer counts. A pod the API already reported
    /// bound stays.
    pub fn forget(&mut self, key: &str) {
        if self.pods.get(key).is_some_and(|p| p.assumed) {
            self.remove_pod(key);
        }
    }

    /// Brings `snapshot` up to date, copying only the nodes that changed since the last call.
    pub fn update_snapshot(&mut self, snapshot: &mut Snapshot) {
        if self.structure_changed {
            let nodes = self
                .order
                .iter()
                .filter_map(|n| self.nodes.get(n).cloned())
                .collect();
            *snapshot = Snapshot::new(nodes);
            snapshot.namespace_labels = self.namespace_labels.clone();
        } else if !self.dirty.is_empty() {
            let changed: Vec<(usize, Arc<NodeInfo>)> = self
                .dirty
                .iter()
                .filter_map(|name| Some((snapshot.position(name)?, self.nodes.get(name)?.clone())))
                .collect();
            snapshot.replace_nodes(changed);
            if self.images_changed {
                snapshot.recount_images();
            }
        }
        if self.namespaces_changed {
            snapshot.namespace_labels = self.namespace_labels.clone();
            snapshot.memo.clear();
        }
        self.dirty.clear();
        self.structure_changed = false;
        self.images_changed = false;
        self.namespaces_changed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support;

    fn node(name: &str, cpu: &str) -> Arc<Node> {
        let node = test_support::node(name).allocatable(&[("cpu", cpu), ("pods", "110")]);
        Arc::new(node.build())
    }

    fn pod(name: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(test_support::pod(name).container(&[("cpu", cpu)]).info())
    }

    fn requested_cpu(snapshot: &Snapshot, node: &str) -> i64 {
        snapshot
            .get(node)
            .map(|n| n.requested.milli_cpu)
            .unwrap_or(-1)
    }

    #[test]
    fn an_assumed_pod_counts_on_its_node_in_the_next_snapshot() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "n1"), 0);
        cache.assume(pod("a", "1500m"), "n1").expect("assume");
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "n1"), 1500);
        assert_eq!(cache.placement("default/a"), Some(("n1", true)));
    }

    #[test]
    fn a_snapshot_taken_earlier_is_not_changed_by_later_assumptions() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let earlier = snap.clone();
        cache.assume(pod("a", "1"), "n1").expect("assume");
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&earlier, "n1"), 0);
        assert_eq!(requested_cpu(&snap, "n1"), 1000);
    }

    #[test]
    fn a_confirmed_bind_replaces_the_assumption_without_counting_twice() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        let a = pod("a", "1");
        cache.assume(a.clone(), "n1").expect("assume");
        cache.set_bound_pod(a, "n1");
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "n1"), 1000);
        assert_eq!(snap.get("n1").map(|n| n.requested.pods), Some(1));
        assert_eq!(cache.placement("default/a"), Some(("n1", false)));
    }

    #[test]
    fn a_failed_bind_forgets_the_assumption() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        cache.assume(pod("a", "1"), "n1").expect("assume");
        cache.forget("default/a");
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "n1"), 0);
        assert!(cache.placement("default/a").is_none());
    }

    #[test]
    fn forgetting_never_drops_a_pod_the_api_reported_bound() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        cache.set_bound_pod(pod("a", "1"), "n1");
        cache.forget("default/a");
        assert_eq!(cache.placement("default/a"), Some(("n1", false)));
    }

    #[test]
    fn a_placed_pod_is_never_assumed_again_whether_assumed_or_bound() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        cache.set_node(node("n2", "4"));
        let refused = Err(CacheError::AlreadyPlaced("default/a".into()));
        let cpu_on = |cache: &Cache, n: &str| cache.node(n).map(|i| i.requested.milli_cpu);

        cache.assume(pod("a", "1"), "n1").expect("assume");
        assert_eq!(cache.assume(pod("a", "1"), "n2"), refused);
        assert_eq!(cache.assume(pod("a", "1"), "n1"), refused);
        assert_eq!(cache.placement("default/a"), Some(("n1", true)));

        cache.set_bound_pod(pod("a", "1"), "n1");
        assert_eq!(cache.assume(pod("a", "1"), "n2"), refused);
        assert_eq!(cache.placement("default/a"), Some(("n1", false)));
        assert_eq!(
            (cpu_on(&cache, "n1"), cpu_on(&cache, "n2")),
            (Some(1000), Some(0))
        );
    }

    #[test]
    fn pods_bound_before_their_node_appears_count_once_it_does() {
        let mut cache = Cache::new();
        cache.set_bound_pod(pod("a", "2"), "late");
        cache.set_node(node("late", "4"));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "late"), 2000);
        cache.remove_pod("default/a");
        cache.update_snapshot(&mut snap);
        assert_eq!(requested_cpu(&snap, "late"), 0);
    }

    #[test]
    fn a_node_change_keeps_its_pods_and_updates_allocatable() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        cache.set_bound_pod(pod("a", "1"), "n1");
        cache.set_node(node("n1", "8"));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        let n1 = snap.get("n1").expect("n1");
        assert_eq!(n1.allocatable.milli_cpu, 8000);
        assert_eq!(n1.requested.milli_cpu, 1000);
    }

    #[test]
    fn a_removed_node_leaves_the_snapshot() {
        let mut cache = Cache::new();
        cache.set_node(node("n1", "4"));
        cache.set_node(node("n2", "4"));
        let mut snap = Snapshot::default();
        cache.update_snapshot(&mut snap);
        cache.remove_node("n1");
        cache.update_snapshot(&mut snap);
        assert_eq!(snap.len(), 1);
        assert!(snap.get("n1").is_none());
        assert_eq!(snap.position("n2"), Some(0));
    }
}
