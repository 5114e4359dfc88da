//! Removing what belongs to pods that no longer exist, as kubelet's housekeeping does: a pod
//! deleted while the agent was down, force-deleted, or replaced by a new pod of the same name
//! leaves sandboxes, containers, files and logs behind; every few seconds whatever carries
//! this agent's label and names a pod uid the API no longer has is stopped and removed.

use std::collections::{HashMap, HashSet};
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
        if let Err(error) = sweep(&runtime, &pods, files.as_ref(), forget.as_ref()).await {
            tracing::warn!(%error, "cleaning up after deleted pods failed; retrying");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

async fn sweep(
    runtime: &RuntimeClient,
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
    // Read after the runtime, so that a pod created meanwhile is never taken for an orphan.
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
    for uid in files.pods_on_disk() {
        if !live.contains(&uid) {
            gone.insert(uid);
        }
    }
    for uid in gone {
        files.teardown(&uid).await;
        forget(&uid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
