//! The kinds keel serves, with the names Kubernetes gives them: group, version, kind, plural
//! resource, short names, categories, scope and subresources. The API server's routes,
//! discovery and storage keys all come from this table.

use k8s_openapi::api::{
    admissionregistration, apps, autoscaling, batch, coordination, core, discovery, networking,
    policy, rbac, scheduling, storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Whether objects of a kind live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// One kind, as discovery and the REST paths name it.
#[derive(Debug)]
pub struct ResourceInfo {
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    /// `group/version`, or just the version for the core group.
    pub api_version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The resource name in paths and storage keys ("pods").
    pub plural: &'static str,
    pub scope: Scope,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources served besides the object itself ("status", "scale", a pod's "binding").
    pub subresources: &'static [&'static str],
    /// The server sets `metadata.generation` (1 on create, one more on every change outside
    /// metadata and status), as Kubernetes does for kinds whose controllers report an
    /// observedGeneration; other kinds carry none.
    pub tracks_generation: bool,
    /// Defined by a CustomResourceDefinition rather than compiled in: its objects are checked
    /// against the definition's schema (kept by the API server), not a typed form, and are
    /// stored under their group (`/registry/{group}/{plural}/…`), as Kubernetes keeps them.
    pub custom: bool,
    round_trip: fn(Value) -> Result<Value, serde_json::Error>,
    /// Adds the kind's JSON schema (and those it references) to a generator.
    describe: fn(&mut k8s_openapi::schemars::gen::SchemaGenerator),
}

impl ResourceInfo {
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The lower-case kind, as discovery's singularName.
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Decodes `value` as this kind's typed form and encodes it again: the object as the kind
    /// defines it, with fields the kind does not have dropped. A value of the wrong shape (a
    /// string where a number belongs, …) is an error naming where it was found.
    pub fn round_trip(&self, value: Value) -> Result<Value, serde_json::Error> {
        (self.round_trip)(value)
    }

    /// Adds this kind's JSON schema, and the schemas it references, to `generator`.
    pub fn describe(&self, generator: &mut k8s_openapi::schemars::gen::SchemaGenerator) {
        (self.describe)(generator)
    }
}

trait ScopeOf {
    const SCOPE: Scope;
}

impl ScopeOf for NamespaceResourceScope {
    const SCOPE: Scope = Scope::Namespaced;
}

impl ScopeOf for ClusterResourceScope {
    const SCOPE: Scope = Scope::Cluster;
}

fn round_trip<K: DeserializeOwned + Serialize>(value: Value) -> Result<Value, serde_json::Error> {
    let typed: K = serde_json::from_value(value)?;
    serde_json::to_value(typed)
}

macro_rules! kinds {
    ($( $ty:ty => { short: [$($short:literal),*], categories: [$($cat:literal),*], sub: [$($sub:literal),*], generation: $gen:literal } ),* $(,)?) => {
        static KINDS: &[ResourceInfo] = &[
            $(ResourceInfo {
                group: <$ty as Resource>::GROUP,
                version: <$ty as Resource>::VERSION,
                api_version: <$ty as Resource>::API_VERSION,
                kind: <$ty as Resource>::KIND,
                list_kind: <$ty as k8s_openapi::ListableResource>::LIST_KIND,
                plural: <$ty as Resource>::URL_PATH_SEGMENT,
                scope: <<$ty as Resource>::Scope as ScopeOf>::SCOPE,
                short_names: &[$($short),*],
                categories: &[$($cat),*],
                subresources: &[$($sub),*],
                tracks_generation: $gen,
                custom: false,
                round_trip: round_trip::<$ty>,
                describe: |g| {
                    g.subschema_for::<$ty>();
                },
            }),*
        ];
    };
}

kinds! {
    core::v1::Namespace => { short: ["ns"], categories: [], sub: ["status"], generation: false },
    core::v1::Node => { short: ["no"], categories: [], sub: ["status"], generation: false },
    core::v1::Pod => { short: ["po"], categories: ["all"], sub: ["binding", "eviction", "status"], generation: false },
    core::v1::Service => { short: ["svc"], categories: ["all"], sub: ["status"], generation: false },
    core::v1::Endpoints => { short: ["ep"], categories: [], sub: [], generation: false },
    core::v1::ConfigMap => { short: ["cm"], categories: [], sub: [], generation: false },
    core::v1::Secret => { short: [], categories: [], sub: [], generation: false },
    core::v1::ServiceAccount => { short: ["sa"], categories: [], sub: [], generation: false },
    core::v1::Event => { short: ["ev"], categories: [], sub: [], generation: false },
    core::v1::ResourceQuota => { short: ["quota"], categories: [], sub: ["status"], generation: false },
    core::v1::LimitRange => { short: ["limits"], categories: [], sub: [], generation: false },
    core::v1::PersistentVolumeClaim => { short: ["pvc"], categories: [], sub: ["status"], generation: false },
    core::v1::PersistentVolume => { short: ["pv"], categories: [], sub: ["status"], generation: false },
    core::v1::ReplicationController => { short: ["rc"], categories: ["all"], sub: ["status", "scale"], generation: true },
    discovery::v1::EndpointSlice => { short: [], categories: [], sub: [], generation: true },
    apps::v1::Deployment => { short: ["deploy"], categories: ["all"], sub: ["status", "scale"], generation: true },
    apps::v1::ReplicaSet => { short: ["rs"], categories: ["all"], sub: ["status", "scale"], generation: true },
    apps::v1::StatefulSet => { short: ["sts"], categories: ["all"], sub: ["status", "scale"], generation: true },
    apps::v1::DaemonSet => { short: ["ds"], categories: ["all"], sub: ["status"], generation: true },
    apps::v1::ControllerRevision => { short: [], categories: [], sub: [], generation: false },
    batch::v1::Job => { short: [], categories: ["all"], sub: ["status"], generation: true },
    batch::v1::CronJob => { short: ["cj"], categories: ["all"], sub: ["status"], generation: true },
    coordination::v1::Lease => { short: [], categories: [], sub: [], generation: false },
    rbac::v1::Role => { short: [], categories: [], sub: [], generation: false },
    rbac::v1::ClusterRole => { short: [], categories: [], sub: [], generation: false },
    rbac::v1::RoleBinding => { short: [], categories: [], sub: [], generation: false },
    rbac::v1::ClusterRoleBinding => { short: [], categories: [], sub: [], generation: false },
    networking::v1::NetworkPolicy => { short: ["netpol"], categories: [], sub: [], generation: true },
    networking::v1::Ingress => { short: ["ing"], categories: [], sub: ["status"], generation: true },
    scheduling::v1::PriorityClass => { short: ["pc"], categories: [], sub: [], generation: false },
    policy::v1::PodDisruptionBudget => { short: ["pdb"], categories: [], sub: ["status"], generation: true },
    autoscaling::v2::HorizontalPodAutoscaler => { short: ["hpa"], categories: ["all"], sub: ["status"], generation: false },
    networking::v1::IngressClass => { short: [], categories: [], sub: [], generation: false },
    storage::v1::StorageClass => { short: ["sc"], categories: [], sub: [], generation: false },
    storage::v1::CSIDriver => { short: [], categories: [], sub: [], generation: false },
    storage::v1::CSINode => { short: [], categories: [], sub: [], generation: false },
    storage::v1::VolumeAttachment => { short: [], categories: [], sub: ["status"], generation: false },
    admissionregistration::v1::ValidatingWebhookConfiguration => { short: [], categories: ["api-extensions"], sub: [], generation: true },
    admissionregistration::v1::MutatingWebhookConfiguration => { short: [], categories: ["api-extensions"], sub: [], generation: true },
    apiregistration::v1::APIService => { short: [], categories: ["api-extensions"], sub: ["status"], generation: false },
    apiextensions::v1::CustomResourceDefinition => { short: ["crd", "crds"], categories: ["api-extensions"], sub: ["status"], generation: true },
}

/// Every kind keel serves.
pub fn all() -> &'static [ResourceInfo] {
    KINDS
}

