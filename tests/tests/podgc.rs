//! The pod garbage collector end to end: with `--terminated-pod-gc-threshold=2`, finished pods
//! beyond two are deleted, oldest first, and running pods are never touched.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use keel_client::{Api, ListParams};
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_pods_beyond_the_threshold_are_collected_oldest_first() -> Result<()> {
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--terminated-pod-gc-threshold=2".into()]).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "2"])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = |name: &str, run: Option<&str>| -> Result<Pod> {
        let annotations = match run {
            Some(t) => json!({"keel.dev/sim-run-time": t}),
            None => json!({}),
        };
        Ok(serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "busybox"}]}
        }))?)
    };
    pods.create(&pod("long-running", None)?).await?;
    // Created one after another, so their ages are ordered.
    for i in 0..4 {
        pods.create(&pod(&format!("done-{i}"), Some("1s"))?).await?;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    until(
        "two finished pods are left, the newest",
        Duration::from_secs(60),
        || async {
            let Ok(list) = pods.list(&ListParams::default()).await else {
                return false;
            };
            let mut names: Vec<String> = list
                .items
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            names.sort();
            names == vec!["done-2", "done-3", "long-running"]
        },
    )
    .await?;
    Ok(())
}
