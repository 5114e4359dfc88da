//! Deleting a namespace end to end: everything in it is deleted, and while something holds
//! the deletion up (here, an object with a finalizer) the namespace's conditions say what, as
//! Kubernetes' namespace controller reports it; once the finalizer is gone, so is the
//! namespace.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use keel_client::{Api, DeleteParams, Patch};
use keel_tests::sim::{ready, until};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_names_what_holds_it_up() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
        )?)
        .await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    for (name, finalizers) in [("plain", json!([])), ("held", json!(["example.com/hold"]))] {
        maps.create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "doomed", "finalizers": finalizers}
        }))?)
        .await?;
    }
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await?;
    until("the namespace reports the finalizer holding it", WAIT, || async {
        let Ok(ns) = namespaces.get("doomed").await else { return false };
        let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
        conditions.iter().any(|c| {
            c.type_ == "NamespaceFinalizersRemaining"
                && c.status == "True"
                && c.message.as_deref()
                    == Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
        }) && conditions.iter().any(|c| {
            c.type_ == "NamespaceContentRemaining"
                && c.status == "True"
                && c.message.as_deref()
                    == Some("Some resources are remaining: configmaps has 1 resource instances")
        })
    })
    .await?;
    assert!(maps.get("plain").await.is_err_and(|e| e.is_not_found()));
    maps.patch(
        "held",
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    until("the namespace is gone", WAIT, || async {
        namespaces
            .get("doomed")
            .await
            .is_err_and(|e| e.is_not_found())
    })
    .await?;
    Ok(())
}
