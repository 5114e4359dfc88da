//! The pod-template-hash: the label that ties a ReplicaSet, its selector and its pods to one
//! version of a Deployment's template, and names the set `<deployment>-<hash>`. Like
//! Kubernetes' it is FNV-1a (32 bits) over the template, salted with `status.collisionCount`
//! so that a clash with a foreign set can be escaped, and spelled with Kubernetes' safe
//! alphabet (see [`crate::revision::template_hash`]); stable across restarts and masters but
//! not equal to Kubernetes' own values.

use keel_client::k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::Value;

pub const HASH_LABEL: &str = "pod-template-hash";

/// The hash of `template` (without any pod-template-hash label of its own) for a Deployment
/// that has seen `collision_count` clashes: the workload controllers' shared template hash,
/// over the template as semantic equality sees it.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut value = serde_json::to_value(template).unwrap_or(Value::Null);
    normalize(&mut value);
    crate::revision::template_hash(&value, collision_count)
}

/// Drops what semantic equality ignores: nulls and empty lists and maps (absent and empty mean
/// the same), and the template's own hash label.
fn normalize(value: &mut Value) {
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    strip_empty(value);
}

fn strip_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for v in map.values_mut() {
                strip_empty(v);
            }
            map.retain(|_, v| !is_empty(v));
        }
        Value::Array(items) => items.iter_mut().for_each(strip_empty),
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Whether two templates are the same but for their pod-template-hash labels
/// (EqualIgnoreHash): how a Deployment recognises its new ReplicaSet, including an old one
/// that a rollback made current again.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let mut a = serde_json::to_value(a).unwrap_or(Value::Null);
    let mut b = serde_json::to_value(b).unwrap_or(Value::Null);
    normalize(&mut a);
    normalize(&mut b);
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{Container, PodSpec};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str, extra_label: Option<(&str, &str)>) -> PodTemplateSpec {
        let mut labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
        if let Some((k, v)) = extra_label {
            labels.insert(k.into(), v.into());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn the_hash_is_stable_safe_and_follows_the_template() {
        let a = template_hash(&template("nginx:1", None), None);
        assert_eq!(a, template_hash(&template("nginx:1", None), None));
        assert_ne!(a, template_hash(&template("nginx:2", None), None));
        assert!(
            !a.is_empty()
                && a.bytes()
                    .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }

    #[test]
    fn a_collision_count_gives_another_hash() {
        let t = template("nginx:1", None);
        let first = template_hash(&t, None);
        assert_ne!(first, template_hash(&t, Some(1)));
        assert_ne!(template_hash(&t, Some(1)), template_hash(&t, Some(2)));
        assert_eq!(first, template_hash(&t, None));
    }

    #[test]
    fn templates_equal_but_for_the_hash_label_are_the_same() {
        let plain = template("nginx:1", None);
        let labelled = template("nginx:1", Some((HASH_LABEL, "abc")));
        assert!(equal_ignore_hash(&plain, &labelled));
        assert!(!equal_ignore_hash(
            &plain,
            &template("nginx:1", Some(("tier", "front")))
        ));
        assert!(!equal_ignore_hash(&plain, &template("nginx:2", None)));
        assert_eq!(template_hash(&plain, None), template_hash(&labelled, None));
    }

    #[test]
    fn absent_and_empty_fields_are_the_same() {
        let plain = template("nginx:1", None);
        let mut empty = plain.clone();
        if let Some(spec) = empty.spec.as_mut() {
            spec.volumes = Some(Vec::new());
        }
        if let Some(meta) = empty.metadata.as_mut() {
            meta.annotations = Some(Default::default());
        }
        assert!(equal_ignore_hash(&plain, &empty));
    }
}
