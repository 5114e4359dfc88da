//! Services between real pods on a real node agent, with the agent's nftables proxy: a
//! Deployment of two HTTP servers behind a NodePort Service, a third pod with the Service's
//! label that never turns ready, and a client pod. From the client pod, `wget` of the cluster
//! IP reaches both ready servers and never the unready pod; from the host, the node port on the
//! node's bridge address reaches them too; after the Deployment is scaled to zero, the cluster
//! IP is refused at once instead of hanging.
//!
//! Needs root, containerd, runc, the CNI plugins and nft (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use k8s_openapi::api::core::v1::Service;
use keel_client::Api;
use keel_tests::agent::AgentNode;
use keel_tests::kubectl::Kubectl;
use keel_tests::manifests::{self, Spot};
use keel_tests::sim::{ready, until};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;

const WAIT: Duration = Duration::from_secs(120);

fn manifest() -> String {
    let here = Spot::anywhere("default");
    manifests::join(&[
        manifests::web_deployment(here, 2),
        manifests::unready_web_pod(here),
        manifests::client_pod(here),
        manifests::web_service("default"),
    ])
}

/// `wget` of `url` from the client pod: the body, trimmed, or None if it failed.
fn fetch_from_pod(kubectl: &Kubectl, url: &str) -> Option<String> {
    manifests::fetch_from_pod(kubectl, "default", "client", url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_ready_pods_through_the_cluster_ip_and_the_host_through_the_node_port(
) -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let Some(node) = AgentNode::start(&cluster, "worker-1", 31, &[]).await? else {
        return Ok(());
    };
    let file = kubectl.manifest("web.yaml", &manifest());
    kubectl.ok(&["apply", "-f", &file]);
    let rolled = kubectl.run(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    if !rolled.ok {
        bail!(
            "rollout status failed: {}\n{}\nagent log:\n{}",
            rolled.stdout,
            rolled.stderr,
            node.log()
        );
    }
    kubectl.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/client",
        "--timeout=120s",
    ]);
    let servers: BTreeSet<String> = kubectl
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ])
        .lines()
        .filter(|name| *name != "unready")
        .map(str::to_string)
        .collect();
    assert_eq!(servers.len(), 2, "{servers:?}");

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let spec = services.get("web").await?.spec.unwrap_or_default();
    let cluster_ip = spec.cluster_ip.unwrap_or_default();
    let node_port = spec
        .ports
        .unwrap_or_default()
        .first()
        .and_then(|p| p.node_port)
        .unwrap_or_default();

    // Through the cluster IP, both ready servers answer (the choice is random), and only they.
    let url = format!("http://{cluster_ip}/index.html");
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while seen != servers {
        if Instant::now() > deadline {
            let rules = std::process::Command::new("nft")
                .args(["list", "table", "ip", "keel-proxy"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let attempt = kubectl.run(&[
                "exec", "client", "--", "timeout", "5", "wget", "-O", "-", &url,
            ]);
            bail!(
                "through {url} only {seen:?} of {servers:?} answered; the last try: {} {}\nrules:\n{rules}",
                attempt.stdout,
                attempt.stderr
            );
        }
        if let Some(body) = fetch_from_pod(&kubectl, &url) {
            assert!(
                servers.contains(&body),
                "{body:?} answered: not a ready server"
            );
            seen.insert(body);
        }
    }

    // From the host, the node port on the node's bridge address.
    let gateway = {
        let base = node.subnet().trim_end_matches("0/24");
        format!("{base}1")
    };
    let host_url = format!("http://{gateway}:{node_port}/index.html");
    until("the node port answers from the host", WAIT, || async {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "3", &host_url])
            .output();
        out.is_ok_and(|o| {
            o.status.success() && servers.contains(String::from_utf8_lossy(&o.stdout).trim())
        })
    })
    .await?;

    // With no ready endpoint left, the cluster IP is refused at once.
    kubectl.ok(&["scale", "deployment/web", "--replicas=0"]);
    until("the cluster IP refuses connections", WAIT, || async {
        let started = Instant::now();
        let out = kubectl.run(&[
            "exec", "client", "--", "timeout", "5", "wget", "-O", "-", &url,
        ]);
        !out.ok
            && out.stderr.contains("No route to host")
            && started.elapsed() < Duration::from_secs(4)
    })
    .await?;
    Ok(())
}
