//! Specification of the scheduling checks: each row names the Kubernetes behaviour, the part
//! of a pod spec that shows it, and the errors Kubernetes reports for it.

use serde_json::{json, Value};

use crate::defaults::default_object;
use crate::kinds::by_kind;
use crate::validation::validate;

const REQUIRED_TERMS: &str =
    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms";
const ANTI_REQUIRED: &str =
    "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution";

/// The errors of a valid pod whose spec also has `extra`.
fn pod_errors(extra: Value) -> Vec<String> {
    let mut spec = json!({"containers": [{"name": "web", "image": "nginx:1.27"}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    let info = by_kind("v1", "Pod").expect("pods are served");
    default_object(info, &mut pod).expect("defaults");
    validate(info, &pod, None)
        .iter()
        .map(|e| e.to_string())
        .collect()
}

/// A required node affinity with one term holding `expressions` as its matchExpressions.
fn node_expressions(expressions: Value) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": expressions}]}}}})
}

fn node_fields(fields: Value) -> Value {
    json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": fields}]}}}})
}

fn anti_affinity(term: Value) -> Value {
    json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}})
}

fn spread(constraints: Value) -> Value {
    json!({"topologySpreadConstraints": constraints})
}

fn one_spread(fields: Value) -> Value {
    let mut c = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "web"}}});
    if let (Some(c), Some(fields)) = (c.as_object_mut(), fields.as_object()) {
        c.extend(fields.clone());
    }
    spread(json!([c]))
}

fn tolerations(list: Value) -> Value {
    json!({"tolerations": list})
}

