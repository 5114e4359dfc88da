//! Workload checks (apps/v1 and batch/v1): selectors that match their templates, replica
//! counts, strategies, the restart policies each kind's pods may have, cron schedules and
//! time zones, and what updates may not change.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::cron;
use super::meta::{go_string_map, nonnegative, FIELD_IMMUTABLE};
use super::pod::validate_pod_spec;
use crate::field::{FieldError, Rendered};
use crate::path::FieldPath;
use crate::selector::Selector;

/// Checks a workload's selector against its pod template. `raw_selector` is the selector as
/// sent, to tell an absent selector from an empty one. `restart_policies` are those the
/// kind's pods may have.
pub fn validate_selector_and_template(
    kind_word: &str,
    raw_selector: Option<&Value>,
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    spec_path: &FieldPath,
    restart_policies: &[&str],
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let selector_path = spec_path.child("selector");
    let mut parsed = None;
    match (raw_selector.filter(|v| !v.is_null()), selector) {
        (Some(_), Some(sel)) => {
            errs.extend(validate_label_selector(sel, &selector_path));
            let empty = sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
                && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty());
            if empty {
                errs.push(FieldError::invalid(
                    &selector_path,
                    Rendered(render_selector(sel)),
                    format!("empty selector is invalid for {kind_word}"),
                ));
            } else {
                parsed = Selector::from_label_selector(Some(sel)).ok();
            }
        }
        _ => errs.push(FieldError::required(&selector_path, "")),
    }
    let template_path = spec_path.child("template");
    let Some(template) = template else {
        errs.push(FieldError::required(&template_path, ""));
        return errs;
    };
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    if let Some(sel) = parsed.as_ref().filter(|s| !s.is_empty()) {
        if !sel.matches(labels.unwrap_or(&Default::default())) {
            errs.push(FieldError::invalid(
                &template_path.child("metadata").child("labels"),
                Rendered(go_string_map(labels)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    errs.extend(super::meta::validate_labels(
        labels,
        &template_path.child("metadata").child("labels"),
    ));
    let pod_path = template_path.child("spec");
    if let Some(spec) = template.spec.as_ref() {
        errs.extend(validate_pod_spec(spec, &pod_path));
        let policy = spec.restart_policy.as_deref().unwrap_or("");
        if !policy.is_empty() && !restart_policies.contains(&policy) {
            // The pod spec check already reported an unknown policy; this names the ones
            // the kind allows.
            if super::pod::RESTART_POLICIES.contains(&policy) {
                errs.push(FieldError::not_supported(
                    &pod_path.child("restartPolicy"),
                    policy,
                    restart_policies,
                ));
            }
        }
    } else {
        errs.push(FieldError::required(&pod_path.child("containers"), ""));
    }
    errs
}

/// The checks of metav1's `ValidateLabelSelector`: operators, values present for In and
/// NotIn and absent for Exists and DoesNotExist, keys that are label keys and values that are
/// label values.
pub fn validate_label_selector(sel: &LabelSelector, path: &FieldPath) -> Vec<FieldError> {
    let mut errs =
        super::meta::validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let epath = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or(&[]);
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        &epath.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        &epath.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            other => errs.push(FieldError::invalid(
                &epath.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        for msg in crate::names::qualified_name(&expr.key) {
            errs.push(FieldError::invalid(&epath.child("key"), &expr.key, msg));
        }
        for (v, value) in values.iter().enumerate() {
            for msg in crate::names::label_value(value) {
                errs.push(FieldError::invalid(
                    &epath.child("values").index(v),
                    value,
                    msg,
                ));
            }
        }
    }
    errs
}

fn render_selector(sel: &LabelSelector) -> String {
    serde_json::to_string(sel).unwrap_or_default()
}

pub fn replicas(spec_path: &FieldPath, replicas: Option<i32>) -> Vec<FieldError> {
    nonnegative(
        &spec_path.child("replicas"),
        i64::from(replicas.unwrap_or(0)),
    )
}

/// `spec.selector` may not change once set.
pub fn selector_immutable(
    new: &LabelSelector,
    old: &LabelSelector,
    spec_path: &FieldPath,
) -> Vec<FieldError> {
    if new != old {
        return vec![FieldError::invalid(
            &spec_path.child("selector"),
            Rendered(render_selector(new)),
            FIELD_IMMUTABLE,
        )];
    }
    Vec::new()
}

/// A cron schedule (five fields or a macro) and an optional IANA time zone.
pub fn validate_schedule(
    schedule: &str,
    time_zone: Option<&str>,
    spec_path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = spec_path.child("schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(&path, ""));
    } else {
        if let Err(msg) = cron::parse_standard(schedule) {
            errs.push(FieldError::invalid(&path, schedule, msg));
        }
        if schedule.contains("TZ") {
            let msg = if time_zone.is_some() {
                "cannot use both timeZone field and TZ or CRON_TZ in schedule"
            } else {
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
            };
            errs.push(FieldError::invalid(&path, schedule, msg));
        }
    }
    if let Some(tz) = time_zone {
        let tz_path = spec_path.child("timeZone");
        if tz.is_empty() {
            errs.push(FieldError::invalid(
                &tz_path,
                tz,
                "timeZone must be nil or non-empty string",
            ));
        } else if tz.eq_ignore_ascii_case("local") {
            errs.push(FieldError::invalid(
                &tz_path,
                tz,
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ));
        } else if !cron::looks_like_iana_zone(tz) {
            errs.push(FieldError::invalid(
                &tz_path,
                tz,
                format!("unknown time zone {tz}"),
            ));
        }
    }
    errs
}
