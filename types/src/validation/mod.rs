//! Validation: what Kubernetes 1.32 rejects in an object on create and on update, as field
//! errors with Kubernetes' paths and messages.

mod autoscaling;
mod core;
mod cron;
mod meta;
mod pod;
mod policy;
mod priority_class;
mod registration;
mod scheduling;
mod storage;
mod workloads;

use k8s_openapi::api::{
    apps, batch, coordination, core as corev1, networking, policy as policyv1, rbac,
    scheduling as schedulingv1,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::field::{FieldError, Rendered};
use crate::kinds::ResourceInfo;
use crate::names;
use crate::path::FieldPath;

pub use cron::parse_standard as parse_cron_schedule;
pub use meta::{FIELD_IMMUTABLE, TOTAL_ANNOTATION_SIZE_LIMIT};
pub use pod::POD_UPDATE_FORBIDDEN;
pub use priority_class::{
    SystemPriorityClass, HIGHEST_USER_DEFINABLE_PRIORITY, SYSTEM_CRITICAL_PRIORITY,
    SYSTEM_PRIORITY_CLASSES, SYSTEM_PRIORITY_CLASS_PREFIX,
};

/// Checks `obj`, an object of `info`'s kind; with `old`, as an update of `old`. An empty list
/// means the object is valid. The object is expected to be defaulted already, as Kubernetes
/// validates after defaulting.
pub fn validate(info: &ResourceInfo, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    Validator { info, obj, old }.run()
}

struct Validator<'a> {
    info: &'a ResourceInfo,
    obj: &'a Value,
    old: Option<&'a Value>,
}

fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, FieldError> {
    serde_json::from_value(value.clone()).map_err(|e| {
        FieldError::type_invalid(
            &FieldPath::default(),
            Rendered("<object>".into()),
            e.to_string(),
        )
    })
}

impl<'a> Validator<'a> {
    fn name_fn(&self) -> meta::NameFn {
        match (self.info.group, self.info.kind) {
            ("", "Namespace") => names::name_is_dns_label,
            ("", "Service") => names::name_is_dns1035_label,
            ("rbac.authorization.k8s.io", _) => names::path_segment_name,
            _ => names::name_is_dns_subdomain,
        }
    }

    fn run(self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let meta_path = FieldPath::new("metadata");
        let new_meta: ObjectMeta = match self.obj.get("metadata").filter(|m| !m.is_null()) {
            Some(m) => match typed(m) {
                Ok(m) => m,
                Err(e) => return vec![e],
            },
            None => ObjectMeta::default(),
        };
        errs.extend(meta::validate_object_meta(
            &new_meta,
            self.info.namespaced(),
            self.name_fn(),
            &meta_path,
        ));
        if let Some(old) = self.old {
            let old_meta: ObjectMeta = old
                .get("metadata")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default();
            errs.extend(meta::validate_object_meta_update(
                &new_meta, &old_meta, &meta_path,
            ));
        }
        match self.kind_errors() {
            Ok(kind_errs) => errs.extend(kind_errs),
            Err(e) => errs.push(e),
        }
        errs
    }

    fn old_typed<T: DeserializeOwned>(&self) -> Result<Option<T>, FieldError> {
        self.old.map(typed).transpose()
    }

    fn raw_selector(&self) -> Option<&Value> {
        self.obj.get("spec").and_then(|s| s.get("selector"))
    }

