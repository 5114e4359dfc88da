//! Pod spec checks, for pods and pod templates: containers (names, images, ports,
//! resources, mounts), volumes, restart and DNS policies, scheduling constraints (in
//! [`super::scheduling`]); and which pod fields an update may change.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodSpec, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::field::FieldError;
use crate::names;
use crate::path::FieldPath;
use crate::quantity::Quantity;

pub const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PORT_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// Checks a pod spec wherever it appears.
pub fn validate_pod_spec(spec: &PodSpec, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = validate_volumes(
        spec.volumes.as_deref().unwrap_or(&[]),
        &path.child("volumes"),
        &mut errs,
    );
    let mut all_names = BTreeSet::new();
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&containers_path, ""));
    }
    validate_containers(
        &spec.containers,
        &containers_path,
        &volumes,
        &mut all_names,
        &mut errs,
    );
    if let Some(init) = spec.init_containers.as_deref() {
        validate_containers(
            init,
            &path.child("initContainers"),
            &volumes,
            &mut all_names,
            &mut errs,
        );
    }
    errs.extend(validate_restart_policy(
        spec.restart_policy.as_deref().unwrap_or(""),
        &path.child("restartPolicy"),
    ));
    let dns_policy = spec.dns_policy.as_deref().unwrap_or("");
    if dns_policy.is_empty() {
        errs.push(FieldError::required(&path.child("dnsPolicy"), ""));
    } else if !DNS_POLICIES.contains(&dns_policy) {
        errs.push(FieldError::not_supported(
            &path.child("dnsPolicy"),
            dns_policy,
            DNS_POLICIES,
        ));
    }
    if let Some(seconds) = spec.active_deadline_seconds {
        if seconds <= 0 {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                seconds,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(seconds) = spec.termination_grace_period_seconds {
        errs.extend(super::meta::nonnegative(
            &path.child("terminationGracePeriodSeconds"),
            seconds,
        ));
    }
    errs.extend(super::scheduling::validate_scheduling(spec, path));
    errs
}

pub fn validate_restart_policy(policy: &str, path: &FieldPath) -> Vec<FieldError> {
    if policy.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    if !RESTART_POLICIES.contains(&policy) {
        return vec![FieldError::not_supported(path, policy, RESTART_POLICIES)];
    }
    Vec::new()
}

/// The volume names declared, after checking each volume.
fn validate_volumes(
    volumes: &[Volume],
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, v) in volumes.iter().enumerate() {
        let name_path = path.index(i).child("name");
        if v.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            for msg in names::dns1123_label(&v.name) {
                errs.push(FieldError::invalid(&name_path, &v.name, msg));
            }
        }
        if !v.name.is_empty() && !seen.insert(v.name.clone()) {
            errs.push(FieldError::duplicate(&name_path, &v.name));
        }
        let sources = serde_json::to_value(v)
            .ok()
            .and_then(|j| {
                j.as_object()
                    .map(|m| m.keys().filter(|k| *k != "name").count())
            })
            .unwrap_or(1);
        if sources > 1 {
            errs.push(FieldError::forbidden(
                &path.index(i),
                "may not specify more than 1 volume type",
            ));
        }
    }
    seen
}