/// Rows of (Kubernetes behaviour, spec fields, exactly the errors reported).
fn exact_cases() -> Vec<(&'static str, Value, Vec<String>)> {
    let expr = format!("{REQUIRED_TERMS}[0].matchExpressions[0]");
    let field = format!("{REQUIRED_TERMS}[0].matchFields[0]");
    let tsc = "spec.topologySpreadConstraints[0]";
    vec![
        (
            "Gt needs a value that parses as an integer",
            node_expressions(json!([{"key": "cpus", "operator": "Gt", "values": ["four"]}])),
            vec![format!("{expr}.values[0]: Invalid value: \"four\": for 'Gt', 'Lt' operators, the value must be an integer")],
        ),
        (
            "Lt needs exactly one value",
            node_expressions(json!([{"key": "cpus", "operator": "Lt", "values": ["1", "2"]}])),
            vec![format!("{expr}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")],
        ),
        (
            "Gt with no value at all",
            node_expressions(json!([{"key": "cpus", "operator": "Gt"}])),
            vec![format!("{expr}.values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'")],
        ),
        (
            "In needs at least one value",
            node_expressions(json!([{"key": "zone", "operator": "In", "values": []}])),
            vec![format!("{expr}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'")],
        ),
        (
            "Exists takes no values",
            node_expressions(json!([{"key": "zone", "operator": "Exists", "values": ["a"]}])),
            vec![format!("{expr}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'")],
        ),
        (
            "an unknown operator is not a selector operator",
            node_expressions(json!([{"key": "zone", "operator": "Equals", "values": ["a"]}])),
            vec![format!("{expr}.operator: Invalid value: \"Equals\": not a valid selector operator")],
        ),
        (
            "a required node selector has at least one term",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}),
            vec![format!("{REQUIRED_TERMS}: Required value: must have at least one node selector term")],
        ),
        (
            "matchFields selects only metadata.name",
            node_fields(json!([{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}])),
            vec![format!("{field}.key: Invalid value: \"spec.nodeName\": not a valid field selector key")],
        ),
        (
            "matchFields In takes exactly one node name",
            node_fields(json!([{"key": "metadata.name", "operator": "In", "values": ["n1", "n2"]}])),
            vec![format!("{field}.values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector")],
        ),
        (
            "matchFields allows only In and NotIn",
            node_fields(json!([{"key": "metadata.name", "operator": "Exists"}])),
            vec![format!("{field}.operator: Invalid value: \"Exists\": not a valid selector operator")],
        ),
        (
            "a preferred node term weighs 1 to 100",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 0, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}}}),
            vec!["spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100".to_string()],
        ),
        (
            "a preferred pod affinity term weighs 1 to 100",
            json!({"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 101, "podAffinityTerm": {"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "db"}}}}]}}}),
            vec!["spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100".to_string()],
        ),
        (
            "a pod affinity term's label selector uses selector operators",
            anti_affinity(json!({"topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Has"}]}})),
            vec![format!("{ANTI_REQUIRED}[0].labelSelector.matchExpressions[0].operator: Invalid value: \"Has\": not a valid selector operator")],
        ),
        (
            "a pod affinity term's label selector values are label values",
            anti_affinity(json!({"topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["no spaces"]}]}})),
            vec![format!("{ANTI_REQUIRED}[0].labelSelector.matchExpressions[0].values[0]: Invalid value: \"no spaces\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")],
        ),
        (
            "topology spread maxSkew is positive",
            one_spread(json!({"maxSkew": 0})),
            vec![format!("{tsc}.maxSkew: Invalid value: 0: must be greater than zero")],
        ),
        (
            "topology spread needs a topology key",
            one_spread(json!({"topologyKey": ""})),
            vec![format!("{tsc}.topologyKey: Required value: can not be empty")],
        ),
        (
            "whenUnsatisfiable is DoNotSchedule or ScheduleAnyway",
            one_spread(json!({"whenUnsatisfiable": "Sometimes"})),
            vec![format!("{tsc}.whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"")],
        ),
        (
            "minDomains only with DoNotSchedule",
            one_spread(json!({"whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2})),
            vec![format!("{tsc}.minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not ScheduleAnyway")],
        ),
        (
            "minDomains is positive",
            one_spread(json!({"minDomains": 0})),
            vec![format!("{tsc}.minDomains: Invalid value: 0: must be greater than zero")],
        ),
        (
            "node inclusion policies are Honor or Ignore",
            one_spread(json!({"nodeAffinityPolicy": "Always", "nodeTaintsPolicy": "Never"})),
            vec![
                format!("{tsc}.nodeAffinityPolicy: Unsupported value: \"Always\": supported values: \"Honor\", \"Ignore\""),
                format!("{tsc}.nodeTaintsPolicy: Unsupported value: \"Never\": supported values: \"Honor\", \"Ignore\""),
            ],
        ),
        (
            "one spread per topologyKey and whenUnsatisfiable",
            spread(json!([
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
            ])),
            vec![format!("{tsc}.{{topologyKey, whenUnsatisfiable}}: Duplicate value: \"{{zone, DoNotSchedule}}\"")],
        ),
        (
            "matchLabelKeys need a label selector",
            spread(json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "matchLabelKeys": ["pod-template-hash"]}])),
            vec![format!("{tsc}.matchLabelKeys: Forbidden: must not be specified when labelSelector is not set")],
        ),
        (
            "a matchLabelKey may not repeat a selector key",
            one_spread(json!({"matchLabelKeys": ["app"]})),
            vec![format!("{tsc}.matchLabelKeys[0]: Invalid value: \"app\": exists in both matchLabelKeys and labelSelector")],
        ),
        (
            "a toleration with Exists has no value",
            tolerations(json!([{"key": "gpu", "operator": "Exists", "value": "yes"}])),
            vec!["spec.tolerations[0].operator: Invalid value: core.Toleration{Key:\"gpu\", Operator:\"Exists\", Value:\"yes\", Effect:\"\", TolerationSeconds:(*int64)(nil)}: value must be empty when `operator` is 'Exists'".to_string()],
        ),
        (
            "a toleration's effect is a taint effect",
            tolerations(json!([{"key": "gpu", "operator": "Exists", "effect": "NoRun"}])),
            vec!["spec.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".to_string()],
        ),
        (
            "a toleration's operator is Equal or Exists",
            tolerations(json!([{"key": "gpu", "operator": "In", "value": "yes"}])),
            vec!["spec.tolerations[0].operator: Unsupported value: \"In\": supported values: \"Equal\", \"Exists\"".to_string()],
        ),
        (
            "an empty key tolerates everything only with Exists",
            tolerations(json!([{"operator": "Equal", "value": "yes"}])),
            vec!["spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"".to_string()],
        ),
        (
            "tolerationSeconds only with NoExecute",
            tolerations(json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}])),
            vec!["spec.tolerations[0].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set".to_string()],
        ),
        (
            "a pod's preemption policy is PreemptLowerPriority or Never",
            json!({"preemptionPolicy": "Always"}),
            vec!["spec.preemptionPolicy: Unsupported value: \"Always\": supported values: \"PreemptLowerPriority\", \"Never\"".to_string()],
        ),
    ]
}

#[test]
fn invalid_scheduling_terms_are_refused_with_kubernetes_paths_and_messages() {
    for (behaviour, extra, expected) in exact_cases() {
        assert_eq!(pod_errors(extra), expected, "{behaviour}");
    }
}

#[test]
fn an_empty_anti_affinity_topology_key_is_required_and_not_a_label_key() {
    let errs = pod_errors(anti_affinity(
        json!({"topologyKey": "", "labelSelector": {"matchLabels": {"app": "web"}}}),
    ));
    let key = format!("{ANTI_REQUIRED}[0].topologyKey");
    assert_eq!(
        errs.first().map(String::as_str),
        Some(format!("{key}: Required value: can not be empty").as_str()),
        "{errs:?}"
    );
    // Kubernetes also reports the empty key as an invalid label key.
    assert!(
        errs[1..]
            .iter()
            .all(|e| e.starts_with(&format!("{key}: Invalid value: \"\": name part"))),
        "{errs:?}"
    );
}

#[test]
fn well_formed_scheduling_terms_are_accepted() {
    let spec = json!({
        "priorityClassName": "high",
        "preemptionPolicy": "Never",
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [
                        {"key": "cpus", "operator": "Gt", "values": ["-4"]},
                        {"key": "zone", "operator": "NotIn", "values": ["a", "b"]},
                        {"key": "gpu", "operator": "DoesNotExist"},
                    ]},
                    {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]},
                ]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}},
                ],
            },
            "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "db"}},
                 "namespaces": ["data"], "namespaceSelector": {}},
            ]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "podAffinityTerm": {"topologyKey": "zone",
                 "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}}},
            ]},
        },
        "tolerations": [
            {"operator": "Exists"},
            {"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3,
             "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore",
             "labelSelector": {"matchLabels": {"app": "web"}}, "matchLabelKeys": ["pod-template-hash"]},
            {"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"},
        ],
    });
    assert_eq!(pod_errors(spec), Vec::<String>::new());
}

