//! Noticing what changes in the runtime by itself (a container exits, a sandbox dies), as
//! kubelet's PLEG does: every second one list of this agent's containers and sandboxes is
//! compared with the last, and each pod with a change is named so that it is synced.

use std::collections::HashMap;
use std::time::Duration;

use keel_client::ObjectKey;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cri::{ContainerFilter, PodSandboxFilter};
use crate::{labels, RuntimeClient};

/// How often the runtime is listed.
pub const PERIOD: Duration = Duration::from_secs(1);

/// One thing the runtime holds: its pod and its state.
type Snapshot = HashMap<String, (ObjectKey, i32)>;

/// The pods whose runtime state differs between `before` and `after`.
pub fn changed(before: &Snapshot, after: &Snapshot) -> Vec<ObjectKey> {
    let mut keys: Vec<ObjectKey> = Vec::new();
    for (id, (key, state)) in after {
        if before.get(id).map(|(_, s)| s) != Some(state) && !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    for (id, (key, _)) in before {
        if !after.contains_key(id) && !keys.contains(key) {
            keys.push(key.clone());
        }
    }
    keys
}

fn key_of(labels_map: &HashMap<String, String>) -> Option<ObjectKey> {
    Some(ObjectKey::namespaced(
        labels_map.get(labels::POD_NAMESPACE)?.clone(),
        labels_map.get(labels::POD_NAME)?.clone(),
    ))
}

async fn snapshot(runtime: &RuntimeClient) -> Result<Snapshot, crate::Error> {
    let ours = HashMap::from([(labels::MANAGED_BY.to_owned(), "true".to_owned())]);
    let mut snapshot = Snapshot::new();
    let containers = runtime
        .list_containers(Some(ContainerFilter {
            label_selector: ours.clone(),
            ..Default::default()
        }))
        .await?;
    for container in containers {
        if let Some(key) = key_of(&container.labels) {
            snapshot.insert(container.id, (key, container.state));
        }
    }
    let sandboxes = runtime
        .list_pod_sandboxes(Some(PodSandboxFilter {
            label_selector: ours,
            ..Default::default()
        }))
        .await?;
    for sandbox in sandboxes {
        if let Some(key) = key_of(&sandbox.labels) {
            snapshot.insert(sandbox.id, (key, sandbox.state));
        }
    }
    Ok(snapshot)
}

/// Lists the runtime every [`PERIOD`] until `stop`, sending the key of each pod whose
/// containers or sandboxes changed.
pub async fn run(
    runtime: RuntimeClient,
    changes: mpsc::UnboundedSender<ObjectKey>,
    stop: CancellationToken,
) {
    let mut last = Snapshot::new();
    let mut failing = false;
    loop {
        match snapshot(&runtime).await {
            Ok(now) => {
                for key in changed(&last, &now) {
                    if changes.send(key).is_err() {
                        return;
                    }
                }
                last = now;
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "listing the runtime's containers failed; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pod: &str, state: i32) -> (ObjectKey, i32) {
        (ObjectKey::namespaced("default", pod), state)
    }

    #[test]
    fn a_pod_is_named_once_when_one_of_its_containers_changes_appears_or_goes() {
        let before = Snapshot::from([
            ("a1".into(), entry("a", 1)),
            ("a2".into(), entry("a", 1)),
            ("b1".into(), entry("b", 1)),
            ("c1".into(), entry("c", 1)),
        ]);
        let after = Snapshot::from([
            ("a1".into(), entry("a", 2)),
            ("a2".into(), entry("a", 2)),
            ("b1".into(), entry("b", 1)),
            ("d1".into(), entry("d", 0)),
        ]);
        let mut keys: Vec<String> = changed(&before, &after)
            .into_iter()
            .map(|k| k.name)
            .collect();
        keys.sort();
        assert_eq!(keys, ["a", "c", "d"]);
    }

    #[test]
    fn nothing_changed_names_no_pod() {
        let same = Snapshot::from([("a1".into(), entry("a", 1))]);
        assert!(changed(&same, &same).is_empty());
    }
}
