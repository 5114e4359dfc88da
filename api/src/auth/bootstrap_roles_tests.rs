//! Specification of the bootstrap policy: what a fresh cluster lets masters, authenticated and
//! anonymous users, and holders of `admin`, `edit` and `view` do.

use super::*;
use crate::auth::rbac::RbacAuthorizer;
use crate::auth::{Attributes, Decision, UserInfo};
use keel_types::k8s_openapi::api::rbac::v1::RoleBinding;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: strings(groups),
    }
}

fn authenticated(name: &str) -> UserInfo {
    user(name, &[AUTHENTICATED_GROUP])
}

fn resource(user: UserInfo, verb: &str, group: &str, resource: &str, ns: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user,
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: ns.into(),
        ..Attributes::default()
    }
}

fn path(user: UserInfo, verb: &str, path: &str) -> Attributes {
    Attributes {
        user,
        verb: verb.into(),
        path: Some(path.into()),
        ..Attributes::default()
    }
}

/// The bootstrap policy plus RoleBindings of `admin`, `edit` and `view` in namespace
/// `team` to users of those names.
fn cluster() -> RbacAuthorizer {
    let bindings = ["admin", "edit", "view"]
        .iter()
        .map(|name| RoleBinding {
            metadata: ObjectMeta {
                name: Some(format!("{name}-binding")),
                namespace: Some("team".into()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: RBAC_GROUP.into(),
                kind: "ClusterRole".into(),
                name: (*name).into(),
            },
            subjects: Some(vec![Subject {
                api_group: Some(RBAC_GROUP.into()),
                kind: "User".into(),
                name: (*name).into(),
                namespace: None,
            }]),
        })
        .collect();
    RbacAuthorizer::new(vec![], cluster_roles(), bindings, cluster_role_bindings())
}

#[test]
fn system_masters_can_do_anything() {
    let rbac = cluster();
    let root = user("root", &[MASTERS_GROUP, AUTHENTICATED_GROUP]);
    for attrs in [
        resource(root.clone(), "delete", "", "nodes", ""),
        resource(
            root.clone(),
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            "",
        ),
        resource(
            root.clone(),
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            "kube-system",
        ),
        resource(root.clone(), "get", "", "secrets", "kube-system"),
        resource(root.clone(), "update", "apps", "deployments/scale", "team"),
        resource(root.clone(), "list", "example.com", "widgets", ""),
        path(root.clone(), "get", "/metrics"),
        path(root, "post", "/anything/at/all"),
    ] {
        assert_eq!(rbac.authorize(&attrs), Decision::Allow, "{attrs:?}");
    }
}

#[test]
fn authenticated_users_may_discover_but_not_read_objects() {
    let rbac = cluster();
    let alice = authenticated("alice");
    for p in [
        "/version",
        "/version/",
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps/v1",
        "/openapi/v2",
        "/openapi/v3/apis/apps/v1",
        "/healthz",
        "/livez",
        "/readyz",
    ] {
        assert_eq!(
            rbac.authorize(&path(alice.clone(), "get", p)),
            Decision::Allow,
            "{p}"
        );
    }
    assert_eq!(
        rbac.authorize(&path(alice.clone(), "post", "/version")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&path(alice.clone(), "get", "/metrics")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(alice.clone(), "list", "", "pods", "default")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(alice.clone(), "list", "", "pods", "")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(
            alice.clone(),
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            alice.clone(),
            "create",
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            ""
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            alice,
            "create",
            "authorization.k8s.io",
            "subjectaccessreviews",
            ""
        )),
        Decision::NoOpinion
    );
}

#[test]
fn anonymous_users_see_only_public_info() {
    let rbac = cluster();
    let anonymous = user("system:anonymous", &[UNAUTHENTICATED_GROUP]);
    assert_eq!(
        rbac.authorize(&path(anonymous.clone(), "get", "/version")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&path(anonymous.clone(), "get", "/healthz")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&path(anonymous.clone(), "get", "/apis")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(
            anonymous,
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            ""
        )),
        Decision::NoOpinion
    );
}

#[test]
fn view_reads_workloads_but_not_secrets() {
    let rbac = cluster();
    let viewer = user("view", &[AUTHENTICATED_GROUP]);
    assert_eq!(
        rbac.authorize(&resource(viewer.clone(), "list", "", "pods", "team")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(viewer.clone(), "get", "", "pods/log", "team")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            viewer.clone(),
            "watch",
            "apps",
            "deployments",
            "team"
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(viewer.clone(), "get", "", "secrets", "team")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(viewer.clone(), "list", "", "secrets", "team")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(viewer.clone(), "create", "", "pods", "team")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(viewer, "list", "", "pods", "other")),
        Decision::NoOpinion
    );
}

#[test]
fn edit_writes_workloads_but_not_roles() {
    let rbac = cluster();
    let editor = user("edit", &[AUTHENTICATED_GROUP]);
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "create",
            "apps",
            "deployments",
            "team"
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "update",
            "apps",
            "deployments/scale",
            "team"
        )),
        Decision::Allow
    );
    // edit includes view's rules through aggregation.
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "list",
            "apps",
            "deployments",
            "team"
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(editor.clone(), "get", "", "secrets", "team")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(editor.clone(), "create", "", "pods/exec", "team")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "create",
            "rbac.authorization.k8s.io",
            "roles",
            "team"
        )),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            "team"
        )),
        Decision::NoOpinion
    );
    // Quota and limits belong to whoever administers the namespace.
    assert_eq!(
        rbac.authorize(&resource(
            editor.clone(),
            "update",
            "",
            "resourcequotas",
            "team"
        )),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&resource(
            editor,
            "update",
            "apps",
            "deployments/status",
            "team"
        )),
        Decision::NoOpinion
    );
}

