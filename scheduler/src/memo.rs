//! Pod counts per topology domain, kept from one scheduling cycle to the next. PodTopologySpread
//! and InterPodAffinity ask, for every pod they place, how many pods of some kind each topology
//! domain holds; counted afresh that is every pod of the cluster per decision. Between two
//! decisions only a few nodes change (the one a pod was assumed on, those whose pods the
//! informer reported), so each count is kept per node and redone only for the nodes the
//! snapshot marks as changed since the count was last brought up to date.
//!
//! A [`Memo`] belongs to one [`Snapshot`] lineage: the cache gives a snapshot a new memo when
//! its node list is rebuilt, and clears it when namespace labels change (terms with a
//! namespaceSelector count differently then). A scratch snapshot (preemption's "what if these
//! pods were gone") never reads or writes the memo: its counts are made on the spot.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::framework::{NodeInfo, Snapshot};
use crate::terms::AffinityTerm;

/// Entries kept at once; past it the least recently used one goes.
const MAX_ENTRIES: usize = 64;

/// What an entry counts on each node, as the caller names it: two requests with equal keys
/// must count with the same function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CountKey {
    /// The counting rule (a plugin and what of it counts).
    pub rule: &'static str,
    /// The rule's parameters in a canonical form (a namespace, a selector, a term).
    pub params: String,
    /// The label whose values are the domains.
    pub topology_key: String,
}

const NO_DOMAIN: u32 = u32::MAX;

/// One count over every node of a snapshot: per node, and summed per domain of a topology key.
#[derive(Debug, Clone, Default)]
pub struct DomainCounts {
    /// By snapshot position: the node's count and its domain (NO_DOMAIN: it lacks the key).
    per_node: Vec<(i64, u32)>,
    names: Vec<String>,
    index: HashMap<String, u32>,
    /// By domain: how many nodes are in it, and the sum of their counts.
    nodes: Vec<u32>,
    totals: Vec<i64>,
    /// Nodes lacking the topology key.
    missing: usize,
    /// The snapshot version the counts reflect.
    version: u64,
    last_used: u64,
}

impl DomainCounts {
    fn build(snapshot: &Snapshot, topology_key: &str, count: &dyn Fn(&NodeInfo) -> i64) -> Self {
        let mut counts = DomainCounts {
            per_node: vec![(0, NO_DOMAIN); snapshot.len()],
            missing: snapshot.len(),
            version: snapshot.version(),
            ..Default::default()
        };
        for (pos, node) in snapshot.nodes.iter().enumerate() {
            counts.set(pos, node, topology_key, count);
        }
        counts
    }

    /// Brings the counts up to `snapshot`, recounting only the nodes changed since.
    fn sync(&mut self, snapshot: &Snapshot, topology_key: &str, count: &dyn Fn(&NodeInfo) -> i64) {
        // A copy older than the counts (an earlier clone of the snapshot) is counted afresh.
        if self.per_node.len() != snapshot.len() || self.version > snapshot.version() {
            *self = DomainCounts::build(snapshot, topology_key, count);
            return;
        }
        if self.version == snapshot.version() {
            return;
        }
        for pos in snapshot.changed_since(self.version) {
            self.set(pos, &snapshot.nodes[pos], topology_key, count);
        }
        self.version = snapshot.version();
    }

    fn set(
        &mut self,
        pos: usize,
        node: &NodeInfo,
        topology_key: &str,
        count: &dyn Fn(&NodeInfo) -> i64,
    ) {
        let (old_count, old_domain) = self.per_node[pos];
        if old_domain == NO_DOMAIN {
            self.missing -= 1;
        } else {
            let d = old_domain as usize;
            self.nodes[d] -= 1;
            self.totals[d] -= old_count;
        }
        let domain = match node.labels().get(topology_key) {
            None => NO_DOMAIN,
            Some(value) => self.domain_id(value),
        };
        let n = count(node);
        if domain == NO_DOMAIN {
            self.missing += 1;
        } else {
            let d = domain as usize;
            self.nodes[d] += 1;
            self.totals[d] += n;
        }
        self.per_node[pos] = (n, domain);
    }

    fn domain_id(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.index.get(value) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(value.to_string());
        self.index.insert(value.to_string(), id);
        self.nodes.push(0);
        self.totals.push(0);
        id
    }

    /// The count on the node at snapshot position `pos`.
    pub fn count_at(&self, pos: usize) -> i64 {
        self.per_node.get(pos).map_or(0, |&(n, _)| n)
    }

    /// The domain of the node at `pos`; None if it lacks the topology key.
    pub fn domain_at(&self, pos: usize) -> Option<&str> {
        let &(_, d) = self.per_node.get(pos)?;
        self.names.get(d as usize).map(String::as_str)
    }

    /// Every domain with at least one node in it: its value and its total.
    pub fn domains(&self) -> impl Iterator<Item = (&str, i64)> {
        self.names
            .iter()
            .zip(self.nodes.iter().zip(&self.totals))
            .filter(|(_, (&nodes, _))| nodes > 0)
            .map(|(name, (_, &total))| (name.as_str(), total))
    }

    /// How many nodes lack the topology key.
    pub fn nodes_missing_key(&self) -> usize {
        self.missing
    }
}

/// The required anti-affinity terms existing pods carry, each with how many pods carry it per
/// domain of its topology key: what InterPodAffinity checks an incoming pod against.
#[derive(Debug, Default)]
pub struct CarriedTerms {
    terms: Vec<Carried>,
    index: HashMap<String, usize>,
    /// By snapshot position: what the node contributed (term, its domain, pods carrying it).
    per_node: Vec<Vec<(usize, String, i64)>>,
    version: u64,
}

