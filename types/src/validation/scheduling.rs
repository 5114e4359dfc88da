//! Checks of where a pod may run, as Kubernetes' pod validation makes them: node affinity
//! (node selector terms and their requirements), pod affinity and anti-affinity terms,
//! tolerations, topology spread constraints, and the priority fields. A scheduler reads these
//! terms as given, so a term it could not evaluate is refused here rather than left to make
//! the pod unschedulable.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, PodAffinity,
    PodAffinityTerm, PodAntiAffinity, PodSpec, PreferredSchedulingTerm, Toleration,
    TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use super::workloads::validate_label_selector;
use crate::field::{FieldError, Rendered};
use crate::names;
use crate::path::FieldPath;

/// The preemption policies a pod or a PriorityClass may name.
pub const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];
const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
const TOLERATION_OPERATORS: &[&str] = &["Equal", "Exists"];
/// As Kubernetes lists them: sorted.
const UNSATISFIABLE_ACTIONS: &[&str] = &["DoNotSchedule", "ScheduleAnyway"];
const NODE_INCLUSION_POLICIES: &[&str] = &["Honor", "Ignore"];
const NOT_POSITIVE: &str = "must be greater than zero";
const WEIGHT_RANGE: &str = "must be in the range 1-100";

/// Every scheduling constraint of a pod spec at `path`.
pub fn validate_scheduling(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(affinity) = spec.affinity.as_ref() {
        errs.extend(validate_affinity(affinity, &path.child("affinity")));
    }
    if let Some(tolerations) = spec.tolerations.as_deref() {
        errs.extend(validate_tolerations(
            tolerations,
            &path.child("tolerations"),
        ));
    }
    if let Some(constraints) = spec.topology_spread_constraints.as_deref() {
        errs.extend(validate_topology_spread_constraints(
            constraints,
            &path.child("topologySpreadConstraints"),
        ));
    }
    if let Some(name) = spec
        .priority_class_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        for msg in names::dns1123_subdomain(name) {
            errs.push(FieldError::invalid(
                &path.child("priorityClassName"),
                name,
                msg,
            ));
        }
    }
    if let Some(policy) = spec.preemption_policy.as_deref() {
        errs.extend(validate_preemption_policy(
            policy,
            &path.child("preemptionPolicy"),
        ));
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        for msg in names::dns1123_subdomain(node) {
            errs.push(FieldError::invalid(&path.child("nodeName"), node, msg));
        }
    }
    errs
}

/// Whether `err`, found in a pod spec, lies in a scheduling section the update left as the
/// old spec had it. Pods stored before these checks existed may hold terms they now refuse;
/// refusing every later update of such a pod (its status, its labels) for a section nobody
/// changed would strand it, so an unchanged section is not judged again, as Kubernetes
/// ratchets its own newer pod checks.
pub fn kept_from_old(err: &FieldError, new: &PodSpec, old: &PodSpec, path: &FieldPath) -> bool {
    let sections = [
        ("affinity", new.affinity == old.affinity),
        ("tolerations", new.tolerations == old.tolerations),
        (
            "topologySpreadConstraints",
            new.topology_spread_constraints == old.topology_spread_constraints,
        ),
    ];
    sections.iter().any(|(section, unchanged)| {
        let prefix = path.child(section).to_string();
        *unchanged
            && err.field.strip_prefix(&prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
            })
    })
}

/// A preemption policy, of a pod or of a PriorityClass.
pub fn validate_preemption_policy(policy: &str, path: &FieldPath) -> Vec<FieldError> {
    match policy {
        "" => vec![FieldError::required(path, "")],
        p if PREEMPTION_POLICIES.contains(&p) => Vec::new(),
        // Kubernetes lists these in the order it declares them, not sorted.
        p => vec![FieldError::not_supported(
            path,
            p,
            &["PreemptLowerPriority", "Never"],
        )],
    }
}

