//! The DaemonSet controller end to end on three masters: one daemon pod per eligible simulated
//! node, also on a node that joins later, none on a node it does not tolerate, a rolling update
//! that never takes more than maxUnavailable nodes' pods down at once, and `kubectl rollout
//! status/history` reading it as on Kubernetes.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use keel_client::{Api, ListParams, Patch};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The live daemon pods per node (bound ones only), with their images.
async fn per_node(pods: &Api<Pod>) -> Result<BTreeMap<String, Vec<(String, bool)>>> {
    let mut out: BTreeMap<String, Vec<(String, bool)>> = BTreeMap::new();
    for p in pods.list(&ListParams::default()).await?.items {
        let ours = p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str)
            == Some("agent");
        if !ours || p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let image = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default();
        let ready = is_ready(&p);
        out.entry(node).or_default().push((image, ready));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_per_eligible_node_and_rolls_out() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "3"])?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}
            }
        }
    }))?)
    .await?;
    let one_each = |n: usize, image: &'static str| {
        let pods = pods.clone();
        let sets = sets.clone();
        async move {
            let Ok(map) = per_node(&pods).await else {
                return false;
            };
            let Ok(ds) = sets.get("agent").await else {
                return false;
            };
            let status = ds.status.unwrap_or_default();
            map.len() == n
                && map
                    .values()
                    .all(|v| v.len() == 1 && v[0].0 == image && v[0].1)
                && status.desired_number_scheduled == n as i32
                && status.number_ready == n as i32
                && status.updated_number_scheduled == Some(n as i32)
                && status.observed_generation == ds.metadata.generation
        }
    };
    until("one ready daemon pod on each of 3 nodes", WAIT, || {
        one_each(3, "agent:1")
    })
    .await?;

    // A node that joins later gets its pod.
    let _late = Sim::start(&cluster, &["--count", "1", "--name-prefix", "late-"])?;
    until("the new node gets its daemon pod", WAIT, || {
        one_each(4, "agent:1")
    })
    .await?;

    // A rolling update (maxUnavailable 1): at no observed moment do two nodes lack a ready
    // pod.
    sets.patch(
        "agent",
        &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}})),
    )
    .await?;
    let mut worst = 4;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let map = per_node(&pods).await?;
        let serving = map
            .values()
            .filter(|v| v.iter().any(|(_, ready)| *ready))
            .count();
        worst = worst.min(serving);
        if one_each(4, "agent:2").await {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the rollout never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        worst >= 3,
        "only {worst} of 4 nodes had a ready daemon pod at one point"
    );
    let status = kubectl.ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = kubectl.ok(&["rollout", "history", "ds/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");
    let second = kubectl.ok(&["rollout", "history", "ds/agent", "--revision=2"]);
    assert!(second.contains("agent:2"), "{second}");

    // A NoExecute taint the pods do not tolerate removes the node's pod; the others stay.
    kubectl.ok(&["taint", "nodes", "late-0000", "dedicated=infra:NoExecute"]);
    until("the tainted node loses its daemon pod", WAIT, || async {
        let Ok(map) = per_node(&pods).await else {
            return false;
        };
        let Ok(ds) = sets.get("agent").await else {
            return false;
        };
        !map.contains_key("late-0000")
            && map.len() == 3
            && ds.status.is_some_and(|s| s.desired_number_scheduled == 3)
    })
    .await?;
    Ok(())
}
