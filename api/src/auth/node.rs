//! The Node authorizer and the node restriction on writes, as Kubernetes pairs them: a node
//! agent's credential (`system:node:<name>` in `system:nodes`) reads what every node needs
//! (nodes, pods, services, endpoints), writes only its own Node, Lease and the status of pods
//! bound to it, and reads a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount only
//! while a pod bound to it refers to that object. Everything else gets no opinion here and
//! falls to RBAC, which grants nodes nothing by default.
//!
//! The decision is split as the rest of authorization is: [`decide`] is a pure function of the
//! request; when it needs the cluster's state (is this pod bound here, does a pod here use this
//! secret) it says so, and the API server answers from its cache (`related`).

use serde_json::Value;

use super::{Attributes, Decision, UserInfo};
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage};

/// The group every node credential carries.
pub const NODES_GROUP: &str = "system:nodes";
/// Node users are named `system:node:<node name>`.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Where node Leases live; a node may hold only the one named after it.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The node a user is the agent of, if it is a node credential at all.
pub fn node_of(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    (!name.is_empty() && user.groups.iter().any(|g| g == NODES_GROUP)).then_some(name)
}

/// What the Node authorizer concludes from a request alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not this authorizer's to allow; the reason is reported if nobody else allows it.
    NoOpinion(String),
    /// Allowed if the named object is tied to the node: a pod bound to it, or an object a pod
    /// bound to it refers to.
    IfRelated,
}

const READ: &[&str] = &["get", "list", "watch"];

fn is(attrs: &Attributes, group: &str, resource: &str, subresource: &str) -> bool {
    attrs.api_group == group && attrs.resource == resource && attrs.subresource == subresource
}

fn verb_in(attrs: &Attributes, verbs: &[&str]) -> bool {
    verbs.contains(&attrs.verb.as_str())
}

/// The Node authorizer's rules for a request by node `node`.
pub fn decide(node: &str, attrs: &Attributes) -> Verdict {
    if attrs.path.is_some() || attrs.resource.is_empty() {
        return Verdict::NoOpinion(String::new());
    }
    let allow_if = |ok: bool| {
        if ok {
            Verdict::Allow
        } else {
            Verdict::NoOpinion(String::new())
        }
    };
    // Objects a node may read only through a pod bound to it, one at a time by name.
    let by_reference = [
        ("", "secrets"),
        ("", "configmaps"),
        ("", "persistentvolumeclaims"),
        ("", "serviceaccounts"),
    ];
    if by_reference
        .iter()
        .any(|(g, r)| is(attrs, g, r, "") && verb_in(attrs, READ))
    {
        if attrs.name.is_empty() || attrs.namespace.is_empty() {
            return Verdict::NoOpinion("can only read individual resources of this type".into());
        }
        return Verdict::IfRelated;
    }
    if is(attrs, "", "serviceaccounts", "token") {
        if attrs.verb != "create" || attrs.name.is_empty() {
            return Verdict::NoOpinion(
                "can only create tokens for individual service accounts".into(),
            );
        }
        return Verdict::IfRelated;
    }
    if is(attrs, "", "nodes", "") || is(attrs, "", "nodes", "status") {
        if verb_in(attrs, &["get", "list", "watch", "create"]) && attrs.subresource.is_empty() {
            return Verdict::Allow;
        }
        if verb_in(attrs, &["get", "update", "patch", "delete"]) {
            return if attrs.name == node {
                Verdict::Allow
            } else {
                Verdict::NoOpinion(format!("node '{node}' cannot modify node '{}'", attrs.name))
            };
        }
        return Verdict::NoOpinion(String::new());
    }
    if is(attrs, "", "pods", "") {
        if verb_in(attrs, READ) {
            return Verdict::Allow;
        }
        if attrs.verb == "delete" && !attrs.name.is_empty() {
            return Verdict::IfRelated;
        }
        return Verdict::NoOpinion(String::new());
    }
    if is(attrs, "", "pods", "status") {
        return if verb_in(attrs, &["get", "update", "patch"]) {
            Verdict::IfRelated
        } else {
            Verdict::NoOpinion(String::new())
        };
    }
    if is(attrs, "", "pods", "eviction") {
        return if attrs.verb == "create" {
            Verdict::IfRelated
        } else {
            Verdict::NoOpinion(String::new())
        };
    }
    if is(attrs, "coordination.k8s.io", "leases", "") {
        if attrs.namespace != NODE_LEASE_NAMESPACE {
            return Verdict::NoOpinion("can only access node lease objects".into());
        }
        let named_ok = attrs.name == node || (attrs.verb == "create" && attrs.name.is_empty());
        return if verb_in(attrs, &["get", "create", "update", "patch", "delete"]) && named_ok {
            Verdict::Allow
        } else {
            Verdict::NoOpinion(format!("can only access the lease of node '{node}'"))
        };
    }
    if is(attrs, "", "events", "") || is(attrs, "events.k8s.io", "events", "") {
        return allow_if(verb_in(attrs, &["create", "update", "patch"]));
    }
    let readable = [
        ("", "services"),
        ("", "endpoints"),
        ("discovery.k8s.io", "endpointslices"),
        ("node.k8s.io", "runtimeclasses"),
    ];
    if readable.iter().any(|(g, r)| is(attrs, g, r, "")) {
        return allow_if(verb_in(attrs, READ));
    }
    if is(attrs, "authentication.k8s.io", "tokenreviews", "")
        || is(attrs, "authorization.k8s.io", "subjectaccessreviews", "")
    {
        return allow_if(attrs.verb == "create");
    }
    if is(
        attrs,
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
    ) {
        return allow_if(verb_in(attrs, &["create", "get", "list", "watch"]));
    }
    Verdict::NoOpinion(String::new())
}

