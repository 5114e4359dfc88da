//! The garbage collector's picture of ownership: every object it has seen, of every kind, by
//! uid, with the owners it names and the dependents that name it, kept up to date from the
//! watch events of all kinds. Each change says which objects it may concern (the object
//! itself, its dependents, owners waiting for it), for the collector to look at again.
//!
//! An owner is known by uid alone: dependents may name an owner that is not (or not yet, or
//! no longer) in the picture, and those edges are kept until the dependents go.

use std::collections::{BTreeSet, HashMap, HashSet};

use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub type Uid = String;

/// The finalizer of a deletion that waits for the owner's dependents to go first.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of a deletion that leaves the owner's dependents behind.
pub const ORPHAN: &str = "orphan";

/// Which object, exactly: a later object of the same name has another uid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// None for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Uid,
}

/// What the collector knows of one object.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub identity: Identity,
    pub owners: Vec<OwnerReference>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node of an object of kind `api_version`/`kind` with metadata `meta`; None for an
    /// object without a name or uid (never stored, so never seen in a watch).
    pub fn of(api_version: &str, kind: &str, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            identity: Identity {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
                name: meta.name.clone()?,
                uid: meta.uid.clone()?,
            },
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    pub fn uid(&self) -> &str {
        &self.identity.uid
    }

    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: it goes once its blocking dependents have.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// Being deleted with its dependents left behind.
    pub fn orphaning(&self) -> bool {
        self.deleting && self.has_finalizer(ORPHAN)
    }

    /// Whether its reference to `owner` holds the owner's foreground deletion back.
    pub fn blocks(&self, owner: &str) -> bool {
        self.owners
            .iter()
            .any(|r| r.uid == owner && r.block_owner_deletion == Some(true))
    }

    fn owner_uids(&self) -> impl Iterator<Item = &str> {
        self.owners.iter().map(|r| r.uid.as_str())
    }
}

/// A change to the picture, from one kind's watch.
#[derive(Debug, Clone)]
pub enum Change {
    Applied(Node),
    Deleted(Node),
    /// Every object of kind `api_version`/`kind` as of now: objects of that kind not in it are
    /// gone; other kinds are untouched.
    Restarted {
        api_version: String,
        kind: String,
        nodes: Vec<Node>,
    },
}

