//! What one sync of a pod must do to the runtime, as kubelet's computePodActions decides it:
//! a new sandbox when there is none or it died, the init containers one at a time, then the
//! app containers; restarts by restartPolicy behind the crash-loop back-off; containers whose
//! spec changed replaced, and those whose liveness probe failed killed (to be restarted).
//!
//! Pure: the pod, what the runtime holds, and two questions asked through closures (did this
//! container's liveness probe fail; may this container be restarted now) go in, a [`Plan`]
//! comes out.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_types::k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::Verdict;
use super::configs::spec_hash;
use super::observed::{Instance, Observed, State};

/// Why a running container is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// Its sandbox is being replaced.
    SandboxChanged,
    /// Its spec changed (a new image).
    SpecChanged,
    /// Its liveness probe failed.
    Unhealthy,
    /// It was created but never started; it is replaced.
    NeverStarted,
}

/// A container instance to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub reason: KillReason,
}

/// A container to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub name: String,
    pub init: bool,
    pub restart_count: u32,
}

/// A container that waits on its back-off: its status says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackingOff {
    pub delay: Duration,
}

/// One sync's work.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Run a new sandbox with this attempt number (after stopping everything running).
    pub new_sandbox: Option<u32>,
    pub kill: Vec<Kill>,
    pub start: Vec<Start>,
    /// Containers waiting on their crash-loop back-off, by name.
    pub backing_off: BTreeMap<String, BackingOff>,
    /// Look again after this long even if nothing changes (a back-off ends).
    pub requeue: Option<Duration>,
}

impl Plan {
    fn wake_in(&mut self, after: Duration) {
        self.requeue = Some(self.requeue.map_or(after, |r| r.min(after)));
    }
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether a container that exited with `exit_code` runs again under the pod's policy.
pub fn should_restart(pod: &Pod, exit_code: i32) -> bool {
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The next instance number of a container whose newest instance is `latest`.
fn next_count(latest: Option<&Instance>) -> u32 {
    latest.map_or(0, |i| i.restart_count.saturating_add(1))
}

/// The plan for `pod` given what the runtime holds. `liveness_failed(name)` says whether the
/// running container's liveness probe has failed; `backoff(name, failed_at)` whether a
/// container that stopped at `failed_at` may be restarted now (asking raises its next delay).
pub fn plan(
    pod: &Pod,
    observed: &Observed,
    liveness_failed: &dyn Fn(&str) -> bool,
    backoff: &mut dyn FnMut(&str, i64) -> Verdict,
) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = pod.spec.as_ref() else {
        return plan;
    };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let sandbox = observed.sandbox().filter(|s| s.ready);
    let Some(sandbox) = sandbox else {
        let ran = spec
            .containers
            .iter()
            .any(|c| observed.latest(&c.name).is_some());
        for instance in observed.running() {
            plan.kill.push(Kill {
                id: instance.id.clone(),
                name: instance.name.clone(),
                reason: KillReason::SandboxChanged,
            });
        }
        // A pod that never restarts and already ran is not brought back in a new sandbox:
        // it is over.
        if restart_policy(pod) == "Never" && ran {
            return plan;
        }
        plan.new_sandbox = Some(observed.sandbox().map_or(0, |s| s.attempt + 1));
        if let Some(first) = inits.first() {
            plan.start.push(Start {
                name: first.name.clone(),
                init: true,
                restart_count: next_count(observed.latest(&first.name)),
            });
        } else {
            for container in &spec.containers {
                let latest = observed.latest(&container.name);
                if latest.is_none_or(|l| should_restart(pod, l.exit_code)) {
                    plan.start.push(Start {
                        name: container.name.clone(),
                        init: false,
                        restart_count: next_count(latest),
                    });
                }
            }
        }
        return plan;
    };
    // Init containers, in order, in this sandbox: the first not yet done decides.
    for container in inits {
        let latest = observed
            .instances_of(&container.name)
            .find(|i| i.sandbox_id == sandbox.id);
        match latest {
            None => {
                plan.start.push(Start {
                    name: container.name.clone(),
                    init: true,
                    restart_count: next_count(observed.latest(&container.name)),
                });
                return plan;
            }
            Some(i) if i.state == State::Exited && i.exit_code == 0 => continue,
            Some(i) if i.state == State::Exited => {
                if restart_policy(pod) != "Never" {
                    restart(&mut plan, container, i, true, backoff);
                }
                return plan;
            }
            Some(i) if i.state == State::Created => {
                replace_unstarted(&mut plan, i, true);
                return plan;
            }
            // Running (or unknown): wait for it.
            Some(_) => return plan,
        }
    }
    for container in &spec.containers {
        let Some(latest) = observed.latest(&container.name) else {
            plan.start.push(Start {
                name: container.name.clone(),
                init: false,
                restart_count: 0,
            });
            continue;
        };
        match latest.state {
            State::Running => {
                let changed = !latest.hash.is_empty() && latest.hash != spec_hash(container);
                let reason = if changed {
                    Some(KillReason::SpecChanged)
                } else if liveness_failed(&container.name) {
                    Some(KillReason::Unhealthy)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    // A changed spec is replaced at once; a container killed for failing its
                    // liveness probe is restarted by the next sync like any container that
                    // stopped, behind its crash-loop back-off.
                    if reason == KillReason::SpecChanged {
                        plan.start.push(Start {
                            name: container.name.clone(),
                            init: false,
                            restart_count: next_count(Some(latest)),
                        });
                    }
                    plan.kill.push(Kill {
                        id: latest.id.clone(),
                        name: container.name.clone(),
                        reason,
                    });
                }
            }
            State::Exited => {
                let changed = !latest.hash.is_empty() && latest.hash != spec_hash(container);
                if should_restart(pod, latest.exit_code)
                    || changed && restart_policy(pod) != "Never"
                {
                    restart(&mut plan, container, latest, false, backoff);
                }
            }
            State::Created => replace_unstarted(&mut plan, latest, false),
            State::Unknown => {}
        }
    }
    plan
}

/// Restarts a container that exited, unless its back-off holds it.
fn restart(
    plan: &mut Plan,
    container: &Container,
    latest: &Instance,
    init: bool,
    backoff: &mut dyn FnMut(&str, i64) -> Verdict,
) {
    match backoff(&container.name, latest.finished_at) {
        Verdict::Go => plan.start.push(Start {
            name: container.name.clone(),
            init,
            restart_count: next_count(Some(latest)),
        }),
        Verdict::Wait { delay, remaining } => {
            plan.backing_off
                .insert(container.name.clone(), BackingOff { delay });
            plan.wake_in(remaining);
        }
    }
}

/// An instance created but never started (the agent stopped in between) is replaced by one
/// with the same number.
fn replace_unstarted(plan: &mut Plan, instance: &Instance, init: bool) {
    plan.kill.push(Kill {
        id: instance.id.clone(),
        name: instance.name.clone(),
        reason: KillReason::NeverStarted,
    });
    plan.start.push(Start {
        name: instance.name.clone(),
        init,
        restart_count: instance.restart_count,
    });
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
