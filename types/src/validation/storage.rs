//! storage.k8s.io checks, as Kubernetes' storage validation makes them: a StorageClass names
//! a qualified provisioner, a supported reclaim policy and binding mode, and never changes its
//! provisioner, parameters, reclaim policy or binding mode; a VolumeAttachment names its
//! attacher, volume and node, and its spec never changes; a CSIDriver's policies are ones
//! Kubernetes knows.

use k8s_openapi::api::storage::v1::{CSIDriverSpec, StorageClass, VolumeAttachmentSpec};

use crate::field::{FieldError, Rendered};
use crate::names;
use crate::path::FieldPath;

const RECLAIM_POLICIES: &[&str] = &["Delete", "Retain"];
const BINDING_MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
const FS_GROUP_POLICIES: &[&str] = &["File", "None", "ReadWriteOnceWithFSType"];
const LIFECYCLE_MODES: &[&str] = &["Ephemeral", "Persistent"];
const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

pub fn validate_storage_class(class: &StorageClass) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let provisioner = FieldPath::new("provisioner");
    if class.provisioner.is_empty() {
        errs.push(FieldError::required(&provisioner, ""));
    } else {
        for msg in names::qualified_name(&class.provisioner.to_lowercase()) {
            errs.push(FieldError::invalid(&provisioner, &class.provisioner, msg));
        }
    }
    let parameters = class.parameters.as_ref();
    let params_path = FieldPath::new("parameters");
    if parameters.is_some_and(|p| p.len() > MAX_PARAMETERS) {
        errs.push(FieldError::too_long(&params_path, MAX_PARAMETERS));
    } else {
        let size: usize = parameters
            .into_iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if parameters.is_some_and(|p| p.keys().any(String::is_empty)) {
            errs.push(FieldError::invalid(
                &params_path,
                "",
                "field can not be empty.",
            ));
        }
        if size > MAX_PARAMETERS_SIZE {
            errs.push(FieldError::too_long(&params_path, MAX_PARAMETERS_SIZE));
        }
    }
    if let Some(policy) = class
        .reclaim_policy
        .as_deref()
        .filter(|p| !p.is_empty() && !RECLAIM_POLICIES.contains(p))
    {
        errs.push(FieldError::not_supported(
            &FieldPath::new("reclaimPolicy"),
            policy,
            RECLAIM_POLICIES,
        ));
    }
    if let Some(mode) = class
        .volume_binding_mode
        .as_deref()
        .filter(|m| !BINDING_MODES.contains(m))
    {
        errs.push(FieldError::not_supported(
            &FieldPath::new("volumeBindingMode"),
            mode,
            BINDING_MODES,
        ));
    }
    errs
}

pub fn validate_storage_class_update(class: &StorageClass, old: &StorageClass) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if class.parameters != old.parameters {
        errs.push(FieldError::forbidden(
            &FieldPath::new("parameters"),
            "updates to parameters are forbidden.",
        ));
    }
    if class.provisioner != old.provisioner {
        errs.push(FieldError::forbidden(
            &FieldPath::new("provisioner"),
            "updates to provisioner are forbidden.",
        ));
    }
    if class.reclaim_policy != old.reclaim_policy {
        errs.push(FieldError::forbidden(
            &FieldPath::new("reclaimPolicy"),
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if class.volume_binding_mode != old.volume_binding_mode {
        errs.push(FieldError::invalid(
            &FieldPath::new("volumeBindingMode"),
            class.volume_binding_mode.clone().unwrap_or_default(),
            super::FIELD_IMMUTABLE,
        ));
    }
    errs
}

pub fn validate_volume_attachment_spec(
    spec: &VolumeAttachmentSpec,
    old: Option<&VolumeAttachmentSpec>,
) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    let mut errs = Vec::new();
    if spec.attacher.is_empty() {
        errs.push(FieldError::required(&path.child("attacher"), ""));
    }
    let has_volume = spec
        .source
        .persistent_volume_name
        .as_deref()
        .is_some_and(|n| !n.is_empty())
        || spec.source.inline_volume_spec.is_some();
    if !has_volume {
        errs.push(FieldError::required(&path.child("source"), ""));
    }
    for msg in names::dns1123_subdomain(&spec.node_name) {
        errs.push(FieldError::invalid(
            &path.child("nodeName"),
            &spec.node_name,
            msg,
        ));
    }
    if old.is_some_and(|old| old != spec) {
        errs.push(FieldError::invalid(
            &path,
            Rendered(serde_json::to_string(spec).unwrap_or_default()),
            super::FIELD_IMMUTABLE,
        ));
    }
    errs
}

pub fn validate_csi_driver_spec(spec: &CSIDriverSpec) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    let mut errs = Vec::new();
    if let Some(policy) = spec
        .fs_group_policy
        .as_deref()
        .filter(|p| !FS_GROUP_POLICIES.contains(p))
    {
        errs.push(FieldError::not_supported(
            &path.child("fsGroupPolicy"),
            policy,
            FS_GROUP_POLICIES,
        ));
    }
    for (i, mode) in spec.volume_lifecycle_modes.iter().flatten().enumerate() {
        if !LIFECYCLE_MODES.contains(&mode.as_str()) {
            errs.push(FieldError::not_supported(
                &path.child("volumeLifecycleModes").index(i),
                mode,
                LIFECYCLE_MODES,
            ));
        }
    }
    let mut audiences: Vec<&str> = Vec::new();
    for (i, request) in spec.token_requests.iter().flatten().enumerate() {
        if audiences.contains(&request.audience.as_str()) {
            errs.push(FieldError::duplicate(
                &path.child("tokenRequests").index(i).child("audience"),
                &request.audience,
            ));
        }
        audiences.push(&request.audience);
        if request.expiration_seconds.is_some_and(|s| s < 600) {
            errs.push(FieldError::invalid(
                &path
                    .child("tokenRequests")
                    .index(i)
                    .child("expirationSeconds"),
                request.expiration_seconds.unwrap_or_default(),
                "may not specify a duration less than 10 minutes",
            ));
        }
    }
    errs
}