/// One distinct term and where the pods carrying it are.
#[derive(Debug)]
pub struct Carried {
    pub term: AffinityTerm,
    /// Domain value → pods carrying the term there (no zero entries).
    pub domains: HashMap<String, i64>,
}

impl CarriedTerms {
    fn build(snapshot: &Snapshot) -> CarriedTerms {
        let mut carried = CarriedTerms {
            per_node: vec![Vec::new(); snapshot.len()],
            version: snapshot.version(),
            ..Default::default()
        };
        for &pos in &snapshot.have_pods_with_required_anti_affinity {
            carried.set(pos, &snapshot.nodes[pos]);
        }
        carried
    }

    fn sync(&mut self, snapshot: &Snapshot) {
        if self.per_node.len() != snapshot.len() || self.version > snapshot.version() {
            *self = CarriedTerms::build(snapshot);
            return;
        }
        if self.version == snapshot.version() {
            return;
        }
        for pos in snapshot.changed_since(self.version) {
            self.set(pos, &snapshot.nodes[pos]);
        }
        self.version = snapshot.version();
        // Terms no pod carries any more are dropped once they outnumber the live ones.
        let dead = self.terms.iter().filter(|c| c.domains.is_empty()).count();
        if dead > self.terms.len() / 2 + MAX_ENTRIES {
            *self = CarriedTerms::build(snapshot);
        }
    }

    fn set(&mut self, pos: usize, node: &NodeInfo) {
        for (term, domain, n) in std::mem::take(&mut self.per_node[pos]) {
            let domains = &mut self.terms[term].domains;
            if let Some(count) = domains.get_mut(&domain) {
                *count -= n;
                if *count == 0 {
                    domains.remove(&domain);
                }
            }
        }
        if node.pods_with_required_anti_affinity == 0 {
            return;
        }
        let mut contributed: Vec<(usize, String, i64)> = Vec::new();
        for pod in &node.pods {
            for term in &pod.affinity.required_anti_affinity {
                let Some(domain) = node.labels().get(&term.topology_key) else {
                    continue;
                };
                let id = self.term_id(term);
                match contributed
                    .iter_mut()
                    .find(|(t, d, _)| *t == id && d == domain)
                {
                    Some(entry) => entry.2 += 1,
                    None => contributed.push((id, domain.clone(), 1)),
                }
            }
        }
        for (term, domain, n) in &contributed {
            *self.terms[*term].domains.entry(domain.clone()).or_insert(0) += n;
        }
        self.per_node[pos] = contributed;
    }

    fn term_id(&mut self, term: &AffinityTerm) -> usize {
        let fingerprint = term.fingerprint();
        if let Some(&id) = self.index.get(&fingerprint) {
            return id;
        }
        self.terms.push(Carried {
            term: term.clone(),
            domains: HashMap::new(),
        });
        self.index.insert(fingerprint, self.terms.len() - 1);
        self.terms.len() - 1
    }

    /// Every term at least one pod carries.
    pub fn live(&self) -> impl Iterator<Item = &Carried> {
        self.terms.iter().filter(|c| !c.domains.is_empty())
    }
}

#[derive(Default)]
struct Inner {
    counts: HashMap<CountKey, Arc<DomainCounts>>,
    carried: Option<Arc<CarriedTerms>>,
    clock: u64,
}

/// The counts kept for one snapshot lineage.
#[derive(Default)]
pub struct Memo {
    inner: Mutex<Inner>,
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.lock();
        f.debug_struct("Memo")
            .field("counts", &inner.counts.len())
            .field("carried", &inner.carried.is_some())
            .finish()
    }
}

impl Memo {
    /// The memo's state is only ever replaced whole or updated by code that cannot panic
    /// midway (no user data is parsed under the lock), so a poisoned lock still guards
    /// consistent counts: the guard is recovered.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets every count (namespace labels changed).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.counts.clear();
        inner.carried = None;
    }

    /// `count` of every node of `snapshot` and its totals per domain of `key.topology_key`,
    /// brought up to date from the last time `key` was asked for.
    pub fn domain_counts(
        &self,
        snapshot: &Snapshot,
        key: CountKey,
        count: impl Fn(&NodeInfo) -> i64,
    ) -> Arc<DomainCounts> {
        if snapshot.is_scratch() {
            return Arc::new(DomainCounts::build(snapshot, &key.topology_key, &count));
        }
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if !inner.counts.contains_key(&key) && inner.counts.len() >= MAX_ENTRIES {
            let oldest = inner
                .counts
                .iter()
                .min_by_key(|(_, c)| c.last_used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                inner.counts.remove(&oldest);
            }
        }
        let entry = inner
            .counts
            .entry(key.clone())
            .or_insert_with(|| Arc::new(DomainCounts::build(snapshot, &key.topology_key, &count)));
        let counts = Arc::make_mut(entry);
        counts.sync(snapshot, &key.topology_key, &count);
        counts.last_used = now;
        entry.clone()
    }

    /// The required anti-affinity terms of the snapshot's pods, up to date.
    pub fn carried_terms(&self, snapshot: &Snapshot) -> Arc<CarriedTerms> {
        if snapshot.is_scratch() {
            return Arc::new(CarriedTerms::build(snapshot));
        }
        let mut inner = self.lock();
        let entry = inner
            .carried
            .get_or_insert_with(|| Arc::new(CarriedTerms::build(snapshot)));
        // Updated in place when no caller still holds the last cycle's copy; else rebuilt.
        match Arc::get_mut(entry) {
            Some(carried) => carried.sync(snapshot),
            None => *entry = Arc::new(CarriedTerms::build(snapshot)),
        }
        entry.clone()
    }
}

#[cfg(test)]
mod tests;