fn validate_affinity(affinity: &Affinity, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(node) = affinity.node_affinity.as_ref() {
        errs.extend(validate_node_affinity(node, &path.child("nodeAffinity")));
    }
    if let Some(pod) = affinity.pod_affinity.as_ref() {
        let PodAffinity {
            required_during_scheduling_ignored_during_execution: required,
            preferred_during_scheduling_ignored_during_execution: preferred,
        } = pod;
        errs.extend(validate_inter_pod_terms(
            required.as_deref(),
            preferred.as_deref(),
            &path.child("podAffinity"),
        ));
    }
    if let Some(anti) = affinity.pod_anti_affinity.as_ref() {
        let PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: required,
            preferred_during_scheduling_ignored_during_execution: preferred,
        } = anti;
        errs.extend(validate_inter_pod_terms(
            required.as_deref(),
            preferred.as_deref(),
            &path.child("podAntiAffinity"),
        ));
    }
    errs
}

fn validate_node_affinity(node: &NodeAffinity, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(required) = node
        .required_during_scheduling_ignored_during_execution
        .as_ref()
    {
        errs.extend(validate_node_selector(
            required,
            &path.child("requiredDuringSchedulingIgnoredDuringExecution"),
        ));
    }
    let preferred_path = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in node
        .preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .enumerate()
    {
        let PreferredSchedulingTerm { preference, weight } = term;
        let term_path = preferred_path.index(i);
        errs.extend(validate_weight(*weight, &term_path.child("weight")));
        errs.extend(validate_node_selector_term(
            preference,
            &term_path.child("preference"),
        ));
    }
    errs
}

fn validate_node_selector(selector: &NodeSelector, path: &FieldPath) -> Vec<FieldError> {
    let terms_path = path.child("nodeSelectorTerms");
    if selector.node_selector_terms.is_empty() {
        return vec![FieldError::required(
            &terms_path,
            "must have at least one node selector term",
        )];
    }
    selector
        .node_selector_terms
        .iter()
        .enumerate()
        .flat_map(|(i, term)| validate_node_selector_term(term, &terms_path.index(i)))
        .collect()
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, requirement) in term.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_node_selector_requirement(
            requirement,
            &path.child("matchExpressions").index(i),
        ));
    }
    for (i, requirement) in term.match_fields.iter().flatten().enumerate() {
        errs.extend(validate_node_field_requirement(
            requirement,
            &path.child("matchFields").index(i),
        ));
    }
    errs
}

