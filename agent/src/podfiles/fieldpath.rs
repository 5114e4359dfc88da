//! What a pod exposes of itself by field path (`fieldRef`) and of its containers' resources
//! (`resourceFieldRef`), for environment variables and downward API files alike.

use std::collections::BTreeMap;

use keel_client::k8s_openapi::api::core::v1::{Container, Pod};
use keel_types::Quantity;

/// What the node knows of a pod that its object may not say yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// The pod's IPs, from its sandbox (primary first).
    pub pod_ips: Vec<String>,
    /// The node's IPs (primary first).
    pub host_ips: Vec<String>,
    /// The node's allocatable resources: what a container without a limit may use.
    pub allocatable: BTreeMap<String, Quantity>,
}

/// A `metadata.*` field of the pod as the downward API gives it (Kubernetes'
/// `ExtractFieldPathAsString`): name, namespace, uid, labels and annotations whole (one
/// `key="value"` line each, sorted) or one of them by `['key']`.
pub fn metadata_field(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    if let Some((field, key)) = subscripted(path) {
        let map = match field {
            "metadata.annotations" => meta.annotations.as_ref(),
            "metadata.labels" => meta.labels.as_ref(),
            _ => return Err(format!("fieldPath {path:?} does not support subscript")),
        };
        return Ok(map.and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    match path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(text(&meta.name)),
        "metadata.namespace" => Ok(text(&meta.namespace)),
        "metadata.uid" => Ok(text(&meta.uid)),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// A field of the pod as an environment variable gives it (kubelet's
/// `podFieldSelectorRuntimeValue`): the `metadata.*` fields, and `spec.nodeName`,
/// `spec.serviceAccountName`, `status.hostIP(s)` and `status.podIP(s)` from what the node knows.
pub fn env_field(pod: &Pod, path: &str, facts: &NodeFacts) -> Result<String, String> {
    let spec = pod.spec.as_ref();
    let first = |ips: &[String]| ips.first().cloned().unwrap_or_default();
    match path {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => Ok(spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default()),
        "status.hostIP" => Ok(first(&facts.host_ips)),
        "status.hostIPs" => Ok(facts.host_ips.join(",")),
        "status.podIP" => Ok(first(&facts.pod_ips)),
        "status.podIPs" => Ok(facts.pod_ips.join(",")),
        _ => metadata_field(pod, path),
    }
}

/// `metadata.labels['key']` → (`metadata.labels`, `key`).
fn subscripted(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (field, key) = inner.split_once("['")?;
    Some((field, key))
}

/// One `key="value"` line per entry, sorted by key, values quoted as Go's `%q` does.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The container named `name` among the pod's containers and init containers.
pub fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// A container's resource as `resourceFieldRef` gives it (Kubernetes'
/// `ExtractContainerResourceValue`): `limits.cpu`, `requests.cpu` in units of `divisor`
/// (cores by default) rounded up; memory and ephemeral storage likewise in bytes. A limit the
/// container does not set is the node's allocatable amount.
pub fn resource_value(
    resource: &str,
    divisor: Option<&str>,
    container: &Container,
    facts: &NodeFacts,
) -> Result<String, String> {
    let divisor = match divisor.filter(|d| !d.is_empty()) {
        Some(text) => {
            Quantity::parse(text).map_err(|e| format!("invalid divisor {text:?}: {e}"))?
        }
        None => Quantity::from_i64(1),
    };
    let divisor = if divisor.is_zero() {
        Quantity::from_i64(1)
    } else {
        divisor
    };
    let resources = container.resources.as_ref();
    let parse = |q: Option<
        &keel_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity,
    >| { q.and_then(|q| Quantity::parse(&q.0).ok()) };
    let limit = |name: &str| {
        parse(
            resources
                .and_then(|r| r.limits.as_ref())
                .and_then(|l| l.get(name)),
        )
        .or_else(|| facts.allocatable.get(name).cloned())
        .unwrap_or_else(|| Quantity::from_i64(0))
    };
    let request = |name: &str| {
        parse(
            resources
                .and_then(|r| r.requests.as_ref())
                .and_then(|l| l.get(name)),
        )
        .unwrap_or_else(|| Quantity::from_i64(0))
    };
    let (amount, cpu) = match resource {
        "limits.cpu" => (limit("cpu"), true),
        "requests.cpu" => (request("cpu"), true),
        "limits.memory" => (limit("memory"), false),
        "requests.memory" => (request("memory"), false),
        "limits.ephemeral-storage" => (limit("ephemeral-storage"), false),
        "requests.ephemeral-storage" => (request("ephemeral-storage"), false),
        other => return Err(format!("unsupported container resource : {other}")),
    };
    let (numerator, denominator) = if cpu {
        (amount.milli_value(), divisor.milli_value())
    } else {
        (amount.value(), divisor.value())
    };
    Ok(ceil_div(numerator, denominator.max(1)).to_string())
}

fn ceil_div(numerator: i64, denominator: i64) -> i64 {
    let quotient = numerator / denominator;
    if numerator % denominator > 0 {
        quotient + 1
    } else {
        quotient
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use keel_client::k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                labels: Some(BTreeMap::from([
                    ("tier".into(), "front".into()),
                    ("app".into(), "web".into()),
                ])),
                annotations: Some(BTreeMap::from([("note".into(), "say \"hi\"\n".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                service_account_name: Some("builder".into()),
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn facts() -> NodeFacts {
        NodeFacts {
            pod_ips: vec!["10.0.0.5".into(), "fd00::5".into()],
            host_ips: vec!["192.168.1.2".into()],
            allocatable: BTreeMap::from([
                ("cpu".into(), Quantity::from_i64(4)),
                ("memory".into(), Quantity::parse("8Gi").expect("quantity")),
            ]),
        }
    }

    #[test]
    fn metadata_fields_whole_and_by_key() {
        let p = pod();
        assert_eq!(metadata_field(&p, "metadata.name"), Ok("web".into()));
        assert_eq!(metadata_field(&p, "metadata.namespace"), Ok("shop".into()));
        assert_eq!(metadata_field(&p, "metadata.uid"), Ok("u-1".into()));
        assert_eq!(
            metadata_field(&p, "metadata.labels"),
            Ok("app=\"web\"\ntier=\"front\"".into())
        );
        assert_eq!(
            metadata_field(&p, "metadata.annotations"),
            Ok("note=\"say \\\"hi\\\"\\n\"".into())
        );
        assert_eq!(
            metadata_field(&p, "metadata.labels['tier']"),
            Ok("front".into())
        );
        assert_eq!(
            metadata_field(&p, "metadata.labels['none']"),
            Ok(String::new())
        );
        assert_eq!(
            metadata_field(&p, "spec.nodeName"),
            Err("unsupported fieldPath: spec.nodeName".into())
        );
    }

    #[test]
    fn environment_fields_include_the_spec_and_what_the_node_knows() {
        let (p, f) = (pod(), facts());
        assert_eq!(env_field(&p, "spec.nodeName", &f), Ok("n1".into()));
        assert_eq!(
            env_field(&p, "spec.serviceAccountName", &f),
            Ok("builder".into())
        );
        assert_eq!(env_field(&p, "status.podIP", &f), Ok("10.0.0.5".into()));
        assert_eq!(
            env_field(&p, "status.podIPs", &f),
            Ok("10.0.0.5,fd00::5".into())
        );
        assert_eq!(env_field(&p, "status.hostIP", &f), Ok("192.168.1.2".into()));
        assert_eq!(env_field(&p, "metadata.name", &f), Ok("web".into()));
    }

    #[test]
    fn resources_round_up_in_units_of_the_divisor_and_unset_limits_are_the_nodes() {
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Q("64Mi".into()))])),
                requests: Some(BTreeMap::from([("cpu".into(), Q("250m".into()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        let f = facts();
        assert_eq!(resource_value("requests.cpu", None, &c, &f), Ok("1".into()));
        assert_eq!(
            resource_value("requests.cpu", Some("1m"), &c, &f),
            Ok("250".into())
        );
        assert_eq!(resource_value("limits.cpu", None, &c, &f), Ok("4".into()));
        assert_eq!(
            resource_value("limits.memory", None, &c, &f),
            Ok("67108864".into())
        );
        assert_eq!(
            resource_value("limits.memory", Some("1Mi"), &c, &f),
            Ok("64".into())
        );
        assert_eq!(
            resource_value("requests.memory", None, &c, &f),
            Ok("0".into())
        );
        assert_eq!(
            resource_value("limits.hugepages-2Mi", None, &c, &f),
            Err("unsupported container resource : limits.hugepages-2Mi".into())
        );
    }
}
