//! Whether a node satisfies a pod's `nodeSelector` and node-affinity terms, as Kubernetes'
//! component-helpers decide it. Kept apart from the NodeAffinity plugin because the same
//! question is asked by PodTopologySpread (`nodeAffinityPolicy`), DaemonSets and the kubelet's
//! admission.
//!
//! A `NodeSelectorTerm` ANDs its expressions; the terms of a `NodeSelector` are ORed. Label
//! expressions support In, NotIn, Exists, DoesNotExist, Gt and Lt (integer comparison); field
//! expressions support In and NotIn with one value, over `metadata.name`. A term with nothing
//! in it selects no node, and a term that does not parse matches no node while the other terms
//! still may (Kubernetes' "lazy error" selector, kept for pods stored before validation
//! tightened).

use std::collections::BTreeMap;

use keel_types::k8s_openapi::api::core::v1::{
    Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PreferredSchedulingTerm,
};
use keel_types::selector::{Operator, Requirement};
use keel_types::Selector;

/// The only node field a term may select on.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// One field expression: `key` equal (In) or not equal (NotIn) to `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FieldRequirement {
    key: String,
    equal: bool,
    value: String,
}

/// One parsed term.
#[derive(Debug, Clone)]
pub struct ParsedTerm {
    /// `None` when the term has no label expressions (then labels do not matter).
    labels: Option<Selector>,
    /// Empty when the term has no field expressions.
    fields: Vec<FieldRequirement>,
}

impl ParsedTerm {
    /// Parses a term; `Ok(None)` for a term with no expressions at all, which selects nothing.
    pub fn parse(term: &NodeSelectorTerm) -> Result<Option<ParsedTerm>, String> {
        let expressions = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if expressions.is_empty() && fields.is_empty() {
            return Ok(None);
        }
        let labels = if expressions.is_empty() {
            None
        } else {
            let reqs = expressions
                .iter()
                .map(label_requirement)
                .collect::<Result<Vec<_>, _>>()?;
            Some(Selector::from_requirements(reqs))
        };
        let fields = fields
            .iter()
            .map(field_requirement)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(ParsedTerm { labels, fields }))
    }

    /// Whether a node with `labels` and `name` satisfies every expression of the term.
    pub fn matches(&self, labels: &BTreeMap<String, String>, name: &str) -> bool {
        if let Some(selector) = &self.labels {
            if !selector.matches(labels) {
                return false;
            }
        }
        // Kubernetes checks field expressions only when the node has a name to check them
        // against; every stored node has one.
        if name.is_empty() {
            return true;
        }
        self.fields.iter().all(|f| {
            let have = if f.key == NODE_NAME_FIELD { name } else { "" };
            (have == f.value) == f.equal
        })
    }
}

fn label_requirement(r: &NodeSelectorRequirement) -> Result<Requirement, String> {
    let operator = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        other => return Err(format!("unsupported node selector operator {other:?}")),
    };
    Requirement::new(&r.key, operator, r.values.clone().unwrap_or_default())
        .map_err(|e| e.to_string())
}

fn field_requirement(r: &NodeSelectorRequirement) -> Result<FieldRequirement, String> {
    let equal = match r.operator.as_str() {
        "In" => true,
        "NotIn" => false,
        other => return Err(format!("unsupported field selector operator {other:?}")),
    };
    match r.values.as_deref() {
        Some([value]) => Ok(FieldRequirement {
            key: r.key.clone(),
            equal,
            value: value.clone(),
        }),
        _ => Err(format!("field selector {:?} must have one value", r.key)),
    }
}

/// A parsed `NodeSelector`: its terms, ORed.
#[derive(Debug, Clone, Default)]
pub struct NodeSelectorTerms {
    /// Terms that parsed; empty and unparseable ones are dropped, as they match nothing.
    terms: Vec<ParsedTerm>,
}

impl NodeSelectorTerms {
    pub fn parse(selector: &NodeSelector) -> NodeSelectorTerms {
        let terms = selector
            .node_selector_terms
            .iter()
            .filter_map(|t| ParsedTerm::parse(t).ok().flatten())
            .collect();
        NodeSelectorTerms { terms }
    }

    /// Whether any term matches the node.
    pub fn matches(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        let name = node.metadata.name.as_deref().unwrap_or("");
        self.terms.iter().any(|t| t.matches(labels, name))
    }
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// A pod's hard node constraints: `spec.nodeSelector` and the required node-affinity terms.
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    /// `None` when the pod has no nodeSelector.
    node_selector: Option<Selector>,
    /// `None` when the pod has no required node affinity; a required affinity whose terms are
    /// all empty or invalid matches no node.
    affinity: Option<NodeSelectorTerms>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .filter(|m| !m.is_empty())
            .map(Selector::from_set);
        let affinity = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(NodeSelectorTerms::parse);
        RequiredNodeAffinity {
            node_selector,
            affinity,
        }
    }

    /// Whether the pod has neither a nodeSelector nor a required node affinity.
    pub fn admits_every_node(&self) -> bool {
        self.node_selector.is_none() && self.affinity.is_none()
    }

    /// Whether the node satisfies both the nodeSelector and the required affinity.
    pub fn matches(&self, node: &Node) -> bool {
        if let Some(selector) = &self.node_selector {
            if !selector.matches(node_labels(node)) {
                return false;
            }
        }
        self.affinity.as_ref().is_none_or(|a| a.matches(node))
    }
}

