//! Container lifecycle hooks as kubelet runs them: postStart right after a container starts
//! (a failure kills the container, which then restarts by its policy), preStop before a
//! container is stopped, within the pod's grace period (what it uses is taken from the time
//! the container then has to stop, never below kubelet's 2 seconds). Exec hooks run through
//! CRI ExecSync; httpGet hooks send one GET to the pod (any answer counts, as kubelet's);
//! sleep hooks wait, cut short at the hook's time limit. A tcpSocket handler, which the API
//! still accepts, fails as kubelet fails it.

use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::events::PodEvents;
use crate::prober::check::{lifecycle_get, Target};
use crate::prober::spec::HttpGet;
use crate::RuntimeClient;

/// What a container has left to stop after its preStop hook, at least (kubelet's
/// minimumGracePeriodInSeconds).
pub const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn handler(self, container: &Container) -> Option<&LifecycleHandler> {
        let lifecycle = container.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lifecycle.post_start.as_ref(),
            Hook::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }

    fn failed_reason(self) -> &'static str {
        match self {
            Hook::PostStart => "FailedPostStartHook",
            Hook::PreStop => "FailedPreStopHook",
        }
    }
}

/// The grace a container has left to stop once its preStop hook took `used` of `grace`.
pub fn grace_after_hook(grace: Duration, used: Duration) -> Duration {
    grace.saturating_sub(used).max(MIN_GRACE_AFTER_HOOK)
}

/// What a hook does, read from its handler.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Action {
    Exec(Vec<String>),
    HttpGet(HttpGet),
    Sleep(Duration),
    /// A handler kubelet cannot run (tcpSocket, or none), as kubelet words it.
    Invalid(String),
}

impl Action {
    fn of(handler: &LifecycleHandler, container: &Container) -> Self {
        if let Some(exec) = &handler.exec {
            return Action::Exec(exec.command.clone().unwrap_or_default());
        }
        if let Some(http) = &handler.http_get {
            return Action::HttpGet(HttpGet::of(http, container));
        }
        if let Some(sleep) = &handler.sleep {
            return Action::Sleep(Duration::from_secs(
                u64::try_from(sleep.seconds).unwrap_or_default(),
            ));
        }
        let kind = if handler.tcp_socket.is_some() {
            "tcpSocket"
        } else {
            "none"
        };
        Action::Invalid(format!("Cannot run handler: invalid handler: {kind}"))
    }
}

/// Runs `container`'s `hook` against `target` (the instance exec hooks run in, the pod IP
/// httpGet hooks default to), if it has one, within `timeout`; returns false if the hook
/// failed (an Event says how, in kubelet's words).
pub async fn run(
    runtime: &RuntimeClient,
    events: &PodEvents,
    pod_name: &str,
    container: &Container,
    target: Target<'_>,
    hook: Hook,
    timeout: Duration,
) -> bool {
    let Some(handler) = hook.handler(container) else {
        return true;
    };
    let failure = match Action::of(handler, container) {
        Action::Exec(command) => match exec(runtime, target.container_id, &command, timeout).await
        {
            Ok(()) => return true,
            Err(error) => format!(
                "Exec lifecycle hook ({command:?}) for Container {:?} in Pod {pod_name:?} failed - error: {error}",
                container.name
            ),
        },
        Action::HttpGet(get) => {
            let host = get.host.as_deref().or(target.pod_ip).unwrap_or_default();
            let sent = if host.is_empty() {
                Err("the pod has no IP".to_owned())
            } else {
                lifecycle_get(&get, host, timeout).await
            };
            match sent {
                Ok(()) => return true,
                Err(error) => format!(
                    "HTTP lifecycle hook ({}) for Container {:?} in Pod {pod_name:?} failed - error: {error}",
                    get.path, container.name
                ),
            }
        }
        Action::Sleep(duration) => {
            // Cut short by the hook's time limit, as kubelet's sleep ends with the grace period.
            tokio::time::sleep(duration.min(timeout)).await;
            return true;
        }
        Action::Invalid(message) => message,
    };
    events.warning(Some(container), hook.failed_reason(), failure);
    false
}

async fn exec(
    runtime: &RuntimeClient,
    container_id: &str,
    command: &[String],
    timeout: Duration,
) -> Result<(), String> {
    match runtime.exec_sync(container_id, command, timeout).await {
        Ok(done) if done.exit_code == 0 => Ok(()),
        Ok(done) => {
            let mut output = done.stdout;
            output.extend_from_slice(&done.stderr);
            Err(format!(
                "command '{}' exited with {}: {}",
                command.join(" "),
                done.exit_code,
                String::from_utf8_lossy(&output)
            ))
        }
        Err(error) => Err(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use keel_types::k8s_openapi::api::core::v1::{
        ContainerPort, ExecAction, HTTPGetAction, SleepAction, TCPSocketAction,
    };
    use keel_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn each_handler_reads_as_the_action_kubelet_runs() {
        let container = Container {
            name: "web".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        let exec = LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["true".into()]),
            }),
            ..Default::default()
        };
        assert_eq!(
            Action::of(&exec, &container),
            Action::Exec(vec!["true".into()])
        );
        let http = LifecycleHandler {
            http_get: Some(HTTPGetAction {
                path: Some("/hook".into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let Action::HttpGet(get) = Action::of(&http, &container) else {
            panic!("an httpGet handler");
        };
        assert_eq!((get.port, get.path.as_str()), (Ok(8080), "/hook"));
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 3 }),
            ..Default::default()
        };
        assert_eq!(
            Action::of(&sleep, &container),
            Action::Sleep(Duration::from_secs(3))
        );
        let tcp = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(80),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            matches!(Action::of(&tcp, &container), Action::Invalid(m) if m.contains("tcpSocket"))
        );
    }

    #[test]
    fn the_stop_keeps_what_the_hook_left_of_the_grace_period_but_never_below_two_seconds() {
        let s = Duration::from_secs;
        assert_eq!(grace_after_hook(s(30), s(5)), s(25));
        assert_eq!(grace_after_hook(s(30), s(29)), s(2));
        assert_eq!(grace_after_hook(s(1), s(0)), s(2));
    }
}
