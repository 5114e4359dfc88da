//! PodTopologySpread as a specification: the skew arithmetic of the filter, which nodes and pods
//! it counts, the score's weighting and normalisation, and a property check that placing pods
//! one at a time where the filter admits them never unbalances the domains.

use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use proptest::prelude::*;

use super::*;
use crate::test_support::{
    admitted, app_pod, filter_each, node, node_in_zone, pod, score_each, score_feasible,
    selector_with_unknown_operator, snapshot, spread, NodeBuilder, PodBuilder, HOSTNAME, ZONE,
};

const WEB: &[(&str, &str)] = &[("app", "web")];

fn web(name: &str) -> PodBuilder {
    app_pod(name, "web")
}

/// An incoming web pod spreading web pods over zones with `maxSkew` 1.
fn zone_spread_web() -> PodBuilder {
    web("incoming").spread(spread(1, ZONE, "DoNotSchedule", WEB))
}

fn plugin() -> PodTopologySpread {
    PodTopologySpread::default()
}

#[test]
fn pod_without_constraints_passes_every_node() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(web("w1")).pod(web("w2")),
        node("n2"),
    ]);
    assert_eq!(
        admitted(&plugin(), &web("incoming").info(), &snap),
        ["n1", "n2"]
    );
}

#[test]
fn skew_is_the_domain_count_plus_the_pod_itself_minus_the_global_minimum() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("b1", "b").pod(web("w3")),
        node_in_zone("c1", "c"),
    ]);
    let outcomes = filter_each(&plugin(), &zone_spread_web().info(), &snap);
    let too_skewed = Err(Rejection::new(NAME, REASON_CONSTRAINTS_NOT_MATCH));
    assert_eq!(
        outcomes,
        [
            ("a1".to_string(), too_skewed.clone()),
            ("b1".to_string(), too_skewed),
            ("c1".to_string(), Ok(())),
        ]
    );
}

#[test]
fn a_pod_its_own_selector_does_not_match_does_not_count_itself() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("b1", "b"),
    ]);
    let incoming = app_pod("api", "api")
        .spread(spread(1, ZONE, "DoNotSchedule", WEB))
        .info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "b1"]);
}

#[test]
fn nodes_without_the_topology_key_are_rejected_as_unresolvable() {
    let snap = snapshot(vec![node_in_zone("a1", "a"), node("bare")]);
    let outcomes = filter_each(&plugin(), &zone_spread_web().info(), &snap);
    assert_eq!(outcomes[0], ("a1".to_string(), Ok(())));
    assert_eq!(
        outcomes[1],
        (
            "bare".to_string(),
            Err(Rejection::unresolvable(NAME, REASON_NODE_LABEL_NOT_MATCH))
        )
    );
}

#[test]
fn only_nodes_with_every_constraints_key_are_counted() {
    // The zone-less node would be an empty hostname domain, pulling the minimum to 0.
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("a2", "a").pod(web("w2")),
        node("bare"),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, HOSTNAME, "DoNotSchedule", WEB))
        .spread(spread(10, ZONE, "DoNotSchedule", WEB))
        .info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "a2"]);
}

#[test]
fn min_domains_above_the_domain_count_makes_the_global_minimum_zero() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("b1", "b").pod(web("w2")),
    ]);
    let mut wants_three_zones = spread(1, ZONE, "DoNotSchedule", WEB);
    wants_three_zones.min_domains = Some(3);
    let incoming = web("incoming").spread(wants_three_zones).info();
    assert!(admitted(&plugin(), &incoming, &snap).is_empty());

    let mut two_zones_enough = spread(1, ZONE, "DoNotSchedule", WEB);
    two_zones_enough.min_domains = Some(2);
    let incoming = web("incoming").spread(two_zones_enough).info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "b1"]);
}

#[test]
fn terminating_pods_are_not_counted() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a")
            .pod(web("w1").terminating())
            .pod(web("w2").terminating()),
        node_in_zone("b1", "b"),
    ]);
    assert_eq!(
        admitted(&plugin(), &zone_spread_web().info(), &snap),
        ["a1", "b1"]
    );
}

#[test]
fn pods_in_other_namespaces_are_not_counted() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a")
            .pod(web("w1").namespace("other"))
            .pod(web("w2").namespace("other")),
        node_in_zone("b1", "b"),
    ]);
    assert_eq!(
        admitted(&plugin(), &zone_spread_web().info(), &snap),
        ["a1", "b1"]
    );
}

