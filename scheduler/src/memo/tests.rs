//! The memo's counts against counts made afresh, over random sequences of what the cache
//! sees: pods assumed, bound, relabelled, made terminating and removed, nodes relabelled.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::cache::Cache;
use crate::framework::PodInfo;
use crate::test_support::{self, term};

const ZONE: &str = "topology.kubernetes.io/zone";

#[derive(Debug, Clone)]
enum Op {
    /// Pod `i` (group `g`, repelling its group per zone if `repels`) counted on node `n`.
    Place {
        i: usize,
        g: u8,
        repels: bool,
        n: usize,
    },
    /// The informer reports pod `i` again, with new labels or terminating.
    Relabel {
        i: usize,
        g: u8,
    },
    Terminate {
        i: usize,
    },
    Remove {
        i: usize,
    },
    /// Node `n` moves to zone `z` (or loses its zone label).
    Rezone {
        n: usize,
        z: Option<u8>,
    },
    /// A what-if copy is asked (it must not disturb the memo).
    Scratch {
        n: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..40usize, 0..3u8, any::<bool>(), 0..8usize)
            .prop_map(|(i, g, repels, n)| Op::Place { i, g, repels, n }),
        1 => (0..40usize, 0..3u8).prop_map(|(i, g)| Op::Relabel { i, g }),
        1 => (0..40usize).prop_map(|i| Op::Terminate { i }),
        2 => (0..40usize).prop_map(|i| Op::Remove { i }),
        1 => (0..8usize, proptest::option::of(0..3u8)).prop_map(|(n, z)| Op::Rezone { n, z }),
        1 => (0..8usize).prop_map(|n| Op::Scratch { n }),
    ]
}

fn node(n: usize, zone: Option<u8>) -> Arc<keel_types::k8s_openapi::api::core::v1::Node> {
    let mut node = test_support::node(&format!("n{n}")).allocatable(&[("pods", "110")]);
    if let Some(z) = zone {
        node = node.label(ZONE, &format!("z{z}"));
    }
    Arc::new(node.build())
}

fn pod(i: usize, g: u8, repels: bool, node: Option<&str>, terminating: bool) -> Arc<PodInfo> {
    let group = format!("g{g}");
    let mut pod = test_support::pod(&format!("p{i}")).labels(&[("group", &group)]);
    if repels {
        pod = pod.required_anti_affinity(term(&[("group", &group)], ZONE));
    }
    if let Some(node) = node {
        pod = pod.node_name(node);
    }
    if terminating {
        pod = pod.terminating();
    }
    Arc::new(pod.info())
}

fn in_group(g: u8) -> impl Fn(&NodeInfo) -> i64 {
    let group = format!("g{g}");
    move |node: &NodeInfo| {
        node.pods
            .iter()
            .filter(|p| !p.terminating() && p.labels().get("group") == Some(&group))
            .count() as i64
    }
}

fn key(g: u8) -> CountKey {
    CountKey {
        rule: "test",
        params: format!("g{g}"),
        topology_key: ZONE.to_string(),
    }
}

fn totals(counts: &DomainCounts) -> BTreeMap<String, i64> {
    counts.domains().map(|(d, n)| (d.to_string(), n)).collect()
}

