//! Checks of services, config maps, secrets, quotas, leases, RBAC and ingresses.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota, Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};
use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{nonnegative, FIELD_IMMUTABLE};
use super::pod::{parse_resource_list, validate_protocol};
use crate::field::{FieldError, Rendered};
use crate::names;
use crate::path::FieldPath;

/// The most bytes the data of one ConfigMap or Secret may hold.
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;
const SERVICE_TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: &[&str] = &["ClientIP", "None"];
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub fn validate_service(svc: &Service) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    let Some(spec) = svc.spec.as_ref() else {
        return vec![FieldError::required(&spec_path, "")];
    };
    let service_type = spec.type_.as_deref().unwrap_or("");
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or(&[]);
    if ports.is_empty() && !headless && service_type != "ExternalName" {
        errs.push(FieldError::required(&spec_path.child("ports"), ""));
    }
    let require_name = ports.len() > 1;
    let mut port_names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = spec_path.child("ports").index(i);
        let name = p.name.as_deref().unwrap_or("");
        if require_name && name.is_empty() {
            errs.push(FieldError::required(&idx.child("name"), ""));
        } else if !name.is_empty() {
            for msg in names::dns1123_label(name) {
                errs.push(FieldError::invalid(&idx.child("name"), name, msg));
            }
            if !port_names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(&idx.child("name"), name));
            }
        }
        if !(1..=65535).contains(&p.port) {
            errs.push(FieldError::invalid(
                &idx.child("port"),
                p.port,
                names::inclusive_range_error(1, 65535),
            ));
        }
        errs.extend(validate_protocol(
            p.protocol.as_deref().unwrap_or(""),
            &idx.child("protocol"),
        ));
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => {
                errs.push(FieldError::invalid(
                    &idx.child("targetPort"),
                    *n,
                    names::inclusive_range_error(1, 65535),
                ))
            }
            Some(IntOrString::String(s)) => {
                for msg in names::port_name(s) {
                    errs.push(FieldError::invalid(&idx.child("targetPort"), s, msg));
                }
            }
            _ => {}
        }
        if service_type == "ClusterIP" && p.node_port.unwrap_or(0) != 0 {
            errs.push(FieldError::forbidden(
                &idx.child("nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    if service_type.is_empty() {
        errs.push(FieldError::required(&spec_path.child("type"), ""));
    } else if !SERVICE_TYPES.contains(&service_type) {
        errs.push(FieldError::not_supported(
            &spec_path.child("type"),
            service_type,
            SERVICE_TYPES,
        ));
    }
    if let Some(affinity) = spec.session_affinity.as_deref() {
        if !SESSION_AFFINITIES.contains(&affinity) {
            errs.push(FieldError::not_supported(
                &spec_path.child("sessionAffinity"),
                affinity,
                SESSION_AFFINITIES,
            ));
        }
    }
    if service_type == "ExternalName" {
        let external = spec.external_name.as_deref().unwrap_or("");
        if external.is_empty() {
            errs.push(FieldError::required(&spec_path.child("externalName"), ""));
        } else {
            for msg in names::dns1123_subdomain(external.trim_end_matches('.')) {
                errs.push(FieldError::invalid(
                    &spec_path.child("externalName"),
                    external,
                    msg,
                ));
            }
        }
    }
    errs
}

/// A service's cluster IP may not change once allocated.
pub fn validate_service_update(new: &Service, old: &Service) -> Vec<FieldError> {
    let ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .unwrap_or_default()
    };
    let (new_ip, old_ip) = (ip(new), ip(old));
    if !old_ip.is_empty() && new_ip != old_ip {
        return vec![FieldError::invalid(
            &FieldPath::new("spec").child("clusterIP"),
            new_ip,
            FIELD_IMMUTABLE,
        )];
    }
    Vec::new()
}

pub fn validate_config_map(cm: &ConfigMap) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0usize;
    let binary = cm.binary_data.clone().unwrap_or_default();
    for (key, value) in cm.data.iter().flatten() {
        let path = FieldPath::new("data").key(key);
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(&path, key, msg));
        }
        if binary.contains_key(key) {
            errs.push(FieldError::invalid(
                &path,
                key,
                "duplicate of key present in binaryData",
            ));
        }
        total += value.len();
    }
    for (key, value) in &binary {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(
                &FieldPath::new("binaryData").key(key),
                key,
                msg,
            ));
        }
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&FieldPath::default(), MAX_SECRET_SIZE));
    }
    errs
}