/// The kind with this `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    KINDS
        .iter()
        .find(|k| k.api_version == api_version && k.kind == kind)
}

/// The kind served as `resource` in `group` (any version keel serves).
pub fn by_resource(group: &str, resource: &str) -> Option<&'static ResourceInfo> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.plural == resource)
}

/// The names a CustomResourceDefinition gives one served version of its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CustomNames {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub scope: Scope,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<String>,
}

/// The kind a CustomResourceDefinition defines, as the rest of the server holds kinds: by
/// `&'static` reference. Each distinct set of names is made once and kept for the life of the
/// process (the same names always give the same reference), so the memory this holds grows
/// with the number of distinct definitions ever served, not with requests or updates.
pub fn custom(names: CustomNames) -> &'static ResourceInfo {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static INTERNED: OnceLock<Mutex<HashMap<CustomNames, &'static ResourceInfo>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(info) = interned.get(&names) {
        return info;
    }
    let leak = |s: &str| -> &'static str { Box::leak(s.to_string().into_boxed_str()) };
    let leak_all = |v: &[String]| -> &'static [&'static str] {
        Box::leak(
            v.iter()
                .map(|s| leak(s))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        )
    };
    let api_version = format!("{}/{}", names.group, names.version);
    let info: &'static ResourceInfo = Box::leak(Box::new(ResourceInfo {
        group: leak(&names.group),
        version: leak(&names.version),
        api_version: leak(&api_version),
        kind: leak(&names.kind),
        list_kind: leak(&names.list_kind),
        plural: leak(&names.plural),
        scope: names.scope,
        short_names: leak_all(&names.short_names),
        categories: leak_all(&names.categories),
        subresources: leak_all(&names.subresources),
        // Kubernetes keeps a generation for every custom resource.
        tracks_generation: true,
        custom: true,
        round_trip: Ok,
        describe: |_| {},
    }));
    interned.insert(names, info);
    info
}

