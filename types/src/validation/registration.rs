//! What registers code with the API server, checked as Kubernetes checks it: admission
//! webhook configurations (fully qualified, unique webhook names; rules; a known failure,
//! match, side-effect and reinvocation policy; a timeout of 1 to 30 s; AdmissionReview
//! versions; exactly one of a URL or a Service) and APIServices (named `version.group`,
//! priorities in range, a reachable Service or none at all).

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, RuleWithOperations, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

use super::workloads::validate_label_selector;
use crate::field::{FieldError, Rendered};
use crate::names;
use crate::path::FieldPath;

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const REINVOCATION_POLICIES: &[&str] = &["IfNeeded", "Never"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
/// The AdmissionReview versions this server sends.
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

/// What both kinds of webhook have.
struct Hook<'a> {
    name: &'a str,
    rules: &'a [RuleWithOperations],
    failure_policy: Option<&'a str>,
    match_policy: Option<&'a str>,
    side_effects: &'a str,
    timeout_seconds: Option<i32>,
    namespace_selector: Option<&'a LabelSelector>,
    object_selector: Option<&'a LabelSelector>,
    admission_review_versions: &'a [String],
    client_config: &'a WebhookClientConfig,
    reinvocation_policy: Option<&'a str>,
}

pub fn validate_validating_webhooks(config: &ValidatingWebhookConfiguration) -> Vec<FieldError> {
    let hooks: Vec<Hook<'_>> = config
        .webhooks
        .iter()
        .flatten()
        .map(|w| Hook {
            name: &w.name,
            rules: w.rules.as_deref().unwrap_or_default(),
            failure_policy: w.failure_policy.as_deref(),
            match_policy: w.match_policy.as_deref(),
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            admission_review_versions: &w.admission_review_versions,
            client_config: &w.client_config,
            reinvocation_policy: None,
        })
        .collect();
    validate_hooks(&hooks)
}

pub fn validate_mutating_webhooks(config: &MutatingWebhookConfiguration) -> Vec<FieldError> {
    let hooks: Vec<Hook<'_>> = config
        .webhooks
        .iter()
        .flatten()
        .map(|w| Hook {
            name: &w.name,
            rules: w.rules.as_deref().unwrap_or_default(),
            failure_policy: w.failure_policy.as_deref(),
            match_policy: w.match_policy.as_deref(),
            side_effects: &w.side_effects,
            timeout_seconds: w.timeout_seconds,
            namespace_selector: w.namespace_selector.as_ref(),
            object_selector: w.object_selector.as_ref(),
            admission_review_versions: &w.admission_review_versions,
            client_config: &w.client_config,
            reinvocation_policy: w.reinvocation_policy.as_deref(),
        })
        .collect();
    validate_hooks(&hooks)
}

fn validate_hooks(hooks: &[Hook<'_>]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let path = FieldPath::new("webhooks").index(i);
        errs.extend(validate_hook(hook, &path));
        if !hook.name.is_empty() {
            if seen.contains(&hook.name) {
                errs.push(FieldError::duplicate(&path.child("name"), hook.name));
            }
            seen.push(hook.name);
        }
    }
    errs
}

fn one_of(errs: &mut Vec<FieldError>, path: &FieldPath, value: Option<&str>, allowed: &[&str]) {
    if let Some(v) = value.filter(|v| !allowed.contains(v)) {
        errs.push(FieldError::not_supported(path, v, allowed));
    }
}

fn validate_hook(hook: &Hook<'_>, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = fully_qualified_name(&path.child("name"), hook.name);
    for (i, rule) in hook.rules.iter().enumerate() {
        errs.extend(validate_rule(rule, &path.child("rules").index(i)));
    }
    one_of(
        &mut errs,
        &path.child("failurePolicy"),
        hook.failure_policy,
        FAILURE_POLICIES,
    );
    one_of(
        &mut errs,
        &path.child("matchPolicy"),
        hook.match_policy,
        MATCH_POLICIES,
    );
    if hook.side_effects.is_empty() {
        errs.push(FieldError::required(
            &path.child("sideEffects"),
            format!("must specify one of {}", SIDE_EFFECTS.join(", ")),
        ));
    } else {
        one_of(
            &mut errs,
            &path.child("sideEffects"),
            Some(hook.side_effects),
            SIDE_EFFECTS,
        );
    }
    if let Some(t) = hook.timeout_seconds.filter(|t| !(1..=30).contains(t)) {
        errs.push(FieldError::invalid(
            &path.child("timeoutSeconds"),
            i64::from(t),
            "the timeout value must be between 1 and 30 seconds",
        ));
    }
    for (selector, name) in [
        (hook.namespace_selector, "namespaceSelector"),
        (hook.object_selector, "objectSelector"),
    ] {
        if let Some(s) = selector {
            errs.extend(validate_label_selector(s, &path.child(name)));
        }
    }
    one_of(
        &mut errs,
        &path.child("reinvocationPolicy"),
        hook.reinvocation_policy,
        REINVOCATION_POLICIES,
    );
    errs.extend(review_versions(
        hook.admission_review_versions,
        &path.child("admissionReviewVersions"),
    ));
    errs.extend(client_config(
        hook.client_config,
        &path.child("clientConfig"),
    ));
    errs
}

