//! Images on a real agent and containerd, pulled from a private registry on loopback: its
//! credentials come from the pod's imagePullSecrets (without them the pull fails,
//! ErrImagePull then ImagePullBackOff); imagePullPolicy decides whether a pull reaches the
//! registry (Always each time a container is created, IfNotPresent only when the image is
//! absent, Never never: ErrImageNeverPull); and image garbage collection removes unused
//! images over its disk threshold while keeping those in use and the sandbox image.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::time::Duration;

use anyhow::Result;
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Pod, Secret};
use keel_agent::image::{BUSYBOX_IMAGE, BUSYBOX_IMAGE_2, PAUSE_IMAGE};
use keel_client::{Api, Client};
use keel_tests::agent::AgentNode;
use keel_tests::pods::events_about;
use keel_tests::registry::Registry;
use keel_tests::sim::{ready, until};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);
const REPOSITORY: &str = "keel/busybox:1";

async fn start(index: u32, extra: &[&str]) -> Result<Option<(Cluster, Client, AgentNode)>> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let Some(node) = AgentNode::start(&cluster, "agent-images", index, extra).await? else {
        return Ok(None);
    };
    Ok(Some((cluster, client, node)))
}

fn pod(name: &str, node: &str, container: Value, secrets: &[&str]) -> Result<Pod> {
    let secrets: Vec<Value> = secrets.iter().map(|s| json!({"name": s})).collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "imagePullSecrets": secrets, "containers": [container]},
    }))?)
}

fn sleeper(image: &str, policy: &str) -> Value {
    json!({"name": "app", "image": image, "imagePullPolicy": policy, "command": ["sleep", "3600"]})
}

/// The waiting reason of the pod's container, or "Running".
async fn state(pods: &Api<Pod>, name: &str) -> String {
    let Ok(pod) = pods.get(name).await else {
        return String::new();
    };
    let state = pod
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|s| s.into_iter().next())
        .and_then(|s| s.state);
    match state {
        Some(s) if s.running.is_some() => "Running".into(),
        Some(s) => s.waiting.and_then(|w| w.reason).unwrap_or_default(),
        None => String::new(),
    }
}

async fn until_state(client: &Client, name: &str, wanted: &str, node: &AgentNode) -> Result<()> {
    let pods: &Api<Pod> = &Api::namespaced(client.clone(), "default");
    let waited = until(&format!("{name} is {wanted}"), WAIT, || async {
        state(pods, name).await == wanted
    })
    .await;
    if let Err(e) = waited {
        let now = pods
            .get(name)
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.container_statuses);
        let told = events_about(client, name).await;
        anyhow::bail!("{e}: {now:?}\nevents: {told:?}\nagent log:\n{}", node.log());
    }
    Ok(())
}