/// The names of the objects of `resource` (secrets, configmaps, persistentvolumeclaims,
/// serviceaccounts) a pod refers to: volumes (also projected sources), environment variables
/// of every container, image pull secrets, its service account.
pub fn references(pod: &Value, resource: &str) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &pod["spec"];
    let mut push = |v: &Value| {
        if let Some(name) = v.as_str().filter(|n| !n.is_empty()) {
            out.push(name.to_string());
        }
    };
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten());
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    match resource {
        "serviceaccounts" => push(&spec["serviceAccountName"]),
        "persistentvolumeclaims" => {
            for v in volumes {
                push(&v["persistentVolumeClaim"]["claimName"]);
            }
        }
        "secrets" | "configmaps" => {
            let (volume_key, volume_name, env_ref, from_ref, projected) = if resource == "secrets" {
                (
                    "secret",
                    "secretName",
                    "secretKeyRef",
                    "secretRef",
                    "secret",
                )
            } else {
                (
                    "configMap",
                    "name",
                    "configMapKeyRef",
                    "configMapRef",
                    "configMap",
                )
            };
            if resource == "secrets" {
                for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
                    push(&s["name"]);
                }
            }
            for v in volumes {
                push(&v[volume_key][volume_name]);
                for source in v["projected"]["sources"].as_array().into_iter().flatten() {
                    push(&source[projected]["name"]);
                }
            }
            for c in containers {
                for e in c["env"].as_array().into_iter().flatten() {
                    push(&e["valueFrom"][env_ref]["name"]);
                }
                for e in c["envFrom"].as_array().into_iter().flatten() {
                    push(&e[from_ref]["name"]);
                }
            }
        }
        _ => {}
    }
    out
}

/// Whether `pod` is bound to `node`.
fn bound_to(pod: &Value, node: &str) -> bool {
    pod["spec"]["nodeName"].as_str() == Some(node)
}

impl<S: Storage> ApiServer<S> {
    /// The Node authorizer's decision for a request by a node credential (NoOpinion for any
    /// other user).
    pub(crate) async fn authorize_node(&self, attrs: &Attributes) -> Decision {
        let Some(node) = node_of(&attrs.user) else {
            return Decision::NoOpinion;
        };
        match decide(node, attrs) {
            Verdict::Allow => Decision::Allow,
            Verdict::NoOpinion(reason) => Decision::Deny(reason),
            Verdict::IfRelated => {
                if self.related(node, attrs).await {
                    Decision::Allow
                } else {
                    Decision::Deny(format!(
                        "no relationship found between node '{node}' and this object"
                    ))
                }
            }
        }
    }

