//! Specification of preemption: who is evicted, where, and what is said when nothing helps.

use super::*;
use crate::framework::{ClusterEvent, Filter};
use crate::plugins::Profile;
use crate::test_support;

/// Fits by CPU only; nodes named `locked-*` are unresolvable.
struct Cpu;

impl Filter for Cpu {
    fn name(&self) -> &'static str {
        "Cpu"
    }
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if node.name.starts_with("locked") {
            return Err(Rejection::unresolvable("Cpu", "node(s) were locked"));
        }
        if node.requested.milli_cpu + pod.requests.milli_cpu > node.allocatable.milli_cpu {
            return Err(Rejection::new("Cpu", "Insufficient cpu"));
        }
        Ok(())
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[]
    }
}

fn pod(name: &str, cpu: i64, priority: i32) -> Arc<PodInfo> {
    let cpu = format!("{cpu}m");
    let pod = test_support::pod(name)
        .priority(priority)
        .container(&[("cpu", &cpu)]);
    Arc::new(pod.info())
}

fn node(name: &str, cpu_milli: i64, pods: &[Arc<PodInfo>]) -> Arc<NodeInfo> {
    let cpu = format!("{cpu_milli}m");
    let mut info = test_support::node(name)
        .allocatable(&[("cpu", &cpu)])
        .info();
    for p in pods {
        info.add_pod(p.clone());
    }
    Arc::new(info)
}

fn algorithm() -> Algorithm {
    Algorithm::new(
        Profile {
            filters: vec![Box::new(Cpu)],
            scores: vec![],
        },
        0,
        7,
    )
}

fn run(snapshot: &Snapshot, preemptor: &PodInfo) -> Preemption {
    let mut alg = algorithm();
    let diag = alg
        .schedule(preemptor, snapshot, &Nominated::new())
        .expect_err("no node fits before preemption");
    alg.preempt(preemptor, snapshot, &diag, &Nominated::new())
}

fn victim_names(p: &Preemption) -> (String, Vec<String>) {
    match p {
        Preemption::Evict(v) => (
            v.node.clone(),
            v.pods.iter().map(|p| p.name.clone()).collect(),
        ),
        Preemption::NotPossible(m) => panic!("no preemption: {m}"),
    }
}

#[test]
fn only_as_many_lower_priority_pods_as_needed_are_evicted_keeping_the_most_important() {
    let snapshot = Snapshot::new(vec![node(
        "n0",
        3000,
        &[
            pod("low", 1000, 1),
            pod("mid", 1000, 5),
            pod("lowest", 1000, 0),
        ],
    )]);
    let (node, victims) = victim_names(&run(&snapshot, &pod("high", 1000, 10)));
    assert_eq!(node, "n0");
    assert_eq!(victims, ["lowest"]);
}

#[test]
fn pods_of_equal_or_higher_priority_are_never_victims() {
    let snapshot = Snapshot::new(vec![node("n0", 1000, &[pod("peer", 1000, 10)])]);
    match run(&snapshot, &pod("p", 1000, 10)) {
        Preemption::NotPossible(m) => assert_eq!(
            m,
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        ),
        Preemption::Evict(v) => panic!("evicted {:?}", v.pods),
    }
}

#[test]
fn the_node_whose_most_important_victim_matters_least_is_chosen() {
    let snapshot = Snapshot::new(vec![
        node("a", 1000, &[pod("a-victim", 1000, 5)]),
        node("b", 1000, &[pod("b-victim", 1000, 2)]),
    ]);
    let (node, victims) = victim_names(&run(&snapshot, &pod("p", 1000, 10)));
    assert_eq!(
        (node.as_str(), victims),
        ("b", vec!["b-victim".to_string()])
    );
}

#[test]
fn fewer_victims_win_when_priorities_tie() {
    let snapshot = Snapshot::new(vec![
        node("a", 1000, &[pod("a1", 500, 1), pod("a2", 500, 1)]),
        node("b", 1000, &[pod("b1", 1000, 1)]),
    ]);
    let (node, _) = victim_names(&run(&snapshot, &pod("p", 1000, 10)));
    assert_eq!(node, "b");
}

#[test]
fn unresolvable_nodes_are_not_helped_by_preemption() {
    let snapshot = Snapshot::new(vec![
        node("locked-0", 1000, &[pod("x", 1000, 0)]),
        node("locked-1", 1000, &[pod("y", 1000, 0)]),
    ]);
    match run(&snapshot, &pod("p", 1000, 10)) {
        Preemption::NotPossible(m) => assert_eq!(
            m,
            "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        ),
        Preemption::Evict(v) => panic!("evicted {:?}", v.pods),
    }
}

#[test]
fn a_pod_with_preemption_policy_never_does_not_preempt() {
    let snapshot = Snapshot::new(vec![node("n0", 1000, &[pod("low", 1000, 0)])]);
    let mut never = pod("p", 1000, 10).pod.as_ref().clone();
    never
        .spec
        .get_or_insert_with(Default::default)
        .preemption_policy = Some("Never".into());
    match run(&snapshot, &PodInfo::new(Arc::new(never))) {
        Preemption::NotPossible(m) => {
            assert_eq!(m, "preemption: not eligible due to preemptionPolicy=Never.")
        }
        Preemption::Evict(v) => panic!("evicted {:?}", v.pods),
    }
}

#[test]
fn a_pod_too_big_for_the_node_even_when_empty_gets_the_filters_reason() {
    let snapshot = Snapshot::new(vec![node("n0", 1000, &[pod("low", 500, 0)])]);
    match run(&snapshot, &pod("huge", 4000, 10)) {
        Preemption::NotPossible(m) => assert_eq!(
            m,
            "preemption: 0/1 nodes are available: 1 Insufficient cpu."
        ),
        Preemption::Evict(v) => panic!("evicted {:?}", v.pods),
    }
}

#[test]
fn candidates_are_searched_among_at_least_a_tenth_of_the_nodes_or_a_hundred() {
    assert_eq!(candidates_to_find(50), 50);
    assert_eq!(candidates_to_find(500), 100);
    assert_eq!(candidates_to_find(5000), 500);
}
