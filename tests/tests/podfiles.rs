//! What a pod's containers see of the cluster, end to end: keel's ServiceAccount admission
//! gives a new pod its token volume, and the node agent's volume manager and environment
//! resolution, reading from a real keel, give a real busybox container on a private
//! containerd its ConfigMap files, token, namespace and environment.
//!
//! The container half needs root, containerd, runc, the CNI plugins and busybox-static
//! (`scripts/install-deps.sh`); without them it says why and skips.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use keel_agent::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    PodSandboxConfig, PodSandboxMetadata,
};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_agent::labels;
use keel_agent::podfiles::{resolve_env, ApiSources, NodeFacts, VolumeManager};
use keel_agent::testing::namespaces;
use keel_agent::testing::TestNode;
use keel_client::{Api, Client, Patch};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster whose `default` namespace has its ServiceAccount and root CA ConfigMap.
async fn cluster() -> Result<(Cluster, Client)> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    wait_for("the default ServiceAccount", || async {
        accounts.get("default").await.ok()
    })
    .await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    wait_for("kube-root-ca.crt", || async {
        config_maps.get("kube-root-ca.crt").await.ok()
    })
    .await?;
    Ok((cluster, client))
}

fn pod(name: &str, spec: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

fn volume_names(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| v.name.clone())
        .collect()
}

fn mounts_at(pod: &Pod, container: usize) -> Vec<(String, String, bool)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.get(container))
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_mounts_the_service_account_token_unless_turned_off() -> Result<()> {
    let (_cluster, client) = cluster().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&pod(
            "with-token",
            json!({
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}],
            }),
        )?)
        .await?;
    let spec = created.spec.as_ref().context("spec")?;
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    let names = volume_names(&created);
    assert_eq!(names.len(), 1, "{names:?}");
    let volume = &names[0];
    let suffix = volume
        .strip_prefix("kube-api-access-")
        .context("the token volume's name")?;
    assert_eq!(suffix.len(), 5, "{volume}");
    assert!(
        suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{volume}"
    );
    let expected = vec![(volume.clone(), TOKEN_PATH.to_owned(), true)];
    assert_eq!(mounts_at(&created, 0), expected);
    assert_eq!(mounts_at(&created, 1), expected);
    let init_mounts: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .map(|m| m.mount_path.clone())
        .collect();
    assert_eq!(init_mounts, [TOKEN_PATH]);
    let projected = serde_json::to_value(&spec.volumes.as_ref().context("volumes")?[0])?;
    assert_eq!(
        projected["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        })
    );

    let off = pods
        .create(&pod(
            "no-token",
            json!({"automountServiceAccountToken": false, "containers": [{"name": "a", "image": "busybox"}]}),
        )?)
        .await?;
    assert!(volume_names(&off).is_empty());
    assert!(mounts_at(&off, 0).is_empty());

    // A ServiceAccount that turns it off does so for its pods, unless a pod turns it on.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    accounts
        .create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "quiet", "namespace": "default"},
            "automountServiceAccountToken": false,
        }))?)
        .await?;
    let quiet = pods
        .create(&pod(
            "quiet",
            json!({"serviceAccountName": "quiet", "containers": [{"name": "a", "image": "busybox"}]}),
        )?)
        .await?;
    assert!(volume_names(&quiet).is_empty());
    let loud = pods
        .create(&pod(
            "loud",
            json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true,
                   "containers": [{"name": "a", "image": "busybox"}]}),
        )?)
        .await?;
    assert_eq!(volume_names(&loud).len(), 1);

    // A container with its own mount at the token path keeps it; the others get the token.
    let own = pods
        .create(&pod(
            "own-mount",
            json!({
                "volumes": [{"name": "mine", "emptyDir": {}}],
                "containers": [
                    {"name": "a", "image": "busybox", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_PATH}]},
                    {"name": "b", "image": "busybox"},
                ],
            }),
        )?)
        .await?;
    assert_eq!(
        mounts_at(&own, 0),
        [("mine".to_owned(), TOKEN_PATH.to_owned(), false)]
    );
    assert_eq!(mounts_at(&own, 1).len(), 1);
    assert_eq!(volume_names(&own).len(), 2);

    let missing = pods
        .create(&pod(
            "no-such-account",
            json!({"serviceAccountName": "nobody", "containers": [{"name": "a", "image": "busybox"}]}),
        )?)
        .await
        .expect_err("refused");
    assert_eq!(missing.code(), Some(403), "{missing}");
    assert!(
        missing.to_string().contains(
            "error looking up service account default/nobody: serviceaccount \"nobody\" not found"
        ),
        "{missing}"
    );

    // An update leaves the volume admission gave.
    let updated = pods
        .patch(
            "with-token",
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await?;
    assert_eq!(volume_names(&updated), names);
    Ok(())
}

fn sandbox_config(pod: &Pod, logs: &Path) -> Result<PodSandboxConfig> {
    let name = pod.metadata.name.clone().context("name")?;
    let uid = pod.metadata.uid.clone().context("uid")?;
    std::fs::create_dir_all(logs)?;
    Ok(PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.clone(),
        log_directory: logs.display().to_string(),
        labels: HashMap::from([
            (labels::POD_NAME.to_owned(), name),
            (labels::POD_NAMESPACE.to_owned(), "default".to_owned()),
            (labels::POD_UID.to_owned(), uid),
        ]),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: namespaces(),
                ..LinuxSandboxSecurityContext::default()
            }),
            ..LinuxPodSandboxConfig::default()
        }),
        ..PodSandboxConfig::default()
    })
}

