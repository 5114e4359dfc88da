//! PriorityClass checks, and the two classes every cluster has: user classes stay at or below
//! one billion so that system-critical pods always outrank them, names starting with
//! `system-` belong to the built-in classes alone, and a class's value and preemption policy
//! never change (pods copied them when they were admitted).

use k8s_openapi::api::scheduling::v1::PriorityClass;

use super::meta::FIELD_IMMUTABLE;
use super::scheduling::validate_preemption_policy;
use crate::field::FieldError;
use crate::path::FieldPath;

/// The highest value a user-defined PriorityClass may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i32 = 1_000_000_000;
/// The value of `system-cluster-critical`, the lower of the two built-in classes.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;
/// The prefix reserved for the built-in classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// A PriorityClass every cluster creates for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i32,
    pub description: &'static str,
}

/// The built-in classes, with Kubernetes' values and descriptions. Neither is the global
/// default.
pub const SYSTEM_PRIORITY_CLASSES: &[SystemPriorityClass] = &[
    SystemPriorityClass {
        name: "system-node-critical",
        value: SYSTEM_CRITICAL_PRIORITY + 1000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: SYSTEM_CRITICAL_PRIORITY,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

/// Why a `system-` name does not describe a built-in class, in Kubernetes' words.
fn system_class_mismatch(name: &str, value: i32, global_default: bool) -> Option<String> {
    let Some(known) = SYSTEM_PRIORITY_CLASSES.iter().find(|c| c.name == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if known.value != value {
        return Some(format!(
            "value of {name} PriorityClass must be {}",
            known.value
        ));
    }
    if global_default {
        return Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    None
}

pub fn validate_priority_class(pc: &PriorityClass) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = pc.metadata.name.as_deref().unwrap_or("");
    let global_default = pc.global_default.unwrap_or(false);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Some(why) = system_class_mismatch(name, pc.value, global_default) {
            errs.push(FieldError::forbidden(
                &FieldPath::new("metadata").child("name"),
                format!("priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {why}"),
            ));
        }
    } else if pc.value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            &FieldPath::new("value"),
            format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(policy) = pc.preemption_policy.as_deref() {
        errs.extend(validate_preemption_policy(
            policy,
            &FieldPath::new("preemptionPolicy"),
        ));
    }
    errs
}

/// The value and preemption policy are fixed once the class exists.
pub fn validate_priority_class_update(new: &PriorityClass, old: &PriorityClass) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if new.value != old.value {
        errs.push(FieldError::forbidden(
            &FieldPath::new("value"),
            "may not be changed in an update.",
        ));
    }
    if new.preemption_policy != old.preemption_policy {
        errs.push(FieldError::invalid(
            &FieldPath::new("preemptionPolicy"),
            new.preemption_policy.clone().unwrap_or_default(),
            FIELD_IMMUTABLE,
        ));
    }
    errs
}
