//! PodDisruptionBudget checks, as Kubernetes' policy validation makes them: at most one of
//! minAvailable and maxUnavailable, each a non-negative integer or a percentage up to 100%,
//! a well-formed selector, a known unhealthy-pod eviction policy; and a status whose counts
//! are never negative.

use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};

use super::meta::nonnegative;
use super::workloads::validate_label_selector;
use crate::field::{FieldError, Rendered};
use crate::path::FieldPath;

/// The values `spec.unhealthyPodEvictionPolicy` may take, sorted as Kubernetes lists them.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// The spec of a PodDisruptionBudget at `path`. Neither bound set is valid (Kubernetes then
/// protects nothing); both set is not.
pub fn validate_pdb_spec(spec: &PodDisruptionBudgetSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.min_available.is_some() && spec.max_unavailable.is_some() {
        errs.push(FieldError::invalid(
            path,
            Rendered(serde_json::to_string(spec).unwrap_or_default()),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    super::int_or_percent(
        spec.min_available.as_ref(),
        &path.child("minAvailable"),
        &mut errs,
    );
    super::int_or_percent(
        spec.max_unavailable.as_ref(),
        &path.child("maxUnavailable"),
        &mut errs,
    );
    if let Some(selector) = spec.selector.as_ref() {
        errs.extend(validate_label_selector(selector, &path.child("selector")));
    }
    if let Some(policy) = spec.unhealthy_pod_eviction_policy.as_deref() {
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                &path.child("unhealthyPodEvictionPolicy"),
                policy,
                UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
    errs
}

/// The status of a PodDisruptionBudget at `path`: its counts are never negative.
pub fn validate_pdb_status(
    status: &PodDisruptionBudgetStatus,
    path: &FieldPath,
) -> Vec<FieldError> {
    [
        ("disruptionsAllowed", status.disruptions_allowed),
        ("currentHealthy", status.current_healthy),
        ("desiredHealthy", status.desired_healthy),
        ("expectedPods", status.expected_pods),
    ]
    .into_iter()
    .flat_map(|(field, value)| nonnegative(&path.child(field), i64::from(value)))
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::defaults::default_object;
    use crate::kinds::by_kind;
    use crate::validation::validate;

    fn pdb_errors(spec: Value) -> Vec<String> {
        let mut pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        let info = by_kind("policy/v1", "PodDisruptionBudget").expect("pdbs are served");
        default_object(info, &mut pdb).expect("defaults");
        validate(info, &pdb, None)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn one_bound_as_an_integer_or_a_percentage_is_valid() {
        let selector = json!({"matchLabels": {"app": "web"}});
        for spec in [
            json!({"minAvailable": 2, "selector": selector}),
            json!({"minAvailable": "50%", "selector": selector}),
            json!({"maxUnavailable": 1, "selector": selector}),
            json!({"maxUnavailable": "100%", "selector": selector}),
            json!({"selector": selector}),
        ] {
            assert_eq!(pdb_errors(spec.clone()), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn both_bounds_at_once_are_refused() {
        let errs = pdb_errors(json!({"minAvailable": 1, "maxUnavailable": 1}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec: Invalid value: ")
                && errs[0].ends_with(": minAvailable and maxUnavailable cannot be both set"),
            "{errs:?}"
        );
    }

    #[test]
    fn bounds_must_be_non_negative_percentages_up_to_100() {
        assert_eq!(
            pdb_errors(json!({"minAvailable": -1})),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            pdb_errors(json!({"maxUnavailable": "150%"})),
            ["spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        let errs = pdb_errors(json!({"minAvailable": "half"}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0]
                .starts_with("spec.minAvailable: Invalid value: \"half\": a valid percent string"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_selector_and_eviction_policy_are_checked() {
        let errs = pdb_errors(json!({"minAvailable": 1, "selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": []}]}}));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.selector.matchExpressions[0].values"),
            "{errs:?}"
        );
        assert_eq!(
            pdb_errors(json!({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"})),
            ["spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""]
        );
    }

    #[test]
    fn status_counts_may_not_be_negative() {
        let mut pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 1},
            "status": {"disruptionsAllowed": -1, "currentHealthy": 0, "desiredHealthy": 0,
                       "expectedPods": 0}});
        let info = by_kind("policy/v1", "PodDisruptionBudget").expect("pdbs are served");
        default_object(info, &mut pdb).expect("defaults");
        let errs: Vec<String> = validate(info, &pdb, None)
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            ["status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"]
        );
    }
}
