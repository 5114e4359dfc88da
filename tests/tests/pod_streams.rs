//! `kubectl logs` and `exec` end to end: a real keel, the node agent's server
//! in this process on a private containerd, and a pod whose sandbox and busybox containers are
//! run through CRI with kubelet's labels (as the pod workers run them), bound to a Node that
//! names the agent's address and port. The agent's serving certificate comes from
//! `keel node-certificate`, as an operator would get it.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static; skips otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use keel_agent::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    PodSandboxConfig, PodSandboxMetadata,
};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_agent::labels;
use keel_agent::server::{node_status_patch, AgentServer, AgentServerConfig};
use keel_agent::testing::namespaces;
use keel_agent::testing::TestNode;
use keel_agent::RuntimeClient;
use keel_tests::cluster::keel_bin;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const NODE: &str = "streaming-node";
const POD: &str = "web";

fn pod_labels(uid: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAME.to_owned(), POD.to_owned()),
        (labels::POD_NAMESPACE.to_owned(), "default".to_owned()),
        (labels::POD_UID.to_owned(), uid.to_owned()),
        (labels::MANAGED_BY.to_owned(), "true".to_owned()),
    ])
}

fn sandbox_config(uid: &str, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: POD.to_owned(),
            uid: uid.to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: POD.to_owned(),
        log_directory: logs.display().to_string(),
        labels: pod_labels(uid),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: namespaces(),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    }
}

/// A container as kubelet creates it: kubelet's labels, the restart count annotation, the
/// log file `<name>/<restart count>.log` under the pod's log directory.
fn container_config(uid: &str, name: &str, restarts: u32, script: &str) -> ContainerConfig {
    let mut container_labels = pod_labels(uid);
    container_labels.insert(labels::CONTAINER_NAME.to_owned(), name.to_owned());
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: restarts,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_owned(),
            ..ImageSpec::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: labels::container_log_path(name, restarts)
            .display()
            .to_string(),
        labels: container_labels,
        annotations: HashMap::from([(labels::RESTART_COUNT.to_owned(), restarts.to_string())]),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: namespaces(),
                ..LinuxContainerSecurityContext::default()
            }),
            ..LinuxContainerConfig::default()
        }),
        ..ContainerConfig::default()
    }
}

async fn run_container(
    runtime: &RuntimeClient,
    sandbox: &str,
    sandbox_config: &PodSandboxConfig,
    config: ContainerConfig,
) -> Result<String> {
    let id = runtime
        .create_container(sandbox, config, sandbox_config.clone())
        .await?;
    runtime.start_container(&id).await?;
    Ok(id)
}

/// Polls `check` until it holds; fails after a minute.
async fn until<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn exited(runtime: &RuntimeClient, id: &str) -> bool {
    runtime
        .container_status(id)
        .await
        .is_ok_and(|s| s.state == ContainerState::ContainerExited as i32)
}

