//! HorizontalPodAutoscaler (autoscaling/v2) checks, as Kubernetes' autoscaling validation
//! makes them: replica bounds, the scale target, each metric (one source, of its declared
//! type, with a target of a known type and positive values) and the scaling behaviour
//! (stabilization window, select policy, policies with positive values and periods).

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingRules, HorizontalPodAutoscalerSpec,
    HorizontalPodAutoscalerStatus, MetricIdentifier, MetricSpec, MetricTarget,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as QuantityText;

use super::meta::nonnegative;
use super::workloads::validate_label_selector;
use crate::field::{FieldError, Rendered};
use crate::names;
use crate::path::FieldPath;
use crate::quantity::Quantity;

/// The metric source types, sorted as Kubernetes lists them.
const SOURCE_TYPES: &[&str] = &[
    "ContainerResource",
    "External",
    "Object",
    "Pods",
    "Resource",
];
const SELECT_POLICIES: &[&str] = &["Disabled", "Max", "Min"];
const POLICY_TYPES: &[&str] = &["Percent", "Pods"];
const MAX_PERIOD_SECONDS: i32 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i32 = 3600;

pub fn validate_hpa_spec(spec: &HorizontalPodAutoscalerSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(min) = spec.min_replicas.filter(|m| *m < 1) {
        errs.push(FieldError::invalid(
            &path.child("minReplicas"),
            i64::from(min),
            "must be greater than or equal to 1",
        ));
    }
    if spec.max_replicas < 1 {
        errs.push(FieldError::invalid(
            &path.child("maxReplicas"),
            i64::from(spec.max_replicas),
            "must be greater than 0",
        ));
    }
    if spec.min_replicas.is_some_and(|min| spec.max_replicas < min) {
        errs.push(FieldError::invalid(
            &path.child("maxReplicas"),
            i64::from(spec.max_replicas),
            "must be greater than or equal to `minReplicas`",
        ));
    }
    errs.extend(object_reference(
        &spec.scale_target_ref,
        &path.child("scaleTargetRef"),
    ));
    for (i, metric) in spec.metrics.iter().flatten().enumerate() {
        errs.extend(metric_spec(metric, &path.child("metrics").index(i)));
    }
    if let Some(behavior) = &spec.behavior {
        let behavior_path = path.child("behavior");
        for (rules, name) in [
            (&behavior.scale_up, "scaleUp"),
            (&behavior.scale_down, "scaleDown"),
        ] {
            if let Some(rules) = rules {
                errs.extend(scaling_rules(rules, &behavior_path.child(name)));
            }
        }
    }
    errs
}

pub fn validate_hpa_status(status: &HorizontalPodAutoscalerStatus) -> Vec<FieldError> {
    let path = FieldPath::new("status");
    let mut errs = nonnegative(
        &path.child("currentReplicas"),
        i64::from(status.current_replicas.unwrap_or(0)),
    );
    errs.extend(nonnegative(
        &path.child("desiredReplicas"),
        i64::from(status.desired_replicas),
    ));
    errs
}

fn object_reference(r: &CrossVersionObjectReference, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (value, name) in [(&r.kind, "kind"), (&r.name, "name")] {
        if value.is_empty() {
            errs.push(FieldError::required(&path.child(name), ""));
            continue;
        }
        for msg in names::path_segment_name(value, false) {
            errs.push(FieldError::invalid(&path.child(name), value, msg));
        }
    }
    errs
}

