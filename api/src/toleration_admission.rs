//! DefaultTolerationSeconds, as kube-apiserver's admission plugin of that name: a new pod that
//! does not tolerate the `node.kubernetes.io/not-ready` or `unreachable` NoExecute taints gets
//! a toleration of each for 300 seconds, so a node that stops answering has its pods evicted
//! five minutes later rather than at once.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

/// Seconds a new pod tolerates an unhealthy node (`--default-not-ready-toleration-seconds`
/// and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_SECONDS: i64 = 300;
const TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Adds the default tolerations `pod` lacks (a toleration already covering the taint, by key
/// with Exists or a matching effect, counts as covering it, as Kubernetes checks).
pub fn add_default_tolerations(info: &ResourceInfo, pod: &mut Value) {
    if !crate::priority_admission::is_pod(info) {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if tolerations.is_null() {
        *tolerations = Value::Array(Vec::new());
    }
    let Some(list) = tolerations.as_array_mut() else {
        // Not a list: decoding refuses the pod with the field named.
        return;
    };
    for taint in TAINTS {
        let covered = list.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let operator = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let key_matches = key == taint || (key.is_empty() && operator == "Exists");
            key_matches && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            list.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_info() -> &'static ResourceInfo {
        keel_types::kinds::by_kind("v1", "Pod").expect("pods")
    }

    #[test]
    fn a_pod_without_them_gets_both_for_five_minutes() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(pod_info(), &mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
    }

    #[test]
    fn a_pod_with_its_own_keeps_them() {
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let mut pod = json!({"spec": {"tolerations": [own.clone()]}});
        add_default_tolerations(pod_info(), &mut pod);
        let list = pod["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0], own);
        assert_eq!(list[1]["key"], "node.kubernetes.io/not-ready");
    }

    #[test]
    fn tolerating_everything_covers_both() {
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(pod_info(), &mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn other_kinds_are_untouched() {
        let info = keel_types::kinds::by_kind("v1", "ConfigMap").expect("configmaps");
        let mut cm = json!({"data": {}});
        add_default_tolerations(info, &mut cm);
        assert_eq!(cm, json!({"data": {}}));
    }
}
