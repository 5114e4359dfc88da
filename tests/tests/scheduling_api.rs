//! What a scheduler needs of the API, on real keel masters: binding a pod sets its node once
//! (a second bind is a Conflict) and a scheduler whose lease has moved cannot bind at all;
//! PriorityClasses resolve to pod priorities on create, as kubectl sees them; and a pod whose
//! node affinity could not be evaluated is refused over REST with the field named.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use keel_client::leader::LeaseLock;
use keel_client::Api;
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::ready;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}})
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_binds_a_pod_once_and_cannot_bind_after_its_lease_moved() -> anyhow::Result<()>
{
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web = pods.create(&serde_json::from_value(pod("web"))?).await?;
    let late = pods.create(&serde_json::from_value(pod("late"))?).await?;

    let duration = Duration::from_secs(2);
    let mut a = LeaseLock::new(
        client.clone(),
        "kube-system",
        // Not the in-master scheduler's Lease: these candidates are the test's own.
        "test-scheduler",
        "a",
        duration,
    );
    let mut b = LeaseLock::new(
        client.clone(),
        "kube-system",
        // Not the in-master scheduler's Lease: these candidates are the test's own.
        "test-scheduler",
        "b",
        duration,
    );
    let fence_a = a
        .try_acquire_or_renew()
        .await?
        .expect("a acquires a free lease");
    let as_a = pods.clone().with_fence(fence_a);

    // Bound once, with the pod's uid pinned as a scheduler binds.
    as_a.bind_pod(&web, "node-1").await?;
    let bound = pods.get("web").await?;
    assert_eq!(node_of(&bound), Some("node-1"));
    let scheduled = bound
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| c.status);
    assert_eq!(scheduled.as_deref(), Some("True"));

    let again = as_a.bind("web", "node-2").await.expect_err("bound already");
    assert_eq!(again.code(), Some(409), "{again}");
    assert!(
        again
            .to_string()
            .contains("pod web is already assigned to node \"node-1\""),
        "{again}"
    );

    // a stops renewing; once b holds the lease, a's binds are refused by the store.
    let fence_b = loop {
        if let Some(f) = b.try_acquire_or_renew().await? {
            break f;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused = as_a
        .bind_pod(&late, "node-1")
        .await
        .expect_err("a's lease moved");
    assert_eq!(refused.code(), Some(409), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("lease kube-system/test-scheduler no longer names the writer"),
        "{refused}"
    );
    assert_eq!(node_of(&pods.get("late").await?), None);

    pods.clone()
        .with_fence(fence_b)
        .bind_pod(&late, "node-2")
        .await?;
    assert_eq!(node_of(&pods.get("late").await?), Some("node-2"));
    Ok(())
}

const PRIORITY_PODS: &str = "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: batch-low
value: 100
preemptionPolicy: Never
description: work that may wait
---
apiVersion: v1
kind: Pod
metadata:
  name: report
spec:
  priorityClassName: batch-low
  containers:
  - name: app
    image: busybox:1.36
---
apiVersion: v1
kind: Pod
metadata:
  name: dns
spec:
  priorityClassName: system-cluster-critical
  containers:
  - name: app
    image: busybox:1.36
";

const UNKNOWN_CLASS: &str = "apiVersion: v1
kind: Pod
metadata:
  name: orphan
spec:
  priorityClassName: foo
  containers:
  - name: app
    image: busybox:1.36
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_classes_resolve_to_pod_priorities_on_create() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        // The built-in classes are created in the background at start.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !k.run(&["get", "priorityclass", "system-node-critical"]).ok {
            anyhow::ensure!(Instant::now() < deadline, "no built-in PriorityClasses");
            std::thread::sleep(Duration::from_millis(200));
        }
        let classes = k.ok(&["get", "pc", "--no-headers"]);
        let rows: Vec<Vec<&str>> = classes
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(
            rows.iter()
                .any(|r| r[..3] == ["system-cluster-critical", "2000000000", "false"]),
            "{classes}"
        );
        assert!(
            rows.iter()
                .any(|r| r[..3] == ["system-node-critical", "2000001000", "false"]),
            "{classes}"
        );

        let file = k.manifest("priority.yaml", PRIORITY_PODS);
        let created = k.ok(&["apply", "-f", &file]);
        assert!(
            created.contains("priorityclass.scheduling.k8s.io/batch-low created"),
            "{created}"
        );
        let report = k.json(&["get", "pod", "report"]);
        assert_eq!(report["spec"]["priority"], 100, "{report}");
        assert_eq!(report["spec"]["preemptionPolicy"], "Never");
        let dns = k.json(&["get", "pod", "dns"]);
        assert_eq!(dns["spec"]["priority"], 2_000_000_000, "{dns}");
        assert_eq!(dns["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        // Applying the same manifests again changes nothing and is not refused.
        let again = k.ok(&["apply", "-f", &file]);
        assert!(again.contains("pod/report unchanged"), "{again}");

        let unknown = k.manifest("unknown.yaml", UNKNOWN_CLASS);
        let refused = k.fails(&["apply", "-f", &unknown]);
        assert!(
            refused
                .contains("pods \"orphan\" is forbidden: no PriorityClass with name foo was found"),
            "{refused}"
        );
        let kept = k.fails(&["delete", "priorityclass", "system-node-critical"]);
        assert!(
            kept.contains("this is a system priority class and cannot be deleted"),
            "{kept}"
        );
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_refuses_unreadable_node_affinity_and_binds_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !k.run(&["get", "namespace", "default"]).ok {
            anyhow::ensure!(Instant::now() < deadline, "no default namespace");
            std::thread::sleep(Duration::from_millis(200));
        }
        let pods = "/api/v1/namespaces/default/pods";
        let mut picky = pod("picky");
        picky["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "cpus", "operator": "Gt", "values": ["lots"]}]}]}}});
        let (code, status) = k.post_json(pods, &picky)?;
        assert_eq!(code, 422, "{status}");
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(
            status["details"]["causes"],
            json!([{
                "reason": "FieldValueInvalid",
                "message": "Invalid value: \"lots\": for 'Gt', 'Lt' operators, the value must be an integer",
                "field": "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]",
            }])
        );
        assert!(!k.run(&["get", "pod", "picky"]).ok, "the pod was stored");

        let (code, created) = k.post_json(pods, &pod("web"))?;
        assert_eq!(code, 201, "{created}");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}});
        let (code, status) = k.post_json(&format!("{pods}/web/binding"), &binding)?;
        assert_eq!(code, 201, "{status}");
        assert_eq!(status["status"], "Success");
        let node = k.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"]);
        assert_eq!(node, "node-1");
        // The older collection answers a second bind as the subresource does.
        let (code, conflict) = k.post_json("/api/v1/namespaces/default/bindings", &binding)?;
        assert_eq!(code, 409, "{conflict}");
        assert_eq!(
            conflict["message"],
            "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"node-1\""
        );
        Ok(())
    })
}
