//! TaintToleration: a node's NoSchedule and NoExecute taints keep off every pod that does not
//! tolerate them, and its PreferNoSchedule taints make it less attractive to such pods. The
//! toleration matching here is the one Kubernetes uses everywhere (DaemonSets, taint-based
//! eviction), so it is public.

use keel_types::k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::framework::{
    default_normalize, ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection, Score,
};

pub const EFFECT_NO_SCHEDULE: &str = "NoSchedule";
pub const EFFECT_PREFER_NO_SCHEDULE: &str = "PreferNoSchedule";
pub const EFFECT_NO_EXECUTE: &str = "NoExecute";

/// Whether one toleration tolerates one taint (Kubernetes' `Toleration.ToleratesTaint`):
/// - an empty effect tolerates every effect, otherwise the effects must be equal;
/// - an empty key tolerates every key, otherwise the keys must be equal;
/// - `Exists` ignores the value; `Equal` (also the default when the operator is empty) needs
///   equal values; any other operator tolerates nothing.
///
/// Unset and empty strings are the same thing here, as they are in Go.
pub fn toleration_tolerates_taint(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations
        .iter()
        .any(|t| toleration_tolerates_taint(t, taint))
}

/// The first of `taints` that `considered` selects and none of `tolerations` tolerates.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    considered: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .find(|t| considered(t) && !tolerations_tolerate_taint(tolerations, t))
}

/// Whether a taint keeps new pods off the node (as opposed to only discouraging them).
pub fn forbids_scheduling(taint: &Taint) -> bool {
    taint.effect == EFFECT_NO_SCHEDULE || taint.effect == EFFECT_NO_EXECUTE
}

/// The pod's tolerations, empty when it has none.
pub fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The node's taints, empty when it has none.
pub fn node_taints(node: &NodeInfo) -> &[Taint] {
    &node.taints
}

/// The first taint of `node` that keeps `pod` off: NoSchedule or NoExecute, and not tolerated.
/// The TaintToleration filter's question, also asked by PodTopologySpread's nodeTaintsPolicy
/// Honor.
pub fn untolerated_scheduling_taint<'a>(pod: &PodInfo, node: &'a NodeInfo) -> Option<&'a Taint> {
    find_untolerated_taint(node_taints(node), pod_tolerations(pod), forbids_scheduling)
}

/// The reason a taint rejects a pod, worded as kube-scheduler words it. A taint without a value
/// prints as `{key: }`, which is what users search their events for.
pub fn untolerated_taint_reason(taint: &Taint) -> String {
    format!(
        "node(s) had untolerated taint {{{}: {}}}",
        taint.key,
        taint.value.as_deref().unwrap_or("")
    )
}

/// kube-scheduler's `TaintToleration` filter and score.
#[derive(Debug, Default, Clone, Copy)]
pub struct TaintToleration;

