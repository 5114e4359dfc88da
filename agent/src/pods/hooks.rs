//! Container lifecycle hooks as kubelet runs them: postStart right after a container starts
//! (a failure kills the container, which then restarts by its policy), preStop before a
//! container is stopped, within the pod's grace period (what it uses is taken from the time
//! the container then has to stop, never below kubelet's 2 seconds). Exec hooks run through
//! CRI ExecSync; httpGet and sleep hooks are not run (a warning Event says so).

use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::{Container, LifecycleHandler};

use super::events::PodEvents;
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

    fn name(self) -> &'static str {
        match self {
            Hook::PostStart => "PostStartHook",
            Hook::PreStop => "PreStopHook",
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

/// Runs `container`'s `hook` in instance `container_id`, if it has one, within `timeout`;
/// returns false if the hook failed (an Event says how).
pub async fn run(
    runtime: &RuntimeClient,
    events: &PodEvents,
    pod_name: &str,
    container: &Container,
    container_id: &str,
    hook: Hook,
    timeout: Duration,
) -> bool {
    let Some(handler) = hook.handler(container) else {
        return true;
    };
    let Some(command) = handler.exec.as_ref().and_then(|e| e.command.clone()) else {
        events.warning(
            Some(container),
            hook.failed_reason(),
            format!(
                "{} for Container {:?} in Pod {pod_name:?} is not run: only exec handlers are supported",
                hook.name(),
                container.name
            ),
        );
        return true;
    };
    let failure = match runtime.exec_sync(container_id, &command, timeout).await {
        Ok(done) if done.exit_code == 0 => return true,
        Ok(done) => {
            let mut output = done.stdout;
            output.extend_from_slice(&done.stderr);
            format!(
                "command '{}' exited with {}: {}",
                command.join(" "),
                done.exit_code,
                String::from_utf8_lossy(&output)
            )
        }
        Err(error) => error.to_string(),
    };
    events.warning(
        Some(container),
        hook.failed_reason(),
        format!(
            "Exec lifecycle hook ({command:?}) for Container {:?} in Pod {pod_name:?} failed - error: {failure}",
            container.name
        ),
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_keeps_what_the_hook_left_of_the_grace_period_but_never_below_two_seconds() {
        let s = Duration::from_secs;
        assert_eq!(grace_after_hook(s(30), s(5)), s(25));
        assert_eq!(grace_after_hook(s(30), s(29)), s(2));
        assert_eq!(grace_after_hook(s(1), s(0)), s(2));
    }
}