/// A name with at least three dot-separated segments that is a DNS subdomain.
fn fully_qualified_name(path: &FieldPath, name: &str) -> Vec<FieldError> {
    if name.is_empty() {
        return vec![FieldError::required(path, "")];
    }
    let mut errs: Vec<FieldError> = names::dns1123_subdomain(name)
        .into_iter()
        .map(|msg| FieldError::invalid(path, name, msg))
        .collect();
    if errs.is_empty() && name.split('.').count() < 3 {
        errs.push(FieldError::invalid(
            path,
            name,
            "should be a domain with at least three segments separated by dots",
        ));
    }
    errs
}

fn non_empty_list(errs: &mut Vec<FieldError>, path: &FieldPath, list: &[String], what: &str) {
    if list.is_empty() {
        errs.push(FieldError::required(path, ""));
    }
    if list.len() > 1 && list.iter().any(|v| v == "*") {
        errs.push(FieldError::invalid(
            path,
            Rendered(format!("{list:?}")),
            format!("if '*' is present, must not specify other {what}"),
        ));
    }
}

fn validate_rule(rule: &RuleWithOperations, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let operations = rule.operations.as_deref().unwrap_or_default();
    non_empty_list(
        &mut errs,
        &path.child("operations"),
        operations,
        "operations",
    );
    for (i, op) in operations.iter().enumerate() {
        if !OPERATIONS.contains(&op.as_str()) {
            errs.push(FieldError::not_supported(
                &path.child("operations").index(i),
                op,
                OPERATIONS,
            ));
        }
    }
    non_empty_list(
        &mut errs,
        &path.child("apiGroups"),
        rule.api_groups.as_deref().unwrap_or_default(),
        "API groups",
    );
    let versions = rule.api_versions.as_deref().unwrap_or_default();
    non_empty_list(
        &mut errs,
        &path.child("apiVersions"),
        versions,
        "API versions",
    );
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            errs.push(FieldError::required(
                &path.child("apiVersions").index(i),
                "",
            ));
        }
    }
    let resources = rule.resources.as_deref().unwrap_or_default();
    let resources_path = path.child("resources");
    if resources.is_empty() {
        errs.push(FieldError::required(&resources_path, ""));
    }
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            errs.push(FieldError::required(&resources_path.index(i), ""));
        }
    }
    if resources.len() > 1 && resources.iter().any(|r| r == "*/*") {
        errs.push(FieldError::invalid(
            &resources_path,
            Rendered(format!("{resources:?}")),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if resources.iter().any(|r| r == "*") && resources.iter().any(|r| r != "*" && !r.contains('/'))
    {
        errs.push(FieldError::invalid(
            &resources_path,
            Rendered(format!("{resources:?}")),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
    one_of(
        &mut errs,
        &path.child("scope"),
        rule.scope.as_deref(),
        SCOPES,
    );
    errs
}

fn review_versions(versions: &[String], path: &FieldPath) -> Vec<FieldError> {
    if versions.is_empty() {
        return vec![FieldError::required(
            path,
            format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
        )];
    }
    let mut errs = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if versions[..i].contains(v) {
            errs.push(FieldError::invalid(&path.index(i), v, "duplicate version"));
            continue;
        }
        for msg in names::dns1035_label(v) {
            errs.push(FieldError::invalid(&path.index(i), v, msg));
        }
    }
    if !versions
        .iter()
        .any(|v| REVIEW_VERSIONS.contains(&v.as_str()))
    {
        errs.push(FieldError::invalid(
            path,
            Rendered(format!("{versions:?}")),
            format!(
                "must include at least one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
    errs
}

fn client_config(cc: &WebhookClientConfig, path: &FieldPath) -> Vec<FieldError> {
    match (&cc.url, &cc.service) {
        (Some(url), None) => webhook_url(url, &path.child("url")),
        (None, Some(service)) => service_reference(
            &service.namespace,
            &service.name,
            service.port,
            &path.child("service"),
        ),
        _ => vec![FieldError::required(
            path,
            "exactly one of url or service is required",
        )],
    }
}

fn webhook_url(url: &str, path: &FieldPath) -> Vec<FieldError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let mut errs = Vec::new();
    if scheme != "https" {
        errs.push(FieldError::invalid(
            path,
            url,
            "'https' is the only allowed URL scheme",
        ));
    }
    if host.is_empty() {
        errs.push(FieldError::invalid(path, url, "host must be specified"));
    }
    if let Some((_, fragment)) = url.split_once('#') {
        errs.push(FieldError::invalid(
            path,
            url,
            format!(
                "{}: fragments are not permitted",
                crate::field::go_quote(fragment)
            ),
        ));
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        errs.push(FieldError::invalid(
            path,
            url,
            format!(
                "{}: query parameters are not permitted",
                crate::field::go_quote(query)
            ),
        ));
    }
    errs
}

fn service_reference(
    namespace: &str,
    name: &str,
    port: Option<i32>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (value, field) in [(name, "name"), (namespace, "namespace")] {
        if value.is_empty() {
            errs.push(FieldError::required(
                &path.child(field),
                format!("service {field} is required"),
            ));
            continue;
        }
        for msg in names::dns1123_label(value) {
            errs.push(FieldError::invalid(&path.child(field), value, msg));
        }
    }
    if let Some(p) = port.filter(|p| !(1..=65535).contains(p)) {
        errs.push(FieldError::invalid(
            &path.child("port"),
            i64::from(p),
            "port is not valid: must be between 1 and 65535, inclusive",
        ));
    }
    errs
}

pub fn validate_api_service(service: &APIService) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(spec) = service.spec.as_ref() else {
        return vec![FieldError::required(&FieldPath::new("spec"), "")];
    };
    let path = FieldPath::new("spec");
    let group = spec.group.as_deref().unwrap_or_default();
    let version = spec.version.as_deref().unwrap_or_default();
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let expected = match group {
        "" => version.to_string(),
        g => format!("{version}.{g}"),
    };
    if !name.is_empty() && name != expected {
        errs.push(FieldError::invalid(
            &FieldPath::new("metadata").child("name"),
            name,
            "must be `spec.version+\".\"+spec.group`",
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required(
            &path.child("group"),
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        for msg in names::dns1123_subdomain(group) {
            errs.push(FieldError::invalid(&path.child("group"), group, msg));
        }
    }
    if version.is_empty() {
        errs.push(FieldError::required(&path.child("version"), ""));
    } else {
        for msg in names::dns1035_label(version) {
            errs.push(FieldError::invalid(&path.child("version"), version, msg));
        }
    }
    if !(1..=20000).contains(&spec.group_priority_minimum) {
        errs.push(FieldError::invalid(
            &path.child("groupPriorityMinimum"),
            i64::from(spec.group_priority_minimum),
            "must be positive and less than 20000",
        ));
    }
    if !(1..=1000).contains(&spec.version_priority) {
        errs.push(FieldError::invalid(
            &path.child("versionPriority"),
            i64::from(spec.version_priority),
            "must be positive and less than 1000",
        ));
    }
    let ca_bundle = spec.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty());
    let insecure = spec.insecure_skip_tls_verify == Some(true);
    match &spec.service {
        None => {
            if ca_bundle {
                errs.push(FieldError::invalid(
                    &path.child("caBundle"),
                    Rendered("...".into()),
                    "local APIServices may not have a caBundle",
                ));
            }
            if insecure {
                errs.push(FieldError::invalid(
                    &path.child("insecureSkipTLSVerify"),
                    Rendered("true".into()),
                    "local APIServices may not have insecureSkipTLSVerify",
                ));
            }
        }
        Some(s) => {
            errs.extend(service_reference(
                s.namespace.as_deref().unwrap_or_default(),
                s.name.as_deref().unwrap_or_default(),
                s.port,
                &path.child("service"),
            ));
            if insecure && ca_bundle {
                errs.push(FieldError::invalid(
                    &path.child("insecureSkipTLSVerify"),
                    Rendered("true".into()),
                    "may not be true if caBundle is present",
                ));
            }
        }
    }
    errs
}
