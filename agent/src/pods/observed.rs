//! What the runtime holds for one pod, found by kubelet's labels: its sandboxes and every
//! instance of its containers, with the facts pod decisions and status are made from (state,
//! exit code, reason, times, restart count, spec hash). Gathering is the only I/O here; the
//! types are plain data the pure planners take.

use std::collections::HashMap;

use crate::cri::{ContainerFilter, ContainerState, PodSandboxFilter, PodSandboxState};
use crate::{labels, Error, RuntimeClient};

/// One sandbox of the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    pub created_at: i64,
    /// The pod IP the sandbox's network got; empty until known or for host-network pods.
    pub ip: String,
}

/// Where a container instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One instance of one of the pod's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    /// Which restart this instance is: 0 for the first.
    pub restart_count: u32,
    pub state: State,
    /// Unix nanoseconds; 0 when it has not happened.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// The runtime's reason for an exit (e.g. "OOMKilled", "Completed", "Error").
    pub reason: String,
    pub message: String,
    /// The image as the pod named it, and the runtime's id of it.
    pub image: String,
    pub image_ref: String,
    /// The spec hash the instance was created from.
    pub hash: String,
}

/// Everything the runtime holds for one pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub sandboxes: Vec<Sandbox>,
    pub instances: Vec<Instance>,
}

impl Observed {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes
            .iter()
            .max_by_key(|s| (s.attempt, s.created_at))
    }

    /// The newest instance of container `name`.
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.name == name)
            .max_by_key(|i| (i.restart_count, i.created_at))
    }

    /// The instances of container `name`, newest first.
    pub fn instances_of(&self, name: &str) -> std::vec::IntoIter<&Instance> {
        let mut all: Vec<&Instance> = self.instances.iter().filter(|i| i.name == name).collect();
        all.sort_by_key(|i| std::cmp::Reverse((i.restart_count, i.created_at)));
        all.into_iter()
    }

    /// The instances still running.
    pub fn running(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| matches!(i.state, State::Running | State::Unknown))
    }
}

/// kubelet's cap on a termination message read from its file.
const MAX_MESSAGE_BYTES: u64 = 4096;
/// kubelet's cap on a message taken from the log instead: its last 80 lines, 2 KiB at most.
const MAX_LOG_LINES: usize = 80;
const MAX_LOG_BYTES: usize = 2048;

/// The termination message of an exited container: what it wrote to the file mounted at its
/// terminationMessagePath, or with FallbackToLogsOnError and a failure, its log's tail.
fn termination_message(
    status: &crate::cri::ContainerStatus,
    annotations: &HashMap<String, String>,
) -> Option<String> {
    use std::io::Read;
    let path = annotations.get(labels::TERMINATION_MESSAGE_PATH)?;
    let from_file = status
        .mounts
        .iter()
        .find(|m| &m.container_path == path)
        .and_then(|m| std::fs::File::open(&m.host_path).ok())
        .and_then(|file| {
            let mut text = String::new();
            file.take(MAX_MESSAGE_BYTES)
                .read_to_string(&mut text)
                .ok()?;
            Some(text)
        })
        .filter(|text| !text.is_empty());
    if from_file.is_some() {
        return from_file;
    }
    let fallback = annotations
        .get(labels::TERMINATION_MESSAGE_POLICY)
        .is_some_and(|p| p == "FallbackToLogsOnError");
    if !fallback || status.exit_code == 0 || status.log_path.is_empty() {
        return None;
    }
    let log = std::fs::read_to_string(&status.log_path).ok()?;
    Some(log_tail(&log))
}

/// The messages of a CRI log's last lines, as one text within kubelet's caps.
pub fn log_tail(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|line| line.splitn(4, ' ').nth(3))
        .collect();
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let mut text = lines[start..].join("\n");
    if text.len() > MAX_LOG_BYTES {
        let mut cut = text.len() - MAX_LOG_BYTES;
        while !text.is_char_boundary(cut) {
            cut += 1;
        }
        text = text[cut..].to_owned();
    }
    text
}