/// A log file holds `text`.
async fn logged(path: &Path, text: &str) -> bool {
    tokio::fs::read_to_string(path)
        .await
        .is_ok_and(|t| t.contains(text))
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_reads_logs_and_execs_through_the_node_agent() -> Result<()> {
    let Some(node) = TestNode::start(7).await else {
        return Ok(());
    };
    let runtime = node.client.clone();
    let cluster =
        Cluster::start_with(Flavor::Keel, 1, &["--controller-manager=false".into()]).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;

    // The agent's credentials, issued from the cluster CA on the master.
    let pki = node.dir.path().join("agent-pki");
    let status = Command::new(keel_bin()?)
        .arg("node-certificate")
        .arg("--data-dir")
        .arg(&cluster.members[0].data_dir)
        .args(["--node-name", NODE, "--address", "127.0.0.1", "--out-dir"])
        .arg(&pki)
        .status()?;
    ensure!(status.success(), "keel node-certificate failed");
    let server = AgentServer::bind(
        AgentServerConfig::from_files(
            "127.0.0.1:0".parse()?,
            pki.join("kubelet.crt"),
            pki.join("kubelet.key"),
            pki.join("ca.crt"),
        ),
        runtime.clone(),
    )
    .await?;
    let address: SocketAddr = server.local_addr().context("bound")?;
    let stop = CancellationToken::new();
    let serving = tokio::spawn(server.run(stop.clone()));

    // The Node names the agent; the Pod is bound to it and running.
    kubectl.ok(&[
        "create",
        "-f",
        &kubectl.manifest(
            "node.json",
            &json!({
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}
            })
            .to_string(),
        ),
    ]);
    kubectl.ok(&[
        "patch",
        "node",
        NODE,
        "--subresource=status",
        "--type=merge",
        "-p",
        &node_status_patch("127.0.0.1", NODE, address.port()).to_string(),
    ]);
    kubectl.ok(&[
        "create",
        "-f",
        &kubectl.manifest(
            "pod.json",
            &json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
                "spec": {"nodeName": NODE, "containers": [
                    {"name": "app", "image": BUSYBOX_IMAGE},
                    {"name": "ticker", "image": BUSYBOX_IMAGE}
                ]}
            })
            .to_string(),
        ),
    ]);
    kubectl.ok(&[
        "patch",
        "pod",
        POD,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    let uid = kubectl.ok(&["get", "pod", POD, "-o", "jsonpath={.metadata.uid}"]);

    // The pod's containers, run as the pod workers run them: app's first instance exits,
    // its second (restart count 1) serves HTTP; ticker writes for a while and exits.
    let logs = labels::pod_log_dir(&node.dir.path().join("logs"), "default", POD, &uid);
    std::fs::create_dir_all(logs.join("app"))?;
    std::fs::create_dir_all(logs.join("ticker"))?;
    let sandbox_config = sandbox_config(&uid, &logs);
    let sandbox = runtime.run_pod_sandbox(sandbox_config.clone(), "").await?;
    let first = run_container(
        &runtime,
        &sandbox,
        &sandbox_config,
        container_config(&uid, "app", 0, "echo first-1; echo first-2; exit 3"),
    )
    .await?;
    until("the first app instance to exit", || {
        exited(&runtime, &first)
    })
    .await?;
    run_container(
        &runtime,
        &sandbox,
        &sandbox_config,
        container_config(
            &uid,
            "app",
            1,
            "echo second-1; echo second-2; echo second-3; mkdir -p /tmp/www; \
             echo hello-from-the-pod > /tmp/www/index.html; exec httpd -f -p 8080 -h /tmp/www",
        ),
    )
    .await?;
    let app_log = logs.join("app/1.log");
    until("the second app instance to log", || {
        logged(&app_log, "second-3")
    })
    .await?;

    // Logs: plain, tail, timestamps, previous.
    assert_eq!(
        kubectl.ok(&["logs", POD, "-c", "app"]),
        "second-1\nsecond-2\nsecond-3\n"
    );
    assert_eq!(
        kubectl.ok(&["logs", POD, "-c", "app", "--tail=1"]),
        "second-3\n"
    );
    assert_eq!(
        kubectl.ok(&["logs", POD, "-c", "app", "--previous"]),
        "first-1\nfirst-2\n"
    );
    let stamped = kubectl.ok(&["logs", POD, "-c", "app", "--timestamps"]);
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, expected) in lines.iter().zip(["second-1", "second-2", "second-3"]) {
        let (time, message) = line.split_once(' ').context("a timestamp")?;
        assert_eq!(message, expected);
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok(),
            "{time:?} is an RFC 3339 time"
        );
    }
    let unknown = kubectl.fails(&["logs", POD, "-c", "nope"]);
    assert!(
        unknown.contains("container nope is not valid for pod web"),
        "{unknown}"
    );

    // Following a container's log ends when the container exits.
    let ticker = run_container(
        &runtime,
        &sandbox,
        &sandbox_config,
        container_config(
            &uid,
            "ticker",
            0,
            "for i in 1 2 3 4 5; do echo tick-$i; sleep 1; done",
        ),
    )
    .await?;
    let followed = kubectl
        .command(&["logs", "-f", POD, "-c", "ticker"])
        .output()?;
    assert!(followed.status.success(), "{followed:?}");
    assert_eq!(
        String::from_utf8_lossy(&followed.stdout),
        "tick-1\ntick-2\ntick-3\ntick-4\ntick-5\n"
    );
    assert!(exited(&runtime, &ticker).await);

    // Exec: output, and the command's exit code.
    assert_eq!(
        kubectl.ok(&["exec", POD, "-c", "app", "--", "cat", "/etc/hostname"]),
        "web\n"
    );
    let failing = kubectl
        .command(&[
            "exec",
            POD,
            "-c",
            "app",
            "--",
            "sh",
            "-c",
            "echo out; exit 7",
        ])
        .output()?;
    assert_eq!(failing.status.code(), Some(7), "{failing:?}");
    assert_eq!(String::from_utf8_lossy(&failing.stdout), "out\n");

    // The agent's port refuses callers without a client certificate.
    let anonymous = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://127.0.0.1:{}/containerLogs/default/{POD}/app",
            address.port()
        ))
        .output()?;
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");

    stop.cancel();
    serving.await?;
    runtime.stop_pod_sandbox(&sandbox).await?;
    runtime.remove_pod_sandbox(&sandbox).await?;
    node.stop().await;
    Ok(())
}
