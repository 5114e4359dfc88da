//! Server-side apply and update tracking on plain objects.

use serde_json::{json, Value};

use super::*;

const NOW: &str = "2026-01-01T00:00:00Z";

fn by(manager: &str) -> Apply<'_> {
    Apply {
        manager,
        force: false,
        with_status: false,
        now: NOW,
        schema: None,
    }
}

fn deployment(image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [
                {"name": "web", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}
            ]}}
        }
    })
}

fn managers(object: &Value) -> Vec<(String, String)> {
    entries_of(object)
        .into_iter()
        .map(|e| (e.manager, e.operation))
        .collect()
}

#[test]
fn fields_v1_names_keyed_elements_and_round_trips() {
    let set = fields_of(
        &deployment("a", 1),
        Ctx::root("apps/v1", "Deployment"),
        false,
    );
    let v1 = set.to_json();
    assert_eq!(
        v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"],
        json!({".": {}, "f:image": {}, "f:name": {},
            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                ".": {}, "f:containerPort": {}, "f:protocol": {}}}})
    );
    assert_eq!(
        v1["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}}),
        "a map is a member itself, metadata (a struct) is not"
    );
    assert_eq!(FieldSet::from_json(&v1), set);
}

#[test]
fn applying_creates_then_a_second_identical_apply_changes_nothing() {
    let first = apply(None, &deployment("a", 1), &by("kubectl")).expect("applies");
    assert_eq!(first["spec"]["replicas"], 1);
    assert_eq!(
        managers(&first),
        vec![("kubectl".to_string(), APPLY.to_string())]
    );
    let second = apply(Some(&first), &deployment("a", 1), &by("kubectl")).expect("applies");
    assert_eq!(second, first);
}

#[test]
fn fields_an_applier_stops_applying_are_removed() {
    let first = apply(None, &deployment("a", 1), &by("kubectl")).expect("applies");
    let mut config = deployment("a", 1);
    config["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("labels");
    let second = apply(Some(&first), &config, &by("kubectl")).expect("applies");
    assert!(
        second["metadata"].get("labels").is_none(),
        "{}",
        second["metadata"]
    );
}

#[test]
fn another_manager_changing_a_field_conflicts_unless_forced() {
    let first = apply(None, &deployment("a", 1), &by("kubectl")).expect("applies");
    let conflicts = apply(Some(&first), &deployment("b", 1), &by("other")).expect_err("conflicts");
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.template.spec.containers[name=\"web\"].image"
    );
    // The same value is no conflict: both own it.
    let shared = apply(Some(&first), &deployment("a", 1), &by("other")).expect("shares");
    assert_eq!(managers(&shared).len(), 2);

    let forced = apply(
        Some(&first),
        &deployment("b", 1),
        &Apply {
            force: true,
            ..by("other")
        },
    )
    .expect("forced");
    assert_eq!(
        forced["spec"]["template"]["spec"]["containers"][0]["image"],
        "b"
    );
    let kubectl = entries_of(&forced)
        .into_iter()
        .find(|e| e.manager == "kubectl")
        .expect("kubectl keeps the rest");
    let image = ["f:spec", "f:template", "f:spec", "f:containers"]
        .iter()
        .map(|s| s.to_string())
        .chain(["k:{\"name\":\"web\"}".to_string(), "f:image".to_string()])
        .collect::<Vec<_>>();
    assert!(!kubectl.fields.contains(&image));
    assert!(kubectl
        .fields
        .contains(&["f:spec".to_string(), "f:replicas".to_string()]));
}

#[test]
fn updates_take_what_they_change_from_appliers() {
    let applied = apply(None, &deployment("a", 1), &by("kubectl")).expect("applies");
    let mut scaled = applied.clone();
    scaled["spec"]["replicas"] = json!(5);
    let update = Update {
        manager: "kubectl-scale",
        subresource: "",
        with_status: false,
        now: NOW,
        schema: None,
    };
    track_update(Some(&applied), &mut scaled, &update);
    let entries = entries_of(&scaled);
    let scale = entries
        .iter()
        .find(|e| e.manager == "kubectl-scale")
        .expect("scale entry");
    assert_eq!(scale.operation, UPDATE);
    assert_eq!(
        scale.fields.to_json(),
        json!({"f:spec": {"f:replicas": {}}})
    );
    // Applying the old replicas again now conflicts with the updater.
    let conflicts =
        apply(Some(&scaled), &deployment("a", 1), &by("kubectl")).expect_err("conflict");
    assert_eq!(
        conflict_message(&conflicts),
        format!("Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1 at {NOW}: .spec.replicas")
    );
}

#[test]
fn a_create_owns_every_field_it_sets() {
    let mut created = deployment("a", 1);
    let update = Update {
        manager: "kubectl-create",
        subresource: "",
        with_status: false,
        now: NOW,
        schema: None,
    };
    track_update(None, &mut created, &update);
    let entries = entries_of(&created);
    assert_eq!(entries.len(), 1);
    assert!(entries[0]
        .fields
        .contains(&["f:spec".to_string(), "f:replicas".to_string()]));
}

#[test]
fn conflicts_with_several_managers_are_listed_per_manager() {
    let conflicts = vec![
        Conflict {
            manager: "\"b\"".into(),
            path: vec!["f:data".into(), "f:x".into()],
        },
        Conflict {
            manager: "\"a\"".into(),
            path: vec!["f:data".into(), "f:y".into()],
        },
    ];
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .data.y\nconflicts with \"b\":\n- .data.x"
    );
}