#[test]
fn admin_grants_roles_in_its_namespace() {
    let rbac = cluster();
    let admin = user("admin", &[AUTHENTICATED_GROUP]);
    assert_eq!(
        rbac.authorize(&resource(
            admin.clone(),
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            "team"
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            admin.clone(),
            "delete",
            "apps",
            "deployments",
            "team"
        )),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(admin.clone(), "list", "", "pods", "team")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&resource(
            admin,
            "create",
            "rbac.authorization.k8s.io",
            "rolebindings",
            "kube-system"
        )),
        Decision::NoOpinion
    );
}

#[test]
fn bootstrap_objects_carry_the_standard_labels_and_annotations() {
    let roles = cluster_roles();
    let bindings = cluster_role_bindings();
    for meta in roles
        .iter()
        .map(|r| &r.metadata)
        .chain(bindings.iter().map(|b| &b.metadata))
    {
        let labels = meta.labels.clone().unwrap_or_default();
        let annotations = meta.annotations.clone().unwrap_or_default();
        assert_eq!(
            labels.get(BOOTSTRAPPING_LABEL).map(String::as_str),
            Some("rbac-defaults"),
            "{:?}",
            meta.name
        );
        assert_eq!(
            annotations.get(AUTOUPDATE_ANNOTATION).map(String::as_str),
            Some("true"),
            "{:?}",
            meta.name
        );
    }
    let names: Vec<_> = roles
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "roles are listed in name order");
    for binding in &bindings {
        assert!(
            names.contains(&binding.role_ref.name),
            "binding {:?} refers to a bootstrap role",
            binding.metadata.name
        );
    }
    let view = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("view"));
    let view_labels = view
        .and_then(|r| r.metadata.labels.clone())
        .unwrap_or_default();
    assert_eq!(
        view_labels.get(AGGREGATE_TO_EDIT).map(String::as_str),
        Some("true")
    );
}

