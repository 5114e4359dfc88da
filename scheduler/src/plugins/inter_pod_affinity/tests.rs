//! InterPodAffinity as a specification: which nodes the filter admits and why it turns the
//! others down, how the score ranks domains, and a property check against a brute-force count.

use std::collections::BTreeMap;

use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use proptest::prelude::*;

use super::*;
use crate::test_support::{
    admitted, app_pod, filter_each, match_labels, node, node_in_zone, pod, score_each,
    score_feasible, selector_with_unknown_operator, snapshot, term, HOSTNAME, ZONE,
};

fn outcome_of(outcomes: &[(String, Result<(), Rejection>)], name: &str) -> Result<(), Rejection> {
    outcomes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, o)| o.clone())
        .expect("node in snapshot")
}

#[test]
fn pod_without_inter_pod_terms_passes_every_node() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db")),
        node("n2"),
    ]);
    let incoming = app_pod("web", "web").info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1", "n2"]
    );
}

#[test]
fn required_affinity_admits_only_domains_holding_a_matching_pod() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db")),
        node_in_zone("n2", "a"),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web", "web")
        .required_affinity(term(&[("app", "db")], ZONE))
        .info();
    let outcomes = filter_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(outcome_of(&outcomes, "n1"), Ok(()));
    assert_eq!(outcome_of(&outcomes, "n2"), Ok(()));
    assert_eq!(
        outcome_of(&outcomes, "n3"),
        Err(Rejection::unresolvable(NAME, REASON_AFFINITY))
    );
}

#[test]
fn first_pod_of_a_group_may_satisfy_its_own_affinity() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db")),
        node_in_zone("n2", "b"),
    ]);
    let incoming = app_pod("web-0", "web")
        .required_affinity(term(&[("app", "web")], ZONE))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1", "n2"]
    );
}

#[test]
fn first_pod_of_a_group_still_needs_the_topology_label() {
    let snap = snapshot(vec![node_in_zone("n1", "a"), node("n2")]);
    let incoming = app_pod("web-0", "web")
        .required_affinity(term(&[("app", "web")], ZONE))
        .info();
    let outcomes = filter_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(outcome_of(&outcomes, "n1"), Ok(()));
    assert_eq!(
        outcome_of(&outcomes, "n2"),
        Err(Rejection::unresolvable(NAME, REASON_AFFINITY))
    );
}

#[test]
fn first_pod_exception_needs_the_pod_to_match_its_own_terms() {
    let snap = snapshot(vec![node_in_zone("n1", "a")]);
    let incoming = app_pod("web", "web")
        .required_affinity(term(&[("app", "db")], ZONE))
        .info();
    assert!(admitted(&InterPodAffinity::default(), &incoming, &snap).is_empty());
}

#[test]
fn first_pod_exception_ends_once_a_matching_pod_exists_anywhere() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("web-0", "web")),
        node_in_zone("n2", "b"),
    ]);
    let incoming = app_pod("web-1", "web")
        .required_affinity(term(&[("app", "web")], ZONE))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );
}

#[test]
fn an_existing_pod_counts_for_affinity_only_if_it_matches_every_term() {
    let snap = snapshot(vec![
        // Matches the first term only.
        node_in_zone("n1", "a").pod(app_pod("db", "db")),
        // Matches both terms.
        node_in_zone("n2", "b").pod(pod("db-cache").labels(&[("app", "db"), ("tier", "cache")])),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web", "web")
        .required_affinity(term(&[("app", "db")], ZONE))
        .required_affinity(term(&[("tier", "cache")], HOSTNAME))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n2"]
    );
}

#[test]
fn required_anti_affinity_rejects_domains_holding_a_matching_pod() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("web-0", "web")),
        node_in_zone("n2", "a"),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web-1", "web")
        .required_anti_affinity(term(&[("app", "web")], ZONE))
        .info();
    let outcomes = filter_each(&InterPodAffinity::default(), &incoming, &snap);
    // Resolvable: preemption may evict the repelled pods.
    let repelled = Rejection::new(NAME, REASON_ANTI_AFFINITY);
    assert!(!repelled.unresolvable);
    assert_eq!(outcome_of(&outcomes, "n1"), Err(repelled.clone()));
    assert_eq!(outcome_of(&outcomes, "n2"), Err(repelled));
    assert_eq!(outcome_of(&outcomes, "n3"), Ok(()));
}