fn validate_containers(
    containers: &[Container],
    path: &FieldPath,
    volumes: &BTreeSet<String>,
    all_names: &mut BTreeSet<String>,
    errs: &mut Vec<FieldError>,
) {
    for (i, c) in containers.iter().enumerate() {
        let idx = path.index(i);
        let name_path = idx.child("name");
        if c.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            for msg in names::dns1123_label(&c.name) {
                errs.push(FieldError::invalid(&name_path, &c.name, msg));
            }
            if !all_names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(&name_path, &c.name));
            }
        }
        let image = c.image.as_deref().unwrap_or("");
        if image.is_empty() {
            errs.push(FieldError::required(&idx.child("image"), ""));
        } else if image.trim() != image {
            errs.push(FieldError::invalid(
                &idx.child("image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
        validate_ports(c.ports.as_deref().unwrap_or(&[]), &idx.child("ports"), errs);
        if let Some(resources) = c.resources.as_ref() {
            validate_resources(resources, &idx.child("resources"), errs);
        }
        let mut mount_paths = BTreeSet::new();
        for (m, mount) in c.volume_mounts.iter().flatten().enumerate() {
            let mpath = idx.child("volumeMounts").index(m);
            if mount.name.is_empty() {
                errs.push(FieldError::required(&mpath.child("name"), ""));
            } else if !volumes.contains(&mount.name) {
                errs.push(FieldError::not_found(&mpath.child("name"), &mount.name));
            }
            if mount.mount_path.is_empty() {
                errs.push(FieldError::required(&mpath.child("mountPath"), ""));
            } else if !mount_paths.insert(mount.mount_path.clone()) {
                errs.push(FieldError::invalid(
                    &mpath.child("mountPath"),
                    &mount.mount_path,
                    "must be unique",
                ));
            }
        }
    }
}

fn validate_ports(ports: &[ContainerPort], path: &FieldPath, errs: &mut Vec<FieldError>) {
    let mut names_seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = path.index(i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            for msg in names::port_name(name) {
                errs.push(FieldError::invalid(&idx.child("name"), name, msg));
            }
            if !names_seen.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&idx.child("name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(&idx.child("containerPort"), ""));
        } else if !(1..=65535).contains(&p.container_port) {
            errs.push(FieldError::invalid(
                &idx.child("containerPort"),
                p.container_port,
                names::inclusive_range_error(1, 65535),
            ));
        }
        if let Some(host_port) = p.host_port.filter(|hp| *hp != 0) {
            if !(1..=65535).contains(&host_port) {
                errs.push(FieldError::invalid(
                    &idx.child("hostPort"),
                    host_port,
                    names::inclusive_range_error(1, 65535),
                ));
            }
        }
        errs.extend(validate_protocol(
            p.protocol.as_deref().unwrap_or(""),
            &idx.child("protocol"),
        ));
    }
}

pub fn validate_protocol(protocol: &str, path: &FieldPath) -> Vec<FieldError> {
    if protocol.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    if !PORT_PROTOCOLS.contains(&protocol) {
        return vec![FieldError::not_supported(path, protocol, PORT_PROTOCOLS)];
    }
    Vec::new()
}

/// Parses each quantity of a resource list, reporting malformed or negative ones.
pub fn parse_resource_list(
    list: Option<&BTreeMap<String, K8sQuantity>>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, Quantity> {
    let mut out = BTreeMap::new();
    for (name, q) in list.into_iter().flatten() {
        let qpath = path.key(name);
        for msg in names::qualified_name(name) {
            errs.push(FieldError::invalid(&qpath, name, msg));
        }
        match Quantity::parse(&q.0) {
            Ok(parsed) => {
                if parsed.is_negative() {
                    errs.push(FieldError::invalid(
                        &qpath,
                        parsed.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
                out.insert(name.clone(), parsed);
            }
            Err(e) => errs.push(FieldError::invalid(&qpath, &q.0, e.to_string())),
        }
    }
    out
}

fn validate_resources(r: &ResourceRequirements, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let limits = parse_resource_list(r.limits.as_ref(), &path.child("limits"), errs);
    let requests = parse_resource_list(r.requests.as_ref(), &path.child("requests"), errs);
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name) {
            if request > limit {
                errs.push(FieldError::invalid(
                    &path.child("requests").key(name),
                    request.to_string(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
        }
    }
}

/// A pod update may change only container images, the active deadline and tolerations
/// (additions), and a negative grace period to 1; everything else in the spec is fixed.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let (Some(new_spec), Some(old_spec)) = (new.spec.as_ref(), old.spec.as_ref()) else {
        return Vec::new();
    };
    let mut munged = new_spec.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old_spec.containers) {
        c.image = o.image.clone();
    }
    if let (Some(init), Some(old_init)) = (
        munged.init_containers.as_mut(),
        old_spec.init_containers.as_ref(),
    ) {
        for (c, o) in init.iter_mut().zip(old_init) {
            c.image = o.image.clone();
        }
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    let old_tolerations = old_spec.tolerations.clone().unwrap_or_default();
    let new_tolerations = munged.tolerations.clone().unwrap_or_default();
    if old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        munged.tolerations = old_spec.tolerations.clone();
    }
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|s| s < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    if munged != *old_spec {
        errs.push(FieldError::forbidden(&spec_path, POD_UPDATE_FORBIDDEN));
    }
    if let Some(old_deadline) = old_spec.active_deadline_seconds {
        match new_spec.active_deadline_seconds {
            None => errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                crate::field::Rendered("null".into()),
                "must not update from a positive integer to nil value",
            )),
            Some(d) if d > old_deadline => errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                d,
                "must be less than or equal to previous value",
            )),
            _ => {}
        }
    }
    errs
}

pub const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";
