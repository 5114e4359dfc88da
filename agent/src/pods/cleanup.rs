//! Removing what belongs to pods that no longer exist, as kubelet's housekeeping does: a pod
//! deleted while the agent was down, force-deleted, or replaced by a new pod of the same name
//! leaves sandboxes, containers, files and logs behind; every few seconds whatever carries
//! this agent's label, and every pod directory and log directory, naming a pod uid the API no
//! longer has is stopped and removed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Store;
use keel_types::k8s_openapi::api::core::v1::Pod;
use tokio_util::sync::CancellationToken;

use super::PodFiles;
use crate::cri::PodSandboxFilter;
use crate::{labels, RuntimeClient};

/// How often orphans are looked for.
pub const PERIOD: Duration = Duration::from_secs(2);

/// The sandboxes (id, pod uid) whose pod is not among `live` uids.
pub fn orphans(sandboxes: &[(String, String)], live: &HashSet<String>) -> Vec<(String, String)> {
    sandboxes
        .iter()
        .filter(|(_, uid)| !live.contains(uid))
        .cloned()
        .collect()
}

/// Cleans up after vanished pods until `stop`. Nothing is removed before the pod cache has
/// listed once: before that every pod would look vanished.
pub async fn run(
    runtime: RuntimeClient,
    dirs: Dirs,
    pods: Store<Pod>,
    files: Arc<dyn PodFiles>,
    forget: Arc<dyn Fn(&str) + Send + Sync>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        ready = pods.wait_until_ready() => if ready.is_err() { return },
    }
    loop {
        if let Err(error) = sweep(&runtime, &dirs, &pods, files.as_ref(), forget.as_ref()).await {
            tracing::warn!(%error, "cleaning up after deleted pods failed; retrying");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// Where pods leave files: the agent's root dir and the pod log dir.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub root: PathBuf,
    pub logs: PathBuf,
}

/// The pod uids that have a directory under `<root>/pods`.
fn pods_on_disk(root: &Path) -> Vec<String> {
    entries(&root.join("pods"))
}

/// The names in a directory (none if it cannot be read).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The uid a pod log directory (`<namespace>_<name>_<uid>`) belongs to.
pub fn log_dir_uid(name: &str) -> Option<&str> {
    name.rsplit_once('_')
        .map(|(_, uid)| uid)
        .filter(|uid| !uid.is_empty())
}

/// Removes a pod's directory (files or logs); one already gone is fine, anything else is
/// logged and left for the next sweep.
pub fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_dir_all(path) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "removing a pod's directory");
        }
    }
}

async fn sweep(
    runtime: &RuntimeClient,
    dirs: &Dirs,
    pods: &Store<Pod>,
    files: &dyn PodFiles,
    forget: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), crate::Error> {
    let ours = HashMap::from([(labels::MANAGED_BY.to_owned(), "true".to_owned())]);
    let sandboxes: Vec<(String, String)> = runtime
        .list_pod_sandboxes(Some(PodSandboxFilter {
            label_selector: ours,
            ..Default::default()
        }))
        .await?
        .into_iter()
        .filter_map(|s| Some((s.id, s.labels.get(labels::POD_UID)?.clone())))
        .collect();
    let on_disk = pods_on_disk(&dirs.root);
    let log_dirs = entries(&dirs.logs);
    // Read after the runtime and the disk, so that a pod created meanwhile is never taken for
    // an orphan.
    let live: HashSet<String> = pods
        .state()
        .iter()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();
    let mut gone = HashSet::new();
    for (id, uid) in orphans(&sandboxes, &live) {
        tracing::info!(sandbox = %id, pod_uid = %uid, "removing the sandbox of a pod that no longer exists");
        match runtime.stop_pod_sandbox(&id).await {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        match runtime.remove_pod_sandbox(&id).await {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
        gone.insert(uid);
    }
    for uid in on_disk {
        if !live.contains(&uid) {
            gone.insert(uid);
        }
    }
    for uid in gone {
        files.teardown(&uid).await;
        remove(&crate::labels::pod_dir(&dirs.root, &uid));
        forget(&uid);
    }
    for name in log_dirs {
        if log_dir_uid(&name).is_some_and(|uid| !live.contains(uid)) {
            remove(&dirs.logs.join(&name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_directory_names_its_pods_uid_last() {
        assert_eq!(log_dir_uid("default_web-1_3f2a-uid"), Some("3f2a-uid"));
        assert_eq!(log_dir_uid("nouid"), None);
    }

    #[test]
    fn only_sandboxes_of_pods_the_api_no_longer_has_are_orphans() {
        let sandboxes = vec![
            ("s1".to_owned(), "live".to_owned()),
            ("s2".to_owned(), "gone".to_owned()),
        ];
        let live = HashSet::from(["live".to_owned()]);
        assert_eq!(
            orphans(&sandboxes, &live),
            vec![("s2".to_owned(), "gone".to_owned())]
        );
    }
}
