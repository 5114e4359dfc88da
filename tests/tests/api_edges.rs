//! Requests at the edges of the API that once went wrong, answered as Kubernetes answers them:
//! the namespaces the cluster lives in cannot be deleted, a watch from the largest possible
//! resourceVersion is refused instead of breaking its handler, and a list at a resourceVersion
//! the cluster has not reached is refused instead of answered with older data.

use anyhow::Result;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_own_namespaces_cannot_be_deleted() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    for ns in ["default", "kube-system", "kube-public"] {
        let err = k.fails(&["delete", "namespace", ns]);
        assert!(
            err.contains(&format!(
                "namespaces \"{ns}\" is forbidden: this namespace may not be deleted"
            )),
            "{err}"
        );
    }
    k.ok(&["get", "namespace", "default"]);
    k.ok(&["create", "namespace", "scratch"]);
    k.ok(&["delete", "namespace", "scratch"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_the_largest_resource_version_is_refused_and_the_server_carries_on(
) -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let out = k.run(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=9223372036854775807",
        "--request-timeout=20s",
    ]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr.contains("Too large resource version"),
        "{}",
        out.stderr
    );
    k.ok(&["get", "configmaps", "-n", "default"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_at_a_future_resource_version_is_refused() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let out = k.run(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/configmaps?resourceVersion=999999999",
    ]);
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("Too large resource version: 999999999, current: "),
        "{}",
        out.stderr
    );
    // A resourceVersion already reached is served.
    let list = k.json(&["get", "configmaps", "-n", "default"]);
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    k.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/configmaps?resourceVersion={rv}"),
    ]);
    Ok(())
}