    fn kind_errors(&self) -> Result<Vec<FieldError>, FieldError> {
        let spec_path = FieldPath::new("spec");
        let mut errs = Vec::new();
        match (self.info.group, self.info.kind) {
            ("", "Pod") => {
                let pod: corev1::v1::Pod = typed(self.obj)?;
                let old = self.old_typed::<corev1::v1::Pod>()?;
                match pod.spec.as_ref() {
                    Some(spec) => {
                        let mut spec_errs = pod::validate_pod_spec(spec, &spec_path);
                        if let Some(old_spec) = old.as_ref().and_then(|o| o.spec.as_ref()) {
                            spec_errs.retain(|e| {
                                !scheduling::kept_from_old(e, spec, old_spec, &spec_path)
                            });
                        }
                        errs.extend(spec_errs);
                    }
                    None => errs.push(FieldError::required(&spec_path.child("containers"), "")),
                }
                if let Some(old) = old {
                    errs.extend(pod::validate_pod_update(&pod, &old));
                }
            }
            ("apps", "Deployment") => {
                let d: apps::v1::Deployment = typed(self.obj)?;
                let spec = d.spec.unwrap_or_default();
                errs.extend(workloads::replicas(&spec_path, spec.replicas));
                errs.extend(workloads::validate_selector_and_template(
                    "deployment",
                    self.raw_selector(),
                    Some(&spec.selector),
                    Some(&spec.template),
                    &spec_path,
                    &["Always"],
                ));
                errs.extend(validate_deployment_strategy(&spec, &spec_path));
                if let Some(old) = self.old_typed::<apps::v1::Deployment>()? {
                    let old_spec = old.spec.unwrap_or_default();
                    errs.extend(workloads::selector_immutable(
                        &spec.selector,
                        &old_spec.selector,
                        &spec_path,
                    ));
                }
            }
            ("", "ReplicationController") => {
                let rc: corev1::v1::ReplicationController = typed(self.obj)?;
                let spec = rc.spec.unwrap_or_default();
                errs.extend(workloads::replicas(&spec_path, spec.replicas));
                errs.extend(meta::nonnegative(
                    &spec_path.child("minReadySeconds"),
                    i64::from(spec.min_ready_seconds.unwrap_or(0)),
                ));
                // A ReplicationController selects by a plain label map: as a selector of
                // matchLabels, with Kubernetes' Required for an empty one.
                let selector = spec
                    .selector
                    .clone()
                    .filter(|s| !s.is_empty())
                    .map(|labels| LabelSelector {
                        match_labels: Some(labels),
                        match_expressions: None,
                    });
                let raw = selector.as_ref().map(|_| Value::Bool(true));
                errs.extend(workloads::validate_selector_and_template(
                    "replicationcontroller",
                    raw.as_ref(),
                    selector.as_ref(),
                    spec.template.as_ref(),
                    &spec_path,
                    &["Always"],
                ));
            }
            ("apps", "ReplicaSet") => {
                let rs: apps::v1::ReplicaSet = typed(self.obj)?;
                let spec = rs.spec.unwrap_or_default();
                errs.extend(workloads::replicas(&spec_path, spec.replicas));
                // Kubernetes' ReplicaSet check reuses the Deployment wording.
                errs.extend(workloads::validate_selector_and_template(
                    "deployment",
                    self.raw_selector(),
                    Some(&spec.selector),
                    spec.template.as_ref(),
                    &spec_path,
                    &["Always"],
                ));
                if let Some(old) = self.old_typed::<apps::v1::ReplicaSet>()? {
                    let old_spec = old.spec.unwrap_or_default();
                    errs.extend(workloads::selector_immutable(
                        &spec.selector,
                        &old_spec.selector,
                        &spec_path,
                    ));
                }
            }
            ("apps", "StatefulSet") => {
                let s: apps::v1::StatefulSet = typed(self.obj)?;
                let spec = s.spec.unwrap_or_default();
                errs.extend(workloads::replicas(&spec_path, spec.replicas));
                let policy = spec.pod_management_policy.as_deref().unwrap_or("");
                if !matches!(policy, "OrderedReady" | "Parallel") {
                    errs.push(FieldError::invalid(
                        &spec_path.child("podManagementPolicy"),
                        policy,
                        "must be 'OrderedReady' or 'Parallel'",
                    ));
                }
                let strategy = spec
                    .update_strategy
                    .as_ref()
                    .and_then(|u| u.type_.as_deref())
                    .unwrap_or("");
                if !matches!(strategy, "RollingUpdate" | "OnDelete") {
                    errs.push(FieldError::invalid(
                        &spec_path.child("updateStrategy"),
                        strategy,
                        "must be 'RollingUpdate' or 'OnDelete'",
                    ));
                }
                // Containers may mount the claims of volumeClaimTemplates by their names: the
                // controller adds those volumes to each pod, so they count as declared here.
                let mut template = spec.template.clone();
                if let Some(pod_spec) = template.spec.as_mut() {
                    let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
                    for claim in spec.volume_claim_templates.iter().flatten() {
                        let name = claim.metadata.name.clone().unwrap_or_default();
                        if !name.is_empty() && !volumes.iter().any(|v| v.name == name) {
                            volumes.push(k8s_openapi::api::core::v1::Volume {
                                name: name.clone(),
                                persistent_volume_claim: Some(
                                    k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                                        claim_name: name,
                                        read_only: None,
                                    },
                                ),
                                ..Default::default()
                            });
                        }
                    }
                }
                errs.extend(workloads::validate_selector_and_template(
                    "statefulset",
                    self.raw_selector(),
                    Some(&spec.selector),
                    Some(&template),
                    &spec_path,
                    &["Always"],
                ));
                if let Some(old) = self.old_typed::<apps::v1::StatefulSet>()? {
                    errs.extend(validate_stateful_set_update(
                        &spec,
                        &old.spec.unwrap_or_default(),
                    ));
                }
            }
            ("apps", "DaemonSet") => {
                let d: apps::v1::DaemonSet = typed(self.obj)?;
                let spec = d.spec.unwrap_or_default();
                errs.extend(workloads::validate_selector_and_template(
                    "daemonset",
                    self.raw_selector(),
                    Some(&spec.selector),
                    Some(&spec.template),
                    &spec_path,
                    &["Always"],
                ));
                let strategy = spec
                    .update_strategy
                    .as_ref()
                    .and_then(|u| u.type_.as_deref())
                    .unwrap_or("");
                if !matches!(strategy, "RollingUpdate" | "OnDelete") {
                    errs.push(FieldError::not_supported(
                        &spec_path.child("updateStrategy").child("type"),
                        strategy,
                        &["OnDelete", "RollingUpdate"],
                    ));
                }
                if let Some(old) = self.old_typed::<apps::v1::DaemonSet>()? {
                    let old_spec = old.spec.unwrap_or_default();
                    errs.extend(workloads::selector_immutable(
                        &spec.selector,
                        &old_spec.selector,
                        &spec_path,
                    ));
                }
            }
            ("batch", "Job") => {
                let job: batch::v1::Job = typed(self.obj)?;
                let spec = job.spec.unwrap_or_default();
                errs.extend(validate_job_spec(&spec, &spec_path));
                if let Some(old) = self.old_typed::<batch::v1::Job>()? {
                    let old_spec = old.spec.unwrap_or_default();
                    if spec.template != old_spec.template {
                        errs.push(FieldError::invalid(
                            &spec_path.child("template"),
                            Rendered(serde_json::to_string(&spec.template).unwrap_or_default()),
                            FIELD_IMMUTABLE,
                        ));
                    }
                    if let (Some(new_sel), Some(old_sel)) =
                        (spec.selector.as_ref(), old_spec.selector.as_ref())
                    {
                        errs.extend(workloads::selector_immutable(new_sel, old_sel, &spec_path));
                    }
                    if spec.completion_mode != old_spec.completion_mode {
                        errs.push(FieldError::invalid(
                            &spec_path.child("completionMode"),
                            spec.completion_mode.clone().unwrap_or_default(),
                            FIELD_IMMUTABLE,
                        ));
                    }
                }
            }
            ("batch", "CronJob") => {
                let cj: batch::v1::CronJob = typed(self.obj)?;
                let name = cj.metadata.name.as_deref().unwrap_or("");
                if name.len() > 52 {
                    errs.push(FieldError::invalid(
                        &FieldPath::new("metadata").child("name"),
                        name,
                        "must be no more than 52 characters",
                    ));
                }
                let spec = cj.spec.unwrap_or_default();
                errs.extend(workloads::validate_schedule(
                    &spec.schedule,
                    spec.time_zone.as_deref(),
                    &spec_path,
                ));
                let policy = spec.concurrency_policy.as_deref().unwrap_or("");
                if policy.is_empty() {
                    errs.push(FieldError::required(
                        &spec_path.child("concurrencyPolicy"),
                        "",
                    ));
                } else if !matches!(policy, "Allow" | "Forbid" | "Replace") {
                    errs.push(FieldError::not_supported(
                        &spec_path.child("concurrencyPolicy"),
                        policy,
                        &["Allow", "Forbid", "Replace"],
                    ));
                }
                if let Some(s) = spec.starting_deadline_seconds {
                    errs.extend(meta::nonnegative(
                        &spec_path.child("startingDeadlineSeconds"),
                        s,
                    ));
                }
                for (field, value) in [
                    (
                        "successfulJobsHistoryLimit",
                        spec.successful_jobs_history_limit,
                    ),
                    ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
                ] {
                    if let Some(v) = value {
                        errs.extend(meta::nonnegative(&spec_path.child(field), i64::from(v)));
                    }
                }
                let job_path = spec_path.child("jobTemplate").child("spec");
                errs.extend(validate_job_spec(
                    &spec.job_template.spec.unwrap_or_default(),
                    &job_path,
                ));
            }
            ("", "Service") => {
                let svc: corev1::v1::Service = typed(self.obj)?;
                errs.extend(core::validate_service(&svc));
                if let Some(old) = self.old_typed::<corev1::v1::Service>()? {
                    errs.extend(core::validate_service_update(&svc, &old));
                }
            }
            ("", "ConfigMap") => {
                let cm: corev1::v1::ConfigMap = typed(self.obj)?;
                errs.extend(core::validate_config_map(&cm));
                if let Some(old) = self.old_typed::<corev1::v1::ConfigMap>()? {
                    errs.extend(core::validate_data_update(
                        serde_json::to_value((&cm.data, &cm.binary_data)).ok(),
                        serde_json::to_value((&old.data, &old.binary_data)).ok(),
                        old.immutable == Some(true),
                        cm.immutable,
                    ));
                }
            }
            ("", "Secret") => {
                let secret: corev1::v1::Secret = typed(self.obj)?;
                errs.extend(core::validate_secret(&secret));
                if let Some(old) = self.old_typed::<corev1::v1::Secret>()? {
                    if secret.type_ != old.type_ {
                        errs.push(FieldError::invalid(
                            &FieldPath::new("type"),
                            secret.type_.clone().unwrap_or_default(),
                            FIELD_IMMUTABLE,
                        ));
                    }
                    errs.extend(core::validate_data_update(
                        serde_json::to_value(&secret.data).ok(),
                        serde_json::to_value(&old.data).ok(),
                        old.immutable == Some(true),
                        secret.immutable,
                    ));
                }
            }
            ("", "ResourceQuota") => {
                errs.extend(core::validate_resource_quota(&typed(self.obj)?));
            }
            ("coordination.k8s.io", "Lease") => {
                errs.extend(core::validate_lease(&typed::<coordination::v1::Lease>(
                    self.obj,
                )?));
            }
            ("rbac.authorization.k8s.io", "Role") => {
                let role: rbac::v1::Role = typed(self.obj)?;
                errs.extend(core::validate_rules(
                    role.rules.as_deref().unwrap_or(&[]),
                    true,
                ));
            }
            ("rbac.authorization.k8s.io", "ClusterRole") => {
                let role: rbac::v1::ClusterRole = typed(self.obj)?;
                errs.extend(core::validate_rules(
                    role.rules.as_deref().unwrap_or(&[]),
                    false,
                ));
            }
            ("rbac.authorization.k8s.io", "RoleBinding") => {
                let b: rbac::v1::RoleBinding = typed(self.obj)?;
                errs.extend(core::validate_binding(
                    &b.role_ref,
                    b.subjects.as_deref().unwrap_or(&[]),
                    true,
                ));
                if let Some(old) = self.old_typed::<rbac::v1::RoleBinding>()? {
                    errs.extend(role_ref_immutable(&b.role_ref, &old.role_ref));
                }
            }
            ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
                let b: rbac::v1::ClusterRoleBinding = typed(self.obj)?;
                errs.extend(core::validate_binding(
                    &b.role_ref,
                    b.subjects.as_deref().unwrap_or(&[]),
                    false,
                ));
                if let Some(old) = self.old_typed::<rbac::v1::ClusterRoleBinding>()? {
                    errs.extend(role_ref_immutable(&b.role_ref, &old.role_ref));
                }
            }
            ("scheduling.k8s.io", "PriorityClass") => {
                let pc: schedulingv1::v1::PriorityClass = typed(self.obj)?;
                errs.extend(priority_class::validate_priority_class(&pc));
                if let Some(old) = self.old_typed::<schedulingv1::v1::PriorityClass>()? {
                    errs.extend(priority_class::validate_priority_class_update(&pc, &old));
                }
            }
            ("policy", "PodDisruptionBudget") => {
                let pdb: policyv1::v1::PodDisruptionBudget = typed(self.obj)?;
                errs.extend(policy::validate_pdb_spec(
                    &pdb.spec.unwrap_or_default(),
                    &spec_path,
                ));
                if let Some(status) = pdb.status.as_ref() {
                    errs.extend(policy::validate_pdb_status(
                        status,
                        &FieldPath::new("status"),
                    ));
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                errs.extend(crate::crd::definition::validate(self.obj, self.old));
            }
            ("autoscaling", "HorizontalPodAutoscaler") => {
                let hpa: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler =
                    typed(self.obj)?;
                errs.extend(autoscaling::validate_hpa_spec(
                    &hpa.spec.unwrap_or_default(),
                    &spec_path,
                ));
                if let Some(status) = &hpa.status {
                    errs.extend(autoscaling::validate_hpa_status(status));
                }
            }
            ("storage.k8s.io", "StorageClass") => {
                let class: k8s_openapi::api::storage::v1::StorageClass = typed(self.obj)?;
                errs.extend(storage::validate_storage_class(&class));
                if let Some(old) = self.old_typed()? {
                    errs.extend(storage::validate_storage_class_update(&class, &old));
                }
            }
            ("storage.k8s.io", "VolumeAttachment") => {
                type Attachment = k8s_openapi::api::storage::v1::VolumeAttachment;
                let va: Attachment = typed(self.obj)?;
                let old = self.old_typed::<Attachment>()?;
                errs.extend(storage::validate_volume_attachment_spec(
                    &va.spec,
                    old.as_ref().map(|o| &o.spec),
                ));
            }
            ("storage.k8s.io", "CSIDriver") => {
                let driver: k8s_openapi::api::storage::v1::CSIDriver = typed(self.obj)?;
                errs.extend(storage::validate_csi_driver_spec(&driver.spec));
            }
            ("networking.k8s.io", "IngressClass") => {
                type Class = networking::v1::IngressClass;
                let class: Class = typed(self.obj)?;
                let old = self.old_typed::<Class>()?;
                errs.extend(core::validate_ingress_class(
                    &class.spec.unwrap_or_default(),
                    old.and_then(|o| o.spec).as_ref(),
                ));
            }
            ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
                errs.extend(registration::validate_validating_webhooks(&typed(
                    self.obj,
                )?));
            }
            ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
                errs.extend(registration::validate_mutating_webhooks(&typed(self.obj)?));
            }
            ("apiregistration.k8s.io", "APIService") => {
                errs.extend(registration::validate_api_service(&typed(self.obj)?));
            }
            ("networking.k8s.io", "Ingress") => {
                errs.extend(core::validate_ingress(&typed::<networking::v1::Ingress>(
                    self.obj,
                )?));
            }
            _ => {}
        }
        Ok(errs)
    }
}

