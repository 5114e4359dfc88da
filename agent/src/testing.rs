//! A node for tests that run real containers: a private containerd (own config, root, state
//! dir and socket) on a CNI bridge of its own with the local busybox and pause images
//! imported, removed again when the test is done. Where containers cannot run (not root, or
//! containerd, runc, the CNI plugins or busybox-static missing) it says why and yields `None`,
//! so a test can skip instead of failing on a machine that cannot run it.
//!
//! Also the plain CRI configurations such tests run busybox in (a one-pod sandbox in
//! `default`, busybox containers), built by hand where a test drives CRI directly, and a
//! polling helper.
#![allow(clippy::expect_used, clippy::missing_panics_doc)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use keel_types::k8s_openapi::api::core::v1::Pod;

use crate::containerd::{BridgeNetwork, ContainerdConfig, PrivateContainerd, Snapshotter};
use crate::cri::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};
use crate::image::busybox::write_host_archive;
use crate::image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use crate::labels;
use crate::RuntimeClient;

/// A node for one test: its own containerd, CNI bridge and /24, images imported.
pub struct TestNode {
    // Fields drop in order: containerd (and all it ran) before its directory.
    pub containerd: Option<PrivateContainerd>,
    pub client: RuntimeClient,
    pub network: BridgeNetwork,
    pub dir: tempfile::TempDir,
}

pub use crate::containerd::process::cannot_run_containers;

impl TestNode {
    /// Starts a node, or returns `None` (having said why) where containers cannot run.
    pub async fn start(index: u32) -> Option<TestNode> {
        Self::start_with(index, Snapshotter::Overlayfs).await
    }

    /// Starts a node whose containerd uses `snapshotter` (overlayfs only where it mounts).
    pub async fn start_with(index: u32, snapshotter: Snapshotter) -> Option<TestNode> {
        if let Some(reason) = cannot_run_containers() {
            eprintln!("skipping: {reason}");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("keel-cri-")
            .tempdir()
            .expect("temp dir");
        let unique = std::process::id() % 250;
        let network = BridgeNetwork {
            name: format!("keel-test-{index}"),
            bridge: format!("kc{}x{index}", std::process::id() % 100_000),
            subnet: format!("10.{}.{unique}.0/24", 200 + index),
            ipam_data_dir: Some(dir.path().join("ipam").display().to_string()),
            masquerade: false,
        };
        let config = ContainerdConfig {
            snapshotter,
            ..ContainerdConfig::under(dir.path(), PAUSE_IMAGE)
        };
        std::fs::create_dir_all(&config.cni_conf_dir).expect("cni dir");
        std::fs::write(
            config.cni_conf_dir.join("10-keel.conflist"),
            network.conflist().to_string(),
        )
        .expect("cni config");
        let containerd = PrivateContainerd::start(dir.path(), config)
            .await
            .expect("containerd starts");
        eprintln!(
            "containerd at {} with the {} snapshotter",
            containerd.endpoint(),
            containerd.config().snapshotter.as_str()
        );
        let archive = dir.path().join("images.tar");
        write_host_archive(&archive).expect("image archive");
        containerd.import(&archive).await.expect("images import");
        let client = RuntimeClient::connect(&containerd.endpoint())
            .await
            .expect("CRI connects");
        Some(TestNode {
            dir,
            containerd: Some(containerd),
            client,
            network,
        })
    }

    /// Reboots the node's containerd ([`PrivateContainerd::reboot`]). Its CNI bridge goes
    /// too, as a reboot takes every network device with it.
    pub async fn reboot(&mut self) -> Result<(), crate::Error> {
        let containerd = self.containerd.take().ok_or_else(|| {
            crate::Error::io(
                "rebooting the test node",
                std::io::Error::other("containerd was stopped"),
            )
        })?;
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.network.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let containerd = containerd.reboot().await?;
        self.client = RuntimeClient::connect(&containerd.endpoint()).await?;
        self.containerd = Some(containerd);
        Ok(())
    }

    pub fn logs(&self, pod: &str) -> PathBuf {
        self.dir.path().join("pods").join(pod)
    }

    pub async fn stop(mut self) {
        if let Some(containerd) = self.containerd.take() {
            containerd.stop().await.expect("containerd stops cleanly");
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // The bridge outlives its pods; it is ours alone, by name.
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.network.bridge])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// kubelet's namespaces for a plain pod (the agent's own choice for one): the sandbox's
/// network and IPC, a PID namespace of each container's own.
pub fn namespaces() -> Option<NamespaceOption> {
    Some(crate::pods::configs::namespaces(&Pod::default()))
}

/// The sandbox of a pod `name` (uid `uid`) in `default`, with kubelet's labels, logging under
/// `logs` (created).
pub fn sandbox_config(name: &str, uid: &str, logs: &Path) -> PodSandboxConfig {
    std::fs::create_dir_all(logs).expect("pod log directory");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: uid.to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        hostname: name.to_owned(),
        log_directory: logs.display().to_string(),
        labels: HashMap::from([
            (labels::POD_NAME.to_owned(), name.to_owned()),
            (labels::POD_NAMESPACE.to_owned(), "default".to_owned()),
            (labels::POD_UID.to_owned(), uid.to_owned()),
        ]),
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

/// A busybox container `name` running `command`, logging to `<logs>/<name>/0.log`.
pub fn container_config(name: &str, logs: &Path, command: &[&str]) -> ContainerConfig {
    std::fs::create_dir_all(logs.join(name)).expect("container log directory");
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX_IMAGE.to_owned(),
            ..ImageSpec::default()
        }),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        log_path: labels::container_log_path(name, 0).display().to_string(),
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

/// Polls `check` until it yields a value; fails the test after a minute.
pub async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
