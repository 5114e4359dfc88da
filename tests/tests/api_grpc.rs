//! The API server over gRPC on a real keel: Kubernetes object semantics end to end — server-set
//! metadata, AlreadyExists, resourceVersion conflicts, paging, watches, namespace lifecycle and
//! field validation, with errors carrying Kubernetes Status objects.

use std::time::Duration;

use keel_proto::keelapi::{
    CreateRequest, DeleteRequest, GetRequest, ListRequest, ResourceRef, UpdateRequest,
    WatchRequest, WriteOptions,
};
use keel_tests::api::{obj, ready_client, status_of};
use keel_tests::{Cluster, Flavor};
use serde_json::{json, Value};
use tokio_stream::StreamExt;

fn cm_ref(namespace: &str, name: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        group: String::new(),
        version: "v1".into(),
        resource: "configmaps".into(),
        namespace: namespace.into(),
        name: name.into(),
        subresource: String::new(),
    })
}

fn cm(name: &str, data: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"k": data},
    }))
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_get_kubernetes_semantics_over_grpc() -> anyhow::Result<()> {
    // The API alone: no controller writes into the namespaces under test (the root CA
    // publisher would add a ConfigMap to each).
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let mut api = ready_client(&cluster, 0).await?;

    let created = api
        .create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: cm("a", "1"),
            options: None,
        })
        .await?
        .into_inner();
    let a = obj(&created.object);
    assert_eq!(a["metadata"]["namespace"], "default");
    assert_eq!(a["metadata"]["uid"].as_str().map(str::len), Some(36));
    assert!(a["metadata"]["creationTimestamp"].is_string());
    let rv1 = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(rv1.parse::<i64>().is_ok_and(|r| r > 0), "{a}");

    let again = api
        .create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: cm("a", "2"),
            options: None,
        })
        .await
        .expect_err("a second create of the same name fails");
    assert_eq!(again.code(), tonic::Code::AlreadyExists);
    let st = status_of(&again);
    assert_eq!(st["reason"], "AlreadyExists");
    assert_eq!(st["code"], 409);
    assert_eq!(st["message"], "configmaps \"a\" already exists");

    // Two updates from the same resourceVersion: exactly one wins.
    let update = |data: &str| {
        let mut body = a.clone();
        body["data"]["k"] = json!(data);
        UpdateRequest {
            r#ref: cm_ref("default", "a"),
            object: serde_json::to_vec(&body).unwrap_or_default(),
            options: None,
        }
    };
    let (mut c1, mut c2) = (api.clone(), api.clone());
    let (r1, r2) = tokio::join!(c1.update(update("x")), c2.update(update("y")));
    let wins = [&r1, &r2].iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{r1:?} {r2:?}");
    let loser = if r1.is_err() { r1 } else { r2 };
    let loser = loser.expect_err("one loses");
    assert_eq!(loser.code(), tonic::Code::Aborted);
    assert_eq!(status_of(&loser)["reason"], "Conflict");
    assert_eq!(
        status_of(&loser)["message"],
        "Operation cannot be fulfilled on configmaps \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // A watch from the first version sees the winning update, then the delete.
    let mut watch = api
        .watch(WatchRequest {
            r#ref: cm_ref("default", ""),
            resource_version: rv1.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    api.delete(DeleteRequest {
        r#ref: cm_ref("default", "a"),
        ..Default::default()
    })
    .await?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await?
            .expect("watch open")?;
        let o = obj(&ev.object);
        seen.push((ev.r#type, o["metadata"]["name"].clone()));
    }
    assert_eq!(
        seen,
        [
            ("MODIFIED".to_string(), json!("a")),
            ("DELETED".to_string(), json!("a"))
        ]
    );

    // Paging: 5 objects, 2 per page, all seen once, in name order.
    for i in 0..5 {
        api.create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: cm(&format!("p{i}"), "v"),
            options: None,
        })
        .await?;
    }
    let mut names = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let list = obj(&api
            .list(ListRequest {
                r#ref: cm_ref("default", ""),
                limit: 2,
                r#continue: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .object);
        pages += 1;
        assert_eq!(list["kind"], "ConfigMapList");
        for item in list["items"].as_array().into_iter().flatten() {
            names.push(item["metadata"]["name"].as_str().unwrap_or("").to_string());
        }
        token = list["metadata"]["continue"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if token.is_empty() {
            break;
        }
        if pages == 1 {
            assert_eq!(list["metadata"]["remainingItemCount"], 3);
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
    assert_eq!(pages, 3);

    // Namespace lifecycle: nothing is created in a namespace that does not exist.
    let missing = api
        .create(CreateRequest {
            r#ref: cm_ref("nowhere", ""),
            object: cm("x", "1"),
            options: None,
        })
        .await
        .expect_err("no such namespace");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert_eq!(
        status_of(&missing)["message"],
        "namespaces \"nowhere\" not found"
    );

    // generateName.
    let generated = obj(&api
        .create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: serde_json::to_vec(&json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"generateName": "gen-"},
            }))?,
            options: None,
        })
        .await?
        .into_inner()
        .object);
    let name = generated["metadata"]["name"].as_str().unwrap_or("");
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Fields the kind lacks: refused under Strict, warned about otherwise.
    let mut bogus =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "bogus": 1});
    let strict = api
        .create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: serde_json::to_vec(&bogus)?,
            options: Some(WriteOptions {
                field_validation: "Strict".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("strict refuses unknown fields");
    assert_eq!(status_of(&strict)["code"], 400);
    assert_eq!(
        status_of(&strict)["message"],
        "strict decoding error: unknown field \"bogus\""
    );
    bogus["metadata"]["name"] = json!("c");
    let warned = api
        .create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: serde_json::to_vec(&bogus)?,
            options: None,
        })
        .await?
        .into_inner();
    assert_eq!(warned.warnings, ["unknown field \"bogus\""]);
    assert!(obj(&warned.object).get("bogus").is_none());
    Ok(())
}