fn metric_spec(spec: &MetricSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.type_.is_empty() {
        errs.push(FieldError::required(
            &path.child("type"),
            "must specify a metric source type",
        ));
    } else if !SOURCE_TYPES.contains(&spec.type_.as_str()) {
        errs.push(FieldError::not_supported(
            &path.child("type"),
            &spec.type_,
            SOURCE_TYPES,
        ));
    }
    // The sources given, in Kubernetes' order; only the first is checked further.
    let mut present: Vec<&str> = Vec::new();
    if let Some(object) = &spec.object {
        present.push("object");
        let p = path.child("object");
        errs.extend(object_reference(
            &object.described_object,
            &p.child("describedObject"),
        ));
        errs.extend(metric_identifier(&object.metric, &p.child("metric")));
        errs.extend(metric_target(&object.target, &p.child("target")));
        if object.target.value.is_none() && object.target.average_value.is_none() {
            errs.push(FieldError::required(
                &p.child("target").child("averageValue"),
                "must set either a target value or averageValue",
            ));
        }
    }
    if let Some(external) = spec.external.as_ref().filter(|_| present.is_empty()) {
        let p = path.child("external");
        errs.extend(metric_identifier(&external.metric, &p.child("metric")));
        errs.extend(metric_target(&external.target, &p.child("target")));
        let t = &external.target;
        if t.value.is_none() && t.average_value.is_none() {
            errs.push(FieldError::required(
                &p.child("target").child("averageValue"),
                "must set either a target value for metric or a per-pod target",
            ));
        }
        if t.value.is_some() && t.average_value.is_some() {
            errs.push(FieldError::forbidden(
                &p.child("target").child("value"),
                "may not set both a target value for metric and a per-pod target",
            ));
        }
    }
    if spec.external.is_some() {
        present.push("external");
    }
    if let Some(pods) = spec.pods.as_ref().filter(|_| present.is_empty()) {
        let p = path.child("pods");
        errs.extend(metric_identifier(&pods.metric, &p.child("metric")));
        errs.extend(metric_target(&pods.target, &p.child("target")));
        if pods.target.average_value.is_none() {
            errs.push(FieldError::required(
                &p.child("target").child("averageValue"),
                "must specify a positive target averageValue",
            ));
        }
    }
    if spec.pods.is_some() {
        present.push("pods");
    }
    if let Some(resource) = spec.resource.as_ref().filter(|_| present.is_empty()) {
        let p = path.child("resource");
        if resource.name.is_empty() {
            errs.push(FieldError::required(
                &p.child("name"),
                "must specify a resource name",
            ));
        }
        errs.extend(utilization_target(&resource.target, &p.child("target")));
    }
    if spec.resource.is_some() {
        present.push("resource");
    }
    if let Some(resource) = spec
        .container_resource
        .as_ref()
        .filter(|_| present.is_empty())
    {
        let p = path.child("containerResource");
        if resource.name.is_empty() {
            errs.push(FieldError::required(
                &p.child("name"),
                "must specify a resource name",
            ));
        }
        if resource.container.is_empty() {
            errs.push(FieldError::required(
                &p.child("container"),
                "must specify a container",
            ));
        } else {
            for msg in names::dns1123_label(&resource.container) {
                errs.push(FieldError::invalid(
                    &p.child("container"),
                    &resource.container,
                    msg,
                ));
            }
        }
        errs.extend(utilization_target(&resource.target, &p.child("target")));
    }
    if spec.container_resource.is_some() {
        present.push("containerResource");
    }
    let expected = match spec.type_.as_str() {
        "Object" => Some("object"),
        "External" => Some("external"),
        "Pods" => Some("pods"),
        "Resource" => Some("resource"),
        "ContainerResource" => Some("containerResource"),
        _ => None,
    };
    if let Some(expected) = expected {
        if !present.contains(&expected) {
            errs.push(FieldError::required(
                &path.child(expected),
                "must populate information for the given metric source",
            ));
        }
    }
    if present.len() > 1 {
        for other in present.iter().filter(|p| Some(**p) != expected) {
            errs.push(FieldError::forbidden(
                &path.child(other),
                "must populate the given metric source only",
            ));
        }
    }
    errs
}