#[test]
fn node_affinity_policy_honor_counts_only_nodes_the_pod_may_run_on() {
    let snap = snapshot(vec![
        node("a1")
            .labels(&[(ZONE, "a"), ("disk", "ssd")])
            .pod(web("w1")),
        node_in_zone("b1", "b"),
    ]);
    // Honor (the default): zone b has no ssd node, so it is no domain of this pod.
    let honoring = zone_spread_web().node_selector("disk", "ssd").info();
    assert_eq!(admitted(&plugin(), &honoring, &snap), ["a1", "b1"]);

    let mut ignore = spread(1, ZONE, "DoNotSchedule", WEB);
    ignore.node_affinity_policy = Some("Ignore".to_string());
    let ignoring = web("incoming")
        .spread(ignore)
        .node_selector("disk", "ssd")
        .info();
    assert_eq!(admitted(&plugin(), &ignoring, &snap), ["b1"]);
}

#[test]
fn node_taints_policy_honor_skips_nodes_whose_taints_the_pod_does_not_tolerate() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("b1", "b").taint("dedicated", "gpu", "NoSchedule"),
    ]);
    // Ignore (the default): the tainted zone is an empty domain.
    assert_eq!(
        admitted(&plugin(), &zone_spread_web().info(), &snap),
        ["b1"]
    );

    let mut honor = spread(1, ZONE, "DoNotSchedule", WEB);
    honor.node_taints_policy = Some("Honor".to_string());
    let honoring = web("incoming").spread(honor.clone()).info();
    assert_eq!(admitted(&plugin(), &honoring, &snap), ["a1", "b1"]);

    let tolerating = web("incoming")
        .spread(honor)
        .toleration("dedicated", "Exists", "", "")
        .info();
    assert_eq!(admitted(&plugin(), &tolerating, &snap), ["b1"]);
}

#[test]
fn node_taints_policy_honor_considers_no_execute_but_not_prefer_no_schedule_taints() {
    let mut honor = spread(1, ZONE, "DoNotSchedule", WEB);
    honor.node_taints_policy = Some("Honor".to_string());
    let incoming = web("incoming").spread(honor).info();
    let cluster = |effect: &str| {
        snapshot(vec![
            node_in_zone("a1", "a").pod(web("w1")),
            node_in_zone("b1", "b").taint("maintenance", "", effect),
        ])
    };
    // The NoExecute zone is no domain of the pod, so zone a alone sets the minimum.
    assert_eq!(
        admitted(&plugin(), &incoming, &cluster("NoExecute")),
        ["a1", "b1"]
    );
    // A PreferNoSchedule taint keeps no pod off: zone b is an empty domain.
    assert_eq!(
        admitted(&plugin(), &incoming, &cluster("PreferNoSchedule")),
        ["b1"]
    );
}

#[test]
fn match_label_keys_count_only_pods_sharing_the_pods_values() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a")
            .pod(pod("old-1").labels(&[("app", "web"), ("hash", "old")]))
            .pod(pod("old-2").labels(&[("app", "web"), ("hash", "old")])),
        node_in_zone("b1", "b"),
    ]);
    let mut per_revision = spread(1, ZONE, "DoNotSchedule", WEB);
    per_revision.match_label_keys = Some(vec!["hash".to_string()]);
    let incoming = pod("new")
        .labels(&[("app", "web"), ("hash", "new")])
        .spread(per_revision)
        .info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "b1"]);
}

#[test]
fn an_empty_selector_counts_no_pods() {
    // kube-scheduler's countPodsMatchSelector returns 0 for an empty selector.
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("b1", "b"),
    ]);
    let mut everything = spread(1, ZONE, "DoNotSchedule", &[]);
    everything.label_selector = Some(LabelSelector::default());
    let incoming = web("incoming").spread(everything).info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "b1"]);
}

#[test]
fn schedule_anyway_constraints_do_not_filter() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("b1", "b"),
        node("bare"),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, ZONE, "ScheduleAnyway", WEB))
        .info();
    assert_eq!(admitted(&plugin(), &incoming, &snap), ["a1", "b1", "bare"]);
}

#[test]
fn an_unparseable_constraint_of_either_kind_rejects_the_pod() {
    let snap = snapshot(vec![node_in_zone("a1", "a")]);
    for when in ["DoNotSchedule", "ScheduleAnyway"] {
        let mut bad = spread(1, ZONE, when, WEB);
        bad.label_selector = Some(selector_with_unknown_operator());
        let incoming = web("incoming").spread(bad).info();
        let (_, outcome) = filter_each(&plugin(), &incoming, &snap).remove(0);
        let rejection = outcome.expect_err("rejected");
        assert!(rejection.unresolvable, "{when}");
        assert!(
            rejection.reasons[0].starts_with("get constraints from pod: "),
            "{:?}",
            rejection.reasons
        );
    }
}