#[test]
fn anti_affinity_does_not_apply_to_nodes_without_the_topology_key() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("web-0", "web")),
        node("n2").pod(app_pod("web-2", "web")),
    ]);
    let incoming = app_pod("web-1", "web")
        .required_anti_affinity(term(&[("app", "web")], ZONE))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n2"]
    );
}

#[test]
fn existing_pods_anti_affinity_rejects_the_incoming_pod() {
    let loner = app_pod("loner", "loner").required_anti_affinity(term(&[("app", "web")], ZONE));
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(loner),
        node_in_zone("n2", "a"),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web", "web").info();
    let outcomes = filter_each(&InterPodAffinity::default(), &incoming, &snap);
    let repelled = Err(Rejection::new(NAME, REASON_EXISTING_ANTI_AFFINITY));
    assert_eq!(outcome_of(&outcomes, "n1"), repelled);
    assert_eq!(outcome_of(&outcomes, "n2"), repelled);
    assert_eq!(outcome_of(&outcomes, "n3"), Ok(()));
}

#[test]
fn existing_pods_anti_affinity_ignores_pods_it_does_not_select() {
    let loner = app_pod("loner", "loner").required_anti_affinity(term(&[("app", "web")], ZONE));
    let snap = snapshot(vec![node_in_zone("n1", "a").pod(loner)]);
    let incoming = app_pod("api", "api").info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );
}

#[test]
fn affinity_terms_select_pods_in_the_pod_namespace_by_default() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db").namespace("other")),
        node_in_zone("n2", "b").pod(app_pod("db", "db")),
    ]);
    let incoming = app_pod("web", "web")
        .required_affinity(term(&[("app", "db")], ZONE))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n2"]
    );
}

#[test]
fn affinity_terms_select_pods_in_the_namespaces_they_name() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db").namespace("other")),
        node_in_zone("n2", "b").pod(app_pod("db", "db")),
    ]);
    let mut named = term(&[("app", "db")], ZONE);
    named.namespaces = Some(vec!["other".to_string()]);
    let incoming = app_pod("web", "web").required_affinity(named).info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );
}

#[test]
fn namespace_selector_selects_namespaces_by_their_labels() {
    let mut snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db").namespace("prod")),
        node_in_zone("n2", "b").pod(app_pod("db", "db").namespace("dev")),
    ]);
    snap.namespace_labels = [
        (
            "prod",
            BTreeMap::from([("env".to_string(), "prod".to_string())]),
        ),
        (
            "dev",
            BTreeMap::from([("env".to_string(), "dev".to_string())]),
        ),
    ]
    .into_iter()
    .map(|(n, l)| (n.to_string(), l))
    .collect();
    let mut by_labels = term(&[("app", "db")], ZONE);
    by_labels.namespace_selector = Some(match_labels(&[("env", "prod")]));
    let incoming = app_pod("web", "web").required_affinity(by_labels).info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );

    let mut every = term(&[("app", "db")], ZONE);
    every.namespace_selector = Some(LabelSelector::default());
    let incoming = app_pod("web", "web").required_anti_affinity(every).info();
    assert!(
        admitted(&InterPodAffinity::default(), &incoming, &snap).is_empty(),
        "an empty namespaceSelector selects every namespace"
    );
}

#[test]
fn terminating_pods_still_count_for_inter_pod_terms() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db", "db").terminating()),
        node_in_zone("n2", "b"),
    ]);
    let incoming = app_pod("web", "web")
        .required_affinity(term(&[("app", "db")], ZONE))
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );
}

#[test]
fn match_label_keys_narrow_anti_affinity_to_pods_sharing_the_value() {
    let snap = snapshot(vec![
        node("n1").pod(pod("web-v1").labels(&[("app", "web"), ("version", "1")])),
        node("n2").pod(pod("web-v2").labels(&[("app", "web"), ("version", "2")])),
    ]);
    let mut per_version = term(&[("app", "web")], HOSTNAME);
    per_version.match_label_keys = Some(vec!["version".to_string()]);
    let incoming = pod("web-new")
        .labels(&[("app", "web"), ("version", "2")])
        .required_anti_affinity(per_version)
        .info();
    assert_eq!(
        admitted(&InterPodAffinity::default(), &incoming, &snap),
        ["n1"]
    );
}

