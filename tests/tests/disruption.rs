//! Disruption end to end: three keel masters (one controller manager active), nodes simulated by
//! `keel sim-nodes`, a ReplicaSet guarded by a PodDisruptionBudget. The disruption controller
//! keeps the budget's status, the eviction subresource spends it (201) or refuses (429 with
//! Kubernetes' message), and `kubectl cordon`, `drain` and `uncordon` work as operators use
//! them: drain evicts within the budget, retrying while it is spent, and the pods come back on
//! other nodes. A percentage budget over a Deployment's pods counts the Deployment's scale.

use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use keel_client::{Api, ListParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);
/// The nodes the web pods may run on; the third simulated node stays out of their reach.
const USED: [&str; 2] = ["sim-node-0000", "sim-node-0001"];

fn replica_set() -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": "nginx:1.27"}],
                    // Two nodes for three pods: one of them always holds two or more.
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": USED.map(|node| json!({"matchFields": [{
                            "key": "metadata.name", "operator": "In", "values": [node]
                        }]}))
                    }}}
                }
            }
        }
    }))?)
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The web pods not being deleted.
async fn live_pods(pods: &Api<Pod>) -> Vec<Pod> {
    let params = ListParams {
        label_selector: "app=web".into(),
        ..Default::default()
    };
    pods.list(&params)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

/// Waits until three web pods run ready, none of them on `avoid`, and the budget's status,
/// observed at its generation, allows `allowed` disruptions with `healthy` healthy pods.
async fn settled(
    pods: &Api<Pod>,
    budgets: &Api<PodDisruptionBudget>,
    avoid: Option<&str>,
    allowed: i32,
    healthy: i32,
) -> Result<()> {
    until(
        "three ready web pods and the budget's status",
        WAIT,
        || async {
            let live = live_pods(pods).await;
            let pods_ok = live.len() == 3
                && live.iter().all(is_ready)
                && live.iter().all(|p| Some(node_of(p)) != avoid);
            let Ok(pdb) = budgets.get("web-pdb").await else {
                return false;
            };
            let status = pdb.status.unwrap_or_default();
            pods_ok
                && status.observed_generation == pdb.metadata.generation
                && status.disruptions_allowed == allowed
                && status.current_healthy == healthy
                && status.desired_healthy == 2
        },
    )
    .await
}

fn eviction_path(pod: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{pod}/eviction")
}

fn eviction(pod: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_respect_the_budget_and_kubectl_drain_moves_pods_within_it() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "3"])?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());

    until("the simulated nodes registered", WAIT, || async {
        nodes
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| l.items.len() == 3)
    })
    .await?;

    // The controller computes the budget: 3 healthy of 3 expected, 2 needed, 1 to spare.
    sets.create(&replica_set()?)
        .await
        .context("creating the ReplicaSet")?;
    kubectl.ok(&[
        "create",
        "poddisruptionbudget",
        "web-pdb",
        "--selector=app=web",
        "--min-available=2",
    ]);
    settled(&pods, &budgets, None, 1, 3).await?;
    let status = budgets.get("web-pdb").await?.status.unwrap_or_default();
    assert_eq!(status.expected_pods, 3);
    let condition = status.conditions.unwrap_or_default();
    assert_eq!(
        (condition[0].type_.as_str(), condition[0].status.as_str()),
        ("DisruptionAllowed", "True")
    );
    let table = kubectl.ok(&["get", "pdb"]);
    assert!(
        table.contains("MIN AVAILABLE") && table.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );

    // With both nodes cordoned, an evicted pod's replacement cannot start, so the budget
    // stays spent: the first eviction succeeds, the second is refused as Kubernetes refuses.
    for node in USED {
        kubectl.ok(&["cordon", node]);
    }
    let live = live_pods(&pods).await;
    let first = live[0].metadata.name.clone().unwrap_or_default();
    let second = live[1].metadata.name.clone().unwrap_or_default();
    let (code, body) = kubectl.post_json(&eviction_path(&first), &eviction(&first))?;
    assert_eq!(code, 201, "{body}");
    until("the budget counts the evicted pod out", WAIT, || async {
        budgets.get("web-pdb").await.is_ok_and(|b| {
            let s = b.status.unwrap_or_default();
            s.current_healthy == 2 && s.disruptions_allowed == 0
        })
    })
    .await?;
    // Over gRPC the refusal is the same Status.
    let refused = pods
        .evict(&second, None)
        .await
        .expect_err("the budget is spent");
    assert_eq!(refused.code(), Some(429), "{refused}");
    let (code, body) = kubectl.post_json(&eviction_path(&second), &eviction(&second))?;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}])
    );
    assert!(pods
        .get(&second)
        .await?
        .metadata
        .deletion_timestamp
        .is_none());

    // Uncordoned, the ReplicaSet's replacement runs and the budget allows an eviction again
    // (this one through the SDK, over gRPC).
    for node in USED {
        kubectl.ok(&["uncordon", node]);
    }
    settled(&pods, &budgets, None, 1, 3).await?;
    pods.evict(&second, None)
        .await
        .context("evicting over gRPC")?;
    settled(&pods, &budgets, None, 1, 3).await?;
    until("the evicted pods are gone", WAIT, || async {
        pods.list(&ListParams::default())
            .await
            .is_ok_and(|l| l.items.len() == 3)
    })
    .await?;

    // Drain the node holding the most web pods (two or three): it is cordoned, its pods are
    // evicted one at a time within the budget (kubectl retries the refused ones as earlier
    // ones are replaced) and come back on the other node.
    let live = live_pods(&pods).await;
    let on = |node: &str| live.iter().filter(|p| node_of(p) == node).count();
    let target = USED
        .iter()
        .max_by_key(|n| on(n))
        .map(|n| n.to_string())
        .unwrap_or_default();
    let draining = on(&target);
    let placement: Vec<(&str, &str)> = live
        .iter()
        .map(|p| (p.metadata.name.as_deref().unwrap_or_default(), node_of(p)))
        .collect();
    assert!(
        draining >= 2,
        "one used node holds two web pods or more: {placement:?}"
    );
    let drain = kubectl.run(&[
        "drain",
        &target,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]);
    assert!(drain.ok, "{}\n{}", drain.stdout, drain.stderr);
    assert!(
        drain.stdout.contains(&format!("node/{target} drained")),
        "{}",
        drain.stdout
    );
    assert_eq!(
        drain.stdout.matches(" evicted").count(),
        draining,
        "{}",
        drain.stdout
    );
    assert!(
        drain.stderr.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "the second eviction waited for the budget: {}",
        drain.stderr
    );
    let node = nodes.get(&target).await?;
    assert_eq!(node.spec.and_then(|s| s.unschedulable), Some(true));
    settled(&pods, &budgets, Some(&target), 1, 3).await?;

    // Uncordoned, the node takes pods again.
    kubectl.ok(&["uncordon", &target]);
    let node = nodes.get(&target).await?;
    assert_ne!(node.spec.and_then(|s| s.unschedulable), Some(true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentage_budget_counts_the_deployments_scale() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "2"])?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
                }
            }
        }))?)
        .await
        .context("creating the Deployment")?;
    budgets
        .create(&serde_json::from_value(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "api-pdb", "namespace": "default"},
            "spec": {"maxUnavailable": "34%", "selector": {"matchLabels": {"app": "api"}}}
        }))?)
        .await
        .context("creating the budget")?;
    // The pods' ReplicaSet belongs to the Deployment, whose 3 replicas are expected; 34% of 3
    // rounds up to 2 that may be unavailable, so 1 must stay healthy.
    let status_is = |expected: i32, desired: i32, allowed: i32| {
        let budgets = budgets.clone();
        async move {
            budgets.get("api-pdb").await.is_ok_and(|b| {
                let s = b.status.unwrap_or_default();
                (s.expected_pods, s.desired_healthy, s.disruptions_allowed)
                    == (expected, desired, allowed)
                    && s.current_healthy == expected
            })
        }
    };
    until("the budget expects the Deployment's 3", WAIT, || {
        status_is(3, 1, 2)
    })
    .await?;
    // Scaled to 5: 34% of 5 rounds up to 2, so 3 must stay healthy.
    deployments
        .patch(
            "api",
            &keel_client::Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await?;
    until("the budget follows the new scale", WAIT, || {
        status_is(5, 3, 2)
    })
    .await?;
    Ok(())
}
