//! Finding the runtime's sandbox and container instances of a pod by kubelet's labels: the
//! current instance of a container (the highest restart count), its previous one (the
//! exited instance just before it), and the pod's ready sandbox.

use std::collections::HashMap;

use crate::cri::{
    Container, ContainerFilter, ContainerState, PodSandbox, PodSandboxFilter, PodSandboxState,
};
use crate::labels;
use crate::{Error, RuntimeClient};

/// A container's restart count: kubelet's annotation, else the CRI attempt.
fn restart_count(container: &Container) -> u64 {
    container
        .annotations
        .get(labels::RESTART_COUNT)
        .and_then(|n| n.parse().ok())
        .or_else(|| container.metadata.as_ref().map(|m| u64::from(m.attempt)))
        .unwrap_or(0)
}

/// The latest instance: highest restart count, then the most recently created.
pub fn current(instances: &[Container]) -> Option<&Container> {
    instances
        .iter()
        .max_by_key(|c| (restart_count(c), c.created_at))
}

/// The instance before the current one: of the exited instances with a lower restart count
/// than the current one, the highest.
pub fn previous(instances: &[Container]) -> Option<&Container> {
    let now = current(instances)?;
    let limit = (restart_count(now), now.created_at);
    instances
        .iter()
        .filter(|c| c.state == ContainerState::ContainerExited as i32)
        .filter(|c| (restart_count(c), c.created_at) < limit)
        .max_by_key(|c| (restart_count(c), c.created_at))
}

/// The sandbox to forward ports into: a ready one, the newest.
pub fn ready_sandbox(sandboxes: &[PodSandbox]) -> Option<&PodSandbox> {
    sandboxes
        .iter()
        .filter(|s| s.state == PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
}

fn pod_selector(namespace: &str, pod: &str) -> HashMap<String, String> {
    HashMap::from([
        (labels::POD_NAMESPACE.to_owned(), namespace.to_owned()),
        (labels::POD_NAME.to_owned(), pod.to_owned()),
    ])
}

/// Every instance the runtime holds of container `container` of pod `namespace/pod`.
pub async fn instances(
    runtime: &RuntimeClient,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<Container>, Error> {
    let mut selector = pod_selector(namespace, pod);
    selector.insert(labels::CONTAINER_NAME.to_owned(), container.to_owned());
    runtime
        .list_containers(Some(ContainerFilter {
            label_selector: selector,
            ..ContainerFilter::default()
        }))
        .await
}

/// Every sandbox the runtime holds of pod `namespace/pod`.
pub async fn sandboxes(
    runtime: &RuntimeClient,
    namespace: &str,
    pod: &str,
) -> Result<Vec<PodSandbox>, Error> {
    runtime
        .list_pod_sandboxes(Some(PodSandboxFilter {
            label_selector: pod_selector(namespace, pod),
            ..PodSandboxFilter::default()
        }))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::ContainerMetadata;

    fn instance(id: &str, restarts: u32, state: ContainerState) -> Container {
        Container {
            id: id.to_owned(),
            metadata: Some(ContainerMetadata {
                name: "app".to_owned(),
                attempt: restarts,
            }),
            state: state as i32,
            created_at: i64::from(restarts),
            annotations: HashMap::from([(labels::RESTART_COUNT.to_owned(), restarts.to_string())]),
            ..Container::default()
        }
    }

    #[test]
    fn the_current_instance_has_the_highest_restart_count() {
        let all = [
            instance("a", 0, ContainerState::ContainerExited),
            instance("c", 2, ContainerState::ContainerRunning),
            instance("b", 1, ContainerState::ContainerExited),
        ];
        assert_eq!(current(&all).map(|c| c.id.as_str()), Some("c"));
        assert_eq!(previous(&all).map(|c| c.id.as_str()), Some("b"));
    }

    #[test]
    fn a_single_instance_has_no_previous_one_even_when_it_exited() {
        let all = [instance("a", 0, ContainerState::ContainerExited)];
        assert_eq!(current(&all).map(|c| c.id.as_str()), Some("a"));
        assert!(previous(&all).is_none());
        assert!(current(&[]).is_none());
    }

    #[test]
    fn an_instance_still_running_is_not_the_previous_one() {
        let all = [
            instance("a", 0, ContainerState::ContainerRunning),
            instance("b", 1, ContainerState::ContainerCreated),
        ];
        assert!(previous(&all).is_none());
    }
}