/// Whether `node` satisfies `pod`'s nodeSelector and required node affinity.
pub fn pod_matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    RequiredNodeAffinity::from_pod(pod).matches(node)
}

/// A pod's preferred node-affinity terms with their weights.
#[derive(Debug, Clone, Default)]
pub struct PreferredNodeAffinity {
    terms: Vec<(i64, ParsedTerm)>,
}

/// The pod's preferred node-affinity terms as written, empty when it has none.
pub fn preferred_terms(pod: &Pod) -> &[PreferredSchedulingTerm] {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_deref()
        })
        .unwrap_or(&[])
}

impl PreferredNodeAffinity {
    /// Parses the pod's preferred terms. Terms of weight 0 and empty terms count for nothing;
    /// an unparseable term counts for nothing either (kube-scheduler fails the whole cycle of
    /// such a pod instead; validation refuses them, so only pods stored before it tightened
    /// can have one, and scoring them lower beats never scheduling them).
    pub fn from_pod(pod: &Pod) -> PreferredNodeAffinity {
        let terms = preferred_terms(pod)
            .iter()
            .filter(|t| t.weight != 0)
            .filter_map(|t| {
                let term = ParsedTerm::parse(&t.preference).ok().flatten()?;
                Some((i64::from(t.weight), term))
            })
            .collect();
        PreferredNodeAffinity { terms }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &Node) -> i64 {
        let labels = node_labels(node);
        let name = node.metadata.name.as_deref().unwrap_or("");
        self.terms
            .iter()
            .filter(|(_, t)| t.matches(labels, name))
            .map(|(w, _)| w)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fields_term, labels_term, node, pod, req, NodeBuilder};

    fn matches(term: NodeSelectorTerm, n: NodeBuilder) -> bool {
        pod_matches_node_selector_and_affinity(&pod("p").required_term(term).build(), &n.build())
    }

    #[test]
    fn label_operators_follow_kubernetes() {
        let zone_a = || node("n").label("zone", "a").label("cores", "16");
        // (name, expression, node, matches)
        let cases = [
            (
                "In matches a listed value",
                req("zone", "In", &["a", "b"]),
                zone_a(),
                true,
            ),
            (
                "In needs the label",
                req("zone", "In", &["a"]),
                node("n"),
                false,
            ),
            (
                "NotIn rejects a listed value",
                req("zone", "NotIn", &["a"]),
                zone_a(),
                false,
            ),
            (
                "NotIn matches a node without the label",
                req("zone", "NotIn", &["a"]),
                node("n"),
                true,
            ),
            (
                "Exists needs the label",
                req("zone", "Exists", &[]),
                zone_a(),
                true,
            ),
            (
                "Exists fails without it",
                req("zone", "Exists", &[]),
                node("n"),
                false,
            ),
            (
                "DoesNotExist matches without it",
                req("zone", "DoesNotExist", &[]),
                node("n"),
                true,
            ),
            (
                "DoesNotExist fails with it",
                req("zone", "DoesNotExist", &[]),
                zone_a(),
                false,
            ),
            (
                "Gt compares as integers",
                req("cores", "Gt", &["8"]),
                zone_a(),
                true,
            ),
            ("Gt is strict", req("cores", "Gt", &["16"]), zone_a(), false),
            (
                "Lt compares as integers, not strings",
                req("cores", "Lt", &["100"]),
                zone_a(),
                true,
            ),
            (
                "Gt against a non-integer label fails",
                req("zone", "Gt", &["1"]),
                zone_a(),
                false,
            ),
            (
                "Gt without the label fails",
                req("cores", "Gt", &["1"]),
                node("n"),
                false,
            ),
            (
                "unknown operator matches nothing",
                req("zone", "Equals", &["a"]),
                zone_a(),
                false,
            ),
            (
                "Gt with a non-integer value matches nothing",
                req("cores", "Gt", &["x"]),
                zone_a(),
                false,
            ),
            (
                "In without values matches nothing",
                req("zone", "In", &[]),
                zone_a(),
                false,
            ),
        ];
        for (name, expr, n, want) in cases {
            assert_eq!(matches(labels_term(vec![expr]), n), want, "{name}");
        }
    }

    #[test]
    fn expressions_of_a_term_are_anded() {
        let n = || node("n").label("zone", "a").label("disk", "ssd");
        let both = labels_term(vec![req("zone", "In", &["a"]), req("disk", "In", &["ssd"])]);
        let one = labels_term(vec![req("zone", "In", &["a"]), req("disk", "In", &["hdd"])]);
        assert!(matches(both, n()));
        assert!(!matches(one, n()));
    }