    /// Whether the object a node asks for is tied to it (see [`Verdict::IfRelated`]).
    async fn related(&self, node: &str, attrs: &Attributes) -> bool {
        if attrs.resource == "pods" {
            let key = format!("/registry/pods/{}/{}", attrs.namespace, attrs.name);
            return self
                .stored_json(key.as_bytes())
                .await
                .is_some_and(|pod| bound_to(&pod, node));
        }
        let prefix = format!("/registry/pods/{}/", attrs.namespace).into_bytes();
        self.stored_jsons(&prefix).await.iter().any(|pod| {
            bound_to(pod, node) && references(pod, &attrs.resource).contains(&attrs.name)
        })
    }

    async fn stored_json(&self, key: &[u8]) -> Option<Value> {
        let stored = match self.cache.as_ref() {
            Some(cache) => cache.get(key),
            None => self.storage.get(key).await.ok().flatten(),
        }?;
        serde_json::from_slice(&stored.value).ok()
    }

    async fn stored_jsons(&self, prefix: &[u8]) -> Vec<Value> {
        let end = prefix_end(prefix);
        let items = match self.cache.as_ref().and_then(|c| c.list(prefix, &end)) {
            Some(snapshot) => snapshot.items,
            None => match self.storage.list(prefix, &end, 0, 0).await {
                Ok(list) => list.items,
                Err(_) => Vec::new(),
            },
        };
        items
            .iter()
            .filter_map(|s| serde_json::from_slice(&s.value).ok())
            .collect()
    }