fn carried(terms: &CarriedTerms) -> BTreeMap<String, BTreeMap<String, i64>> {
    terms
        .live()
        .map(|c| {
            let domains = c.domains.iter().map(|(d, n)| (d.clone(), *n)).collect();
            (c.term.fingerprint(), domains)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kept_counts_equal_counts_made_afresh(ops in proptest::collection::vec(op(), 1..60)) {
        let mut cache = Cache::new();
        let mut zones: Vec<Option<u8>> = (0..8).map(|n| (n % 4 != 3).then_some((n % 3) as u8)).collect();
        for (n, z) in zones.iter().enumerate() {
            cache.set_node(node(n, *z));
        }
        let mut placed: HashMap<usize, (u8, bool, usize)> = HashMap::new();
        let mut snapshot = Snapshot::default();
        cache.update_snapshot(&mut snapshot);
        for op in ops {
            match op {
                Op::Place { i, g, repels, n } => {
                    if placed.contains_key(&i) {
                        continue;
                    }
                    let name = format!("n{n}");
                    if i % 2 == 0 {
                        cache.assume(pod(i, g, repels, None, false), &name).expect("assume");
                    } else {
                        cache.set_bound_pod(pod(i, g, repels, Some(&name), false), &name);
                    }
                    placed.insert(i, (g, repels, n));
                }
                Op::Relabel { i, g } => {
                    if let Some((old, repels, n)) = placed.get_mut(&i) {
                        *old = g;
                        let name = format!("n{n}");
                        cache.set_bound_pod(pod(i, g, *repels, Some(&name), false), &name);
                    }
                }
                Op::Terminate { i } => {
                    if let Some((g, repels, n)) = placed.get(&i) {
                        let name = format!("n{n}");
                        cache.set_bound_pod(pod(i, *g, *repels, Some(&name), true), &name);
                    }
                }
                Op::Remove { i } => {
                    if placed.remove(&i).is_some() {
                        cache.remove_pod(&format!("default/p{i}"));
                    }
                }
                Op::Rezone { n, z } => {
                    zones[n] = z;
                    cache.set_node(node(n, z));
                }
                Op::Scratch { n } => {
                    let emptied = Arc::new(NodeInfo::new(snapshot.nodes[n].node.clone()));
                    let what_if = snapshot.with_node(n, emptied);
                    let counts = what_if.memo.domain_counts(&what_if, key(0), in_group(0));
                    let fresh = DomainCounts::build(&what_if, ZONE, &in_group(0));
                    prop_assert_eq!(totals(&counts), totals(&fresh));
                    what_if.memo.carried_terms(&what_if);
                }
            }
            cache.update_snapshot(&mut snapshot);
            for g in 0..3 {
                let kept = snapshot.memo.domain_counts(&snapshot, key(g), in_group(g));
                let fresh = DomainCounts::build(&snapshot, ZONE, &in_group(g));
                prop_assert_eq!(totals(&kept), totals(&fresh));
                prop_assert_eq!(kept.nodes_missing_key(), fresh.nodes_missing_key());
                for pos in 0..snapshot.len() {
                    prop_assert_eq!(kept.count_at(pos), fresh.count_at(pos));
                    prop_assert_eq!(kept.domain_at(pos), fresh.domain_at(pos));
                }
            }
            let kept = snapshot.memo.carried_terms(&snapshot);
            prop_assert_eq!(carried(&kept), carried(&CarriedTerms::build(&snapshot)));
        }
    }
}

#[test]
fn a_copy_held_from_the_last_cycle_is_not_changed_by_the_next() {
    let mut cache = Cache::new();
    cache.set_node(node(0, Some(0)));
    let mut snapshot = Snapshot::default();
    cache.update_snapshot(&mut snapshot);
    let before = snapshot.memo.domain_counts(&snapshot, key(0), in_group(0));
    cache
        .assume(pod(1, 0, true, None, false), "n0")
        .expect("assume");
    cache.update_snapshot(&mut snapshot);
    let after = snapshot.memo.domain_counts(&snapshot, key(0), in_group(0));
    assert_eq!(totals(&before), BTreeMap::from([("z0".to_string(), 0)]));
    assert_eq!(totals(&after), BTreeMap::from([("z0".to_string(), 1)]));
    let held = snapshot.memo.carried_terms(&snapshot);
    cache.remove_pod("default/p1");
    cache.update_snapshot(&mut snapshot);
    assert_eq!(carried(&held).len(), 1);
    assert!(carried(&snapshot.memo.carried_terms(&snapshot)).is_empty());
}

#[test]
fn old_entries_give_way_past_the_limit() {
    let mut cache = Cache::new();
    cache.set_node(node(0, Some(0)));
    let mut snapshot = Snapshot::default();
    cache.update_snapshot(&mut snapshot);
    for i in 0..(MAX_ENTRIES + 10) {
        let key = CountKey {
            rule: "test",
            params: i.to_string(),
            topology_key: ZONE.to_string(),
        };
        snapshot.memo.domain_counts(&snapshot, key, |_| 1);
    }
    assert_eq!(snapshot.memo.lock().counts.len(), MAX_ENTRIES);
}