#[test]
fn unparseable_terms_reject_the_pod_before_any_node_is_looked_at() {
    let snap = snapshot(vec![node("n1")]);
    let mut bad = term(&[], ZONE);
    bad.label_selector = Some(selector_with_unknown_operator());
    let incoming = app_pod("web", "web").required_affinity(bad).info();
    let outcomes = filter_each(&InterPodAffinity::default(), &incoming, &snap);
    let rejection = outcome_of(&outcomes, "n1").unwrap_err();
    assert!(rejection.unresolvable);
    assert!(
        rejection.reasons[0].starts_with("parsing pod: "),
        "{:?}",
        rejection.reasons
    );
}

#[test]
fn preferred_affinity_scores_domains_by_weight_per_matching_pod() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db-0", "db")),
        node_in_zone("n2", "a").pod(app_pod("db-1", "db")),
        node_in_zone("n3", "b").pod(app_pod("db-2", "db")),
        node_in_zone("n4", "c"),
    ]);
    let incoming = app_pod("web", "web")
        .preferred_affinity(5, term(&[("app", "db")], ZONE))
        .info();
    let (raw, normalized) = score_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(raw, [10, 10, 5, 0]);
    assert_eq!(normalized, [100, 100, 50, 0]);
}

#[test]
fn preferred_anti_affinity_subtracts_weight_per_matching_pod() {
    let snap = snapshot(vec![node("n1").pod(app_pod("web-0", "web")), node("n2")]);
    let incoming = app_pod("web-1", "web")
        .preferred_anti_affinity(10, term(&[("app", "web")], HOSTNAME))
        .info();
    let (raw, normalized) = score_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(raw, [-10, 0]);
    assert_eq!(normalized, [0, 100]);
}

#[test]
fn existing_pods_required_affinity_scores_with_the_hard_pod_affinity_weight() {
    let follower = app_pod("cache", "cache").required_affinity(term(&[("app", "web")], HOSTNAME));
    let snap = snapshot(vec![node("n1").pod(follower), node("n2")]);
    let incoming = app_pod("web", "web").info();

    let (raw, normalized) = score_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(raw, [1, 0]);
    assert_eq!(normalized, [100, 0]);

    let heavier = InterPodAffinity {
        hard_pod_affinity_weight: 7,
    };
    assert_eq!(score_each(&heavier, &incoming, &snap).0, [7, 0]);
    let ignored = InterPodAffinity {
        hard_pod_affinity_weight: 0,
    };
    assert_eq!(
        score_each(&ignored, &incoming, &snap),
        (vec![0, 0], vec![0, 0])
    );
}

#[test]
fn existing_pods_preferred_terms_score_the_incoming_pod() {
    let picky = app_pod("picky", "picky")
        .preferred_affinity(7, term(&[("app", "web")], ZONE))
        .preferred_anti_affinity(3, term(&[("app", "web")], HOSTNAME));
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(picky),
        node_in_zone("n2", "a"),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web", "web").info();
    let (raw, normalized) = score_each(&InterPodAffinity::default(), &incoming, &snap);
    assert_eq!(raw, [4, 7, 0]);
    assert_eq!(normalized, [57, 100, 0]);
}

#[test]
fn score_counts_pods_on_infeasible_nodes_of_the_domain() {
    let snap = snapshot(vec![
        node_in_zone("full", "a").pod(app_pod("db", "db")),
        node_in_zone("n2", "a"),
        node_in_zone("n3", "b"),
    ]);
    let incoming = app_pod("web", "web")
        .preferred_affinity(1, term(&[("app", "db")], ZONE))
        .info();
    let feasible = [snap.nodes[1].clone(), snap.nodes[2].clone()];
    let (raw, normalized) =
        score_feasible(&InterPodAffinity::default(), &incoming, &snap, &feasible);
    assert_eq!(raw, [1, 0]);
    assert_eq!(normalized, [100, 0]);
}

#[test]
fn equal_scores_normalize_to_zero() {
    let snap = snapshot(vec![
        node_in_zone("n1", "a").pod(app_pod("db-0", "db")),
        node_in_zone("n2", "a"),
    ]);
    let incoming = app_pod("web", "web")
        .preferred_affinity(5, term(&[("app", "db")], ZONE))
        .info();
    assert_eq!(
        score_each(&InterPodAffinity::default(), &incoming, &snap),
        (vec![5, 5], vec![0, 0])
    );
}

