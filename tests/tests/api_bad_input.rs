//! Bad objects sent to the API server are refused the way Kubernetes refuses them — 422 Invalid
//! with each field named, or 400/404/413 — and nothing of them is stored.

use keel_proto::keelapi::{CreateRequest, GetRequest, ListRequest, ResourceRef};
use keel_tests::api::{ready_client, status_of};
use keel_tests::{Cluster, Flavor};
use serde_json::{json, Value};

fn reference(group: &str, resource: &str, name: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        group: group.into(),
        version: "v1".into(),
        resource: resource.into(),
        namespace: "default".into(),
        name: name.into(),
        subresource: String::new(),
    })
}

fn causes(status: &Value) -> Vec<String> {
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["field"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Sends `object` as a create and returns the refusal's Status.
async fn refused(
    api: &mut keel_tests::api::Api,
    group: &str,
    resource: &str,
    object: Value,
) -> anyhow::Result<Value> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let err = api
        .create(CreateRequest {
            r#ref: reference(group, resource, ""),
            object: serde_json::to_vec(&object)?,
            options: None,
        })
        .await
        .expect_err("refused");
    if !name.is_empty() {
        let get = api
            .get(GetRequest {
                r#ref: reference(group, resource, &name),
                ..Default::default()
            })
            .await;
        assert!(get.is_err(), "{name} was stored after being refused");
    }
    Ok(status_of(&err))
}

fn pod(name: &str, container: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [container]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_refused_with_kubernetes_status_and_not_stored() -> anyhow::Result<()> {
    // The API alone: no controller writes into the namespaces under test (the root CA
    // publisher would add a ConfigMap to each).
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let mut api = ready_client(&cluster, 0).await?;
    let container = json!({"name": "c", "image": "busybox"});

    let bad_name = refused(&mut api, "", "pods", pod("Bad_Name", container.clone())).await?;
    assert_eq!(bad_name["code"], 422);
    assert_eq!(bad_name["reason"], "Invalid");
    assert_eq!(bad_name["details"]["kind"], "Pod");
    assert_eq!(causes(&bad_name), ["metadata.name"]);
    let message = bad_name["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{message}"
    );

    let bad_label = refused(
        &mut api,
        "",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "l", "labels": {"app": "not valid!"}}}),
    )
    .await?;
    assert_eq!(bad_label["code"], 422);
    assert_eq!(causes(&bad_label), ["metadata.labels"]);

    let bad_quantity = refused(
        &mut api,
        "",
        "pods",
        pod(
            "q",
            json!({"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "lots"}}}),
        ),
    )
    .await?;
    assert!(
        matches!(bad_quantity["code"].as_i64(), Some(400 | 422)),
        "{bad_quantity}"
    );
    assert!(
        bad_quantity["message"]
            .as_str()
            .unwrap_or("")
            .contains("quantities must match the regular expression"),
        "{bad_quantity}"
    );

    let many = refused(
        &mut api,
        "",
        "pods",
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m"},
               "spec": {"restartPolicy": "Sometimes", "containers": [
                   {"name": "c", "image": "busybox", "ports": [{"containerPort": 70000}]},
                   {"name": "c", "image": ""}]}}),
    )
    .await?;
    assert_eq!(many["code"], 422);
    let fields = causes(&many);
    for want in [
        "spec.restartPolicy",
        "spec.containers[0].ports[0].containerPort",
        "spec.containers[1].name",
        "spec.containers[1].image",
    ] {
        assert!(
            fields.iter().any(|f| f == want),
            "{want} missing from {fields:?}"
        );
    }

    let mismatch = refused(
        &mut api,
        "apps",
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"selector": {"matchLabels": {"app": "a"}},
                        "template": {"metadata": {"labels": {"app": "b"}},
                                     "spec": {"containers": [container.clone()]}}}}),
    )
    .await?;
    assert_eq!(mismatch["code"], 422);
    assert!(
        causes(&mismatch)
            .iter()
            .any(|f| f == "spec.template.metadata.labels"),
        "{mismatch}"
    );

    let wrong_type = refused(
        &mut api,
        "",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t"}, "data": ["x"]}),
    )
    .await?;
    assert_eq!(wrong_type["code"], 400);

    let too_big = refused(
        &mut api,
        "",
        "configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"},
               "data": {"k": "x".repeat(1_200_000)}}),
    )
    .await?;
    assert!(
        matches!(too_big["code"].as_i64(), Some(413 | 422)),
        "{too_big}"
    );

    let unknown = api
        .create(CreateRequest {
            r#ref: reference("", "widgets", ""),
            object: serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Widget"}))?,
            options: None,
        })
        .await
        .expect_err("no such kind");
    assert_eq!(status_of(&unknown)["code"], 404);

    let selector = api
        .list(ListRequest {
            r#ref: reference("", "pods", ""),
            label_selector: "app in (a".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad selector");
    assert_eq!(status_of(&selector)["code"], 400);

    // Nothing of any of it was stored.
    for resource in ["pods", "configmaps"] {
        let list: Value = serde_json::from_slice(
            &api.list(ListRequest {
                r#ref: reference("", resource, ""),
                ..Default::default()
            })
            .await?
            .into_inner()
            .object,
        )?;
        assert_eq!(list["items"], json!([]), "{resource}");
    }
    Ok(())
}