fn labelled(name: &str, tier: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"tier": tier}},
    }))
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_filter_lists_and_watches() -> anyhow::Result<()> {
    // The API alone: no controller writes into the namespaces under test (the root CA
    // publisher would add a ConfigMap to each).
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let mut api = ready_client(&cluster, 0).await?;
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "cache")] {
        api.create(CreateRequest {
            r#ref: cm_ref("default", ""),
            object: labelled(name, tier),
            options: None,
        })
        .await?;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let list = |labels: &str, fields: &str, limit: i64| ListRequest {
        r#ref: cm_ref("default", ""),
        label_selector: labels.into(),
        field_selector: fields.into(),
        limit,
        ..Default::default()
    };
    let web = obj(&api.list(list("tier=web", "", 0)).await?.into_inner().object);
    assert_eq!(names(&web), ["a", "c"]);
    let set = obj(&api
        .list(list("tier in (db,cache)", "", 0))
        .await?
        .into_inner()
        .object);
    assert_eq!(names(&set), ["b", "d"]);
    let not_a = obj(&api
        .list(list("tier=web", "metadata.name!=a", 0))
        .await?
        .into_inner()
        .object);
    assert_eq!(names(&not_a), ["c"]);
    // A page of one web object still says more may follow.
    let page = obj(&api.list(list("tier=web", "", 1)).await?.into_inner().object);
    assert_eq!(names(&page), ["a"]);
    assert!(page["metadata"]["continue"].is_string());

    let bad = api
        .list(list("tier in (web", "", 0))
        .await
        .expect_err("malformed selector");
    assert_eq!(status_of(&bad)["code"], 400);
    let unsupported = api
        .list(list("", "spec.nodeName=x", 0))
        .await
        .expect_err("configmaps have no spec.nodeName");
    assert_eq!(
        status_of(&unsupported)["message"],
        "field label not supported: spec.nodeName"
    );

    // Relabelling moves an object out of and into a selective watch.
    let rv = web["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let mut watch = api
        .watch(WatchRequest {
            r#ref: cm_ref("default", ""),
            label_selector: "tier=web".into(),
            resource_version: rv,
            ..Default::default()
        })
        .await?
        .into_inner();
    for (name, tier) in [("a", "db"), ("b", "web")] {
        let current = obj(&api
            .get(GetRequest {
                r#ref: cm_ref("default", name),
                ..Default::default()
            })
            .await?
            .into_inner()
            .object);
        let mut next = current.clone();
        next["metadata"]["labels"]["tier"] = json!(tier);
        api.update(UpdateRequest {
            r#ref: cm_ref("default", name),
            object: serde_json::to_vec(&next)?,
            options: None,
        })
        .await?;
    }
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await?
            .expect("watch open")?;
        seen.push((ev.r#type, obj(&ev.object)["metadata"]["name"].clone()));
    }
    assert_eq!(
        seen,
        [
            ("DELETED".to_string(), json!("a")),
            ("ADDED".to_string(), json!("b"))
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_terminates_empties_and_goes() -> anyhow::Result<()> {
    // The API alone: no controller writes into the namespaces under test (the root CA
    // publisher would add a ConfigMap to each).
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let mut api = ready_client(&cluster, 0).await?;
    let ns_ref = |name: &str| {
        Some(ResourceRef {
            version: "v1".into(),
            resource: "namespaces".into(),
            name: name.into(),
            ..Default::default()
        })
    };
    let created = obj(&api
        .create(CreateRequest {
            r#ref: ns_ref(""),
            object: serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "tmp"}}))?,
            options: None,
        })
        .await?
        .into_inner()
        .object);
    assert_eq!(created["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(created["status"]["phase"], "Active");
    api.create(CreateRequest {
        r#ref: cm_ref("tmp", ""),
        object: cm("inside", "1"),
        options: None,
    })
    .await?;

    let deleted = obj(&api
        .delete(DeleteRequest {
            r#ref: ns_ref("tmp"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .object);
    assert_eq!(deleted["status"]["phase"], "Terminating");
    assert!(deleted["metadata"]["deletionTimestamp"].is_string());
    let refused = api
        .create(CreateRequest {
            r#ref: cm_ref("tmp", ""),
            object: cm("late", "1"),
            options: None,
        })
        .await
        .expect_err("terminating namespace");
    assert_eq!(status_of(&refused)["code"], 403);

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let gone = api
            .get(GetRequest {
                r#ref: ns_ref("tmp"),
                ..Default::default()
            })
            .await
            .is_err_and(|e| e.code() == tonic::Code::NotFound);
        if gone {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "namespace never went");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = obj(&api
        .list(ListRequest {
            r#ref: cm_ref("tmp", ""),
            ..Default::default()
        })
        .await?
        .into_inner()
        .object);
    assert_eq!(left["items"], json!([]), "its contents went first");
    Ok(())
}