impl TaintToleration {
    pub const NAME: &'static str = "TaintToleration";
}

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        match untolerated_scheduling_taint(pod, node) {
            None => Ok(()),
            // Evicting pods does not remove taints.
            Some(taint) => Err(Rejection::unresolvable(
                Self::NAME,
                untolerated_taint_reason(taint),
            )),
        }
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::NodeTaintsChanged]
    }
}

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// How many PreferNoSchedule taints the pod does not tolerate (fewer is better; `normalize`
    /// turns it around). kube-scheduler first narrows the tolerations to those with effect
    /// PreferNoSchedule or none; any other effect could not match these taints anyway, so
    /// matching against every toleration counts the same.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tolerations = pod_tolerations(pod);
        node_taints(node)
            .iter()
            .filter(|t| t.effect == EFFECT_PREFER_NO_SCHEDULE)
            .filter(|t| !tolerations_tolerate_taint(tolerations, t))
            .count() as i64
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, PodBuilder};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.to_string(),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: effect.to_string(),
            time_added: None,
        }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Toleration {
            key: opt(key),
            operator: opt(operator),
            value: opt(value),
            effect: opt(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let cases = [
            // (name, toleration, taint, tolerated)
            (
                "empty key with Exists tolerates every taint",
                toleration("", "Exists", "", ""),
                taint("anything", "v", EFFECT_NO_EXECUTE),
                true,
            ),
            (
                "empty operator means Equal",
                toleration("k", "", "v", ""),
                taint("k", "v", EFFECT_NO_SCHEDULE),
                true,
            ),
            (
                "Equal needs the same value",
                toleration("k", "Equal", "v", ""),
                taint("k", "w", EFFECT_NO_SCHEDULE),
                false,
            ),
            (
                "Equal with no value matches a taint without value",
                toleration("k", "Equal", "", ""),
                taint("k", "", EFFECT_NO_SCHEDULE),
                true,
            ),
            (
                "Exists ignores the value",
                toleration("k", "Exists", "", EFFECT_NO_SCHEDULE),
                taint("k", "whatever", EFFECT_NO_SCHEDULE),
                true,
            ),
            (
                "a different key is not tolerated",
                toleration("k", "Exists", "", ""),
                taint("other", "", EFFECT_NO_SCHEDULE),
                false,
            ),
            (
                "empty effect tolerates every effect",
                toleration("k", "Equal", "v", ""),
                taint("k", "v", EFFECT_NO_EXECUTE),
                true,
            ),
            (
                "a different effect is not tolerated",
                toleration("k", "Exists", "", EFFECT_NO_SCHEDULE),
                taint("k", "", EFFECT_NO_EXECUTE),
                false,
            ),
            (
                "an unknown operator tolerates nothing",
                toleration("k", "Gt", "1", ""),
                taint("k", "2", EFFECT_NO_SCHEDULE),
                false,
            ),
        ];
        for (name, tol, t, want) in cases {
            assert_eq!(toleration_tolerates_taint(&tol, &t), want, "{name}");
        }
    }

    fn filter(pod: PodBuilder, node: crate::test_support::NodeBuilder) -> Result<(), Rejection> {
        TaintToleration.filter(&CycleState::default(), &pod.info(), &node.info())
    }

    #[test]
    fn untainted_node_accepts_every_pod() {
        assert_eq!(filter(pod("p"), node("n")), Ok(()));
    }

    #[test]
    fn untolerated_no_schedule_taint_rejects_with_key_and_value() {
        let err = filter(
            pod("p"),
            node("n").taint("dedicated", "infra", EFFECT_NO_SCHEDULE),
        )
        .unwrap_err();
        assert!(err.unresolvable);
        assert_eq!(err.plugin, "TaintToleration");
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {dedicated: infra}"]
        );
    }

    #[test]
    fn taint_without_value_prints_an_empty_value() {
        let err = filter(
            pod("p"),
            node("n").taint(
                "node-role.kubernetes.io/control-plane",
                "",
                EFFECT_NO_SCHEDULE,
            ),
        )
        .unwrap_err();
        assert_eq!(
            err.reasons,
            vec!["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]
        );
    }

    #[test]
    fn untolerated_no_execute_taint_rejects() {
        assert!(filter(pod("p"), node("n").taint("k", "v", EFFECT_NO_EXECUTE)).is_err());
    }

    #[test]
    fn prefer_no_schedule_taint_does_not_filter() {
        assert_eq!(
            filter(
                pod("p"),
                node("n").taint("k", "v", EFFECT_PREFER_NO_SCHEDULE)
            ),
            Ok(())
        );
    }

    #[test]
    fn the_first_untolerated_taint_is_reported() {
        let err = filter(
            pod("p").toleration("a", "Exists", "", ""),
            node("n")
                .taint("a", "1", EFFECT_NO_SCHEDULE)
                .taint("b", "2", EFFECT_NO_EXECUTE)
                .taint("c", "3", EFFECT_NO_SCHEDULE),
        )
        .unwrap_err();
        assert_eq!(err.reasons, vec!["node(s) had untolerated taint {b: 2}"]);
    }

    #[test]
    fn tolerating_every_forbidding_taint_fits() {
        let p = pod("p")
            .toleration("a", "Equal", "1", EFFECT_NO_SCHEDULE)
            .toleration("b", "Exists", "", "");
        let n = node("n")
            .taint("a", "1", EFFECT_NO_SCHEDULE)
            .taint("b", "2", EFFECT_NO_EXECUTE);
        assert_eq!(filter(p, n), Ok(()));
    }

    fn scores(pod: PodBuilder, nodes: Vec<crate::test_support::NodeBuilder>) -> Vec<i64> {
        let state = CycleState::default();
        let pod = pod.info();
        let mut raw: Vec<i64> = nodes
            .into_iter()
            .map(|n| Score::score(&TaintToleration, &state, &pod, &n.info()))
            .collect();
        TaintToleration.normalize(&state, &pod, &mut raw);
        raw
    }

    #[test]
    fn fewer_untolerated_prefer_no_schedule_taints_score_higher() {
        let got = scores(
            pod("p"),
            vec![
                node("clean"),
                node("one").taint("a", "", EFFECT_PREFER_NO_SCHEDULE),
                node("two").taint("a", "", EFFECT_PREFER_NO_SCHEDULE).taint(
                    "b",
                    "",
                    EFFECT_PREFER_NO_SCHEDULE,
                ),
            ],
        );
        assert_eq!(got, vec![100, 50, 0]);
    }

    #[test]
    fn tolerated_prefer_no_schedule_taints_do_not_count() {
        let got = scores(
            pod("p")
                .toleration("a", "Exists", "", EFFECT_PREFER_NO_SCHEDULE)
                .toleration("b", "Exists", "", ""),
            vec![
                node("tolerated")
                    .taint("a", "", EFFECT_PREFER_NO_SCHEDULE)
                    .taint("b", "", EFFECT_PREFER_NO_SCHEDULE),
                node("untolerated").taint("c", "", EFFECT_PREFER_NO_SCHEDULE),
            ],
        );
        assert_eq!(got, vec![100, 0]);
    }

    #[test]
    fn a_no_schedule_toleration_does_not_tolerate_a_prefer_no_schedule_taint() {
        let got = scores(
            pod("p").toleration("a", "Exists", "", EFFECT_NO_SCHEDULE),
            vec![
                node("n").taint("a", "", EFFECT_PREFER_NO_SCHEDULE),
                node("m"),
            ],
        );
        assert_eq!(got, vec![0, 100]);
    }

    #[test]
    fn no_prefer_no_schedule_taints_anywhere_scores_every_node_the_most() {
        let got = scores(
            pod("p"),
            vec![node("a").taint("x", "", EFFECT_NO_SCHEDULE), node("b")],
        );
        assert_eq!(got, vec![100, 100]);
    }
}