pub fn validate_secret(secret: &Secret) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data_path = FieldPath::new("data");
    let data = secret.data.clone().unwrap_or_default();
    let mut total = 0usize;
    for (key, value) in &data {
        for msg in names::config_map_key(key) {
            errs.push(FieldError::invalid(&data_path.key(key), key, msg));
        }
        total += value.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(&data_path, MAX_SECRET_SIZE));
    }
    let required_keys: &[&str] = match secret.type_.as_deref().unwrap_or("") {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.key", "tls.crt"],
        "kubernetes.io/service-account-token" => {
            let has_name = secret.metadata.annotations.as_ref().is_some_and(|a| {
                a.get("kubernetes.io/service-account.name")
                    .is_some_and(|n| !n.is_empty())
            });
            if !has_name {
                errs.push(FieldError::required(
                    &FieldPath::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
            &[]
        }
        _ => &[],
    };
    for key in required_keys {
        if !data.contains_key(*key) {
            errs.push(FieldError::required(&data_path.key(key), ""));
        }
    }
    errs
}

/// An immutable secret or config map keeps its data; a secret keeps its type.
pub fn validate_data_update(
    new_data: Option<serde_json::Value>,
    old_data: Option<serde_json::Value>,
    old_immutable: bool,
    new_immutable: Option<bool>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if old_immutable {
        if new_immutable != Some(true) {
            errs.push(FieldError::forbidden(
                &FieldPath::new("immutable"),
                "field is immutable when `immutable` is set",
            ));
        }
        if new_data != old_data {
            errs.push(FieldError::forbidden(
                &FieldPath::new("data"),
                "field is immutable when `immutable` is set",
            ));
        }
    }
    errs
}

pub fn validate_resource_quota(quota: &ResourceQuota) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(spec) = quota.spec.as_ref() {
        parse_resource_list(
            spec.hard.as_ref(),
            &FieldPath::new("spec").child("hard"),
            &mut errs,
        );
    }
    errs
}

pub fn validate_lease(lease: &Lease) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    if let Some(spec) = lease.spec.as_ref() {
        if let Some(d) = spec.lease_duration_seconds {
            if d <= 0 {
                errs.push(FieldError::invalid(
                    &spec_path.child("leaseDurationSeconds"),
                    d,
                    "must be greater than 0",
                ));
            }
        }
        if let Some(t) = spec.lease_transitions {
            errs.extend(nonnegative(
                &spec_path.child("leaseTransitions"),
                i64::from(t),
            ));
        }
    }
    errs
}