    /// Kubernetes' NodeRestriction on creates, which carry no name the authorizer could see: a
    /// node creates only its own Node and its own Lease, and no pods (mirror pods are not
    /// supported).
    pub(crate) fn restrict_node_create(
        &self,
        info: &keel_types::ResourceInfo,
        namespace: Option<&str>,
        object: &Value,
        requester: Option<&UserInfo>,
    ) -> Result<(), crate::error::ApiError> {
        let Some(node) = requester.and_then(node_of) else {
            return Ok(());
        };
        let name = crate::meta::name(object);
        let refused = |what: String| Err(crate::error::ApiError::Forbidden(what));
        match (info.group, info.plural) {
            ("", "nodes") if name != node => refused(format!(
                "nodes \"{name}\" is forbidden: node \"{node}\" is not allowed to modify node \"{name}\""
            )),
            ("coordination.k8s.io", "leases")
                if namespace == Some(NODE_LEASE_NAMESPACE) && name != node =>
            {
                refused(format!(
                    "leases.coordination.k8s.io \"{name}\" is forbidden: node \"{node}\" is not allowed to modify lease \"{name}\""
                ))
            }
            ("", "pods") => refused(format!(
                "pods \"{name}\" is forbidden: node \"{node}\" can only create mirror pods, which keel does not support"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_user(name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{name}"),
            uid: String::new(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        }
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: node_user("n1"),
            verb: verb.into(),
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: None,
        }
    }

    #[test]
    fn only_node_credentials_are_nodes() {
        assert_eq!(node_of(&node_user("n1")), Some("n1"));
        let mut no_group = node_user("n1");
        no_group.groups.clear();
        assert_eq!(node_of(&no_group), None);
        let admin = UserInfo {
            name: "kubernetes-admin".into(),
            uid: String::new(),
            groups: vec![NODES_GROUP.into()],
        };
        assert_eq!(node_of(&admin), None);
        assert_eq!(node_of(&node_user("")), None);
    }

    #[test]
    fn a_node_writes_only_its_own_node_and_lease() {
        assert_eq!(
            decide("n1", &req("patch", "", "nodes", "status", "", "n1")),
            Verdict::Allow
        );
        assert_eq!(
            decide("n1", &req("update", "", "nodes", "", "", "n1")),
            Verdict::Allow
        );
        assert!(matches!(
            decide("n1", &req("patch", "", "nodes", "status", "", "n2")),
            Verdict::NoOpinion(r) if r.contains("cannot modify node 'n2'")
        ));
        assert!(matches!(
            decide("n1", &req("delete", "", "nodes", "", "", "n2")),
            Verdict::NoOpinion(_)
        ));
        assert_eq!(
            decide("n1", &req("list", "", "nodes", "", "", "")),
            Verdict::Allow
        );
        let lease = |verb, ns, name| {
            decide(
                "n1",
                &req(verb, "coordination.k8s.io", "leases", "", ns, name),
            )
        };
        assert_eq!(lease("update", NODE_LEASE_NAMESPACE, "n1"), Verdict::Allow);
        assert_eq!(lease("create", NODE_LEASE_NAMESPACE, ""), Verdict::Allow);
        assert!(matches!(
            lease("update", NODE_LEASE_NAMESPACE, "n2"),
            Verdict::NoOpinion(_)
        ));
        assert!(matches!(
            lease("get", "kube-system", "kube-scheduler"),
            Verdict::NoOpinion(_)
        ));
    }

    #[test]
    fn secrets_and_pod_writes_need_a_relationship() {
        assert_eq!(
            decide("n1", &req("get", "", "secrets", "", "default", "s")),
            Verdict::IfRelated
        );
        assert!(matches!(
            decide("n1", &req("list", "", "secrets", "", "default", "")),
            Verdict::NoOpinion(_)
        ));
        assert!(matches!(
            decide("n1", &req("update", "", "secrets", "", "default", "s")),
            Verdict::NoOpinion(_)
        ));
        assert_eq!(
            decide(
                "n1",
                &req("create", "", "serviceaccounts", "token", "default", "sa")
            ),
            Verdict::IfRelated
        );
        assert_eq!(
            decide("n1", &req("patch", "", "pods", "status", "default", "p")),
            Verdict::IfRelated
        );
        assert_eq!(
            decide("n1", &req("delete", "", "pods", "", "default", "p")),
            Verdict::IfRelated
        );
        assert_eq!(
            decide("n1", &req("watch", "", "pods", "", "", "")),
            Verdict::Allow
        );
        assert!(matches!(
            decide("n1", &req("update", "", "pods", "", "default", "p")),
            Verdict::NoOpinion(_)
        ));
    }

    #[test]
    fn anything_else_is_left_to_rbac() {
        assert!(matches!(
            decide(
                "n1",
                &req(
                    "get",
                    "rbac.authorization.k8s.io",
                    "clusterroles",
                    "",
                    "",
                    "admin"
                )
            ),
            Verdict::NoOpinion(_)
        ));
        assert!(matches!(
            decide("n1", &req("create", "", "namespaces", "", "", "")),
            Verdict::NoOpinion(_)
        ));
        assert_eq!(
            decide("n1", &req("create", "", "events", "", "default", "")),
            Verdict::Allow
        );
        assert_eq!(
            decide("n1", &req("watch", "", "services", "", "", "")),
            Verdict::Allow
        );
        let mut path = req("get", "", "", "", "", "");
        path.path = Some("/api".into());
        assert!(matches!(decide("n1", &path), Verdict::NoOpinion(_)));
    }

    #[test]
    fn a_pod_refers_to_what_its_volumes_env_and_account_name() {
        let pod = json!({"spec": {
            "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [
                {"name": "a", "secret": {"secretName": "tls"}},
                {"name": "b", "configMap": {"name": "settings"}},
                {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "d", "projected": {"sources": [
                    {"secret": {"name": "projected-secret"}},
                    {"configMap": {"name": "projected-map"}},
                    {"serviceAccountToken": {"path": "token"}}
                ]}}
            ],
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
            "containers": [{"name": "c", "env": [
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env-map", "key": "k"}}},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                {"name": "Z", "value": "plain"}
            ]}]
        }});
        let mut secrets = references(&pod, "secrets");
        secrets.sort();
        assert_eq!(
            secrets,
            [
                "env-secret",
                "init-env",
                "projected-secret",
                "registry",
                "tls"
            ]
        );
        let mut maps = references(&pod, "configmaps");
        maps.sort();
        assert_eq!(maps, ["env-map", "projected-map", "settings"]);
        assert_eq!(references(&pod, "persistentvolumeclaims"), ["data"]);
        assert_eq!(references(&pod, "serviceaccounts"), ["builder"]);
        assert!(references(&pod, "nodes").is_empty());
    }
}