/// A requirement on node labels. Kubernetes' own validation counts the values of `Gt` and
/// `Lt` but leaves their parsing to whoever evaluates the term; keel refuses a value that is
/// not an integer here, in the words Kubernetes' label requirements use for it, so no pod is
/// stored with a term the scheduler cannot read.
fn validate_node_selector_requirement(
    requirement: &NodeSelectorRequirement,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = requirement.values.as_deref().unwrap_or(&[]);
    let values_path = path.child("values");
    match requirement.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::required(
                    &values_path,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &values_path,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                errs.push(FieldError::required(
                    &values_path,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
            for (i, value) in values.iter().enumerate() {
                if value.parse::<i64>().is_err() {
                    errs.push(FieldError::invalid(
                        &values_path.index(i),
                        value,
                        "for 'Gt', 'Lt' operators, the value must be an integer",
                    ));
                }
            }
        }
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    for msg in names::qualified_name(&requirement.key) {
        errs.push(FieldError::invalid(
            &path.child("key"),
            &requirement.key,
            msg,
        ));
    }
    errs
}

/// A requirement on node fields: only `metadata.name`, with In or NotIn and one node name.
fn validate_node_field_requirement(
    requirement: &NodeSelectorRequirement,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = requirement.values.as_deref().unwrap_or(&[]);
    match requirement.operator.as_str() {
        "In" | "NotIn" => {
            if values.len() != 1 {
                errs.push(FieldError::required(
                    &path.child("values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                ));
            }
        }
        other => errs.push(FieldError::invalid(
            &path.child("operator"),
            other,
            "not a valid selector operator",
        )),
    }
    if requirement.key != "metadata.name" {
        errs.push(FieldError::invalid(
            &path.child("key"),
            &requirement.key,
            "not a valid field selector key",
        ));
    } else {
        for (i, value) in values.iter().enumerate() {
            for msg in names::dns1123_subdomain(value) {
                errs.push(FieldError::invalid(
                    &path.child("values").index(i),
                    value,
                    msg,
                ));
            }
        }
    }
    errs
}

fn validate_weight(weight: i32, path: &FieldPath) -> Vec<FieldError> {
    if (1..=100).contains(&weight) {
        return Vec::new();
    }
    vec![FieldError::invalid(path, weight, WEIGHT_RANGE)]
}

/// The required and preferred terms of a pod affinity or anti-affinity.
fn validate_inter_pod_terms(
    required: Option<&[PodAffinityTerm]>,
    preferred: Option<&[WeightedPodAffinityTerm]>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let required_path = path.child("requiredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in required.into_iter().flatten().enumerate() {
        errs.extend(validate_pod_affinity_term(term, &required_path.index(i)));
    }
    let preferred_path = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, weighted) in preferred.into_iter().flatten().enumerate() {
        let term_path = preferred_path.index(i);
        errs.extend(validate_weight(weighted.weight, &term_path.child("weight")));
        errs.extend(validate_pod_affinity_term(
            &weighted.pod_affinity_term,
            &term_path.child("podAffinityTerm"),
        ));
    }
    errs
}

fn validate_pod_affinity_term(term: &PodAffinityTerm, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(selector) = term.label_selector.as_ref() {
        errs.extend(validate_label_selector(
            selector,
            &path.child("labelSelector"),
        ));
    }
    if let Some(selector) = term.namespace_selector.as_ref() {
        errs.extend(validate_label_selector(
            selector,
            &path.child("namespaceSelector"),
        ));
    }
    for namespace in term.namespaces.iter().flatten() {
        // Kubernetes names the list's field in the singular here.
        for msg in names::name_is_dns_label(namespace, false) {
            errs.push(FieldError::invalid(
                &path.child("namespace"),
                namespace,
                msg,
            ));
        }
    }
    let key_path = path.child("topologyKey");
    if term.topology_key.is_empty() {
        errs.push(FieldError::required(&key_path, "can not be empty"));
    }
    for msg in names::qualified_name(&term.topology_key) {
        errs.push(FieldError::invalid(&key_path, &term.topology_key, msg));
    }
    errs
}

fn validate_tolerations(tolerations: &[Toleration], path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, toleration) in tolerations.iter().enumerate() {
        let at = path.index(i);
        let key = toleration.key.as_deref().unwrap_or("");
        let operator = toleration.operator.as_deref().unwrap_or("");
        let value = toleration.value.as_deref().unwrap_or("");
        let effect = toleration.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            for msg in names::qualified_name(key) {
                errs.push(FieldError::invalid(&at.child("key"), key, msg));
            }
        }
        // An empty key with Exists tolerates every taint; with any other operator it would
        // tolerate nothing and is surely a mistake.
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &at.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &at.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            // An empty operator means Equal.
            "" | "Equal" => {
                let msgs = names::label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        &at.child("operator"),
                        value,
                        msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &at.child("operator"),
                        Rendered(go_toleration(toleration)),
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &at.child("operator"),
                other,
                TOLERATION_OPERATORS,
            )),
        }
        // An empty effect tolerates every effect.
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &at.child("effect"),
                effect,
                TAINT_EFFECTS,
            ));
        }
    }
    errs
}

