//! Which admission webhooks a request reaches, decided as kube-apiserver decides it: a rule
//! matches the operation, group, version, resource (with `*`, `*/*`, `pods/*` and
//! `*/status` forms) and scope; then the webhook's namespace selector matches the labels of the
//! request's namespace (a namespace itself is matched by its own labels; cluster-scoped
//! objects always pass) and its object selector matches the new or the old object's labels.
//! Pure: the labels come in with the request.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, RuleWithOperations};
use keel_types::k8s_openapi;
use keel_types::Selector;
use serde_json::Value;

/// A webhook of either configuration: a validating webhook is a mutating one without
/// `reinvocationPolicy` (the two share every other field).
pub type Hook = MutatingWebhook;

/// What a request is, as webhook rules and the AdmissionReview see it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: &'static str,
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespaced: bool,
    pub namespace: &'a str,
    pub name: &'a str,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    /// The labels of the request's namespace (of the namespace itself, for one).
    pub namespace_labels: BTreeMap<String, String>,
}

fn listed(list: &Option<Vec<String>>, value: &str) -> bool {
    list.iter().flatten().any(|v| v == "*" || v == value)
}

fn resource_matches(patterns: &Option<Vec<String>>, resource: &str, subresource: &str) -> bool {
    patterns.iter().flatten().any(|p| {
        let (p_res, p_sub) = p.split_once('/').unwrap_or((p.as_str(), ""));
        let res_ok = p_res == "*" || p_res == resource;
        let sub_ok = if p.contains('/') {
            p_sub == "*" || p_sub == subresource
        } else {
            // `*` alone means every resource but no subresource, as in Kubernetes.
            subresource.is_empty()
        };
        res_ok && sub_ok
    })
}

/// Whether `rule` covers the request.
pub fn rule_matches(rule: &RuleWithOperations, r: &Request<'_>) -> bool {
    let scope_ok = match rule.scope.as_deref().unwrap_or("*") {
        "Cluster" => !r.namespaced,
        "Namespaced" => r.namespaced,
        _ => true,
    };
    scope_ok
        && listed(&rule.operations, r.operation)
        && listed(&rule.api_groups, r.group)
        && listed(&rule.api_versions, r.version)
        && resource_matches(&rule.resources, r.resource, r.subresource)
}

fn labels(obj: Option<&Value>) -> BTreeMap<String, String> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Why a webhook's selector could not be read (the configuration is broken, which
/// Kubernetes reports as a failure to call the webhook).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadSelector(pub String);

fn selector(
    s: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
) -> Result<Selector, BadSelector> {
    match s {
        None => Ok(Selector::everything()),
        Some(s) => Selector::from_label_selector(Some(s)).map_err(|e| BadSelector(e.to_string())),
    }
}

/// Whether `hook` is called for the request.
pub fn hook_matches(hook: &Hook, r: &Request<'_>) -> Result<bool, BadSelector> {
    if !hook
        .rules
        .iter()
        .flatten()
        .any(|rule| rule_matches(rule, r))
    {
        return Ok(false);
    }
    let is_namespace = r.group.is_empty() && r.resource == "namespaces";
    let in_namespace = r.namespaced || is_namespace;
    if in_namespace && !selector(&hook.namespace_selector)?.matches(&r.namespace_labels) {
        return Ok(false);
    }
    let objects = selector(&hook.object_selector)?;
    let new_matches = r.object.is_some() && objects.matches(&labels(r.object));
    let old_matches = r.old_object.is_some() && objects.matches(&labels(r.old_object));
    Ok(new_matches || old_matches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(v: Value) -> Hook {
        serde_json::from_value(v).expect("hook")
    }

    fn pod_create<'a>(pod: &'a Value, ns_labels: &[(&str, &str)]) -> Request<'a> {
        Request {
            operation: "CREATE",
            group: "",
            version: "v1",
            kind: "Pod",
            resource: "pods",
            subresource: "",
            namespaced: true,
            namespace: "default",
            name: "p",
            object: Some(pod),
            old_object: None,
            namespace_labels: ns_labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn rules_match_operations_groups_resources_subresources_and_scope() {
        let base = json!({"name": "h", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://x"}});
        let with_rules = |rules: Value| {
            let mut h = base.clone();
            h["rules"] = rules;
            hook(h)
        };
        let pod = json!({"metadata": {"labels": {"app": "web"}}});
        let r = pod_create(&pod, &[]);
        let all = with_rules(
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]),
        );
        assert_eq!(hook_matches(&all, &r), Ok(true));
        let updates = with_rules(
            json!([{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]),
        );
        assert_eq!(hook_matches(&updates, &r), Ok(false));
        let apps = with_rules(
            json!([{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["*"]}]),
        );
        assert_eq!(hook_matches(&apps, &r), Ok(false));
        let mut status = r.clone();
        status.subresource = "status";
        assert_eq!(
            hook_matches(&all, &status),
            Ok(false),
            "`*` is no subresource"
        );
        let sub = with_rules(
            json!([{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["*"], "resources": ["pods/*"]}]),
        );
        assert_eq!(hook_matches(&sub, &status), Ok(true));
        let cluster = with_rules(
            json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]),
        );
        assert_eq!(hook_matches(&cluster, &r), Ok(false));
    }

    #[test]
    fn namespace_and_object_selectors_filter_calls() {
        let h = hook(
            json!({"name": "h", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "clientConfig": {"url": "https://x"},
            "rules": [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}],
            "namespaceSelector": {"matchExpressions": [{"key": "webhooks", "operator": "NotIn", "values": ["off"]}]},
            "objectSelector": {"matchLabels": {"app": "web"}}}),
        );
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let other = json!({"metadata": {"labels": {"app": "db"}}});
        assert_eq!(hook_matches(&h, &pod_create(&web, &[])), Ok(true));
        assert_eq!(
            hook_matches(&h, &pod_create(&web, &[("webhooks", "off")])),
            Ok(false)
        );
        assert_eq!(hook_matches(&h, &pod_create(&other, &[])), Ok(false));
        let mut bad = h.clone();
        bad.object_selector = Some(
            serde_json::from_value(
                json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}),
            )
            .expect("selector"),
        );
        assert!(hook_matches(&bad, &pod_create(&web, &[])).is_err());
    }
}