/// A dockerconfigjson Secret `registry-login` with the registry's credentials.
async fn login_secret(client: &Client, registry: &Registry) -> Result<()> {
    let auth = base64::engine::general_purpose::STANDARD.encode("puller:s3cret");
    let config = json!({"auths": {registry.address.to_string(): {
        "username": "puller", "password": "s3cret", "auth": auth}}});
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "registry-login"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config.to_string()},
        }))?)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_use_image_pull_secrets_and_follow_the_pull_policy() -> Result<()> {
    let Some((_cluster, client, node)) = start(41, &[]).await? else {
        return Ok(());
    };
    let registry = Registry::start(&[REPOSITORY], "puller", "s3cret").await?;
    let image = registry.image(REPOSITORY);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // No credentials: the registry refuses, and the pod says so as kubelet's would.
    pods.create(&pod(
        "no-creds",
        &node.name,
        sleeper(&image, "IfNotPresent"),
        &[],
    )?)
    .await?;
    until_state(&client, "no-creds", "ImagePullBackOff", &node).await?;
    let told = events_about(&client, "no-creds").await;
    assert!(
        told.iter()
            .any(|(reason, message)| reason == "Failed" && message.contains("401")),
        "a Failed event carries the registry's refusal: {told:?}"
    );
    assert!(
        told.iter().any(|(reason, _)| reason == "BackOff"),
        "{told:?}"
    );
    pods.delete("no-creds", &Default::default()).await?;

    // A dockerconfigjson Secret named in imagePullSecrets lets the pull through.
    login_secret(&client, &registry).await?;
    pods.create(&pod(
        "with-creds",
        &node.name,
        sleeper(&image, "IfNotPresent"),
        &["registry-login"],
    )?)
    .await?;
    until_state(&client, "with-creds", "Running", &node).await?;
    let told = events_about(&client, "with-creds").await;
    assert!(
        told.iter()
            .any(|(reason, message)| reason == "Pulling" && message.contains(&image)),
        "{told:?}"
    );
    assert!(
        told.iter().any(|(reason, _)| reason == "Pulled"),
        "{told:?}"
    );
    let pulls = registry.manifest_requests(REPOSITORY);
    assert!(pulls >= 1, "the pull reached the registry");

    // IfNotPresent: present now, so no request, and no credentials needed.
    pods.create(&pod(
        "if-not-present",
        &node.name,
        sleeper(&image, "IfNotPresent"),
        &[],
    )?)
    .await?;
    until_state(&client, "if-not-present", "Running", &node).await?;
    assert_eq!(registry.manifest_requests(REPOSITORY), pulls);

    // Always: the registry is asked again, even though the image is present.
    pods.create(&pod(
        "always",
        &node.name,
        sleeper(&image, "Always"),
        &["registry-login"],
    )?)
    .await?;
    until_state(&client, "always", "Running", &node).await?;
    assert!(registry.manifest_requests(REPOSITORY) > pulls);

    // Never, with an image that is not there.
    let absent = registry.image("keel/absent:1");
    pods.create(&pod("never", &node.name, sleeper(&absent, "Never"), &[])?)
        .await?;
    until_state(&client, "never", "ErrImageNeverPull", &node).await?;
    assert_eq!(registry.manifest_requests("keel/absent:1"), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_images_are_collected_over_the_disk_threshold_and_those_in_use_are_kept(
) -> Result<()> {
    // Any use of the disk is over 1 %: each collection removes every image it may, once
    // the image has been known for 5 s (so a fresh pull is in use before it could go).
    let gc = [
        "--image-gc-high-threshold=1",
        "--image-gc-low-threshold=0",
        "--minimum-image-ttl-duration=5s",
        "--image-gc-period=1s",
    ];
    let Some((_cluster, client, node)) = start(42, &gc).await? else {
        return Ok(());
    };
    let registry = Registry::start(&[REPOSITORY], "puller", "s3cret").await?;
    let image = registry.image(REPOSITORY);
    login_secret(&client, &registry).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pod(
        "user",
        &node.name,
        sleeper(&image, "IfNotPresent"),
        &["registry-login"],
    )?)
    .await?;
    until_state(&client, "user", "Running", &node).await?;
    let present = |reference: String| {
        let runtime = node.runtime().clone();
        async move {
            runtime
                .list_images()
                .await
                .is_ok_and(|images| images.iter().any(|i| i.repo_tags.contains(&reference)))
        }
    };
    until("the unused images are removed", WAIT, || async {
        !present(BUSYBOX_IMAGE.into()).await && !present(BUSYBOX_IMAGE_2.into()).await
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    assert!(present(image.clone()).await, "the image in use is kept");
    assert!(
        present(PAUSE_IMAGE.into()).await,
        "the sandbox image is kept"
    );
    assert_eq!(state(&pods, "user").await, "Running");

    // Once its pod is gone, the pulled image is unused too.
    pods.delete("user", &Default::default()).await?;
    until("the no longer used image is removed", WAIT, || async {
        !present(image.clone()).await
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    assert!(
        present(PAUSE_IMAGE.into()).await,
        "the sandbox image is kept"
    );
    Ok(())
}