/// A toleration as Kubernetes prints its internal type in an error (Go's `%#v`).
fn go_toleration(t: &Toleration) -> String {
    let quote = |s: &Option<String>| crate::field::go_quote(s.as_deref().unwrap_or(""));
    let seconds = match t.toleration_seconds {
        Some(s) => format!("(*int64)({s})"),
        None => "(*int64)(nil)".to_string(),
    };
    format!(
        "core.Toleration{{Key:{}, Operator:{}, Value:{}, Effect:{}, TolerationSeconds:{seconds}}}",
        quote(&t.key),
        quote(&t.operator),
        quote(&t.value),
        quote(&t.effect),
    )
}

fn validate_topology_spread_constraints(
    constraints: &[TopologySpreadConstraint],
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, c) in constraints.iter().enumerate() {
        let at = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                &at.child("maxSkew"),
                c.max_skew,
                NOT_POSITIVE,
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                &at.child("topologyKey"),
                "can not be empty",
            ));
        }
        if !UNSATISFIABLE_ACTIONS.contains(&c.when_unsatisfiable.as_str()) {
            errs.push(FieldError::not_supported(
                &at.child("whenUnsatisfiable"),
                &c.when_unsatisfiable,
                UNSATISFIABLE_ACTIONS,
            ));
        }
        // A {topologyKey, whenUnsatisfiable} pair is one kind of spread; each is reported
        // once, at its first occurrence.
        let repeated = constraints[i + 1..].iter().any(|later| {
            later.topology_key == c.topology_key && later.when_unsatisfiable == c.when_unsatisfiable
        });
        if repeated {
            errs.push(FieldError::duplicate(
                &at.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", c.topology_key, c.when_unsatisfiable),
            ));
        }
        if let Some(min_domains) = c.min_domains {
            let min_path = at.child("minDomains");
            if min_domains <= 0 {
                errs.push(FieldError::invalid(&min_path, min_domains, NOT_POSITIVE));
            }
            if c.when_unsatisfiable != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    &min_path,
                    min_domains,
                    format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {}",
                        c.when_unsatisfiable
                    ),
                ));
            }
        }
        for (field, policy) in [
            ("nodeAffinityPolicy", &c.node_affinity_policy),
            ("nodeTaintsPolicy", &c.node_taints_policy),
        ] {
            if let Some(p) = policy.as_deref() {
                if !NODE_INCLUSION_POLICIES.contains(&p) {
                    errs.push(FieldError::not_supported(
                        &at.child(field),
                        p,
                        NODE_INCLUSION_POLICIES,
                    ));
                }
            }
        }
        errs.extend(validate_match_label_keys(c, &at));
        if let Some(selector) = c.label_selector.as_ref() {
            errs.extend(validate_label_selector(
                selector,
                &at.child("labelSelector"),
            ));
        }
    }
    errs
}

/// `matchLabelKeys` of a spread constraint: label keys, only beside a label selector, and
/// none of them a key the selector already names.
fn validate_match_label_keys(c: &TopologySpreadConstraint, at: &FieldPath) -> Vec<FieldError> {
    let keys = c.match_label_keys.as_deref().unwrap_or(&[]);
    if keys.is_empty() {
        return Vec::new();
    }
    let path = at.child("matchLabelKeys");
    let mut errs = Vec::new();
    let selector = c.label_selector.as_ref();
    if selector.is_none() {
        errs.push(FieldError::forbidden(
            &path,
            "must not be specified when labelSelector is not set",
        ));
    }
    let in_selector: BTreeSet<&str> = selector
        .into_iter()
        .flat_map(|s| {
            let labels = s.match_labels.iter().flatten().map(|(k, _)| k.as_str());
            let expressions = s.match_expressions.iter().flatten().map(|e| e.key.as_str());
            labels.chain(expressions)
        })
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let key_path = path.index(i);
        for msg in names::qualified_name(key) {
            errs.push(FieldError::invalid(&key_path, key, msg));
        }
        if in_selector.contains(key.as_str()) {
            errs.push(FieldError::invalid(
                &key_path,
                key,
                "exists in both matchLabelKeys and labelSelector",
            ));
        }
    }
    errs
}