    #[test]
    fn terms_are_ored() {
        let p = pod("p")
            .required_term(labels_term(vec![req("zone", "In", &["b"])]))
            .required_term(labels_term(vec![req("zone", "In", &["a"])]))
            .build();
        assert!(pod_matches_node_selector_and_affinity(
            &p,
            &node("n").label("zone", "a").build()
        ));
        assert!(!pod_matches_node_selector_and_affinity(
            &p,
            &node("n").label("zone", "c").build()
        ));
    }

    #[test]
    fn an_invalid_term_does_not_stop_a_valid_one_from_matching() {
        let p = pod("p")
            .required_term(labels_term(vec![req("zone", "Bogus", &["a"])]))
            .required_term(labels_term(vec![req("zone", "In", &["a"])]))
            .build();
        assert!(pod_matches_node_selector_and_affinity(
            &p,
            &node("n").label("zone", "a").build()
        ));
    }

    #[test]
    fn empty_term_selects_no_node() {
        let empty = NodeSelectorTerm::default();
        assert!(!matches(empty, node("n")));
    }

    #[test]
    fn match_fields_select_by_node_name() {
        let cases = [
            (
                "In the node's name",
                req(NODE_NAME_FIELD, "In", &["n1"]),
                "n1",
                true,
            ),
            (
                "In another name",
                req(NODE_NAME_FIELD, "In", &["n2"]),
                "n1",
                false,
            ),
            (
                "NotIn the node's name",
                req(NODE_NAME_FIELD, "NotIn", &["n1"]),
                "n1",
                false,
            ),
            (
                "NotIn another name",
                req(NODE_NAME_FIELD, "NotIn", &["n2"]),
                "n1",
                true,
            ),
            (
                "In with two values is invalid",
                req(NODE_NAME_FIELD, "In", &["n1", "n2"]),
                "n1",
                false,
            ),
            (
                "Exists is not a field operator",
                req(NODE_NAME_FIELD, "Exists", &[]),
                "n1",
                false,
            ),
            (
                "another field never equals",
                req("metadata.uid", "In", &["n1"]),
                "n1",
                false,
            ),
        ];
        for (name, expr, node_name, want) in cases {
            assert_eq!(
                matches(fields_term(vec![expr]), node(node_name)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn term_with_labels_and_fields_needs_both() {
        let term = NodeSelectorTerm {
            match_expressions: Some(vec![req("zone", "In", &["a"])]),
            match_fields: Some(vec![req(NODE_NAME_FIELD, "In", &["n1"])]),
        };
        assert!(matches(term.clone(), node("n1").label("zone", "a")));
        assert!(!matches(term.clone(), node("n2").label("zone", "a")));
        assert!(!matches(term, node("n1").label("zone", "b")));
    }

    #[test]
    fn node_selector_needs_every_label_exactly() {
        let p = pod("p")
            .node_selector("zone", "a")
            .node_selector("disk", "ssd")
            .build();
        let cases = [
            (
                node("n")
                    .label("zone", "a")
                    .label("disk", "ssd")
                    .label("x", "y"),
                true,
            ),
            (node("n").label("zone", "a"), false),
            (node("n").label("zone", "a").label("disk", "hdd"), false),
            (node("n"), false),
        ];
        for (i, (n, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                pod_matches_node_selector_and_affinity(&p, &n.build()),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn node_selector_and_required_affinity_must_both_hold() {
        let p = pod("p")
            .node_selector("zone", "a")
            .required_term(labels_term(vec![req("disk", "In", &["ssd"])]))
            .build();
        let ok = node("n").label("zone", "a").label("disk", "ssd").build();
        let only_selector = node("n").label("zone", "a").build();
        let only_affinity = node("n").label("disk", "ssd").build();
        assert!(pod_matches_node_selector_and_affinity(&p, &ok));
        assert!(!pod_matches_node_selector_and_affinity(&p, &only_selector));
        assert!(!pod_matches_node_selector_and_affinity(&p, &only_affinity));
    }

    #[test]
    fn pod_without_constraints_matches_every_node() {
        assert!(pod_matches_node_selector_and_affinity(
            &pod("p").build(),
            &node("n").build()
        ));
    }

    #[test]
    fn preferred_score_sums_the_weights_of_matching_terms() {
        let p = pod("p")
            .preferred_term(5, labels_term(vec![req("zone", "In", &["a"])]))
            .preferred_term(3, labels_term(vec![req("disk", "Exists", &[])]))
            .preferred_term(0, labels_term(vec![req("zone", "Exists", &[])]))
            .preferred_term(7, NodeSelectorTerm::default())
            .preferred_term(11, labels_term(vec![req("zone", "Bogus", &[])]))
            .build();
        let pref = PreferredNodeAffinity::from_pod(&p);
        let score = |n: NodeBuilder| pref.score(&n.build());
        assert_eq!(score(node("n").label("zone", "a").label("disk", "ssd")), 8);
        assert_eq!(score(node("n").label("zone", "a")), 5);
        assert_eq!(score(node("n").label("disk", "hdd")), 3);
        assert_eq!(score(node("n")), 0);
    }
}
