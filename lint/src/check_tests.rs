//! Each class of finding, shown present and absent on small sets.

use serde_json::{json, Value};

use super::*;
use crate::projection::{Projection, SELECTOR_CLASSES};

fn set(objects: Vec<Value>) -> Vec<Manifest> {
    objects
        .into_iter()
        .enumerate()
        .map(|(i, object)| Manifest {
            object: std::sync::Arc::new(object),
            source: Source {
                file: "set.yaml".into(),
                document: i + 1,
            },
        })
        .collect()
}

/// The set's findings; its selector findings are checked to be the same over the objects as
/// the API server decodes them ([`Projection::for_selectors`]).
fn run(objects: Vec<Value>) -> Vec<Finding> {
    let whole = lint(&set(objects.clone()), &Options::default());
    let projection = Projection::for_selectors();
    let projected: Vec<Value> = objects
        .iter()
        .map(|o| {
            projection
                .decode(&serde_json::to_vec(o).expect("json"))
                .expect("decoded")
        })
        .collect();
    let selector_findings = |findings: Vec<Finding>| -> Vec<Finding> {
        findings
            .into_iter()
            .filter(|f| SELECTOR_CLASSES.contains(&f.class))
            .collect()
    };
    assert_eq!(
        selector_findings(lint(&set(projected), &Options::default())),
        selector_findings(whole.clone()),
        "the projection changes the selector findings"
    );
    whole
}

fn classes(findings: &[Finding]) -> Vec<(Class, Severity, String)> {
    findings
        .iter()
        .map(|f| (f.class, f.severity, f.object.clone()))
        .collect()
}

fn deployment(name: &str, selector: Value, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": selector,
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "i", "ports": [
                    {"name": "http", "containerPort": 8080}
                ]}]}
            }
        }
    })
}

fn service(name: &str, selector: Value, ports: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": ports}
    })
}

fn web() -> Value {
    deployment(
        "web",
        json!({"matchLabels": {"app": "web"}}),
        json!({"app": "web"}),
    )
}

#[test]
fn a_service_selecting_a_template_is_clean() {
    let findings = run(vec![
        web(),
        service(
            "web",
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": "http"}]),
        ),
    ]);
    assert_eq!(findings, vec![]);
}

#[test]
fn a_service_selecting_nothing_is_an_error() {
    let findings = run(vec![
        web(),
        service(
            "web",
            json!({"app": "wbe"}),
            json!([{"port": 80, "targetPort": "http"}]),
        ),
    ]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::SelectorMatchesNothing,
            Severity::Error,
            "Service/default/web".to_string()
        )]
    );
    assert_eq!(findings[0].document, 2);
    assert!(
        findings[0].message.contains("app=wbe"),
        "{}",
        findings[0].message
    );
}

#[test]
fn templates_count_only_in_the_selectors_namespace() {
    let mut svc = service("web", json!({"app": "web"}), json!([{"port": 8080}]));
    svc["metadata"]["namespace"] = json!("other");
    let findings = run(vec![web(), svc]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::SelectorMatchesNothing,
            Severity::Error,
            "Service/other/web".to_string()
        )]
    );
    let options = Options {
        default_namespace: "other".into(),
        subject: None,
    };
    let mut svc = service("web", json!({"app": "web"}), json!([{"port": 8080}]));
    svc["metadata"]["namespace"] = json!("other");
    assert_eq!(lint(&set(vec![web(), svc]), &options), vec![]);
}

#[test]
fn a_service_without_selector_is_not_checked() {
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
        "spec": {"ports": [{"port": 5432}]}});
    assert_eq!(run(vec![svc]), vec![]);
}

#[test]
fn match_expressions_follow_kubernetes_semantics() {
    let pod = |name: &str, labels: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "i"}]}})
    };
    let policy = |name: &str, expressions: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name},
            "spec": {"podSelector": {"matchExpressions": expressions}}})
    };
    let findings = run(vec![
        pod("a", json!({"tier": "front", "env": "prod"})),
        policy(
            "in",
            json!([{"key": "tier", "operator": "In", "values": ["front", "back"]}]),
        ),
        policy(
            "notin",
            json!([{"key": "tier", "operator": "NotIn", "values": ["front"]}]),
        ),
        policy("exists", json!([{"key": "env", "operator": "Exists"}])),
        policy(
            "doesnotexist",
            json!([{"key": "env", "operator": "DoesNotExist"}]),
        ),
    ]);
    assert_eq!(
        classes(&findings),
        vec![
            (
                Class::SelectorMatchesNothing,
                Severity::Error,
                "NetworkPolicy/default/notin".to_string()
            ),
            (
                Class::SelectorMatchesNothing,
                Severity::Error,
                "NetworkPolicy/default/doesnotexist".to_string()
            ),
        ]
    );
}

