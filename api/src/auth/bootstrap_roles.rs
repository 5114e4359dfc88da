//! The RBAC policy a fresh cluster starts with: Kubernetes' bootstrap ClusterRoles and
//! ClusterRoleBindings (the user-facing and discovery ones, and the scheduler's), with the
//! labels and annotations Kubernetes gives them, so that `kubectl get clusterroles` reads the
//! same on keel.

use std::collections::BTreeMap;

use keel_types::k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject,
};
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

/// The group every request presenting valid credentials is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// The group whose members may do anything.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group every service account is in.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
/// The group of monitoring agents.
pub const MONITORING_GROUP: &str = "system:monitoring";
/// The user the scheduler authenticates as.
pub const KUBE_SCHEDULER_USER: &str = "system:kube-scheduler";
/// The user the controller manager authenticates as.
pub const KUBE_CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// The cluster DNS inside each master (Kubernetes binds its role to the kube-dns service
/// account; keel's DNS has a user of its own, like the scheduler).
pub const KUBE_DNS_USER: &str = "system:kube-dns";

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
const BOOTSTRAPPING_VALUE: &str = "rbac-defaults";
const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The bootstrap ClusterRoles, in name order as Kubernetes lists them. `admin`, `edit` and
/// `view` carry no rules of their own: they aggregate the `system:aggregate-to-*` roles (and
/// `admin` picks up `edit`, `edit` picks up `view`).
pub fn cluster_roles() -> Vec<ClusterRole> {
    vec![
        aggregated("admin", AGGREGATE_TO_ADMIN, &[]),
        role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
        ),
        aggregated("edit", AGGREGATE_TO_EDIT, &[AGGREGATE_TO_ADMIN]),
        role(
            "system:aggregate-to-admin",
            &[AGGREGATE_TO_ADMIN],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                ),
                rule(READ_WRITE, &[RBAC_GROUP], &["rolebindings", "roles"]),
            ],
        ),
        role(
            "system:aggregate-to-edit",
            &[AGGREGATE_TO_EDIT],
            aggregate_to_edit_rules(),
        ),
        role(
            "system:aggregate-to-view",
            &[AGGREGATE_TO_VIEW],
            aggregate_to_view_rules(),
        ),
        role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
        ),
        role(
            "system:discovery",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            KUBE_CONTROLLER_MANAGER_USER,
            &[],
            kube_controller_manager_rules(),
        ),
        role(
            KUBE_DNS_USER,
            &[],
            vec![
                rule(&["list", "watch"], &[""], &["endpoints", "services"]),
                rule(
                    &["list", "watch"],
                    &["discovery.k8s.io"],
                    &["endpointslices"],
                ),
            ],
        ),
        role(KUBE_SCHEDULER_USER, &[], kube_scheduler_rules()),
        role(
            "system:monitoring",
            &[],
            vec![url_rule(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        role(
            "system:public-info-viewer",
            &[],
            vec![url_rule(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        role(
            "system:service-account-issuer-discovery",
            &[],
            vec![url_rule(
                &["get"],
                &["/.well-known/openid-configuration", "/openid/v1/jwks"],
            )],
        ),
        aggregated("view", AGGREGATE_TO_VIEW, &[AGGREGATE_TO_EDIT]),
    ]
}

/// The bootstrap ClusterRoleBindings of the roles above, in name order.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding("cluster-admin", &[MASTERS_GROUP]),
        binding("system:basic-user", &[AUTHENTICATED_GROUP]),
        binding("system:discovery", &[AUTHENTICATED_GROUP]),
        user_binding(KUBE_CONTROLLER_MANAGER_USER, KUBE_CONTROLLER_MANAGER_USER),
        user_binding(KUBE_DNS_USER, KUBE_DNS_USER),
        user_binding(KUBE_SCHEDULER_USER, KUBE_SCHEDULER_USER),
        binding("system:monitoring", &[MONITORING_GROUP]),
        binding(
            "system:public-info-viewer",
            &[AUTHENTICATED_GROUP, UNAUTHENTICATED_GROUP],
        ),
        binding(
            "system:service-account-issuer-discovery",
            &[SERVICE_ACCOUNTS_GROUP],
        ),
    ]
}

/// What the controller manager reads and writes. Kubernetes splits this across one service
/// account per controller; keel's controllers share one identity, holding the union of those
/// roles: reading, updating and deleting any object (the garbage collector and the namespace
/// controller act on every kind, as Kubernetes' `system:controller:generic-garbage-collector`
/// and `system:controller:namespace-controller` may), and creating only what controllers
/// create. It cannot create Secrets, RBAC objects or anything else no controller makes.
fn kube_controller_manager_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            &[
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            &["*"],
            &["*"],
        ),
        rule(
            &["create"],
            &[""],
            &[
                "configmaps",
                "endpoints",
                "events",
                "persistentvolumeclaims",
                "pods",
                "pods/eviction",
                "serviceaccounts",
            ],
        ),
        rule(&["create"], &["events.k8s.io"], &["events"]),
        rule(
            &["create"],
            &["apps"],
            &["controllerrevisions", "replicasets"],
        ),
        rule(&["create"], &["batch"], &["jobs"]),
        rule(&["create"], &["discovery.k8s.io"], &["endpointslices"]),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
    ]
}

