//! Specification of one scheduling cycle: how many nodes are searched, how scores combine, and
//! the FailedScheduling message.

use super::*;
use crate::framework::{ClusterEvent, Filter, Score};
use crate::test_support;

/// Rejects nodes whose name is listed, with the given reason.
struct Deny(&'static str, Vec<&'static str>, bool);

impl Filter for Deny {
    fn name(&self) -> &'static str {
        self.0
    }
    fn filter(&self, _: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if self.1.contains(&node.name.as_str()) {
            let mut r = Rejection::new(self.0, format!("denied by {}", self.0));
            r.unresolvable = self.2;
            return Err(r);
        }
        Ok(())
    }
    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded]
    }
}

/// Scores a node by the number in its name.
struct ByNumber;

impl Score for ByNumber {
    fn name(&self) -> &'static str {
        "ByNumber"
    }
    fn score(&self, _: &CycleState, _: &PodInfo, node: &NodeInfo) -> i64 {
        node.name.trim_start_matches('n').parse().unwrap_or(0)
    }
}

fn snapshot(n: usize) -> Snapshot {
    Snapshot::new(
        (0..n)
            .map(|i| Arc::new(test_support::node(&format!("n{i}")).info()))
            .collect(),
    )
}

fn pod() -> PodInfo {
    test_support::pod("p").info()
}

fn algorithm(filters: Vec<Box<dyn Filter>>, scores: Vec<(Box<dyn Score>, i64)>) -> Algorithm {
    Algorithm::new(Profile { filters, scores }, 0, 42)
}

#[test]
fn small_clusters_evaluate_every_node() {
    assert_eq!(feasible_nodes_to_find(50, 0), 50);
    assert_eq!(feasible_nodes_to_find(99, 10), 99);
}

#[test]
fn the_adaptive_percentage_drops_one_point_per_125_nodes_down_to_five() {
    // 50 - 5000/125 = 10 % of 5000.
    assert_eq!(feasible_nodes_to_find(5000, 0), 500);
    // 50 - 1000/125 = 42 % of 1000.
    assert_eq!(feasible_nodes_to_find(1000, 0), 420);
    // Floor at 5 %: 50 - 6000/125 = 2 -> 5 % of 6000.
    assert_eq!(feasible_nodes_to_find(6000, 0), 300);
    // Never fewer than 100.
    assert_eq!(feasible_nodes_to_find(150, 1), 100);
    // A configured percentage is used as given.
    assert_eq!(feasible_nodes_to_find(5000, 20), 1000);
    assert_eq!(feasible_nodes_to_find(5000, 100), 5000);
}

#[test]
fn the_highest_weighted_score_wins() {
    let mut alg = algorithm(vec![], vec![(Box::new(ByNumber), 2)]);
    let snap = snapshot(5);
    let placed = alg
        .schedule(&pod(), &snap, &Nominated::new())
        .expect("fits");
    assert_eq!(placed.node, "n4");
    assert_eq!((placed.evaluated, placed.feasible), (5, 5));
}

#[test]
fn the_search_stops_once_enough_feasible_nodes_are_found_and_the_next_starts_after_it() {
    let mut alg = algorithm(vec![], vec![]);
    let snap = snapshot(1000);
    let first = alg
        .schedule(&pod(), &snap, &Nominated::new())
        .expect("fits");
    assert_eq!(first.evaluated, 420);
    let second = alg
        .schedule(&pod(), &snap, &Nominated::new())
        .expect("fits");
    assert_eq!(second.evaluated, 420);
    // The second search covered nodes 420..840, so it cannot choose one of the first 420.
    let index: usize = second.node.trim_start_matches('n').parse().expect("number");
    assert!((420..840).contains(&index), "{}", second.node);
}