#[test]
fn an_empty_pod_selector_selects_everything_and_never_warns() {
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny-all"}, "spec": {"podSelector": {}}});
    assert_eq!(run(vec![policy]), vec![]);
}

#[test]
fn a_disruption_budget_is_checked_like_a_service() {
    let pdb = |selector: Value| {
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"}, "spec": {"minAvailable": 1, "selector": selector}})
    };
    assert_eq!(
        run(vec![web(), pdb(json!({"matchLabels": {"app": "web"}}))]),
        vec![]
    );
    assert_eq!(
        classes(&run(vec![
            web(),
            pdb(json!({"matchLabels": {"app": "db"}}))
        ])),
        vec![(
            Class::SelectorMatchesNothing,
            Severity::Error,
            "PodDisruptionBudget/default/web".to_string()
        )]
    );
}

#[test]
fn cronjob_templates_are_selectable() {
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
            "metadata": {"labels": {"app": "batch"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}}}});
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "b"}, "spec": {"selector": {"matchLabels": {"app": "batch"}}}});
    assert_eq!(run(vec![cron, pdb]), vec![]);
}

#[test]
fn a_workload_whose_selector_misses_its_template_is_refused_once() {
    let broken = deployment(
        "api",
        json!({"matchLabels": {"app": "api"}}),
        json!({"app": "apl"}),
    );
    let findings = run(vec![broken]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::SelectorTemplateMismatch,
            Severity::Error,
            "Deployment/default/api".to_string()
        )]
    );
    assert!(findings[0]
        .message
        .contains("`selector` does not match template `labels`"));
    assert_eq!(run(vec![web()]), vec![]);
}

#[test]
fn a_workload_without_selector_is_refused() {
    let mut d = web();
    d["spec"].as_object_mut().unwrap().remove("selector");
    assert_eq!(
        classes(&run(vec![d])),
        vec![(
            Class::SelectorMissing,
            Severity::Error,
            "Deployment/default/web".to_string()
        )]
    );
}

#[test]
fn a_job_selector_counts_only_when_manual() {
    let job = |manual: bool| {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"manualSelector": manual, "selector": {"matchLabels": {"job": "x"}},
                "template": {"metadata": {"labels": {"job": "y"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    };
    assert_eq!(run(vec![job(false)]), vec![]);
    assert_eq!(
        classes(&run(vec![job(true)])),
        vec![(
            Class::SelectorTemplateMismatch,
            Severity::Error,
            "Job/default/j".to_string()
        )]
    );
}

#[test]
fn controllers_whose_selectors_share_a_template_overlap_once() {
    let wide = deployment(
        "wide",
        json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
        json!({"app": "api"}),
    );
    let findings = run(vec![web(), wide]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::SelectorsOverlap,
            Severity::Error,
            "Deployment/default/wide".to_string()
        )]
    );
    assert!(findings[0].message.contains("Deployment/default/web"));
}

#[test]
fn controllers_with_disjoint_selectors_do_not_overlap() {
    let api = deployment(
        "api",
        json!({"matchLabels": {"app": "api"}}),
        json!({"app": "api"}),
    );
    assert_eq!(run(vec![web(), api]), vec![]);
}

#[test]
fn a_controller_and_the_controller_it_owns_do_not_overlap() {
    let mut rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u", "controller": true}
        ]},
        "spec": {
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "abc"}},
            "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}
        }
    });
    assert_eq!(run(vec![web(), rs.clone()]), vec![]);
    rs["metadata"]["ownerReferences"][0]["name"] = json!("someone-else");
    assert_eq!(
        classes(&run(vec![web(), rs])),
        vec![(
            Class::SelectorsOverlap,
            Severity::Error,
            "ReplicaSet/default/web-abc".to_string()
        )]
    );
}