/// What the scheduler reads and writes, as Kubernetes' `system:kube-scheduler` role grants
/// it: pods and what selects or constrains them, its leader lease, events, and the bindings
/// that place pods on nodes.
fn kube_scheduler_rules() -> Vec<PolicyRule> {
    let mut named_lease = rule(&["get", "update"], &["coordination.k8s.io"], &["leases"]);
    named_lease.resource_names = Some(strings(&["kube-scheduler"]));
    vec![
        rule(
            &["create", "patch", "update"],
            &["", "events.k8s.io"],
            &["events"],
        ),
        rule(&["create"], &["coordination.k8s.io"], &["leases"]),
        named_lease,
        rule(READ, &[""], &["nodes"]),
        rule(&["delete", "get", "list", "watch"], &[""], &["pods"]),
        rule(&["create"], &[""], &["bindings", "pods/binding"]),
        rule(&["patch", "update"], &[""], &["pods/status"]),
        rule(READ, &[""], &["replicationcontrollers", "services"]),
        rule(READ, &["apps", "extensions"], &["replicasets"]),
        rule(READ, &["apps"], &["statefulsets"]),
        rule(READ, &["policy"], &["poddisruptionbudgets"]),
        rule(
            READ,
            &[""],
            &["persistentvolumeclaims", "persistentvolumes"],
        ),
        rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["subjectaccessreviews"],
        ),
        rule(READ, &["storage.k8s.io"], &["csinodes"]),
        rule(READ, &[""], &["namespaces"]),
        rule(
            READ,
            &["storage.k8s.io"],
            &["csidrivers", "csistoragecapacities"],
        ),
    ]
}

fn aggregate_to_edit_rules() -> Vec<PolicyRule> {
    vec![
        // Reading these can escalate (secrets hold tokens; exec reaches into containers), so
        // `view` does not have them and `edit` does.
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(
            WRITE,
            &["extensions"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "ingresses",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicationcontrollers/scale",
            ],
        ),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
    ]
}

fn aggregate_to_view_rules() -> Vec<PolicyRule> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
        ),
        // Reading namespaces through a RoleBinding reads only that namespace: a way to learn
        // where one has access.
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            READ,
            &["extensions"],
            &[
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "ingresses",
                "ingresses/status",
                "networkpolicies",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "replicationcontrollers/scale",
            ],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(strings(urls)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// Bootstrap metadata: the `rbac-defaults` label plus `extra_labels` (set to "true"), and the
/// annotation that lets the API server reconcile the object back on start.
fn metadata(name: &str, extra_labels: &[&str]) -> ObjectMeta {
    let mut labels = BTreeMap::from([(
        BOOTSTRAPPING_LABEL.to_string(),
        BOOTSTRAPPING_VALUE.to_string(),
    )]);
    for label in extra_labels {
        labels.insert((*label).to_string(), "true".to_string());
    }
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([(
            AUTOUPDATE_ANNOTATION.to_string(),
            "true".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

fn role(name: &str, labels: &[&str], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, labels),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// A role whose rules are those of every ClusterRole labelled `select_label: "true"`.
fn aggregated(name: &str, select_label: &str, labels: &[&str]) -> ClusterRole {
    ClusterRole {
        metadata: metadata(name, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    select_label.to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }]),
        }),
    }
}

/// A binding of the ClusterRole of the same name to groups.
fn binding(name: &str, groups: &[&str]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: metadata(name, &[]),
        role_ref: RoleRef {
            api_group: RBAC_GROUP.to_string(),
            kind: "ClusterRole".to_string(),
            name: name.to_string(),
        },
        subjects: Some(
            groups
                .iter()
                .map(|g| Subject {
                    api_group: Some(RBAC_GROUP.to_string()),
                    kind: "Group".to_string(),
                    name: (*g).to_string(),
                    namespace: None,
                })
                .collect(),
        ),
    }
}

/// A binding of the ClusterRole `name` to one user.
fn user_binding(name: &str, user: &str) -> ClusterRoleBinding {
    let mut b = binding(name, &[]);
    b.subjects = Some(vec![Subject {
        api_group: Some(RBAC_GROUP.to_string()),
        kind: "User".to_string(),
        name: user.to_string(),
        namespace: None,
    }]);
    b
}

#[cfg(test)]
#[path = "bootstrap_roles_tests.rs"]
mod tests;
