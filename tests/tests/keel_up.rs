//! `keel up` and `keel down` as a user runs them, with real containers: on a cluster of one
//! master and two agents (each agent a network namespace with its own containerd), a pod on
//! one node reaches a Service whose only ready pod is on the other node, by cluster IP and by
//! DNS name; the host reaches it through the node port of either node; a pod that never turns
//! ready gets no traffic; the ready pod reaches itself through its Service (hairpin); a
//! headless StatefulSet pod's name and an ExternalName Service resolve. And three masters
//! with two agents come up and go down leaving no process, namespace, interface, mount, route
//! or nftables table behind.
//!
//! Needs root, containerd, runc, the CNI plugins, nft and nsenter (scripts/install-deps.sh);
//! skips elsewhere, saying why.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_tests::kubectl::Kubectl;
use keel_tests::manifests::{self, Spot};
use keel_tests::sim::until;
use keel_tests::up::{HostState, UpCluster};

const WAIT: Duration = Duration::from_secs(180);

fn cannot_run() -> bool {
    match keel_agent::testing::cannot_run_containers() {
        Some(reason) => {
            eprintln!("skipping: {reason}");
            true
        }
        None => false,
    }
}

fn manifest() -> String {
    let rest = format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: db, namespace: shop}}
spec:
  clusterIP: None
  selector: {{app: db}}
  ports: [{{name: db, port: 5432}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db, namespace: shop}}
spec:
  serviceName: db
  replicas: 1
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: db
          image: {image}
          command: [sleep, '3600']
---
apiVersion: v1
kind: Service
metadata: {{name: ext, namespace: shop}}
spec:
  type: ExternalName
  externalName: web.shop.svc.cluster.local
"#,
        image = BUSYBOX_IMAGE
    );
    manifests::join(&[
        manifests::namespace("shop"),
        manifests::web_deployment(Spot::on("shop", "agent-2"), 1),
        manifests::unready_web_pod(Spot::on("shop", "agent-1")),
        manifests::client_pod(Spot::on("shop", "agent-1")),
        manifests::web_service("shop"),
        rest,
    ])
}

/// `wget` of `url` from the client pod: the body, trimmed, or None if it failed.
fn fetch_from_client(kubectl: &Kubectl, url: &str) -> Option<String> {
    manifests::fetch_from_pod(kubectl, "shop", "client", url)
}

