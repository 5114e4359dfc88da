//! Node lifecycle end to end: a simulated node whose kubelet stops (its `keel sim-nodes`
//! process ends) is marked unreachable after the grace period — Ready=Unknown, the
//! `unreachable` taints, its pods Ready=False — its pods are evicted once their tolerations
//! run out, and their ReplicaSet brings them back on the nodes that are still alive.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use keel_client::{Api, ListParams};
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn ready_status(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_tainted_and_its_pods_come_back_elsewhere() -> Result<()> {
    let cluster =
        Cluster::start_with(Flavor::Keel, 3, &["--node-monitor-grace-period=4s".into()]).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    // Three nodes that stay, and one that will stop: in one zone of four, one unhealthy node
    // leaves the zone in its normal state, so evictions are not held back. Their kubelets
    // renew every second, well inside the 4 s grace period (at the default 10 s, live nodes
    // would look unreachable between renewals and the whole zone disrupted).
    let _staying = Sim::start(
        &cluster,
        &[
            "--count",
            "3",
            "--zones",
            "1",
            "--name-prefix",
            "stay-",
            "--renew-interval",
            "1s",
        ],
    )?;
    let mut leaving = Sim::start(
        &cluster,
        &[
            "--count",
            "1",
            "--zones",
            "1",
            "--name-prefix",
            "gone-",
            "--renew-interval",
            "1s",
        ],
    )?;
    let nodes: Api<Node> = Api::all(client.clone());
    until("four ready nodes", WAIT, || async {
        nodes.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.len() == 4
                && l.items
                    .iter()
                    .all(|n| ready_status(n).as_deref() == Some("True"))
        })
    })
    .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Pinned to the node that will stop, tolerating nothing of its own: the API gives it the
    // default five-minute tolerations.
    let pinned = pods
        .create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pinned", "namespace": "default"},
            "spec": {"nodeName": "gone-0000", "containers": [{"name": "app", "image": "busybox"}]}
        }))?)
        .await?;
    let defaults: Vec<(String, Option<i64>)> = pinned
        .spec
        .and_then(|s| s.tolerations)
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        defaults,
        vec![
            ("node.kubernetes.io/not-ready".to_string(), Some(300)),
            ("node.kubernetes.io/unreachable".to_string(), Some(300)),
        ]
    );
    // A ReplicaSet whose pods tolerate an unreachable node for two seconds, one per node.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(&serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                    "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]
                }
            }
        }
    }))?)
    .await?;
    let web = |p: &Pod| {
        p.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str)
            == Some("web")
    };
    until("a web pod on every node", WAIT, || async {
        pods.list(&ListParams::default()).await.is_ok_and(|l| {
            let mut on: Vec<&str> = l
                .items
                .iter()
                .filter(|p| web(p))
                .filter_map(node_of)
                .collect();
            on.sort();
            on == vec!["gone-0000", "stay-0000", "stay-0001", "stay-0002"]
        })
    })
    .await?;

    // The node's kubelet stops.
    leaving.terminate().await?;
    until("the node is unreachable and tainted", WAIT, || async {
        nodes.get("gone-0000").await.is_ok_and(|n| {
            let taints: Vec<(String, String)> = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.effect))
                .collect();
            ready_status(&n).as_deref() == Some("Unknown")
                && taints.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
                && taints.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
        })
    })
    .await?;
    // Its web pod is evicted (marked for deletion: no kubelet is left to finish it) and
    // replaced; three web pods run on the nodes that stayed, and the replacement waits (its
    // host port is taken everywhere else).
    until("the web pod on the lost node is evicted", WAIT, || async {
        pods.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|p| {
                web(p) && node_of(p) == Some("gone-0000") && p.metadata.deletion_timestamp.is_some()
            })
        })
    })
    .await?;
    until("the ReplicaSet has four live pods again", WAIT, || async {
        pods.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items
                .iter()
                .filter(|p| web(p) && p.metadata.deletion_timestamp.is_none())
                .count()
                == 4
        })
    })
    .await?;
    let pinned = pods.get("pinned").await?;
    assert!(
        pinned.metadata.deletion_timestamp.is_none(),
        "the default five-minute toleration keeps the pinned pod for now"
    );
    let ready_condition = pinned
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status);
    assert_eq!(ready_condition.as_deref(), Some("False"));
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let evictions = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("TaintManagerEviction"))
        .count();
    assert_eq!(evictions, 1, "only the web pod was evicted");
    Ok(())
}
