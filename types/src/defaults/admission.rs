//! Defaults of the API-extension kinds, as Kubernetes 1.32 sets them: webhooks fail closed,
//! match equivalent requests, select every namespace and object, wait 10 s, and (mutating
//! ones) are not called again; a webhook rule covers every scope and a service is reached on
//! port 443. A CustomResourceDefinition converts with `None`, and its singular and list kind
//! follow from its kind.

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, RuleWithOperations, ServiceReference, ValidatingWebhook,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn default_rules(rules: Option<&mut Vec<RuleWithOperations>>) {
    for rule in rules.into_iter().flatten() {
        rule.scope.get_or_insert_with(|| "*".into());
    }
}

fn default_service(service: Option<&mut ServiceReference>) {
    if let Some(s) = service {
        s.port.get_or_insert(443);
    }
}

pub fn default_validating(w: &mut ValidatingWebhook) {
    w.failure_policy.get_or_insert_with(|| "Fail".into());
    w.match_policy.get_or_insert_with(|| "Equivalent".into());
    w.namespace_selector
        .get_or_insert_with(LabelSelector::default);
    w.object_selector.get_or_insert_with(LabelSelector::default);
    w.timeout_seconds.get_or_insert(10);
    default_rules(w.rules.as_mut());
    default_service(w.client_config.service.as_mut());
}

pub fn default_mutating(w: &mut MutatingWebhook) {
    w.failure_policy.get_or_insert_with(|| "Fail".into());
    w.match_policy.get_or_insert_with(|| "Equivalent".into());
    w.namespace_selector
        .get_or_insert_with(LabelSelector::default);
    w.object_selector.get_or_insert_with(LabelSelector::default);
    w.timeout_seconds.get_or_insert(10);
    w.reinvocation_policy.get_or_insert_with(|| "Never".into());
    default_rules(w.rules.as_mut());
    default_service(w.client_config.service.as_mut());
}

pub fn default_definition(crd: &mut CustomResourceDefinition) {
    let spec = &mut crd.spec;
    spec.conversion
        .get_or_insert_with(|| CustomResourceConversion {
            strategy: "None".into(),
            webhook: None,
        });
    let names = &mut spec.names;
    if names.singular.as_deref().is_none_or(str::is_empty) {
        names.singular = Some(names.kind.to_ascii_lowercase());
    }
    if names.list_kind.as_deref().is_none_or(str::is_empty) {
        names.list_kind = Some(format!("{}List", names.kind));
    }
}
