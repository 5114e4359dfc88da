//! Specification of the RBAC authorizer: which bindings and rules allow which requests, and the
//! Forbidden message a refused request gets.

use super::*;
use keel_types::k8s_openapi::api::rbac::v1::AggregationRule;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

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

fn named_rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        resource_names: Some(strings(names)),
        ..rule(verbs, groups, resources)
    }
}

fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(strings(urls)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..ObjectMeta::default()
    }
}

fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Role {
    Role {
        metadata: meta(Some(namespace), name),
        rules: Some(rules),
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

fn labelled(mut role: ClusterRole, key: &str, value: &str) -> ClusterRole {
    role.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_string(), value.to_string());
    role
}

fn aggregating(name: &str, key: &str, value: &str, own_rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name),
        rules: Some(own_rules),
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
                match_expressions: None,
            }]),
        }),
    }
}

fn user(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "User".into(),
        name: name.into(),
        namespace: None,
    }
}

fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        ..user(name)
    }
}

fn service_account(namespace: Option<&str>, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: namespace.map(str::to_string),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn role_binding(namespace: &str, name: &str, to: RoleRef, subjects: Vec<Subject>) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name),
        role_ref: to,
        subjects: Some(subjects),
    }
}

fn cluster_binding(name: &str, to: &str, subjects: Vec<Subject>) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: role_ref("ClusterRole", to),
        subjects: Some(subjects),
    }
}

fn who(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: strings(groups),
    }
}

/// A resource request: `verb` on `resource[.group][/subresource]` in `namespace`, naming
/// `name` ("" for none).
fn request(user: UserInfo, verb: &str, resource: &str, namespace: &str, name: &str) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    Attributes {
        user,
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        path: None,
    }
}

fn path_request(user: UserInfo, verb: &str, path: &str) -> Attributes {
    Attributes {
        user,
        verb: verb.into(),
        path: Some(path.into()),
        ..Attributes::default()
    }
}

/// The policy most of the table runs against.
fn policy() -> RbacAuthorizer {
    let roles = vec![
        role(
            "dev",
            "pod-reader",
            vec![rule(&["get", "list", "watch"], &[""], &["pods"])],
        ),
        role(
            "dev",
            "config-one",
            vec![named_rule(
                &["get", "update"],
                &[""],
                &["configmaps"],
                &["app-config"],
            )],
        ),
        role("dev", "logs", vec![rule(&["get"], &[""], &["pods/log"])]),
        role("other", "pod-reader", vec![rule(&["*"], &["*"], &["*"])]),
    ];
    let cluster_roles = vec![
        cluster_role(
            "node-reader",
            vec![rule(&["get", "list"], &[""], &["nodes"])],
        ),
        cluster_role("secret-admin", vec![rule(&["*"], &[""], &["secrets"])]),
        cluster_role(
            "scaler",
            vec![rule(&["get", "update"], &["*"], &["*/scale"])],
        ),
        cluster_role("apps-everything", vec![rule(&["*"], &["apps"], &["*"])]),
        cluster_role("pods-star", vec![rule(&["get"], &[""], &["pods/*"])]),
        cluster_role("health", vec![url_rule(&["get"], &["/healthz", "/apis/*"])]),
    ];
    let role_bindings = vec![
        role_binding(
            "dev",
            "alice-reads",
            role_ref("Role", "pod-reader"),
            vec![user("alice")],
        ),
        role_binding(
            "dev",
            "alice-config",
            role_ref("Role", "config-one"),
            vec![user("alice")],
        ),
        role_binding(
            "dev",
            "team-logs",
            role_ref("Role", "logs"),
            vec![group("team")],
        ),
        role_binding(
            "dev",
            "ci-secrets",
            role_ref("ClusterRole", "secret-admin"),
            vec![service_account(None, "ci")],
        ),
        role_binding(
            "dev",
            "builder-secrets",
            role_ref("ClusterRole", "secret-admin"),
            vec![service_account(Some("build"), "builder")],
        ),
        role_binding(
            "dev",
            "dev-sas-apps",
            role_ref("ClusterRole", "apps-everything"),
            vec![group("system:serviceaccounts:dev")],
        ),
        role_binding(
            "dev",
            "dangling",
            role_ref("Role", "missing"),
            vec![user("dora")],
        ),
    ];
    let cluster_role_bindings = vec![
        cluster_binding("bob-nodes", "node-reader", vec![user("bob")]),
        cluster_binding("hpa-scaler", "scaler", vec![user("hpa")]),
        cluster_binding("star", "pods-star", vec![user("star")]),
        cluster_binding("health", "health", vec![group("system:authenticated")]),
        // A ServiceAccount subject in a ClusterRoleBinding must name its namespace.
        cluster_binding("bare-sa", "secret-admin", vec![service_account(None, "ci")]),
    ];
    RbacAuthorizer::new(roles, cluster_roles, role_bindings, cluster_role_bindings)
}