/// Every group/version keel serves, core ("v1") first, each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for k in KINDS {
        if !out.contains(&(k.group, k.version)) {
            out.push((k.group, k.version));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_kubernetes_names() {
        let pod = by_kind("v1", "Pod").expect("pods");
        assert_eq!(pod.plural, "pods");
        assert_eq!(pod.list_kind, "PodList");
        assert!(pod.namespaced());
        let deploy = by_resource("apps", "deployments").expect("deployments");
        assert_eq!(deploy.api_version, "apps/v1");
        assert!(deploy.has_subresource("scale"));
        assert!(!by_kind("v1", "Node").expect("nodes").namespaced());
        assert!(by_resource("", "leases").is_none());
        assert!(by_resource("coordination.k8s.io", "leases").is_some());
        let pc = by_resource("scheduling.k8s.io", "priorityclasses").expect("priorityclasses");
        assert_eq!(pc.kind, "PriorityClass");
        assert!(!pc.namespaced());
        assert_eq!(pc.short_names, ["pc"]);
        assert_eq!(group_versions()[0], ("", "v1"));
    }

    #[test]
    fn kinds_are_unique() {
        for (i, a) in KINDS.iter().enumerate() {
            for b in &KINDS[i + 1..] {
                assert!(
                    !(a.group == b.group && a.plural == b.plural),
                    "{} twice",
                    a.plural
                );
                for s in a.short_names {
                    assert!(!b.short_names.contains(s), "short name {s} twice");
                }
            }
        }
    }

    #[test]
    fn round_trip_keeps_known_fields_and_drops_unknown_ones() {
        let pod = by_kind("v1", "Pod").expect("pods");
        let out = pod
            .round_trip(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "a", "labels": {"app": "x"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}], "bogus": 1}
            }))
            .expect("decodes");
        assert_eq!(out["metadata"]["labels"]["app"], "x");
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        assert!(out["spec"].get("bogus").is_none());
        let err = pod
            .round_trip(json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "no"}}))
            .expect_err("wrong type");
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
