//! Tests of definitions and of custom objects admitted against them.

use serde_json::{json, Value};

use super::*;

fn widget_definition() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                 "subresources": {"status": {}},
                 "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                 "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "required": ["size"], "properties": {
                         "size": {"type": "integer", "minimum": 1},
                         "color": {"type": "string", "default": "red"}}},
                     "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}},
                {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                 "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    })
}

fn established() -> Value {
    let mut crd = widget_definition();
    definition::set_status(
        &mut crd,
        &definition::TakenNames::default(),
        "2026-01-01T00:00:00Z",
    );
    crd
}

#[test]
fn a_valid_definition_passes_and_its_status_accepts_its_names() {
    let crd = established();
    assert!(
        definition::validate(&crd, None).is_empty(),
        "{:?}",
        definition::validate(&crd, None)
    );
    assert!(definition::is_established(&crd));
    assert_eq!(crd["status"]["acceptedNames"]["listKind"], "WidgetList");
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    let versions = served_versions(&crd);
    assert_eq!(versions.len(), 2);
    let v1 = &versions[0];
    assert_eq!(v1.info.api_version, "example.com/v1");
    assert_eq!(v1.info.plural, "widgets");
    assert!(v1.info.custom && v1.info.namespaced() && v1.has_status());
    assert_eq!(v1.columns[0].json_path, ".spec.size");
    assert_eq!(versions[1].storage_api_version, "example.com/v1");
    assert_eq!(
        versions[1].deprecation_warning.as_deref(),
        Some("example.com/v1beta1 Widget is deprecated")
    );
    assert!(
        std::ptr::eq(v1.info, served_versions(&crd)[0].info),
        "the same names, the same kind"
    );
}

#[test]
fn names_taken_in_the_group_are_not_accepted_and_nothing_is_served() {
    let mut taken = definition::TakenNames::default();
    taken.add_definition(&established());
    let mut other = widget_definition();
    other["metadata"]["name"] = json!("widgets.example.com");
    definition::set_status(&mut other, &taken, "now");
    assert!(!definition::is_established(&other));
    let names = &other["status"]["conditions"][0];
    assert_eq!(names["reason"], "PluralConflict");
    assert!(served_versions(&other).is_empty());
}

#[test]
fn bad_definitions_are_refused_with_kubernetes_paths() {
    let mut crd = widget_definition();
    crd["metadata"]["name"] = json!("gadgets.example.com");
    crd["spec"]["group"] = json!("example");
    crd["spec"]["scope"] = json!("Somewhere");
    crd["spec"]["versions"][1]["storage"] = json!(true);
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["size"] = json!({"minimum": 1});
    crd["spec"]["versions"][1]["schema"] = json!(null);
    let mut errs: Vec<String> = definition::validate(&crd, None)
        .iter()
        .map(ToString::to_string)
        .collect();
    errs.sort();
    assert_eq!(
        errs,
        [
            r#"metadata.name: Invalid value: "gadgets.example.com": must be spec.names.plural+"."+spec.group"#,
            r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#,
            r#"spec.scope: Unsupported value: "Somewhere": supported values: "Cluster", "Namespaced""#,
            r#"spec.versions: Invalid value: 2: must have exactly one version marked as storage version"#,
            r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[size].type: Required value: must not be empty for specified object fields"#,
            r#"spec.versions[1].schema.openAPIV3Schema: Required value: schemas are required"#,
        ]
    );
}

#[test]
fn custom_objects_are_pruned_defaulted_and_validated() {
    let crd = established();
    let v1 = &served_versions(&crd)[0];
    let admitted = admit(
        v1,
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "bogusMeta": 1}, "spec": {"size": 2, "extra": true}}),
        None,
    )
    .expect("valid");
    assert_eq!(
        admitted.unknown_fields,
        ["spec.extra", "metadata.bogusMeta"]
    );
    assert_eq!(admitted.object["spec"], json!({"size": 2, "color": "red"}));
    assert_eq!(admitted.object["metadata"], json!({"name": "w"}));
    let errs = admit(
        v1,
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"size": 0}}),
        None,
    )
    .expect_err("invalid");
    assert_eq!(
        errs[0].to_string(),
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    );
    let loose = &served_versions(&crd)[1];
    let kept = admit(
        loose,
        json!({"apiVersion": "example.com/v1beta1", "kind": "Widget",
        "metadata": {"name": "w"}, "anything": {"goes": 1}}),
        None,
    )
    .expect("preserved");
    assert!(kept.unknown_fields.is_empty());
}
