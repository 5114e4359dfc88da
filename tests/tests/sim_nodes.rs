//! `keel sim-nodes` as a real process against a real keel master: it registers its nodes with
//! the labels and capacity asked for, keeps their Leases renewed, runs the pods bound to them
//! through their life as a kubelet would report it, deletes pods once their grace period is
//! over, and leaves its nodes registered when it stops.

use std::collections::BTreeMap;

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Container, Namespace, Node, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::{Api, Client, DeleteParams, ListParams};
use keel_tests::sim::Sim;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;

const SIM_SELECTOR: &str = "keel.dev/sim-node=true";

async fn until<F, Fut>(what: &str, timeout: Duration, sim: &Sim, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            bail!("never: {what}; sim log:\n{}", sim.log());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A client once the master serves the API (its system namespaces exist).
async fn client(cluster: &Cluster) -> anyhow::Result<Client> {
    let client = cluster.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for _ in 0..300 {
        if namespaces.get("kube-node-lease").await.is_ok() {
            return Ok(client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the API never came up")
}

async fn sim_nodes(nodes: &Api<Node>) -> Vec<Node> {
    let params = ListParams {
        label_selector: SIM_SELECTOR.into(),
        ..Default::default()
    };
    nodes
        .list(&params)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn renew_time(lease: &Lease) -> Option<String> {
    let t = lease.spec.as_ref()?.renew_time.as_ref()?;
    Some(t.0.to_rfc3339())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_nodes_register_with_their_labels_and_capacity_and_renew_their_leases(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = client(&cluster).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let mut sim = Sim::start(
        &cluster,
        &[
            "--count",
            "50",
            "--renew-interval",
            "1s",
            "--label",
            "tier=gold",
            "--taint",
            "dedicated=sim:NoSchedule",
            "--extended-resource",
            "example.com/gpu=4",
        ],
    )?;

    until(
        "50 Ready sim nodes",
        Duration::from_secs(30),
        &sim,
        || async {
            let all = sim_nodes(&nodes).await;
            all.len() == 50 && all.iter().all(ready)
        },
    )
    .await?;
    let all = sim_nodes(&nodes).await;
    let mut names: Vec<String> = all.iter().filter_map(|n| n.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names.first().map(String::as_str), Some("sim-node-0000"));
    assert_eq!(names.last().map(String::as_str), Some("sim-node-0049"));
    let node = nodes.get("sim-node-0004").await?;
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let expected = [
        ("kubernetes.io/hostname", "sim-node-0004"),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("keel.dev/sim-node", "true"),
        ("topology.kubernetes.io/zone", "zone-1"),
        ("topology.kubernetes.io/region", "region-0"),
        ("tier", "gold"),
    ];
    for (key, value) in expected {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
    let status = node.status.clone().unwrap_or_default();
    let allocatable: BTreeMap<String, String> = status
        .allocatable
        .unwrap_or_default()
        .into_iter()
        .map(|(k, q)| (k, q.0))
        .collect();
    let expected = [
        ("cpu", "32"),
        ("memory", "256Gi"),
        ("pods", "110"),
        ("ephemeral-storage", "100Gi"),
        ("example.com/gpu", "4"),
    ];
    for (resource, amount) in expected {
        assert_eq!(
            allocatable.get(resource).map(String::as_str),
            Some(amount),
            "{resource}"
        );
    }
    let spec = node.spec.clone().unwrap_or_default();
    let taints = spec.taints.unwrap_or_default();
    assert!(
        taints.iter().any(|t| t.key == "dedicated"
            && t.value.as_deref() == Some("sim")
            && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    let mut cidrs: Vec<String> = all
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
        .collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 50, "every node has its own pod CIDR");

    // The Lease is the node's, and its renewTime moves.
    let first = leases.get("sim-node-0004").await?;
    let spec = first.spec.clone().unwrap_or_default();
    assert_eq!(spec.holder_identity.as_deref(), Some("sim-node-0004"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let before = renew_time(&first);
    assert!(before.is_some());
    until(
        "the Lease renewed",
        Duration::from_secs(10),
        &sim,
        || async {
            let now = leases.get("sim-node-0004").await.ok();
            now.and_then(|l| renew_time(&l))
                .is_some_and(|t| Some(t) != before)
        },
    )
    .await?;

    // Stopped, the sim leaves its nodes registered.
    assert!(sim.terminate().await?, "exit status; log:\n{}", sim.log());
    assert_eq!(sim_nodes(&nodes).await.len(), 50);
    Ok(())
}

fn pod(name: &str, node: &str, annotations: &[(&str, &str)], restart_policy: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            restart_policy: Some(restart_policy.into()),
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn phase_of(pods: &Api<Pod>, name: &str) -> String {
    pods.get(name)
        .await
        .map(|p| phase(&p).to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_bound_to_sim_nodes_run_end_and_go_as_a_kubelet_reports_them() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = client(&cluster).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sim = Sim::start(&cluster, &["--count", "50"])?;
    until("50 sim nodes", Duration::from_secs(30), &sim, || async {
        sim_nodes(&nodes).await.len() == 50
    })
    .await?;

    // A pod bound to a sim node runs, ready, with an address from its node's pod CIDR.
    pods.create(&pod("web", "sim-node-0003", &[], "Always"))
        .await?;
    until("web Running", Duration::from_secs(15), &sim, || async {
        phase_of(&pods, "web").await == "Running"
    })
    .await?;
    let web = pods.get("web").await?;
    let status = web.status.clone().unwrap_or_default();
    let condition = |type_: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.clone())
    };
    for type_ in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(type_).as_deref(), Some("True"), "{type_}");
    }
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    assert!(pod_ip.starts_with("10.64.3."), "{pod_ip}");
    let node = nodes.get("sim-node-0003").await?;
    let node_ip = node
        .status
        .and_then(|s| s.addresses)
        .and_then(|a| a.into_iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address);
    assert_eq!(status.host_ip, node_ip);
    let app = status
        .container_statuses
        .as_ref()
        .and_then(|c| c.first())
        .context("no container status")?;
    assert!(app.ready);
    assert_eq!(app.restart_count, 0);
    assert!(app.state.as_ref().is_some_and(|s| s.running.is_some()));
    let uid = web.metadata.uid.clone().unwrap_or_default();
    assert_eq!(
        app.container_id.as_deref(),
        Some(format!("sim://{uid}-app").as_str())
    );

    // A pod with a run time ends: Succeeded on exit code 0, Failed otherwise.
    pods.create(&pod(
        "job",
        "sim-node-0010",
        &[("keel.dev/sim-run-time", "1s")],
        "Never",
    ))
    .await?;
    pods.create(&pod(
        "crash",
        "sim-node-0011",
        &[
            ("keel.dev/sim-run-time", "1s"),
            ("keel.dev/sim-exit-code", "1"),
        ],
        "Never",
    ))
    .await?;
    until("job Succeeded", Duration::from_secs(15), &sim, || async {
        phase_of(&pods, "job").await == "Succeeded"
    })
    .await?;
    until("crash Failed", Duration::from_secs(15), &sim, || async {
        phase_of(&pods, "crash").await == "Failed"
    })
    .await?;

    // A pod deleted with a grace period goes once the grace period is over, not before.
    let deleted_at = Instant::now();
    pods.delete(
        "web",
        &DeleteParams {
            grace_period_seconds: Some(3),
            ..Default::default()
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let marked = pods.get("web").await?;
    assert!(marked.metadata.deletion_timestamp.is_some());
    until("web gone", Duration::from_secs(15), &sim, || async {
        pods.get("web").await.is_err_and(|e| e.is_not_found())
    })
    .await?;
    let took = deleted_at.elapsed();
    // The deletionTimestamp is kept to the second: the pod may go up to a second early.
    assert!(took >= Duration::from_secs(2), "gone after {took:?}");
    assert!(took <= Duration::from_secs(8), "gone after {took:?}");
    Ok(())
}
