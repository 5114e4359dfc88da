//! Where API objects live in the store: `/registry/<resource>/<namespace>/<name>`, or
//! `/registry/<resource>/<name>` for cluster-scoped kinds, as a Kubernetes API server lays out
//! etcd; a custom kind's resource is `<group>/<plural>` there, as Kubernetes keeps custom
//! objects. Fencing tokens for leases live beside them under `/keel/fences/`.

use keel_types::ResourceInfo;

const ROOT: &str = "/registry/";
const FENCES: &str = "/keel/fences/";

/// The resource part of a kind's keys.
fn resource(info: &ResourceInfo) -> String {
    if info.custom {
        format!("{}/{}", info.group, info.plural)
    } else {
        info.plural.to_string()
    }
}

/// The key of one object.
pub fn object(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> Vec<u8> {
    let resource = resource(info);
    match namespace.filter(|_| info.namespaced()) {
        Some(ns) => format!("{ROOT}{resource}/{ns}/{name}"),
        None => format!("{ROOT}{resource}/{name}"),
    }
    .into_bytes()
}

/// The prefix of every object of a kind, in one namespace or (None) in all.
pub fn collection(info: &ResourceInfo, namespace: Option<&str>) -> Vec<u8> {
    let resource = resource(info);
    match namespace.filter(|_| info.namespaced()) {
        Some(ns) => format!("{ROOT}{resource}/{ns}/"),
        None => format!("{ROOT}{resource}/"),
    }
    .into_bytes()
}

/// The fencing token of the Lease `namespace/name`: its holder and transition count, written in
/// the same transaction as every change to the Lease's holder.
pub fn fence(namespace: &str, name: &str) -> Vec<u8> {
    format!("{FENCES}{namespace}/{name}").into_bytes()
}

/// `namespace/name` of the Lease a fence key belongs to.
pub fn lease_of_fence(key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    key.strip_prefix(FENCES).unwrap_or(&key).to_string()
}

/// The token a fence key holds for `holder` at `transitions`.
pub fn fence_token(holder: &str, transitions: i64) -> Vec<u8> {
    format!("{transitions}/{holder}").into_bytes()
}