#[test]
fn pod_templates_of_workloads_get_the_same_checks() {
    let mut deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "nginx:1.27"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "cpus", "operator": "Lt", "values": ["x"]}]}]}}},
                },
            },
        },
    });
    let info = by_kind("apps/v1", "Deployment").expect("deployments are served");
    default_object(info, &mut deployment).expect("defaults");
    let errs: Vec<String> = validate(info, &deployment, None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        ["spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"]
    );
}

#[test]
fn a_priority_class_name_is_a_dns_subdomain() {
    let errs = pod_errors(json!({"priorityClassName": "High_Priority"}));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.priorityClassName: Invalid value: \"High_Priority\": a lowercase RFC 1123 subdomain"),
        "{errs:?}"
    );
}

#[test]
fn an_update_that_keeps_an_old_invalid_term_is_not_refused_for_it() {
    let info = by_kind("v1", "Pod").expect("pods are served");
    let mut stored = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}],
                 "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoRun"}]}});
    let stored_spec = node_expressions(json!([{"key": "cpus", "operator": "Gt", "values": ["x"]}]));
    if let (Some(spec), Some(extra)) = (stored["spec"].as_object_mut(), stored_spec.as_object()) {
        spec.extend(extra.clone());
    }
    default_object(info, &mut stored).expect("defaults");
    // A status update of a pod stored before the checks: the terms are as they were.
    let mut updated = stored.clone();
    updated["status"] = json!({"phase": "Running"});
    assert_eq!(validate(info, &updated, Some(&stored)), Vec::new());
    // Adding a toleration changes that section, so it is judged again, whole.
    let mut tolerating = stored.clone();
    tolerating["spec"]["tolerations"]
        .as_array_mut()
        .expect("tolerations")
        .push(json!({"key": "ssd", "operator": "Exists"}));
    let errs: Vec<String> = validate(info, &tolerating, Some(&stored))
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        ["spec.tolerations[0].effect: Unsupported value: \"NoRun\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""]
    );
}
