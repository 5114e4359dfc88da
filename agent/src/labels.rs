//! The labels and annotations kubelet puts on CRI sandboxes and containers, and the on-disk
//! layout of the agent's root and log directories: the conventions every part of the agent
//! (pod workers, the log and exec server, garbage collection, recovery after a restart) finds
//! its pods' sandboxes and containers by, and which tools that know kubelet (crictl) read.

use std::path::{Path, PathBuf};

/// Sandbox and container label: the pod's name.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox and container label: the pod's namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox and container label: the pod's uid.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: the container's name in the pod spec.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Sandbox label kubelet sets to "podsandbox"; containers do not carry it.
pub const CONTAINER_TYPE: &str = "io.kubernetes.container.type";
/// Container annotation: how many times this container had been restarted when this instance
/// was created (its CRI metadata `attempt` says the same).
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Container annotation: the spec hash the container was created from, so a changed spec is
/// told from an unchanged one after a restart of the agent.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Container annotation: the grace period of the pod when the container was created.
pub const TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Container annotation: where the container's termination message is read from.
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Container annotation: the container's terminationMessagePolicy.
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Container annotation: the image as the pod spec names it (the runtime only keeps the id
/// it resolved the name to).
pub const CONTAINER_IMAGE: &str = "keel.dev/image";
/// Label every sandbox and container the agent creates carries, so that what a runtime
/// shared with other clients holds is told apart from ours.
pub const MANAGED_BY: &str = "keel.dev/agent";

/// The directory under which a pod's container logs live, as CRI's `log_directory`:
/// `<logs>/<namespace>_<name>_<uid>`, kubelet's `/var/log/pods` scheme.
pub fn pod_log_dir(logs: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    logs.join(format!("{namespace}_{name}_{uid}"))
}

/// A container instance's log file relative to its pod's log directory, as CRI's `log_path`:
/// `<container>/<restart count>.log`.
pub fn container_log_path(container: &str, restart_count: u32) -> PathBuf {
    Path::new(container).join(format!("{restart_count}.log"))
}

/// A pod's own directory under the agent's root dir (`--root-dir`): `<root>/pods/<uid>`,
/// holding its volumes (`volumes/<plugin>/<name>`) and its containers' files.
pub fn pod_dir(root: &Path, uid: &str) -> PathBuf {
    root.join("pods").join(uid)
}

/// The file a container instance writes its termination message to, mounted at its
/// terminationMessagePath: `<pod dir>/containers/<container>/<restart count>`.
pub fn termination_message_file(
    root: &Path,
    uid: &str,
    container: &str,
    restart_count: u32,
) -> PathBuf {
    pod_dir(root, uid)
        .join("containers")
        .join(container)
        .join(restart_count.to_string())
}
