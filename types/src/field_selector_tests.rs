//! Specification of field selector parsing, escaping, printing and per-kind field values.

use super::*;
use crate::kinds::{by_kind, by_resource};
use proptest::prelude::*;
use serde_json::json;

fn parse(s: &str) -> FieldSelector {
    FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |f| {
        pairs
            .iter()
            .find(|(k, _)| *k == f)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn terms_are_equalities_and_inequalities() {
    let sel = parse("spec.nodeName=n1,status.phase!=Failed");
    assert!(sel.matches(lookup(&[
        ("spec.nodeName", "n1"),
        ("status.phase", "Running")
    ])));
    assert!(!sel.matches(lookup(&[
        ("spec.nodeName", "n1"),
        ("status.phase", "Failed")
    ])));
    assert!(!sel.matches(lookup(&[("spec.nodeName", "n2")])));
    assert!(parse("a==b").matches(lookup(&[("a", "b")])));
    assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n1"));
    assert_eq!(sel.requires_exact_match("status.phase"), None);
}

#[test]
fn an_unset_field_compares_as_empty() {
    assert!(parse("spec.nodeName=").matches(lookup(&[])));
    assert!(parse("spec.nodeName!=n1").matches(lookup(&[])));
}

#[test]
fn empty_selectors_and_empty_terms_match_everything() {
    assert!(parse("").is_empty());
    assert!(parse(",,").is_empty());
    assert!(parse("").matches(lookup(&[])));
}

#[test]
fn escaped_commas_and_equals_belong_to_the_value() {
    let sel = parse(r"a=x\,y\=z\\w,b=c");
    assert_eq!(sel.terms()[0].value, r"x,y=z\w");
    assert_eq!(sel.to_string(), r"a=x\,y\=z\\w,b=c");
}

#[test]
fn terms_print_sorted_by_their_text_with_single_equals() {
    assert_eq!(parse("b==2,a!=1").to_string(), "a!=1,b=2");
}

#[test]
fn malformed_selectors_use_kubernetes_messages() {
    assert_eq!(
        FieldSelector::parse("a=b,c")
            .expect_err("no operator")
            .to_string(),
        "invalid selector: 'a=b,c'; can't understand 'c'"
    );
    assert_eq!(
        FieldSelector::parse(r"a=b\x")
            .expect_err("bad escape")
            .to_string(),
        r"invalid field selector: invalid escape sequence: \x"
    );
    assert_eq!(
        FieldSelector::parse("a=b=c")
            .expect_err("bare =")
            .to_string(),
        "invalid field selector: unescaped character in value: 61"
    );
    assert_eq!(
        FieldSelector::parse(r"a=b\")
            .expect_err("dangling")
            .to_string(),
        r"invalid field selector: invalid escape sequence: \"
    );
}

fn pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "prod"},
        "spec": {"nodeName": "n1", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                 "serviceAccountName": "default", "containers": []},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}]}
    })
}

#[test]
fn pods_offer_their_spec_and_status_fields() {
    let info = by_kind("v1", "Pod").expect("pods");
    let p = pod();
    let get = |f: &str| field_value(info, &p, f).expect("supported");
    assert_eq!(get("metadata.name").as_deref(), Some("web-1"));
    assert_eq!(get("metadata.namespace").as_deref(), Some("prod"));
    assert_eq!(get("spec.nodeName").as_deref(), Some("n1"));
    assert_eq!(get("spec.restartPolicy").as_deref(), Some("Always"));
    assert_eq!(
        get("spec.schedulerName").as_deref(),
        Some("default-scheduler")
    );
    assert_eq!(get("spec.serviceAccountName").as_deref(), Some("default"));
    assert_eq!(get("spec.hostNetwork").as_deref(), Some("false"));
    assert_eq!(get("status.phase").as_deref(), Some("Running"));
    assert_eq!(get("status.podIP").as_deref(), Some("10.0.0.5"));
    assert_eq!(get("status.nominatedNodeName"), None);
    let sel = parse("spec.nodeName=n1,status.phase=Running,spec.hostNetwork=false");
    assert_eq!(sel.matches_object(info, &p), Ok(true));
    assert_eq!(
        parse("status.podIP=10.0.0.6").matches_object(info, &p),
        Ok(false)
    );
}