/// The label selector that finds pod `uid`'s sandboxes and containers.
fn by_uid(uid: &str) -> HashMap<String, String> {
    HashMap::from([(labels::POD_UID.to_owned(), uid.to_owned())])
}

/// Reads what the runtime holds for pod `uid`.
pub async fn observe(runtime: &RuntimeClient, uid: &str) -> Result<Observed, Error> {
    let sandbox_filter = PodSandboxFilter {
        label_selector: by_uid(uid),
        ..Default::default()
    };
    let mut sandboxes = Vec::new();
    for sandbox in runtime.list_pod_sandboxes(Some(sandbox_filter)).await? {
        let ready = sandbox.state == PodSandboxState::SandboxReady as i32;
        // Only a ready sandbox has an address worth asking for.
        let ip = if ready {
            match runtime.pod_sandbox_status(&sandbox.id).await {
                Ok(status) => status.network.map(|n| n.ip).unwrap_or_default(),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        } else {
            String::new()
        };
        sandboxes.push(Sandbox {
            attempt: sandbox.metadata.map_or(0, |m| m.attempt),
            id: sandbox.id,
            ready,
            created_at: sandbox.created_at,
            ip,
        });
    }
    let container_filter = ContainerFilter {
        label_selector: by_uid(uid),
        ..Default::default()
    };
    let mut instances = Vec::new();
    for container in runtime.list_containers(Some(container_filter)).await? {
        let status = match runtime.container_status(&container.id).await {
            Ok(status) => status,
            // Removed between the list and the look: it no longer counts.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let name = container
            .labels
            .get(labels::CONTAINER_NAME)
            .cloned()
            .or_else(|| container.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default();
        let restart_count = container
            .annotations
            .get(labels::RESTART_COUNT)
            .and_then(|c| c.parse().ok())
            .or_else(|| container.metadata.as_ref().map(|m| m.attempt))
            .unwrap_or(0);
        let state = match ContainerState::try_from(status.state) {
            Ok(ContainerState::ContainerCreated) => State::Created,
            Ok(ContainerState::ContainerRunning) => State::Running,
            Ok(ContainerState::ContainerExited) => State::Exited,
            _ => State::Unknown,
        };
        let message = if state == State::Exited {
            termination_message(&status, &container.annotations)
                .unwrap_or_else(|| status.message.clone())
        } else {
            status.message.clone()
        };
        instances.push(Instance {
            id: container.id,
            sandbox_id: container.pod_sandbox_id,
            name,
            restart_count,
            state,
            created_at: status.created_at,
            started_at: status.started_at,
            finished_at: status.finished_at,
            exit_code: status.exit_code,
            reason: status.reason,
            message,
            image: container
                .annotations
                .get(labels::CONTAINER_IMAGE)
                .cloned()
                .or_else(|| status.image.map(|i| i.image))
                .unwrap_or_default(),
            image_ref: status.image_ref,
            hash: container
                .annotations
                .get(labels::CONTAINER_HASH)
                .cloned()
                .unwrap_or_default(),
        });
    }
    Ok(Observed {
        sandboxes,
        instances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_keeps_the_last_lines_messages_within_two_kib() {
        let log =
            "2026-01-01T00:00:00Z stderr F first\n2026-01-01T00:00:01Z stderr F second line\n";
        assert_eq!(log_tail(log), "first\nsecond line");
        let long: String = (0..200)
            .map(|i| {
                format!(
                    "2026-01-01T00:00:00Z stdout F line {i:04} {}\n",
                    "x".repeat(20)
                )
            })
            .collect();
        let tail = log_tail(&long);
        assert!(tail.len() <= MAX_LOG_BYTES);
        assert!(tail.ends_with(&format!("line 0199 {}", "x".repeat(20))));
    }
}
