//! Defaulting: the values Kubernetes 1.32 fills in for fields a client left unset, applied
//! through each kind's typed form.

mod admission;
mod autoscaling;
mod core;
mod pod;
mod workloads;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::{rbac, scheduling};

use crate::kinds::ResourceInfo;

pub use pod::{default_pull_policy, DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS};

/// An object that does not decode as its kind cannot be defaulted.
#[derive(Debug, thiserror::Error)]
#[error("cannot default {kind}: {source}")]
pub struct DefaultError {
    pub kind: &'static str,
    #[source]
    pub source: serde_json::Error,
}

fn through<T: DeserializeOwned + Serialize>(
    info: &ResourceInfo,
    value: &mut Value,
    apply: impl FnOnce(&mut T),
) -> Result<(), DefaultError> {
    let wrap = |source| DefaultError {
        kind: info.kind,
        source,
    };
    let mut typed: T = serde_json::from_value(value.clone()).map_err(wrap)?;
    apply(&mut typed);
    *value = serde_json::to_value(typed).map_err(wrap)?;
    Ok(())
}

/// Fills in Kubernetes' defaults for `value`, an object of `info`'s kind. Applies on create
/// and on update alike; fields already set are kept. Kinds without defaults are untouched.
pub fn default_object(info: &ResourceInfo, value: &mut Value) -> Result<(), DefaultError> {
    match (info.group, info.kind) {
        ("", "Pod") => through(info, value, pod::default_pod),
        ("", "Service") => through(info, value, core::default_service),
        ("", "Secret") => through(info, value, core::default_secret),
        ("", "Namespace") => through(info, value, core::default_namespace),
        ("", "PersistentVolumeClaim") => through(info, value, core::default_pvc),
        ("", "PersistentVolume") => through(info, value, core::default_pv),
        ("", "Node") => through(info, value, core::default_node),
        ("", "Endpoints") => through(info, value, core::default_endpoints),
        ("", "LimitRange") => through(info, value, core::default_limit_range),
        ("", "ReplicationController") => {
            through(info, value, workloads::default_replication_controller)
        }
        ("discovery.k8s.io", "EndpointSlice") => through(info, value, core::default_endpoint_slice),
        ("apps", "Deployment") => {
            keeping_selector_absent(value, |v| through(info, v, workloads::default_deployment))
        }
        ("apps", "ReplicaSet") => {
            keeping_selector_absent(value, |v| through(info, v, workloads::default_replica_set))
        }
        ("apps", "StatefulSet") => {
            keeping_selector_absent(value, |v| through(info, v, workloads::default_stateful_set))
        }
        ("apps", "DaemonSet") => {
            keeping_selector_absent(value, |v| through(info, v, workloads::default_daemon_set))
        }
        ("batch", "Job") => through(info, value, workloads::default_job),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            through(info, value, autoscaling::default_hpa)
        }
        ("batch", "CronJob") => through(info, value, workloads::default_cron_job),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            through(info, value, |b: &mut rbac::v1::RoleBinding| {
                core::default_subjects(b.subjects.as_mut(), &mut b.role_ref)
            })
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            through(info, value, |b: &mut rbac::v1::ClusterRoleBinding| {
                core::default_subjects(b.subjects.as_mut(), &mut b.role_ref)
            })
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            through(info, value, core::default_network_policy)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            through(info, value, |c: &mut ValidatingWebhookConfiguration| {
                c.webhooks
                    .iter_mut()
                    .flatten()
                    .for_each(admission::default_validating)
            })
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            through(info, value, |c: &mut MutatingWebhookConfiguration| {
                c.webhooks
                    .iter_mut()
                    .flatten()
                    .for_each(admission::default_mutating)
            })
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            through(info, value, admission::default_definition)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            through(info, value, |pc: &mut scheduling::v1::PriorityClass| {
                pc.preemption_policy
                    .get_or_insert_with(|| "PreemptLowerPriority".into());
            })
        }
        _ => Ok(()),
    }
}

/// The typed workload specs hold a selector even when none was sent and would write it back
/// as `{}`; an absent selector must stay absent so validation reports it as required.
fn keeping_selector_absent(
    value: &mut Value,
    apply: impl FnOnce(&mut Value) -> Result<(), DefaultError>,
) -> Result<(), DefaultError> {
    let had_selector = value
        .get("spec")
        .and_then(|s| s.get("selector"))
        .is_some_and(|s| !s.is_null());
    apply(value)?;
    if !had_selector {
        if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
            spec.remove("selector");
        }
    }
    Ok(())
}

/// What an object starts with when it is created, beyond its defaults: a namespace is Active
/// and carries the `kubernetes` finalizer; a job without `manualSelector` selects its pods by
/// its own uid. Call on create only, before [`default_object`].
pub fn prepare_for_create(info: &ResourceInfo, value: &mut Value) -> Result<(), DefaultError> {
    match (info.group, info.kind) {
        ("", "Namespace") => through(info, value, core::prepare_namespace_for_create),
        ("batch", "Job") => through(info, value, workloads::generate_job_selector),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