#[test]
fn ties_are_broken_among_all_equal_nodes() {
    let mut alg = algorithm(vec![], vec![]);
    let snap = snapshot(4);
    let mut seen = HashSet::new();
    for _ in 0..200 {
        seen.insert(
            alg.schedule(&pod(), &snap, &Nominated::new())
                .expect("fits")
                .node,
        );
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn the_failed_scheduling_message_counts_nodes_per_reason_sorted() {
    let mut alg = algorithm(
        vec![
            Box::new(Deny("A", vec!["n0", "n1", "n2"], false)),
            Box::new(Deny("B", vec!["n3", "n4"], true)),
        ],
        vec![],
    );
    let snap = snapshot(5);
    let diag = alg
        .schedule(&pod(), &snap, &Nominated::new())
        .expect_err("none fits");
    assert_eq!(
        diag.message(Some("preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling.")),
        "0/5 nodes are available: 2 denied by B, 3 denied by A. preemption: 0/5 nodes are available: 5 Preemption is not helpful for scheduling."
    );
    assert_eq!(diag.plugins, HashSet::from(["A", "B"]));
    assert!(diag.resolvable(0));
    assert!(!diag.resolvable(3));
}

#[test]
fn no_nodes_at_all_is_said_as_kubernetes_says_it() {
    let mut alg = algorithm(vec![], vec![]);
    let diag = alg
        .schedule(&pod(), &Snapshot::default(), &Nominated::new())
        .expect_err("no nodes");
    assert_eq!(diag.message(None), "no nodes available to schedule pods");
}

#[test]
fn a_pre_filter_rejection_turns_every_node_down_with_its_message() {
    struct Pre;
    impl Filter for Pre {
        fn name(&self) -> &'static str {
            "Pre"
        }
        fn pre_filter(
            &self,
            _: &PodInfo,
            _: &Snapshot,
            _: &mut CycleState,
        ) -> Result<(), Rejection> {
            Err(Rejection::unresolvable("Pre", "the pod is malformed"))
        }
        fn filter(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> Result<(), Rejection> {
            Ok(())
        }
        fn events(&self) -> &'static [ClusterEvent] {
            &[]
        }
    }
    let mut alg = algorithm(vec![Box::new(Pre)], vec![]);
    let diag = alg
        .schedule(&pod(), &snapshot(3), &Nominated::new())
        .expect_err("rejected");
    assert_eq!(
        diag.message(None),
        "0/3 nodes are available: the pod is malformed."
    );
    assert!(!diag.resolvable(0));
}

#[test]
fn a_node_with_a_higher_priority_nominated_pod_is_filtered_with_that_pod_counted() {
    /// Rejects nodes that already count a pod.
    struct Empty;
    impl Filter for Empty {
        fn name(&self) -> &'static str {
            "Empty"
        }
        fn filter(&self, _: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
            if node.pods.is_empty() {
                Ok(())
            } else {
                Err(Rejection::new("Empty", "node(s) were full"))
            }
        }
        fn events(&self) -> &'static [ClusterEvent] {
            &[]
        }
    }
    let mut alg = algorithm(vec![Box::new(Empty)], vec![]);
    let snap = snapshot(1);
    let preemptor = test_support::pod("preemptor").priority(100).info();
    let nominated = Nominated::from([("n0".to_string(), vec![Arc::new(preemptor)])]);
    let diag = alg
        .schedule(&pod(), &snap, &nominated)
        .expect_err("room is reserved");
    assert_eq!(
        diag.message(None),
        "0/1 nodes are available: 1 node(s) were full."
    );
}

mod skips {
    //! Property: a plugin of the default profile that skips a pod (kube-scheduler's Skip
    //! status) would have admitted every node, or scored every node alike.

    use proptest::prelude::*;

    use crate::framework::{CycleState, Snapshot};
    use crate::plugins::default_profile;
    use crate::test_support::{self, labels_term, node, pod, req, spread, term, PodBuilder};