fn metric_identifier(id: &MetricIdentifier, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if id.name.is_empty() {
        errs.push(FieldError::required(
            &path.child("name"),
            "must specify a metric name",
        ));
    } else {
        for msg in names::path_segment_name(&id.name, false) {
            errs.push(FieldError::invalid(&path.child("name"), &id.name, msg));
        }
    }
    if let Some(selector) = &id.selector {
        errs.extend(validate_label_selector(selector, &path.child("selector")));
    }
    errs
}

/// A resource target: a utilization or an average value, not both.
fn utilization_target(target: &MetricTarget, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = metric_target(target, path);
    if target.average_utilization.is_none() && target.average_value.is_none() {
        errs.push(FieldError::required(
            &path.child("averageUtilization"),
            "must set either a target raw value or a target utilization",
        ));
    }
    if target.average_utilization.is_some() && target.average_value.is_some() {
        errs.push(FieldError::forbidden(
            &path.child("averageValue"),
            "may not set both a target raw value and a target utilization",
        ));
    }
    errs
}

fn metric_target(target: &MetricTarget, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if target.type_.is_empty() {
        errs.push(FieldError::required(
            &path.child("type"),
            "must specify a metric target type",
        ));
    }
    if !matches!(
        target.type_.as_str(),
        "Utilization" | "Value" | "AverageValue"
    ) {
        errs.push(FieldError::invalid(
            &path.child("type"),
            &target.type_,
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for (value, name) in [
        (&target.value, "value"),
        (&target.average_value, "averageValue"),
    ] {
        if let Some(q) = value {
            if !positive(q) {
                errs.push(FieldError::invalid(
                    &path.child(name),
                    Rendered(q.0.clone()),
                    "must be positive",
                ));
            }
        }
    }
    if let Some(u) = target.average_utilization.filter(|u| *u < 1) {
        errs.push(FieldError::invalid(
            &path.child("averageUtilization"),
            i64::from(u),
            "must be greater than 0",
        ));
    }
    errs
}

/// Whether a quantity is above zero (one that does not parse was refused when decoded).
fn positive(q: &QuantityText) -> bool {
    Quantity::parse(&q.0).is_ok_and(|q| !q.is_zero() && !q.is_negative())
}

fn scaling_rules(rules: &HPAScalingRules, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(window) = rules.stabilization_window_seconds {
        let window_path = path.child("stabilizationWindowSeconds");
        if window < 0 {
            errs.push(FieldError::invalid(
                &window_path,
                i64::from(window),
                "must be greater than or equal to zero",
            ));
        }
        if window > MAX_STABILIZATION_WINDOW_SECONDS {
            errs.push(FieldError::invalid(
                &window_path,
                i64::from(window),
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(select) = rules
        .select_policy
        .as_deref()
        .filter(|s| !SELECT_POLICIES.contains(s))
    {
        errs.push(FieldError::not_supported(
            &path.child("selectPolicy"),
            select,
            SELECT_POLICIES,
        ));
    }
    let policies_path = path.child("policies");
    let policies = rules.policies.as_deref().unwrap_or_default();
    if policies.is_empty() {
        errs.push(FieldError::required(
            &policies_path,
            "must specify at least one Policy",
        ));
    }
    for (i, policy) in policies.iter().enumerate() {
        let p = policies_path.index(i);
        if !POLICY_TYPES.contains(&policy.type_.as_str()) {
            errs.push(FieldError::not_supported(
                &p.child("type"),
                &policy.type_,
                POLICY_TYPES,
            ));
        }
        if policy.value <= 0 {
            errs.push(FieldError::invalid(
                &p.child("value"),
                i64::from(policy.value),
                "must be greater than zero",
            ));
        }
        if policy.period_seconds <= 0 {
            errs.push(FieldError::invalid(
                &p.child("periodSeconds"),
                i64::from(policy.period_seconds),
                "must be greater than zero",
            ));
        }
        if policy.period_seconds > MAX_PERIOD_SECONDS {
            errs.push(FieldError::invalid(
                &p.child("periodSeconds"),
                i64::from(policy.period_seconds),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
    errs
}