/// Every object seen, and who owns whom.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    /// Owner uid → the uids of objects naming it as an owner.
    dependents: HashMap<Uid, BTreeSet<Uid>>,
    /// (apiVersion, kind) → the uids of its objects.
    kinds: HashMap<(String, String), HashSet<Uid>>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies `change`; returns the uids of the objects to look at because of it.
    pub fn apply(&mut self, change: Change) -> BTreeSet<Uid> {
        let mut dirty = BTreeSet::new();
        match change {
            Change::Applied(node) => self.upsert(node, &mut dirty),
            Change::Deleted(node) => self.remove(node.uid(), &mut dirty),
            Change::Restarted {
                api_version,
                kind,
                nodes,
            } => {
                let fresh: HashSet<Uid> = nodes.iter().map(|n| n.identity.uid.clone()).collect();
                let gone: Vec<Uid> = self
                    .kinds
                    .get(&(api_version, kind))
                    .into_iter()
                    .flatten()
                    .filter(|uid| !fresh.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.remove(&uid, &mut dirty);
                }
                for node in nodes {
                    self.upsert(node, &mut dirty);
                }
            }
        }
        dirty
    }

    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The objects seen naming `owner` as an owner.
    pub fn dependents(&self, owner: &str) -> Vec<&Node> {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn upsert(&mut self, node: Node, dirty: &mut BTreeSet<Uid>) {
        let uid = node.identity.uid.clone();
        let old = self.nodes.remove(&uid);
        if let Some(old) = &old {
            self.unlink(old);
        }
        // An object with owners may have lost them; one being deleted in the foreground or
        // with orphaning has work of its own.
        if !node.owners.is_empty() || node.deleting_dependents() || node.orphaning() {
            dirty.insert(uid.clone());
        }
        let newly_deleting_dependents =
            node.deleting_dependents() && !old.as_ref().is_some_and(Node::deleting_dependents);
        if newly_deleting_dependents {
            dirty.extend(self.dependents.get(&uid).into_iter().flatten().cloned());
        }
        // Owners waiting on this object learn when its references change.
        if old.as_ref().map(|o| &o.owners) != Some(&node.owners) {
            let owners: BTreeSet<&str> = old
                .iter()
                .flat_map(Node::owner_uids)
                .chain(node.owner_uids())
                .collect();
            dirty.extend(self.waiting_owners(owners));
        }
        for owner in node.owner_uids() {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(uid.clone());
        }
        self.kinds
            .entry((
                node.identity.api_version.clone(),
                node.identity.kind.clone(),
            ))
            .or_default()
            .insert(uid.clone());
        self.nodes.insert(uid, node);
    }

    fn remove(&mut self, uid: &str, dirty: &mut BTreeSet<Uid>) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        self.unlink(&node);
        if let Some(set) = self.kinds.get_mut(&(
            node.identity.api_version.clone(),
            node.identity.kind.clone(),
        )) {
            set.remove(uid);
        }
        // Its dependents may have lost their last owner; its owners may have been waiting.
        dirty.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        dirty.extend(self.waiting_owners(node.owner_uids().collect()));
    }

    /// Drops the edges from `node` to its owners.
    fn unlink(&mut self, node: &Node) {
        for owner in node.owner_uids() {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(node.uid());
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }

    /// Those of `owners` that are being deleted and wait on (or orphan) their dependents.
    fn waiting_owners(&self, owners: BTreeSet<&str>) -> Vec<Uid> {
        owners
            .into_iter()
            .filter(|o| {
                self.nodes
                    .get(*o)
                    .is_some_and(|n| n.deleting_dependents() || n.orphaning())
            })
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn reference(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block.then_some(true),
            controller: None,
        }
    }

    pub(crate) fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            identity: Identity {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: Some("default".into()),
                name: format!("cm-{uid}"),
                uid: uid.into(),
            },
            owners: owners.iter().map(|o| reference(o, true)).collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn of_kind(mut n: Node, kind: &str) -> Node {
        n.identity.kind = kind.into();
        n
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers = vec![finalizer.to_string()];
        n
    }

    fn uids(set: BTreeSet<Uid>) -> Vec<String> {
        set.into_iter().collect()
    }

    fn dependent_uids(graph: &Graph, owner: &str) -> Vec<String> {
        graph
            .dependents(owner)
            .iter()
            .map(|n| n.uid().to_string())
            .collect()
    }

    #[test]
    fn an_object_with_owners_is_looked_at_and_one_without_is_not() {
        let mut graph = Graph::new();

        let owned = graph.apply(Change::Applied(node("d", &["o"])));
        let free = graph.apply(Change::Applied(node("o", &[])));

        assert_eq!(uids(owned), ["d"]);
        assert!(free.is_empty());
        assert_eq!(dependent_uids(&graph, "o"), ["d"]);
    }

    #[test]
    fn deleting_an_owner_concerns_its_dependents() {
        let mut graph = Graph::new();
        graph.apply(Change::Applied(node("o", &[])));
        graph.apply(Change::Applied(node("a", &["o"])));
        graph.apply(Change::Applied(node("b", &["o"])));
        graph.apply(Change::Applied(node("c", &["other"])));

        let dirty = graph.apply(Change::Deleted(node("o", &[])));

        assert_eq!(uids(dirty), ["a", "b"]);
        assert!(graph.node("o").is_none());
        // The dependents still name it: the edges stay until they go.
        assert_eq!(dependent_uids(&graph, "o"), ["a", "b"]);
    }

    #[test]
    fn an_owner_entering_foreground_deletion_concerns_itself_and_its_dependents_once() {
        let mut graph = Graph::new();
        graph.apply(Change::Applied(node("o", &[])));
        graph.apply(Change::Applied(node("a", &["o"])));

        let first = graph.apply(Change::Applied(deleting(node("o", &[]), FOREGROUND)));
        let again = graph.apply(Change::Applied(deleting(node("o", &[]), FOREGROUND)));

        assert_eq!(uids(first), ["a", "o"]);
        assert_eq!(uids(again), ["o"]);
    }

    #[test]
    fn a_dependent_going_or_dropping_its_reference_concerns_a_waiting_owner() {
        let mut graph = Graph::new();
        graph.apply(Change::Applied(deleting(node("o", &[]), FOREGROUND)));
        graph.apply(Change::Applied(node("a", &["o"])));
        graph.apply(Change::Applied(node("b", &["o"])));

        let released = graph.apply(Change::Applied(node("a", &[])));
        let gone = graph.apply(Change::Deleted(node("b", &["o"])));

        assert_eq!(uids(released), ["o"]);
        assert_eq!(uids(gone), ["o"]);
        assert!(dependent_uids(&graph, "o").is_empty());
    }

    #[test]
    fn an_unchanged_dependent_does_not_wake_its_owner() {
        let mut graph = Graph::new();
        graph.apply(Change::Applied(deleting(node("o", &[]), ORPHAN)));
        graph.apply(Change::Applied(node("a", &["o"])));

        let dirty = graph.apply(Change::Applied(node("a", &["o"])));

        assert_eq!(uids(dirty), ["a"]);
    }

    #[test]
    fn a_restart_replaces_only_its_own_kinds_objects() {
        let mut graph = Graph::new();
        graph.apply(Change::Applied(node("o", &[])));
        graph.apply(Change::Applied(of_kind(node("p1", &["o"]), "Pod")));
        graph.apply(Change::Applied(of_kind(node("p2", &["gone-owner"]), "Pod")));

        let dirty = graph.apply(Change::Restarted {
            api_version: "v1".into(),
            kind: "Pod".into(),
            nodes: vec![of_kind(node("p3", &["o"]), "Pod")],
        });

        assert!(graph.node("o").is_some());
        assert!(graph.node("p1").is_none() && graph.node("p2").is_none());
        assert_eq!(dependent_uids(&graph, "o"), ["p3"]);
        assert!(dependent_uids(&graph, "gone-owner").is_empty());
        assert_eq!(uids(dirty), ["p3"]);
        assert_eq!(graph.len(), 2);
    }

    #[test]
    fn a_node_needs_a_name_and_a_uid() {
        let meta = ObjectMeta {
            name: Some("x".into()),
            ..Default::default()
        };
        assert!(Node::of("v1", "ConfigMap", &meta).is_none());
        let meta = ObjectMeta {
            name: Some("x".into()),
            uid: Some("u".into()),
            namespace: Some(String::new()),
            ..Default::default()
        };
        let n = Node::of("v1", "Node", &meta).expect("named");
        assert_eq!(n.identity.namespace, None);
    }
}