fn role_ref_immutable(new: &rbac::v1::RoleRef, old: &rbac::v1::RoleRef) -> Vec<FieldError> {
    if new != old {
        return vec![FieldError::invalid(
            &FieldPath::new("roleRef"),
            Rendered(serde_json::to_string(new).unwrap_or_default()),
            "cannot change roleRef",
        )];
    }
    Vec::new()
}

fn validate_deployment_strategy(
    spec: &apps::v1::DeploymentSpec,
    spec_path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let strategy_path = spec_path.child("strategy");
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    &strategy_path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(rolling) = strategy.rolling_update.as_ref() {
                let rpath = strategy_path.child("rollingUpdate");
                let surge = int_or_percent(
                    rolling.max_surge.as_ref(),
                    &rpath.child("maxSurge"),
                    &mut errs,
                );
                let unavailable = int_or_percent(
                    rolling.max_unavailable.as_ref(),
                    &rpath.child("maxUnavailable"),
                    &mut errs,
                );
                if surge == Some(0) && unavailable == Some(0) {
                    errs.push(FieldError::invalid(
                        &rpath.child("maxUnavailable"),
                        Rendered("0".into()),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        }
        "" => errs.push(FieldError::required(&strategy_path.child("type"), "")),
        other => errs.push(FieldError::not_supported(
            &strategy_path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    if let Some(limit) = spec.revision_history_limit {
        errs.extend(meta::nonnegative(
            &spec_path.child("revisionHistoryLimit"),
            i64::from(limit),
        ));
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        errs.extend(meta::nonnegative(
            &spec_path.child("progressDeadlineSeconds"),
            i64::from(deadline),
        ));
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid(
                &spec_path.child("progressDeadlineSeconds"),
                deadline,
                "must be greater than minReadySeconds",
            ));
        }
    }
    errs
}

/// An int or percent: non-negative, a percent at most 100%. Returns the value when it is
/// zero-comparable (an int, or a percent's number).
pub(super) fn int_or_percent(
    value: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> Option<i64> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match value? {
        IntOrString::Int(n) => {
            errs.extend(meta::nonnegative(path, i64::from(*n)));
            Some(i64::from(*n))
        }
        IntOrString::String(s) => {
            let Some(n) = s.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
                errs.push(FieldError::invalid(
                    path,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
                return None;
            };
            errs.extend(meta::nonnegative(path, n));
            if n > 100 {
                errs.push(FieldError::invalid(
                    path,
                    s,
                    "must not be greater than 100%",
                ));
            }
            Some(n)
        }
    }
}

fn validate_job_spec(spec: &batch::v1::JobSpec, spec_path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, value) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
    ] {
        if let Some(v) = value {
            errs.extend(meta::nonnegative(&spec_path.child(field), v));
        }
    }
    if let Some(d) = spec.active_deadline_seconds {
        if d <= 0 {
            errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                d,
                "must be greater than 0",
            ));
        }
    }
    if let Some(mode) = spec.completion_mode.as_deref() {
        if !matches!(mode, "NonIndexed" | "Indexed") {
            errs.push(FieldError::not_supported(
                &spec_path.child("completionMode"),
                mode,
                &["NonIndexed", "Indexed"],
            ));
        }
    }
    // The API server generates a job's selector from its uid unless the client manages it,
    // so only a given selector is checked against the template.
    let template_path = spec_path.child("template");
    if let Some(selector) = spec.selector.as_ref() {
        errs.extend(workloads::validate_label_selector(
            selector,
            &spec_path.child("selector"),
        ));
        if let Ok(sel) = crate::selector::Selector::from_label_selector(Some(selector)) {
            let labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if !sel.is_empty() && !sel.matches(&labels) {
                errs.push(FieldError::invalid(
                    &template_path.child("metadata").child("labels"),
                    Rendered(meta::go_string_map(Some(&labels))),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
    let pod_path = template_path.child("spec");
    match spec.template.spec.as_ref() {
        Some(pod_spec) => {
            errs.extend(pod::validate_pod_spec(pod_spec, &pod_path));
            let policy = pod_spec.restart_policy.as_deref().unwrap_or("");
            if !matches!(policy, "OnFailure" | "Never") && pod::RESTART_POLICIES.contains(&policy) {
                errs.push(FieldError::not_supported(
                    &pod_path.child("restartPolicy"),
                    policy,
                    &["OnFailure", "Never"],
                ));
            }
        }
        None => errs.push(FieldError::required(&pod_path.child("containers"), "")),
    }
    errs
}

/// Only replicas, ordinals, the template, the update strategy, the claim retention policy
/// and minReadySeconds of a StatefulSet may change.
fn validate_stateful_set_update(
    new: &apps::v1::StatefulSetSpec,
    old: &apps::v1::StatefulSetSpec,
) -> Vec<FieldError> {
    let mut munged = new.clone();
    munged.replicas = old.replicas;
    munged.ordinals = old.ordinals.clone();
    munged.template = old.template.clone();
    munged.update_strategy = old.update_strategy.clone();
    munged.persistent_volume_claim_retention_policy =
        old.persistent_volume_claim_retention_policy.clone();
    munged.min_ready_seconds = old.min_ready_seconds;
    if munged != *old {
        return vec![FieldError::forbidden(
            &FieldPath::new("spec"),
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )];
    }
    Vec::new()
}

#[cfg(test)]
mod registration_tests;
#[cfg(test)]
mod scheduling_tests;
#[cfg(test)]
mod tests;