#[test]
fn an_element_is_found_by_the_keys_the_configuration_gives() {
    let mut config = deployment("a", 1);
    let ports = &mut config["spec"]["template"]["spec"]["containers"][0]["ports"][0];
    ports.as_object_mut().expect("port").remove("protocol");
    let mut live = apply(None, &config, &by("kubectl")).expect("applies");
    // The server defaults the protocol, a key of the ports list.
    live["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = json!("TCP");
    let again = apply(Some(&live), &config, &by("kubectl")).expect("applies");
    assert_eq!(
        again["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(again, live);
}

/// A custom kind's schema: a keyed list, a set, an atomic list (no list type) and an atomic
/// map.
fn custom_schema() -> keel_types::crd::Schema {
    serde_json::from_value(json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "port": {"type": "integer"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set",
                    "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                    "additionalProperties": {"type": "string"}}
            }}
        }
    }))
    .expect("schema")
}

fn widget(ports: Value, tags: Value, args: Value, selector: Value) -> Value {
    json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"app": "w"}},
        "spec": {"ports": ports, "tags": tags, "args": args, "selector": selector}
    })
}

#[test]
fn a_custom_kinds_lists_merge_as_their_list_types_say() {
    let schema = custom_schema();
    let with = |manager| Apply {
        schema: Some(&schema),
        ..by(manager)
    };
    let first = apply(
        None,
        &widget(
            json!([{"name": "http", "port": 80}]),
            json!(["a"]),
            json!(["--x"]),
            json!({"app": "w"}),
        ),
        &with("one"),
    )
    .expect("applies");
    let v1 = entries_of(&first)[0].fields.to_json();
    assert_eq!(
        v1["f:spec"]["f:ports"],
        json!({r#"k:{"name":"http"}"#: {".": {}, "f:name": {}, "f:port": {}}}),
        "a map list is keyed by its map keys"
    );
    assert_eq!(v1["f:spec"]["f:tags"], json!({r#"v:"a""#: {}}));
    assert_eq!(
        v1["f:spec"]["f:args"],
        json!({}),
        "a list with no type is atomic"
    );
    assert_eq!(
        v1["f:spec"]["f:selector"],
        json!({}),
        "an atomic map is one field"
    );
    assert_eq!(
        v1["f:spec"]["."],
        json!({}),
        "a custom object is a member itself"
    );
    assert_eq!(
        v1["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}})
    );

    // A second manager adds its own port, tag, args and selector: the keyed list and the set
    // gain elements; the atomic list and map are the second manager's (forced) values.
    let second = apply(
        Some(&first),
        &widget(
            json!([{"name": "metrics", "port": 9090}]),
            json!(["b"]),
            json!(["--y"]),
            json!({"tier": "db"}),
        ),
        &Apply {
            force: true,
            ..with("two")
        },
    )
    .expect("applies");
    assert_eq!(
        second["spec"]["ports"],
        json!([{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}])
    );
    assert_eq!(second["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(second["spec"]["args"], json!(["--y"]));
    assert_eq!(second["spec"]["selector"], json!({"tier": "db"}));

    // The first manager drops its port: only its own element goes.
    let third = apply(
        Some(&second),
        &json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"app": "w"}},
            "spec": {"tags": ["a"]}}),
        &with("one"),
    )
    .expect("applies");
    assert_eq!(
        third["spec"]["ports"],
        json!([{"name": "metrics", "port": 9090}])
    );
    assert_eq!(third["spec"]["tags"], json!(["a", "b"]));
}

#[test]
fn an_element_the_applier_no_longer_applies_goes_whole() {
    let mut two = deployment("a", 1);
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(json!({"name": "sidecar", "image": "s"}));
    let first = apply(None, &two, &by("kubectl")).expect("applies");
    let again = apply(Some(&first), &deployment("a", 1), &by("kubectl")).expect("applies");
    assert_eq!(
        again["spec"]["template"]["spec"]["containers"],
        deployment("a", 1)["spec"]["template"]["spec"]["containers"],
        "the sidecar is gone, not left as an empty element"
    );
}