#[test]
fn normalization_truncates_in_floating_point_as_kube_scheduler_does() {
    let mut state = CycleState::default();
    state.insert(
        PRE_SCORE_KEY,
        PreScoreState {
            scores: TopologyCounts(HashMap::from([(
                ZONE.to_string(),
                HashMap::from([("a".to_string(), 1)]),
            )])),
        },
    );
    let incoming = pod("web").info();
    let mut scores = [-50, -21, 50];
    InterPodAffinity::default().normalize(&state, &incoming, &mut scores);
    // 100 * (29 / 100) is 28.999… in binary floating point.
    assert_eq!(scores, [0, 28, 100]);
}

#[test]
fn without_inter_pod_terms_anywhere_every_node_scores_zero() {
    let snap = snapshot(vec![node("n1").pod(app_pod("db", "db")), node("n2")]);
    let incoming = app_pod("web", "web").info();
    assert_eq!(
        score_each(&InterPodAffinity::default(), &incoming, &snap),
        (vec![0, 0], vec![0, 0])
    );
}

#[test]
fn pods_wait_for_node_label_namespace_label_and_assigned_pod_changes() {
    let events = Filter::events(&InterPodAffinity::default());
    for wanted in [
        ClusterEvent::AssignedPodAdded,
        ClusterEvent::AssignedPodLabelsChanged,
        ClusterEvent::AssignedPodDeleted,
        ClusterEvent::NodeAdded,
        ClusterEvent::NodeLabelsChanged,
        ClusterEvent::NamespaceLabelsChanged,
    ] {
        assert!(events.contains(&wanted), "{wanted:?}");
    }
    assert!(!events.contains(&ClusterEvent::NodeAllocatableChanged));
}

/// One existing pod of the generated clusters: its app label (`a0`..`a2`), whether it lives in
/// the incoming pod's namespace, and whether it repels `app=a0` pods from its zone.
#[derive(Debug, Clone)]
struct GenPod {
    app: usize,
    same_namespace: bool,
    repels_a0_from_zone: bool,
}

fn gen_cluster() -> impl Strategy<Value = Vec<(usize, Vec<GenPod>)>> {
    let gen_pod = (0..3usize, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
        |(app, same_namespace, repels_a0_from_zone)| GenPod {
            app,
            same_namespace,
            repels_a0_from_zone,
        },
    );
    prop::collection::vec((0..3usize, prop::collection::vec(gen_pod, 0..4)), 1..8)
}

proptest! {
    /// The filter agrees with a brute-force reading of the rules: a pod with a required
    /// anti-affinity on hostname never lands beside a pod it repels, nor in a zone holding a
    /// pod whose anti-affinity repels it.
    #[test]
    fn hostname_anti_affinity_never_admits_a_node_hosting_a_matching_pod(
        cluster in gen_cluster(),
        incoming_app in 0..3usize,
        repelled_app in 0..3usize,
    ) {
        let namespace = |same: bool| if same { "default" } else { "other" };
        let nodes = cluster.iter().enumerate().map(|(i, (zone, pods))| {
            let zone = format!("z{zone}");
            pods.iter().enumerate().fold(node_in_zone(&format!("n{i}"), &zone), |n, (j, p)| {
                let app = format!("a{}", p.app);
                let mut existing = app_pod(&format!("p{i}-{j}"), &app)
                    .namespace(namespace(p.same_namespace));
                if p.repels_a0_from_zone {
                    existing = existing.required_anti_affinity(term(&[("app", "a0")], ZONE));
                }
                n.pod(existing)
            })
        }).collect();
        let snap = snapshot(nodes);
        let incoming_label = format!("a{incoming_app}");
        let repelled_label = format!("a{repelled_app}");
        let incoming = app_pod("incoming", &incoming_label)
            .required_anti_affinity(term(&[("app", &repelled_label)], HOSTNAME))
            .info();

        let got = admitted(&InterPodAffinity::default(), &incoming, &snap);

        let expected: Vec<String> = cluster.iter().enumerate().filter(|(_, (zone, pods))| {
            let hosts_repelled = pods.iter().any(|p| p.same_namespace && p.app == repelled_app);
            let zone_repels_incoming = incoming_app == 0 && cluster.iter().any(|(z, others)| {
                z == zone && others.iter().any(|p| p.repels_a0_from_zone && p.same_namespace)
            });
            !hosts_repelled && !zone_repels_incoming
        }).map(|(i, _)| format!("n{i}")).collect();
        prop_assert_eq!(&got, &expected);
        for name in &got {
            let i: usize = name[1..].parse().unwrap();
            prop_assert!(!cluster[i].1.iter().any(|p| p.same_namespace && p.app == repelled_app));
        }
    }
}