/// The messages of a CRI log file's complete stdout lines.
fn stdout_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            (parts.len() == 4 && parts[1] == "stdout" && parts[2] == "F")
                .then(|| parts[3].to_owned())
        })
        .collect()
}

/// Creates the container `name` of `pod` in `sandbox` with the environment and mounts the
/// agent makes for it, runs it to completion and returns its stdout lines.
async fn run(
    node: &TestNode,
    manager: &VolumeManager<ApiSources>,
    pod: &Pod,
    sandbox: (&str, &PodSandboxConfig),
    name: &str,
    logs: &Path,
) -> Result<Vec<String>> {
    let container = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .find(|c| c.name == name)
        .context("container")?;
    let facts = NodeFacts::default();
    let env = resolve_env(manager.sources(), pod, container, &facts).await?;
    let mounts = manager.mounts(pod, container).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(logs.join(name))?;
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_owned(),
            ..ImageSpec::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        envs: env.vars,
        mounts,
        log_path: labels::container_log_path(name, 0).display().to_string(),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: namespaces(),
                ..LinuxContainerSecurityContext::default()
            }),
            ..LinuxContainerConfig::default()
        }),
        ..ContainerConfig::default()
    };
    let id = node
        .client
        .create_container(sandbox.0, config, sandbox.1.clone())
        .await?;
    node.client.start_container(&id).await?;
    let client = &node.client;
    let status = wait_for("the container to exit", || async {
        let status = client.container_status(&id).await.ok()?;
        (status.state == ContainerState::ContainerExited as i32).then_some(status)
    })
    .await?;
    assert_eq!(status.exit_code, 0, "{status:?}");
    Ok(stdout_lines(
        &logs.join(labels::container_log_path(name, 0)),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_reads_its_config_map_token_and_environment_and_sees_updates() -> Result<()> {
    let Some(node) = TestNode::start(6).await else {
        return Ok(());
    };
    let (_cluster, client) = cluster().await?;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    config_maps
        .create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "default"},
            "data": {"greeting": "hello from keel", "mode": "fast"},
        }))?)
        .await?;
    let script = "cat /etc/app/greeting; echo; echo \"GREETING=$GREETING\"; echo \"MSG=$MSG\"; \
                  echo \"POD=$POD_NAME\"; echo \"CFG_mode=$CFG_mode\"; \
                  echo \"namespace=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)\"; \
                  head -1 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt; \
                  awk -F. '{print \"token parts: \" NF}' /var/run/secrets/kubernetes.io/serviceaccount/token; \
                  touch /etc/app/x 2>/dev/null || echo read-only";
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pods
        .create(&pod(
            "reader",
            json!({
                "volumes": [{"name": "conf", "configMap": {"name": "settings"}}],
                "containers": [
                    {
                        "name": "main", "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", script],
                        "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
                        "env": [
                            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
                            {"name": "MSG", "value": "$(GREETING)!"},
                            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        ],
                        "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}],
                    },
                    {
                        "name": "again", "image": BUSYBOX_IMAGE,
                        // The value has no newline of its own: echo ends the log line.
                        "command": ["sh", "-c", "cat /etc/app/greeting; echo"],
                        "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}],
                    },
                ],
            }),
        )?)
        .await?;
    let uid = created.metadata.uid.clone().context("uid")?;

    let root = node.dir.path().join("agent-root");
    // No cache, so that the refresh below reads the ConfigMap's new contents at once.
    let manager = VolumeManager::new(&root, ApiSources::with_ttl(client.clone(), Duration::ZERO));
    if let Err(errors) = manager.setup(&created, &NodeFacts::default()).await {
        bail!("setup failed: {errors:?}");
    }
    let logs = labels::pod_log_dir(&node.dir.path().join("logs"), "default", "reader", &uid);
    let config = sandbox_config(&created, &logs)?;
    let sandbox = node.client.run_pod_sandbox(config.clone(), "").await?;

    let lines = run(
        &node,
        &manager,
        &created,
        (&sandbox, &config),
        "main",
        &logs,
    )
    .await?;
    assert_eq!(
        lines,
        [
            "hello from keel",
            "GREETING=hello from keel",
            "MSG=hello from keel!",
            "POD=reader",
            "CFG_mode=fast",
            "namespace=default",
            "-----BEGIN CERTIFICATE-----",
            "token parts: 3",
            "read-only",
        ]
    );

    // The running pod's volume follows its ConfigMap: a new container in the same pod (its
    // mount is the same directory) reads the new contents after the next setup.
    config_maps
        .patch(
            "settings",
            &Patch::Merge(json!({"data": {"greeting": "changed"}})),
        )
        .await?;
    if let Err(errors) = manager.setup(&created, &NodeFacts::default()).await {
        bail!("refresh failed: {errors:?}");
    }
    let lines = run(
        &node,
        &manager,
        &created,
        (&sandbox, &config),
        "again",
        &logs,
    )
    .await?;
    assert_eq!(lines, ["changed"]);

    node.client.stop_pod_sandbox(&sandbox).await?;
    node.client.remove_pod_sandbox(&sandbox).await?;
    manager.teardown(&uid)?;
    assert!(manager.pods_on_disk()?.is_empty());
    node.stop().await;
    Ok(())
}