#[test]
fn unsupported_fields_are_rejected_by_name() {
    let info = by_kind("v1", "Pod").expect("pods");
    let err = field_value(info, &pod(), "foo").expect_err("unsupported");
    assert_eq!(err.to_string(), "field label not supported: foo");
    assert_eq!(
        parse("spec.containers=x").check_supported(info),
        Err(FieldSelectorError::Unsupported("spec.containers".into()))
    );
    let cm = by_kind("v1", "ConfigMap").expect("configmaps");
    assert!(field_value(cm, &json!({}), "type").is_err());
    assert!(parse("metadata.name=a,metadata.namespace=b")
        .check_supported(cm)
        .is_ok());
}

#[test]
fn other_kinds_offer_their_kubernetes_fields() {
    let node = by_kind("v1", "Node").expect("nodes");
    let n = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true}});
    assert_eq!(
        field_value(node, &n, "spec.unschedulable"),
        Ok(Some("true".into()))
    );
    assert_eq!(field_value(node, &n, "metadata.namespace"), Ok(None));

    let secret = by_kind("v1", "Secret").expect("secrets");
    let s = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"});
    assert_eq!(
        field_value(secret, &s, "type"),
        Ok(Some("kubernetes.io/tls".into()))
    );

    let ns = by_kind("v1", "Namespace").expect("namespaces");
    let n = json!({"metadata": {"name": "prod"}, "status": {"phase": "Active"}});
    assert_eq!(
        field_value(ns, &n, "status.phase"),
        Ok(Some("Active".into()))
    );

    let rs = by_resource("apps", "replicasets").expect("replicasets");
    assert_eq!(
        field_value(rs, &json!({}), "status.replicas"),
        Ok(Some("0".into()))
    );
    let job = by_resource("batch", "jobs").expect("jobs");
    let j = json!({"status": {"succeeded": 3}});
    assert_eq!(
        field_value(job, &j, "status.successful"),
        Ok(Some("3".into()))
    );

    let event = by_kind("v1", "Event").expect("events");
    let e = json!({
        "metadata": {"name": "e1", "namespace": "prod"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "prod", "uid": "u1",
                           "apiVersion": "v1", "resourceVersion": "7", "fieldPath": "spec.containers{web}"},
        "reason": "Started", "type": "Normal", "source": {"component": "kubelet"},
        "reportingComponent": "kubelet"
    });
    for (field, want) in [
        ("involvedObject.kind", "Pod"),
        ("involvedObject.name", "web-1"),
        ("involvedObject.namespace", "prod"),
        ("involvedObject.uid", "u1"),
        ("involvedObject.apiVersion", "v1"),
        ("involvedObject.resourceVersion", "7"),
        ("involvedObject.fieldPath", "spec.containers{web}"),
        ("reason", "Started"),
        ("type", "Normal"),
        ("source", "kubelet"),
        ("reportingComponent", "kubelet"),
    ] {
        assert_eq!(
            field_value(event, &e, field),
            Ok(Some(want.into())),
            "{field}"
        );
    }
}

fn term() -> impl Strategy<Value = FieldTerm> {
    let field = prop_oneof![
        Just("metadata.name".to_string()),
        Just("spec.nodeName".to_string()),
        "[a-z][a-zA-Z.]{0,8}",
    ];
    let op = prop_oneof![Just(FieldOp::Equals), Just(FieldOp::NotEquals)];
    let value = "[a-z0-9=,\\\\ .-]{0,6}";
    (field, op, value).prop_map(|(field, op, value)| FieldTerm { field, op, value })
}

proptest! {
    #[test]
    fn printing_then_parsing_keeps_every_term(terms in prop::collection::vec(term(), 0..5)) {
        let text: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
        let sel = parse(&text.join(","));
        let again = parse(&sel.to_string());
        let mut want = terms.clone();
        let mut got = again.terms().to_vec();
        let key = |t: &FieldTerm| (t.field.clone(), t.op == FieldOp::Equals, t.value.clone());
        want.sort_by_key(key);
        got.sort_by_key(key);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn values_survive_escaping(value in "\\PC{0,12}") {
        prop_assert_eq!(unescape_value(&escape_value(&value)), Ok(value));
    }
}