pub fn validate_rules(rules: &[PolicyRule], namespaced: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let path = FieldPath::new("rules").index(i);
        if rule.verbs.is_empty() {
            errs.push(FieldError::required(
                &path.child("verbs"),
                "verbs must contain at least one value",
            ));
        }
        let urls = rule.non_resource_urls.as_deref().unwrap_or(&[]);
        let groups = rule.api_groups.as_deref().unwrap_or(&[]);
        let resources = rule.resources.as_deref().unwrap_or(&[]);
        if !urls.is_empty() {
            let url_path = path.child("nonResourceURLs");
            if namespaced {
                errs.push(FieldError::invalid(
                    &url_path,
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !groups.is_empty() || !resources.is_empty() {
                errs.push(FieldError::invalid(
                    &url_path,
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if groups.is_empty() {
            errs.push(FieldError::required(
                &path.child("apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if resources.is_empty() {
            errs.push(FieldError::required(
                &path.child("resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    errs
}

pub fn validate_binding(
    role_ref: &RoleRef,
    subjects: &[Subject],
    namespaced: bool,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ref_path = FieldPath::new("roleRef");
    if role_ref.api_group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            &ref_path.child("apiGroup"),
            &role_ref.api_group,
            &[RBAC_GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&role_ref.kind.as_str()) {
        errs.push(FieldError::not_supported(
            &ref_path.child("kind"),
            &role_ref.kind,
            kinds,
        ));
    }
    if role_ref.name.is_empty() {
        errs.push(FieldError::required(&ref_path.child("name"), ""));
    } else {
        for msg in names::path_segment_name(&role_ref.name, false) {
            errs.push(FieldError::invalid(
                &ref_path.child("name"),
                &role_ref.name,
                msg,
            ));
        }
    }
    for (i, s) in subjects.iter().enumerate() {
        let path = FieldPath::new("subjects").index(i);
        if s.name.is_empty() {
            errs.push(FieldError::required(&path.child("name"), ""));
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if !s.name.is_empty() {
                    for msg in names::dns1123_subdomain(&s.name) {
                        errs.push(FieldError::invalid(&path.child("name"), &s.name, msg));
                    }
                }
                if !namespaced && s.namespace.as_deref().unwrap_or("").is_empty() {
                    errs.push(FieldError::required(&path.child("namespace"), ""));
                }
            }
            "User" | "Group" => {
                if s.api_group.as_deref() != Some(RBAC_GROUP) {
                    errs.push(FieldError::not_supported(
                        &path.child("apiGroup"),
                        s.api_group.as_deref().unwrap_or(""),
                        &[RBAC_GROUP],
                    ));
                }
            }
            other => errs.push(FieldError::not_supported(
                &path.child("kind"),
                other,
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
    errs
}

pub fn validate_ingress(ingress: &Ingress) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec_path = FieldPath::new("spec");
    let Some(spec) = ingress.spec.as_ref() else {
        return errs;
    };
    let rules = spec.rules.as_deref().unwrap_or(&[]);
    if rules.is_empty() && spec.default_backend.is_none() {
        errs.push(FieldError::invalid(
            &spec_path,
            Rendered("[]".into()),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(backend) = spec.default_backend.as_ref() {
        validate_backend(backend, &spec_path.child("defaultBackend"), &mut errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let rpath = spec_path.child("rules").index(i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            let checked = host.strip_prefix("*.").unwrap_or(host);
            for msg in names::dns1123_subdomain(checked) {
                errs.push(FieldError::invalid(&rpath.child("host"), host, msg));
            }
        }
        for (j, p) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let ppath = rpath.child("http").child("paths").index(j);
            let path_type = p.path_type.as_str();
            match path_type {
                "" => errs.push(FieldError::required(
                    &ppath.child("pathType"),
                    "pathType must be specified",
                )),
                "Exact" | "Prefix" => {
                    let path = p.path.as_deref().unwrap_or("");
                    if !path.starts_with('/') {
                        errs.push(FieldError::invalid(
                            &ppath.child("path"),
                            path,
                            "must be an absolute path",
                        ));
                    }
                }
                "ImplementationSpecific" => {}
                other => errs.push(FieldError::not_supported(
                    &ppath.child("pathType"),
                    other,
                    &["Exact", "ImplementationSpecific", "Prefix"],
                )),
            }
            validate_backend(&p.backend, &ppath.child("backend"), &mut errs);
        }
    }
    errs
}

fn validate_backend(backend: &IngressBackend, path: &FieldPath, errs: &mut Vec<FieldError>) {
    match (&backend.service, &backend.resource) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            Rendered(String::new()),
            "cannot set both resource and service backends",
        )),
        (None, None) => errs.push(FieldError::invalid(
            path,
            Rendered(String::new()),
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            let spath = path.child("service");
            if svc.name.is_empty() {
                errs.push(FieldError::required(&spath.child("name"), ""));
            }
            match svc
                .port
                .as_ref()
                .map(|p| (p.name.as_deref().filter(|n| !n.is_empty()), p.number))
            {
                Some((Some(_), Some(_))) => errs.push(FieldError::invalid(
                    &spath.child("port"),
                    Rendered(String::new()),
                    "cannot set both port name & port number",
                )),
                Some((None, Some(n))) if !(1..=65535).contains(&n) => {
                    errs.push(FieldError::invalid(
                        &spath.child("port").child("number"),
                        n,
                        names::inclusive_range_error(1, 65535),
                    ))
                }
                Some((Some(name), None)) => {
                    for msg in names::port_name(name) {
                        errs.push(FieldError::invalid(
                            &spath.child("port").child("name"),
                            name,
                            msg,
                        ));
                    }
                }
                Some((None, None)) | None => errs.push(FieldError::invalid(
                    &spath.child("port"),
                    Rendered(String::new()),
                    "port name or number is required",
                )),
                _ => {}
            }
        }
        (None, Some(_)) => {}
    }
}

const INGRESS_CLASS_CONTROLLER_MAX: usize = 250;
const INGRESS_CLASS_SCOPES: &[&str] = &["Cluster", "Namespace"];

/// An IngressClass: a domain-prefixed controller of at most 250 bytes that never changes, and
/// a parameters reference with a kind, a name, and a namespace exactly when its scope is
/// Namespace.
pub fn validate_ingress_class(
    spec: &k8s_openapi::api::networking::v1::IngressClassSpec,
    old: Option<&k8s_openapi::api::networking::v1::IngressClassSpec>,
) -> Vec<FieldError> {
    let path = FieldPath::new("spec");
    let controller_path = path.child("controller");
    let controller = spec.controller.as_deref().unwrap_or_default();
    let mut errs = Vec::new();
    if controller.len() > INGRESS_CLASS_CONTROLLER_MAX {
        errs.push(FieldError::too_long(
            &controller_path,
            INGRESS_CLASS_CONTROLLER_MAX,
        ));
    }
    match controller.split_once('/') {
        _ if controller.is_empty() => errs.push(FieldError::required(&controller_path, "")),
        Some((domain, _)) if crate::names::dns1123_subdomain(domain).is_empty() => {}
        _ => errs.push(FieldError::invalid(
            &controller_path,
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )),
    }
    if old.is_some_and(|o| o.controller != spec.controller) {
        errs.push(FieldError::invalid(
            &controller_path,
            controller,
            FIELD_IMMUTABLE,
        ));
    }
    if let Some(params) = &spec.parameters {
        let p = path.child("parameters");
        if params.kind.is_empty() {
            errs.push(FieldError::required(&p.child("kind"), "kind is required"));
        }
        if params.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), "name is required"));
        }
        match params.scope.as_deref() {
            Some("Namespace") if params.namespace.as_deref().unwrap_or_default().is_empty() => {
                errs.push(FieldError::required(
                    &p.child("namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                ));
            }
            Some("Cluster") | None if params.namespace.is_some() => {
                errs.push(FieldError::forbidden(
                    &p.child("namespace"),
                    "`parameters.scope` is set to 'Cluster'",
                ));
            }
            Some(scope) if !INGRESS_CLASS_SCOPES.contains(&scope) => {
                errs.push(FieldError::not_supported(
                    &p.child("scope"),
                    scope,
                    INGRESS_CLASS_SCOPES,
                ));
            }
            _ => {}
        }
    }
    errs
}