    /// What an incoming or existing pod carries, each part present or not.
    #[derive(Debug, Clone)]
    struct Shape {
        app: u8,
        node_selector: bool,
        required_node_term: bool,
        preferred_node_term: bool,
        host_port: bool,
        required_affinity: bool,
        required_anti_affinity: bool,
        preferred_affinity: bool,
        spread: Option<bool>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (
            0u8..3,
            prop::bits::u8::masked(0x7f),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(app, bits, spread)| Shape {
                app,
                node_selector: bits & 1 != 0,
                required_node_term: bits & 2 != 0,
                preferred_node_term: bits & 4 != 0,
                host_port: bits & 8 != 0,
                required_affinity: bits & 16 != 0,
                required_anti_affinity: bits & 32 != 0,
                preferred_affinity: bits & 64 != 0,
                spread,
            })
    }

    fn build(name: &str, s: &Shape) -> PodBuilder {
        let app = format!("a{}", s.app);
        let mut p = pod(name)
            .labels(&[("app", app.as_str())])
            .container(&[("cpu", "100m")]);
        if s.node_selector {
            p = p.node_selector("disk", "ssd");
        }
        if s.required_node_term {
            p = p.required_term(labels_term(vec![req("zone", "In", &["a"])]));
        }
        if s.preferred_node_term {
            p = p.preferred_term(5, labels_term(vec![req("zone", "In", &["b"])]));
        }
        if s.host_port {
            p = p.host_port(8080, "TCP", "");
        }
        let peer = [("app", "a0")];
        if s.required_affinity {
            p = p.required_affinity(term(&peer, "zone"));
        }
        if s.required_anti_affinity {
            p = p.required_anti_affinity(term(&peer, "kubernetes.io/hostname"));
        }
        if s.preferred_affinity {
            p = p.preferred_affinity(10, term(&peer, "zone"));
        }
        if let Some(hard) = s.spread {
            let when = if hard {
                "DoNotSchedule"
            } else {
                "ScheduleAnyway"
            };
            p = p.spread(spread(1, "zone", when, &peer));
        }
        p
    }

    fn world(existing: &[(usize, Shape)], nodes: usize) -> Snapshot {
        let mut builders: Vec<_> = (0..nodes)
            .map(|i| {
                node(&format!("n{i}"))
                    .label("zone", if i % 2 == 0 { "a" } else { "b" })
                    .label("disk", if i % 3 == 0 { "ssd" } else { "hdd" })
            })
            .collect();
        for (k, (at, s)) in existing.iter().enumerate() {
            let i = at % nodes;
            let b = std::mem::replace(&mut builders[i], node("placeholder"));
            builders[i] = b.pod(build(&format!("e{k}"), s).node_name(&format!("n{i}")));
        }
        test_support::snapshot(builders)
    }

    proptest! {
        #[test]
        fn a_skipped_plugin_admits_every_node_or_scores_them_alike(
            incoming in shape(),
            existing in prop::collection::vec((0usize..6, shape()), 0..6),
            nodes in 1usize..6,
        ) {
            let snapshot = world(&existing, nodes);
            let incoming = build("incoming", &incoming).info();
            let profile = default_profile();
            for f in &profile.filters {
                let mut state = CycleState::default();
                if f.pre_filter(&incoming, &snapshot, &mut state).is_err() {
                    continue;
                }
                if f.skips_filter(&incoming, &state) {
                    for n in &snapshot.nodes {
                        prop_assert!(
                            f.filter(&state, &incoming, n).is_ok(),
                            "{} skipped the pod but rejects {}", f.name(), n.name
                        );
                    }
                }
            }
            for (s, _) in &profile.scores {
                if s.skips_score(&incoming, &snapshot) {
                    let (_, normalized) = test_support::score_each(s.as_ref(), &incoming, &snapshot);
                    prop_assert!(
                        normalized.windows(2).all(|w| w[0] == w[1]),
                        "{} skipped the pod but scores {normalized:?}", s.name()
                    );
                }
            }
        }
    }
}
