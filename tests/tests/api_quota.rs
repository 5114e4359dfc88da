//! ResourceQuota on a real keel: counts and compute resources are enforced at write time with
//! Kubernetes' messages, deletes give usage back, and concurrent creates never overrun a quota
//! (the quota's usage is compare-and-swapped in the same transaction as the object).

use keel_proto::keelapi::{CreateRequest, DeleteRequest, GetRequest, ResourceRef};
use keel_tests::api::{ready_client, status_of};
use keel_tests::{Cluster, Flavor};
use serde_json::{json, Value};

fn reference(resource: &str, namespace: &str, name: &str) -> Option<ResourceRef> {
    Some(ResourceRef {
        group: String::new(),
        version: "v1".into(),
        resource: resource.into(),
        namespace: namespace.into(),
        name: name.into(),
        subresource: String::new(),
    })
}

async fn create(
    api: &mut keel_tests::api::Api,
    resource: &str,
    namespace: &str,
    object: Value,
) -> Result<Value, Value> {
    api.create(CreateRequest {
        r#ref: reference(resource, namespace, ""),
        object: serde_json::to_vec(&object).unwrap_or_default(),
        options: None,
    })
    .await
    .map(|r| serde_json::from_slice(&r.into_inner().object).unwrap_or(Value::Null))
    .map_err(|e| status_of(&e))
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
}

fn pod(name: &str, cpu: Option<&str>) -> Value {
    let resources = match cpu {
        Some(c) => json!({"requests": {"cpu": c}}),
        None => json!({}),
    };
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_enforced_at_write_time() -> anyhow::Result<()> {
    // The API alone: no controller writes into the namespaces under test (the root CA
    // publisher would add a ConfigMap to each).
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let mut api = ready_client(&cluster, 0).await?;
    create(
        &mut api,
        "namespaces",
        "",
        json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "q"}}),
    )
    .await
    .map_err(|s| anyhow::anyhow!("{s}"))?;
    create(&mut api, "configmaps", "q", cm("before"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let quota = create(
        &mut api,
        "resourcequotas",
        "q",
        json!({
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
        "spec": {"hard": {"configmaps": "3", "requests.cpu": "1"}}}),
    )
    .await
    .map_err(|s| anyhow::anyhow!("{s}"))?;
    assert_eq!(quota["status"]["hard"]["configmaps"], "3");
    assert_eq!(
        quota["status"]["used"]["configmaps"], "1",
        "counted at creation: {quota}"
    );

    // Two more fit; the fourth does not.
    create(&mut api, "configmaps", "q", cm("c1"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    create(&mut api, "configmaps", "q", cm("c2"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let over = create(&mut api, "configmaps", "q", cm("c3"))
        .await
        .expect_err("over quota");
    assert_eq!(over["code"], 403);
    assert_eq!(
        over["message"],
        "configmaps \"c3\" is forbidden: exceeded quota: q, requested: configmaps=1, used: configmaps=3, limited: configmaps=3"
    );
    // A delete gives the usage back.
    api.delete(DeleteRequest {
        r#ref: reference("configmaps", "q", "c1"),
        ..Default::default()
    })
    .await?;
    create(&mut api, "configmaps", "q", cm("c3"))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;

    // Compute resources: requests are summed; a pod without the tracked request is refused.
    create(&mut api, "pods", "q", pod("p1", Some("600m")))
        .await
        .map_err(|s| anyhow::anyhow!("{s}"))?;
    let cpu = create(&mut api, "pods", "q", pod("p2", Some("600m")))
        .await
        .expect_err("cpu");
    assert!(
        cpu["message"]
            .as_str()
            .unwrap_or("")
            .contains("exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1"),
        "{cpu}"
    );
    let unspecified = create(&mut api, "pods", "q", pod("p3", None))
        .await
        .expect_err("no request");
    assert!(
        unspecified["message"]
            .as_str()
            .unwrap_or("")
            .contains("failed quota: q: must specify requests.cpu"),
        "{unspecified}"
    );

    // Concurrent creates against one free slot: exactly one wins.
    api.delete(DeleteRequest {
        r#ref: reference("configmaps", "q", "c2"),
        ..Default::default()
    })
    .await?;
    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut a = api.clone();
        tasks.push(tokio::spawn(async move {
            create(&mut a, "configmaps", "q", cm(&format!("race{i}")))
                .await
                .is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await? {
            wins += 1;
        }
    }
    assert_eq!(wins, 1, "one slot, one winner");
    let used: Value = serde_json::from_slice(
        &api.get(GetRequest {
            r#ref: reference("resourcequotas", "q", "q"),
            ..Default::default()
        })
        .await?
        .into_inner()
        .object,
    )?;
    assert_eq!(used["status"]["used"]["configmaps"], "3");
    Ok(())
}