#[test]
fn bootstrap_objects_serialize_as_kubernetes_writes_them() {
    let bindings = cluster_role_bindings();
    let public = bindings
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some("system:public-info-viewer"));
    let json = serde_json::to_value(public).unwrap_or_default();
    assert_eq!(
        json["subjects"],
        serde_json::json!([
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"},
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"},
        ])
    );
    assert_eq!(
        json["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:public-info-viewer"})
    );
    let roles = cluster_roles();
    let admin = roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("admin"));
    let json = serde_json::to_value(admin).unwrap_or_default();
    assert_eq!(
        json["aggregationRule"],
        serde_json::json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}}]})
    );
}

#[test]
fn the_scheduler_may_bind_pods_and_read_what_it_schedules_by() {
    let rbac = cluster();
    let scheduler = || user(KUBE_SCHEDULER_USER, &[AUTHENTICATED_GROUP]);
    for (verb, group, what, ns) in [
        ("create", "", "pods/binding", "team"),
        ("create", "", "bindings", "team"),
        ("watch", "", "pods", ""),
        ("list", "", "nodes", ""),
        ("patch", "", "pods/status", "team"),
        ("create", "coordination.k8s.io", "leases", "kube-system"),
    ] {
        assert_eq!(
            rbac.authorize(&resource(scheduler(), verb, group, what, ns)),
            Decision::Allow,
            "{verb} {what}"
        );
    }
    for (verb, what) in [("create", "pods"), ("update", "pods"), ("get", "secrets")] {
        assert_eq!(
            rbac.authorize(&resource(scheduler(), verb, "", what, "team")),
            Decision::NoOpinion,
            "{verb} {what}"
        );
    }
    let mut renew = resource(
        scheduler(),
        "update",
        "coordination.k8s.io",
        "leases",
        "kube-system",
    );
    renew.name = "kube-scheduler".into();
    assert_eq!(rbac.authorize(&renew), Decision::Allow);
    renew.name = "someone-else".into();
    assert_eq!(rbac.authorize(&renew), Decision::NoOpinion);
    // Nobody else binds pods.
    assert_eq!(
        rbac.authorize(&resource(
            authenticated("alice"),
            "create",
            "",
            "pods/binding",
            "team"
        )),
        Decision::NoOpinion
    );
}

#[test]
fn admin_and_edit_may_evict_and_manage_budgets_and_view_may_read_them() {
    let rbac = cluster();
    let decide = |who: &str, verb: &str, group: &str, what: &str| {
        rbac.authorize(&resource(authenticated(who), verb, group, what, "team"))
    };
    for who in ["admin", "edit"] {
        assert_eq!(
            decide(who, "create", "", "pods/eviction"),
            Decision::Allow,
            "{who}"
        );
        for verb in ["create", "update", "patch", "delete"] {
            assert_eq!(
                decide(who, verb, "policy", "poddisruptionbudgets"),
                Decision::Allow,
                "{who} {verb}"
            );
        }
    }
    assert_eq!(
        decide("view", "create", "", "pods/eviction"),
        Decision::NoOpinion
    );
    assert_eq!(
        decide("view", "create", "policy", "poddisruptionbudgets"),
        Decision::NoOpinion
    );
    for what in ["poddisruptionbudgets", "poddisruptionbudgets/status"] {
        assert_eq!(
            decide("view", "list", "policy", what),
            Decision::Allow,
            "{what}"
        );
    }
}

#[test]
fn the_controller_manager_may_evict_and_write_budget_status() {
    let rbac = cluster();
    let manager = user("system:kube-controller-manager", &[AUTHENTICATED_GROUP]);
    for (verb, group, what) in [
        ("create", "", "pods/eviction"),
        ("update", "policy", "poddisruptionbudgets/status"),
        ("watch", "policy", "poddisruptionbudgets"),
    ] {
        assert_eq!(
            rbac.authorize(&resource(manager.clone(), verb, group, what, "team")),
            Decision::Allow,
            "{verb} {what}"
        );
    }
}