fn field(kubectl: &Kubectl, what: &str, path: &str) -> String {
    kubectl
        .ok(&["-n", "shop", "get", what, "-o", &format!("jsonpath={path}")])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_reaches_a_service_on_the_other_node_by_ip_and_name_and_the_host_by_node_port(
) -> Result<()> {
    if cannot_run() {
        return Ok(());
    }
    let cluster = UpCluster::up("kupsvc", 1, 2, 251)?;
    let kubectl = cluster.kubectl()?;
    let nodes = kubectl.ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(
        nodes.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from(["node/agent-1", "node/agent-2"]),
    );
    let file = kubectl.manifest("shop.yaml", &manifest());
    kubectl.ok(&["apply", "-f", &file]);
    for (what, timeout) in [("deployment/web", "180s"), ("statefulset/db", "180s")] {
        let rolled = kubectl.run(&[
            "-n",
            "shop",
            "rollout",
            "status",
            what,
            &format!("--timeout={timeout}"),
        ]);
        if !rolled.ok {
            bail!(
                "rollout of {what} failed: {}{}\nagent-1:\n{}\nagent-2:\n{}",
                rolled.stdout,
                rolled.stderr,
                cluster.log("agent-1"),
                cluster.log("agent-2")
            );
        }
    }
    kubectl.ok(&[
        "-n",
        "shop",
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=180s",
    ]);
    let web_pod = field(
        &kubectl,
        "pods",
        "{.items[?(@.metadata.labels.app==\"web\")].metadata.name}",
    )
    .split_whitespace()
    .find(|name| *name != "unready")
    .map(str::to_string)
    .unwrap_or_default();
    assert_eq!(
        field(&kubectl, &format!("pod/{web_pod}"), "{.spec.nodeName}"),
        "agent-2"
    );
    assert_eq!(field(&kubectl, "pod/client", "{.spec.nodeName}"), "agent-1");
    assert_eq!(
        field(&kubectl, "pod/unready", "{.spec.nodeName}"),
        "agent-1"
    );
    let cluster_ip = field(&kubectl, "service/web", "{.spec.clusterIP}");
    let node_port = field(&kubectl, "service/web", "{.spec.ports[0].nodePort}");

    // By cluster IP and by name, from agent-1 to the only ready pod, on agent-2.
    let by_ip = format!("http://{cluster_ip}");
    until(
        "the cluster IP answers from the other node",
        WAIT,
        || async { fetch_from_client(&kubectl, &by_ip).is_some() },
    )
    .await?;
    for url in [by_ip.as_str(), "http://web.shop.svc.cluster.local"] {
        // The unready pod sits on the client's own node: were it chosen even once in ten
        // tries (a one-in-two chance each), its name would come back.
        for _ in 0..10 {
            let body = fetch_from_client(&kubectl, url);
            ensure!(
                body.as_deref() == Some(web_pod.as_str()),
                "{url} answered {body:?}, not {web_pod}"
            );
        }
    }

    // Hairpin: the web pod reaches itself through its own Service.
    let hairpin = kubectl.run(&[
        "-n",
        "shop",
        "exec",
        &web_pod,
        "--",
        "timeout",
        "5",
        "wget",
        "-qO-",
        "http://web",
    ]);
    ensure!(
        hairpin.ok && hairpin.stdout.trim() == web_pod,
        "{web_pod} did not reach itself through its Service: {}{}",
        hairpin.stdout,
        hairpin.stderr
    );

    // From the host, through either node's port: agent-1 forwards to agent-2.
    for agent in [1, 2] {
        let url = format!("http://{}:{node_port}/", cluster.agent_ip(agent));
        until(&format!("{url} answers from the host"), WAIT, || async {
            std::process::Command::new("curl")
                .args(["-sS", "--max-time", "3", &url])
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == web_pod
                })
        })
        .await?;
    }

    // Names: a headless StatefulSet pod, and an ExternalName Service (a CNAME to web).
    let db_ip = field(&kubectl, "pod/db-0", "{.status.podIP}");
    ensure!(!db_ip.is_empty(), "db-0 has no address");
    let lookup = |name: &str| {
        kubectl.run(&[
            "-n", "shop", "exec", "client", "--", "timeout", "5", "nslookup", name,
        ])
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let db = lookup("db-0.db.shop.svc.cluster.local");
        if db.ok && db.stdout.contains(&db_ip) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "db-0.db.shop.svc.cluster.local did not resolve to {db_ip}: {}{}",
            db.stdout,
            db.stderr
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let ext = lookup("ext.shop.svc.cluster.local");
    ensure!(
        ext.ok && ext.stdout.contains(&cluster_ip),
        "ext.shop.svc.cluster.local did not lead to web's {cluster_ip}: {}{}",
        ext.stdout,
        ext.stderr
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_and_two_agents_come_up_and_go_down_without_a_trace() -> Result<()> {
    if cannot_run() {
        return Ok(());
    }
    let parent_probe = std::env::temp_dir();
    let before = HostState::now(&parent_probe.join("keel-up-none"));
    let mut cluster = UpCluster::up("kupdown", 3, 2, 253)?;
    let dir = cluster.dir();
    let kubectl = cluster.kubectl()?;
    let ready = kubectl.ok(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    assert_eq!(
        ready.lines().collect::<BTreeSet<_>>(),
        BTreeSet::from(["agent-1=True", "agent-2=True"])
    );
    let endpoints = kubectl.ok(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]);
    // Each master joins the `kubernetes` Service's endpoints as its Lease appears.
    until(
        "every master backs the kubernetes Service",
        WAIT,
        || async {
            kubectl
                .ok(&[
                    "get",
                    "endpoints",
                    "kubernetes",
                    "-o",
                    "jsonpath={.subsets[*].addresses[*].ip}",
                ])
                .split_whitespace()
                .count()
                == 3
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}; first seen: {endpoints}"))?;
    // Pods on both nodes, so that there are containers, sandboxes, mounts and pod network
    // namespaces to remove.
    let file = kubectl.manifest(
        "spread.yaml",
        &format!(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: spread}}
spec:
  selector: {{matchLabels: {{app: spread}}}}
  template:
    metadata: {{labels: {{app: spread}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: sleep
          image: {BUSYBOX_IMAGE}
          command: [sleep, '3600']
          volumeMounts: [{{name: scratch, mountPath: /scratch}}]
      volumes: [{{name: scratch, emptyDir: {{medium: Memory}}}}]
"#
        ),
    );
    kubectl.ok(&["apply", "-f", &file]);
    let rolled = kubectl.run(&["rollout", "status", "daemonset/spread", "--timeout=180s"]);
    ensure!(
        rolled.ok,
        "rollout failed: {}{}\nagent-1:\n{}",
        rolled.stdout,
        rolled.stderr,
        cluster.log("agent-1")
    );
    let during = HostState::now(&dir);
    for netns in ["kupdown-agent-1", "kupdown-agent-2"] {
        ensure!(during.netns.contains(netns), "{netns} missing while up");
    }
    ensure!(during.links.contains("kupdown-br"), "no bridge while up");
    ensure!(!during.processes.is_empty(), "no process found while up");
    ensure!(!during.mounts.is_empty(), "no mount found while up");

    let down = cluster.down()?;
    ensure!(
        down.status.success(),
        "keel down failed: {}{}",
        String::from_utf8_lossy(&down.stdout),
        String::from_utf8_lossy(&down.stderr)
    );
    let after = HostState::now(&dir);
    assert_eq!(after.processes, BTreeSet::new(), "processes left");
    assert_eq!(after.mounts, BTreeSet::new(), "mounts left");
    assert_eq!(after.netns, before.netns, "network namespaces changed");
    assert_eq!(after.links, before.links, "interfaces changed");
    assert_eq!(after.routes, before.routes, "routes changed");
    assert_eq!(
        after.nft_tables, before.nft_tables,
        "nftables tables changed"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    Ok(())
}