#[test]
fn score_prefers_the_zone_with_fewer_matching_pods() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("b1", "b"),
        node_in_zone("c1", "c").pod(web("w3")),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, ZONE, "ScheduleAnyway", WEB))
        .info();
    // Three zones weigh ln(5) ≈ 1.61 per pod.
    let (raw, normalized) = score_each(&plugin(), &incoming, &snap);
    assert_eq!(raw, [3, 0, 2]);
    assert_eq!(normalized, [0, 100, 33]);
}

#[test]
fn a_larger_max_skew_flattens_score_differences() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("b1", "b"),
        node_in_zone("c1", "c").pod(web("w3")),
    ]);
    let incoming = web("incoming")
        .spread(spread(3, ZONE, "ScheduleAnyway", WEB))
        .info();
    let (raw, normalized) = score_each(&plugin(), &incoming, &snap);
    assert_eq!(raw, [5, 2, 4]);
    assert_eq!(normalized, [40, 100, 60]);
}

#[test]
fn hostname_spreading_counts_the_node_itself_and_weighs_by_feasible_nodes() {
    let snap = snapshot(vec![
        node("n1").pod(web("w1")).pod(web("w2")),
        node("n2"),
        node("full").pod(web("w3")).pod(web("w4")).pod(web("w5")),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, HOSTNAME, "ScheduleAnyway", WEB))
        .info();
    let feasible = [snap.nodes[0].clone(), snap.nodes[1].clone()];
    // Two feasible nodes weigh ln(4) ≈ 1.39 per pod.
    let (raw, normalized) = score_feasible(&plugin(), &incoming, &snap, &feasible);
    assert_eq!(raw, [3, 0]);
    assert_eq!(normalized, [0, 100]);
}

#[test]
fn zone_counts_include_infeasible_nodes_of_a_feasible_zone() {
    let snap = snapshot(vec![
        node_in_zone("a-full", "a").pod(web("w1")).pod(web("w2")),
        node_in_zone("a2", "a"),
        node_in_zone("b1", "b"),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, ZONE, "ScheduleAnyway", WEB))
        .info();
    let feasible = [snap.nodes[1].clone(), snap.nodes[2].clone()];
    let (raw, normalized) = score_feasible(&plugin(), &incoming, &snap, &feasible);
    // Two zones weigh ln(4) ≈ 1.39 per pod.
    assert_eq!(raw, [3, 0]);
    assert_eq!(normalized, [0, 100]);
}

#[test]
fn nodes_missing_a_key_of_the_pods_own_constraints_score_zero() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("b1", "b"),
        node("bare"),
    ]);
    let incoming = web("incoming")
        .spread(spread(1, ZONE, "ScheduleAnyway", WEB))
        .info();
    let (raw, normalized) = score_each(&plugin(), &incoming, &snap);
    // Two zones weigh ln(4) ≈ 1.39 per pod.
    assert_eq!(raw, [1, 0, 0]);
    assert_eq!(normalized, [0, 100, 0]);
}

#[test]
fn every_scored_node_gets_the_maximum_when_none_holds_matching_pods() {
    let snap = snapshot(vec![node_in_zone("a1", "a"), node_in_zone("b1", "b")]);
    let incoming = web("incoming")
        .spread(spread(1, ZONE, "ScheduleAnyway", WEB))
        .info();
    assert_eq!(
        score_each(&plugin(), &incoming, &snap),
        (vec![0, 0], vec![100, 100])
    );
}

#[test]
fn a_pod_without_constraints_or_owner_is_not_scored() {
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("b1", "b"),
    ]);
    assert_eq!(
        score_each(&plugin(), &web("incoming").info(), &snap),
        (vec![0, 0], vec![0, 0])
    );
    let unowned = PodTopologySpread::with_owner_selector(|_: &PodInfo| None);
    assert_eq!(
        score_each(&unowned, &web("incoming").info(), &snap),
        (vec![0, 0], vec![0, 0])
    );
}

#[test]
fn system_defaults_spread_a_pod_without_constraints_by_its_owners_selector() {
    let owners = PodTopologySpread::with_owner_selector(|pod: &PodInfo| {
        (pod.labels().get("app").map(String::as_str) == Some("web"))
            .then(|| Selector::from_set(&BTreeMap::from([("app".into(), "web".into())])))
    });
    let snap = snapshot(vec![
        node_in_zone("a1", "a").pod(web("w1")),
        node_in_zone("a2", "a"),
        // Without a zone label: spread by hostname only, not ignored.
        node("bare"),
    ]);
    // Hostname: 3 nodes, ln(5) per pod, maxSkew 3 adds 2. Zone: domains "a" and the zone-less
    // "", ln(4) per pod, maxSkew 5 adds 4.
    let (raw, normalized) = score_each(&owners, &web("incoming").info(), &snap);
    assert_eq!(raw, [9, 7, 2]);
    assert_eq!(normalized, [22, 44, 100]);
}