#[test]
fn allow_and_no_opinion_table() {
    let alice = who("alice", &["system:authenticated"]);
    let bob = who("bob", &["system:authenticated"]);
    let teammate = who("tess", &["team", "system:authenticated"]);
    let ci = who(
        "system:serviceaccount:dev:ci",
        &["system:serviceaccounts", "system:serviceaccounts:dev"],
    );
    let builder = who(
        "system:serviceaccount:build:builder",
        &["system:serviceaccounts"],
    );
    let hpa = who("hpa", &[]);
    let star = who("star", &[]);
    let nobody = who("nobody", &[]);

    let cases: Vec<(&str, Attributes, Decision)> = vec![
        // A RoleBinding grants in its namespace only.
        (
            "role grants in its namespace",
            request(alice.clone(), "list", "pods", "dev", ""),
            Decision::Allow,
        ),
        (
            "role grants get by name",
            request(alice.clone(), "get", "pods", "dev", "web"),
            Decision::Allow,
        ),
        (
            "verb not in the rule",
            request(alice.clone(), "delete", "pods", "dev", "web"),
            Decision::NoOpinion,
        ),
        (
            "other namespace",
            request(alice.clone(), "list", "pods", "prod", ""),
            Decision::NoOpinion,
        ),
        (
            "across all namespaces",
            request(alice.clone(), "list", "pods", "", ""),
            Decision::NoOpinion,
        ),
        (
            "a Role of the same name elsewhere does not leak",
            request(alice.clone(), "delete", "pods", "dev", "web"),
            Decision::NoOpinion,
        ),
        // A rule for a resource does not cover its subresources.
        (
            "no subresource from the resource",
            request(alice.clone(), "get", "pods/log", "dev", "web"),
            Decision::NoOpinion,
        ),
        // resourceNames.
        (
            "named object",
            request(alice.clone(), "get", "configmaps", "dev", "app-config"),
            Decision::Allow,
        ),
        (
            "other object",
            request(alice.clone(), "get", "configmaps", "dev", "other"),
            Decision::NoOpinion,
        ),
        (
            "list is not covered by names",
            request(alice.clone(), "list", "configmaps", "dev", ""),
            Decision::NoOpinion,
        ),
        // ClusterRoleBindings grant everywhere.
        (
            "cluster binding at cluster scope",
            request(bob.clone(), "get", "nodes", "", "n1"),
            Decision::Allow,
        ),
        (
            "cluster binding, list",
            request(bob.clone(), "list", "nodes", "", ""),
            Decision::Allow,
        ),
        (
            "cluster binding, wrong verb",
            request(bob.clone(), "delete", "nodes", "", "n1"),
            Decision::NoOpinion,
        ),
        // Groups.
        (
            "group subject",
            request(teammate.clone(), "get", "pods/log", "dev", "web"),
            Decision::Allow,
        ),
        (
            "group subject, other namespace",
            request(teammate, "get", "pods/log", "prod", "web"),
            Decision::NoOpinion,
        ),
        // Service accounts.
        (
            "service account defaults to the binding namespace",
            request(ci.clone(), "get", "secrets", "dev", "s"),
            Decision::Allow,
        ),
        (
            "service account in another namespace",
            request(builder.clone(), "create", "secrets", "dev", ""),
            Decision::Allow,
        ),
        (
            "service account binding is per namespace",
            request(builder, "create", "secrets", "build", ""),
            Decision::NoOpinion,
        ),
        (
            "service account groups are groups",
            request(ci.clone(), "create", "deployments.apps", "dev", ""),
            Decision::Allow,
        ),
        (
            "group wildcard resources stay in the group",
            request(ci.clone(), "create", "jobs.batch", "dev", ""),
            Decision::NoOpinion,
        ),
        (
            "bare service account in a cluster binding matches nobody",
            request(ci, "get", "secrets", "prod", "s"),
            Decision::NoOpinion,
        ),
        // Wildcard subresources.
        (
            "*/scale on deployments",
            request(
                hpa.clone(),
                "update",
                "deployments.apps/scale",
                "dev",
                "web",
            ),
            Decision::Allow,
        ),
        (
            "*/scale on statefulsets",
            request(hpa.clone(), "get", "statefulsets.apps/scale", "prod", "db"),
            Decision::Allow,
        ),
        (
            "*/scale is not the resource",
            request(hpa.clone(), "get", "deployments.apps", "dev", "web"),
            Decision::NoOpinion,
        ),
        (
            "*/scale is not another subresource",
            request(hpa, "get", "deployments.apps/status", "dev", "web"),
            Decision::NoOpinion,
        ),
        // pods/* is not a wildcard in Kubernetes.
        (
            "pods/* does not cover pods/log",
            request(star.clone(), "get", "pods/log", "dev", "web"),
            Decision::NoOpinion,
        ),
        (
            "pods/* does not cover pods",
            request(star, "get", "pods", "dev", "web"),
            Decision::NoOpinion,
        ),
        // Non-resource URLs.
        (
            "exact URL",
            path_request(who("u", &["system:authenticated"]), "get", "/healthz"),
            Decision::Allow,
        ),
        (
            "prefix URL",
            path_request(who("u", &["system:authenticated"]), "get", "/apis/apps/v1"),
            Decision::Allow,
        ),
        (
            "prefix does not cover its parent",
            path_request(who("u", &["system:authenticated"]), "get", "/apis"),
            Decision::NoOpinion,
        ),
        (
            "URL verb",
            path_request(who("u", &["system:authenticated"]), "post", "/healthz"),
            Decision::NoOpinion,
        ),
        (
            "URL rules do not grant resources",
            request(
                who("u", &["system:authenticated"]),
                "get",
                "healthz",
                "",
                "",
            ),
            Decision::NoOpinion,
        ),
        (
            "unauthenticated",
            path_request(
                who("system:anonymous", &["system:unauthenticated"]),
                "get",
                "/healthz",
            ),
            Decision::NoOpinion,
        ),
        // Unknown users and dangling role references grant nothing.
        (
            "nobody",
            request(nobody, "get", "pods", "dev", "web"),
            Decision::NoOpinion,
        ),
        (
            "binding to a missing role",
            request(who("dora", &[]), "get", "pods", "dev", "web"),
            Decision::NoOpinion,
        ),
    ];

    let rbac = policy();
    let mut failures = Vec::new();
    for (what, attrs, want) in cases {
        let got = rbac.authorize(&attrs);
        if got != want {
            failures.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_role_binding_to_a_cluster_role_grants_only_in_its_namespace() {
    let rbac = RbacAuthorizer::new(
        vec![],
        vec![cluster_role(
            "reader",
            vec![rule(&["get", "list"], &[""], &["pods", "nodes"])],
        )],
        vec![role_binding(
            "dev",
            "read",
            role_ref("ClusterRole", "reader"),
            vec![user("carol")],
        )],
        vec![],
    );
    let carol = who("carol", &[]);
    assert_eq!(
        rbac.authorize(&request(carol.clone(), "list", "pods", "dev", "")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&request(carol.clone(), "list", "pods", "prod", "")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&request(carol.clone(), "list", "pods", "", "")),
        Decision::NoOpinion
    );
    // Cluster-scoped resources are never in a namespace, so a RoleBinding never grants them.
    assert_eq!(
        rbac.authorize(&request(carol, "get", "nodes", "", "n1")),
        Decision::NoOpinion
    );
}

#[test]
fn a_cluster_role_binding_may_not_refer_to_a_role() {
    let rbac = RbacAuthorizer::new(
        vec![role("dev", "r", vec![rule(&["*"], &["*"], &["*"])])],
        vec![],
        vec![],
        vec![ClusterRoleBinding {
            metadata: meta(None, "bad"),
            role_ref: role_ref("Role", "r"),
            subjects: Some(vec![user("eve")]),
        }],
    );
    assert_eq!(
        rbac.authorize(&request(who("eve", &[]), "get", "pods", "dev", "p")),
        Decision::NoOpinion
    );
}

#[test]
fn aggregated_cluster_roles_take_the_rules_of_the_roles_they_select() {
    let key = "example.com/aggregate-to-monitor";
    let rbac = RbacAuthorizer::new(
        vec![],
        vec![
            // Its own rules are replaced by the aggregated ones, as the controller does.
            aggregating(
                "monitor",
                key,
                "true",
                vec![rule(&["*"], &[""], &["secrets"])],
            ),
            labelled(
                cluster_role("pods", vec![rule(&["get"], &[""], &["pods"])]),
                key,
                "true",
            ),
            labelled(
                cluster_role("nodes", vec![rule(&["get"], &[""], &["nodes"])]),
                key,
                "true",
            ),
            labelled(
                cluster_role("unrelated", vec![rule(&["get"], &[""], &["services"])]),
                key,
                "false",
            ),
        ],
        vec![],
        vec![cluster_binding("m", "monitor", vec![user("mo")])],
    );
    let mo = who("mo", &[]);
    assert_eq!(
        rbac.authorize(&request(mo.clone(), "get", "pods", "dev", "p")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&request(mo.clone(), "get", "nodes", "", "n")),
        Decision::Allow
    );
    assert_eq!(
        rbac.authorize(&request(mo.clone(), "get", "services", "dev", "s")),
        Decision::NoOpinion
    );
    assert_eq!(
        rbac.authorize(&request(mo, "get", "secrets", "dev", "s")),
        Decision::NoOpinion
    );
}

#[test]
fn aggregation_follows_chains_of_aggregated_roles() {
    let rbac = RbacAuthorizer::new(
        vec![],
        vec![
            aggregating("top", "to-top", "true", vec![]),
            labelled(
                aggregating("middle", "to-middle", "true", vec![]),
                "to-top",
                "true",
            ),
            labelled(
                cluster_role("leaf", vec![rule(&["get"], &[""], &["pods"])]),
                "to-middle",
                "true",
            ),
        ],
        vec![],
        vec![cluster_binding("t", "top", vec![user("t")])],
    );
    assert_eq!(
        rbac.authorize(&request(who("t", &[]), "get", "pods", "dev", "p")),
        Decision::Allow
    );
}

#[test]
fn allowed_by_names_the_binding_role_and_subject() {
    let rbac = policy();
    assert_eq!(
        rbac.allowed_by(&request(who("bob", &[]), "get", "nodes", "", "n1"))
            .as_deref(),
        Some(
            r#"RBAC: allowed by ClusterRoleBinding "bob-nodes" of ClusterRole "node-reader" to User "bob""#
        )
    );
    let ci = who("system:serviceaccount:dev:ci", &[]);
    assert_eq!(
        rbac.allowed_by(&request(ci, "get", "secrets", "dev", "s"))
            .as_deref(),
        Some(
            r#"RBAC: allowed by RoleBinding "ci-secrets/dev" of ClusterRole "secret-admin" to ServiceAccount "ci/dev""#
        )
    );
    assert_eq!(
        rbac.allowed_by(&request(who("bob", &[]), "delete", "nodes", "", "n1")),
        None
    );
}

#[test]
fn rules_for_lists_cluster_rules_then_namespace_rules() {
    let rbac = policy();
    let alice = who("alice", &["system:authenticated"]);
    let rules = rbac.rules_for(&alice, "dev");
    assert_eq!(
        rules,
        vec![
            url_rule(&["get"], &["/healthz", "/apis/*"]),
            rule(&["get", "list", "watch"], &[""], &["pods"]),
            named_rule(&["get", "update"], &[""], &["configmaps"], &["app-config"]),
        ]
    );
    assert_eq!(
        rbac.rules_for(&alice, ""),
        vec![url_rule(&["get"], &["/healthz", "/apis/*"])]
    );
}

#[test]
fn forbidden_message_for_a_namespaced_list() {
    let attrs = request(
        who("alice", &["system:authenticated"]),
        "list",
        "pods",
        "default",
        "",
    );
    assert_eq!(
        forbidden_message(&attrs, ""),
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default""#
    );
}

#[test]
fn forbidden_message_for_a_named_cluster_scoped_object() {
    let attrs = request(who("bob", &[]), "get", "nodes", "", "n1");
    assert_eq!(
        forbidden_message(&attrs, ""),
        r#"nodes "n1" is forbidden: User "bob" cannot get resource "nodes" in API group "" at the cluster scope"#
    );
}

#[test]
fn forbidden_message_qualifies_the_group_and_names_the_subresource() {
    let attrs = request(
        who("system:serviceaccount:dev:ci", &[]),
        "update",
        "deployments.apps/scale",
        "dev",
        "web",
    );
    assert_eq!(
        forbidden_message(&attrs, ""),
        r#"deployments.apps "web" is forbidden: User "system:serviceaccount:dev:ci" cannot update resource "deployments/scale" in API group "apps" in the namespace "dev""#
    );
}

#[test]
fn forbidden_message_for_a_path() {
    let attrs = path_request(who("x", &[]), "get", "/version");
    assert_eq!(
        forbidden_message(&attrs, ""),
        r#"forbidden: User "x" cannot get path "/version""#
    );
}

#[test]
fn forbidden_message_appends_a_reason_and_escapes_html() {
    let attrs = path_request(who("<x>", &[]), "get", "/a&b");
    assert_eq!(
        forbidden_message(&attrs, "RBAC: role not found"),
        r#"forbidden: User "&lt;x&gt;" cannot get path "/a&amp;b": RBAC: role not found"#
    );
}