#[test]
fn a_named_target_port_must_be_a_selected_container_port_name() {
    let findings = run(vec![
        web(),
        service(
            "web",
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": "htp"}]),
        ),
    ]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::TargetPortNotExposed,
            Severity::Error,
            "Service/default/web".to_string()
        )]
    );
}

#[test]
fn a_named_target_port_must_match_the_protocol() {
    let findings = run(vec![
        web(),
        service(
            "web",
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": "http", "protocol": "UDP"}]),
        ),
    ]);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].class, Class::TargetPortNotExposed);
}

#[test]
fn an_undeclared_numeric_target_port_is_a_warning() {
    let findings = run(vec![
        web(),
        service(
            "web",
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": 9090}]),
        ),
    ]);
    assert_eq!(
        classes(&findings),
        vec![(
            Class::TargetPortNotExposed,
            Severity::Warning,
            "Service/default/web".to_string()
        )]
    );
    assert!(findings[0].message.contains("undeclared port"));
    let declared = run(vec![
        web(),
        service(
            "web",
            json!({"app": "web"}),
            json!([{"port": 80, "targetPort": 8080}]),
        ),
    ]);
    assert_eq!(declared, vec![]);
}

#[test]
fn an_omitted_target_port_is_the_port() {
    let omitted = |port: i64| {
        run(vec![
            web(),
            service("web", json!({"app": "web"}), json!([{"port": port}])),
        ])
    };
    assert_eq!(omitted(8080), vec![]);
    assert_eq!(omitted(80).len(), 1);
}

fn ingress(service: &str, port: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "in"},
    "spec": {
        "defaultBackend": {"service": {"name": service, "port": port}},
        "rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": port}}}
        ]}}]
    }})
}

#[test]
fn ingress_backends_must_name_a_service_of_the_set_once() {
    let svc = service(
        "web",
        json!({"app": "web"}),
        json!([{"name": "http", "port": 80, "targetPort": "http"}]),
    );
    assert_eq!(
        run(vec![
            web(),
            svc.clone(),
            ingress("web", json!({"number": 80}))
        ]),
        vec![]
    );
    assert_eq!(
        run(vec![
            web(),
            svc.clone(),
            ingress("web", json!({"name": "http"}))
        ]),
        vec![]
    );
    assert_eq!(
        classes(&run(vec![
            web(),
            svc,
            ingress("wbe", json!({"number": 80}))
        ])),
        vec![(
            Class::IngressMissingService,
            Severity::Error,
            "Ingress/default/in".to_string()
        )]
    );
}

#[test]
fn ingress_backends_must_name_a_port_of_the_service_once() {
    let svc = service(
        "web",
        json!({"app": "web"}),
        json!([{"name": "http", "port": 80, "targetPort": "http"}]),
    );
    for port in [json!({"number": 8080}), json!({"name": "https"})] {
        assert_eq!(
            classes(&run(vec![web(), svc.clone(), ingress("web", port)])),
            vec![(
                Class::IngressMissingPort,
                Severity::Error,
                "Ingress/default/in".to_string()
            )]
        );
    }
}

#[test]
fn an_invalid_operator_is_reported_not_matched() {
    let d = deployment(
        "web",
        json!({"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["web"]}]}),
        json!({"app": "web"}),
    );
    assert_eq!(
        classes(&run(vec![d])),
        vec![(
            Class::SelectorInvalid,
            Severity::Error,
            "Deployment/default/web".to_string()
        )]
    );
}

#[test]
fn a_subject_gets_only_its_own_findings() {
    let wide = deployment(
        "wide",
        json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        json!({"app": "api"}),
    );
    let orphan = service("orphan", json!({"app": "nothing"}), json!([{"port": 80}]));
    let manifests = set(vec![orphan, web(), wide]);
    let about = |subject| {
        classes(&lint(
            &manifests,
            &Options {
                subject: Some(subject),
                ..Options::default()
            },
        ))
    };
    assert_eq!(
        about(0),
        vec![(
            Class::SelectorMatchesNothing,
            Severity::Error,
            "Service/default/orphan".to_string()
        )]
    );
    assert_eq!(
        about(2),
        vec![(
            Class::SelectorsOverlap,
            Severity::Error,
            "Deployment/default/wide".to_string()
        )]
    );
}