#[test]
fn pods_wait_for_assigned_pod_and_node_label_and_taint_changes() {
    let events = Filter::events(&plugin());
    for wanted in [
        ClusterEvent::AssignedPodAdded,
        ClusterEvent::AssignedPodLabelsChanged,
        ClusterEvent::AssignedPodDeleted,
        ClusterEvent::NodeAdded,
        ClusterEvent::NodeLabelsChanged,
        ClusterEvent::NodeTaintsChanged,
    ] {
        assert!(events.contains(&wanted), "{wanted:?}");
    }
    assert!(!events.contains(&ClusterEvent::NamespaceLabelsChanged));
}

/// One generated node: its zone (`z0`..`z2`, or none), and its non-counted pods: web pods that
/// are terminating or in another namespace, and pods of another app.
#[derive(Debug, Clone)]
struct GenNode {
    zone: Option<usize>,
    noise: Vec<usize>,
}

fn gen_nodes() -> impl Strategy<Value = Vec<GenNode>> {
    let gen_node = (
        prop::option::weighted(0.9, 0..3usize),
        prop::collection::vec(0..3usize, 0..3),
    )
        .prop_map(|(zone, noise)| GenNode { zone, noise });
    prop::collection::vec(gen_node, 1..7)
}

fn build_node(i: usize, n: &GenNode, placed: usize) -> NodeBuilder {
    let zone = n.zone.map(|z| format!("z{z}"));
    let labels: Vec<(&str, &str)> = zone.iter().map(|z| (ZONE, z.as_str())).collect();
    let mut b = node(&format!("n{i}")).labels(&labels);
    for (j, kind) in n.noise.iter().enumerate() {
        let name = format!("noise-{i}-{j}");
        b = b.pod(match kind {
            0 => web(&name).terminating(),
            1 => web(&name).namespace("other"),
            _ => app_pod(&name, "api"),
        });
    }
    for j in 0..placed {
        b = b.pod(web(&format!("web-{i}-{j}")));
    }
    b
}

proptest! {
    /// With a DoNotSchedule maxSkew 1 zone constraint, placing web pods one at a time, each on
    /// some node the filter admits, keeps max − min over the eligible zones at most 1; and the
    /// filter admits exactly the nodes a brute-force count allows.
    #[test]
    fn placing_pods_where_the_filter_admits_keeps_zone_skew_within_max_skew(
        nodes in gen_nodes(),
        min_domains in 1..5i32,
        choices in prop::collection::vec(any::<prop::sample::Index>(), 1..12),
    ) {
        let mut constraint = spread(1, ZONE, "DoNotSchedule", WEB);
        constraint.min_domains = Some(min_domains);
        let incoming = web("incoming").spread(constraint).info();
        let mut placed = vec![0usize; nodes.len()];
        for choice in choices {
            let snap = snapshot(nodes.iter().enumerate().map(|(i, n)| build_node(i, n, placed[i])).collect());
            let got = admitted(&plugin(), &incoming, &snap);

            // Brute force: web pods per zone over the nodes with a zone label.
            let mut per_zone: BTreeMap<usize, i64> = BTreeMap::new();
            for (i, n) in nodes.iter().enumerate() {
                if let Some(z) = n.zone {
                    *per_zone.entry(z).or_default() += placed[i] as i64;
                }
            }
            let min = if (per_zone.len() as i64) < i64::from(min_domains) {
                0
            } else {
                per_zone.values().copied().min().unwrap_or(0)
            };
            let expected: Vec<String> = nodes.iter().enumerate()
                .filter(|(_, n)| n.zone.is_some_and(|z| per_zone[&z] + 1 - min <= 1))
                .map(|(i, _)| format!("n{i}"))
                .collect();
            prop_assert_eq!(&got, &expected);

            if got.is_empty() {
                break;
            }
            let pick: usize = got[choice.index(got.len())][1..].parse().unwrap();
            placed[pick] += 1;
            let zone = nodes[pick].zone.unwrap();
            *per_zone.get_mut(&zone).unwrap() += 1;
            let max = per_zone.values().max().unwrap();
            let min = per_zone.values().min().unwrap();
            prop_assert!(max - min <= 1, "zones {:?}", per_zone);
        }
    }
}
