//! The Node's conditions as kubelet's status setters write them: MemoryPressure, DiskPressure
//! and PIDPressure from the eviction thresholds, and Ready (always last) from the container
//! runtime's own conditions. Heartbeat times move on every update; transition times only
//! when a condition's status changes. Conditions other components own are left as they are.

use keel_types::k8s_openapi::api::core::v1::NodeCondition;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::host::HostUsage;
use super::resources::{nodefs_reservation, EVICTION_MEMORY_AVAILABLE_BYTES};
use crate::cri::{RuntimeCondition, StatusResponse};

/// Below this share (percent) of the PID limit still free, the node has PID pressure.
pub const PID_AVAILABLE_PERCENT: u64 = 10;

/// What the last readiness check of the container runtime found.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeHealth {
    /// No check has finished yet.
    Unchecked,
    /// The runtime could not be asked (not running, not answering).
    Down,
    /// The runtime answered with its conditions.
    Answered(Vec<RuntimeCondition>),
}

impl RuntimeHealth {
    /// From a `Status` reply.
    pub fn from_status(status: &StatusResponse) -> Self {
        Self::Answered(
            status
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default(),
        )
    }

    /// Why the node is not ready on the runtime's account, in kubelet's words; empty when
    /// the runtime and its network are ready.
    pub fn errors(&self) -> Vec<String> {
        let conditions = match self {
            Self::Unchecked => {
                return vec!["container runtime status check may not have completed yet".into()]
            }
            Self::Down => return vec!["container runtime is down".into()],
            Self::Answered(conditions) => conditions,
        };
        let mut errors = Vec::new();
        for (kind, what) in [
            ("RuntimeReady", "container runtime not ready"),
            ("NetworkReady", "container runtime network not ready"),
        ] {
            match conditions.iter().find(|c| c.r#type == kind) {
                Some(c) if c.status => {}
                Some(c) => errors.push(format!(
                    "{what}: {}={} reason:{} message:{}",
                    c.r#type, c.status, c.reason, c.message
                )),
                None => errors.push(format!("{what}: <nil>")),
            }
        }
        errors
    }

    /// Whether the runtime lets the node be Ready.
    pub fn is_ready(&self) -> bool {
        self.errors().is_empty()
    }
}

/// Which eviction signals are past their thresholds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

impl Pressure {
    /// kubelet's default hard eviction thresholds over what the host has left:
    /// memory.available < 100Mi, nodefs.available < 10 %, and PIDs available below
    /// [`PID_AVAILABLE_PERCENT`] of the limit. Signals that could not be read (zero) are not
    /// pressure.
    pub fn of(usage: &HostUsage) -> Self {
        let fs = usage.nodefs;
        let pids_available = usage.pid_max.saturating_sub(usage.pids_running);
        Self {
            memory: usage.memory_available_bytes > 0
                && usage.memory_available_bytes < EVICTION_MEMORY_AVAILABLE_BYTES,
            disk: fs.capacity_bytes > 0
                && fs.available_bytes < nodefs_reservation(fs.capacity_bytes),
            pid: usage.pid_max > 0
                && u128::from(pids_available) * 100
                    < u128::from(usage.pid_max) * u128::from(PID_AVAILABLE_PERCENT),
        }
    }
}

/// A condition's new state and the node event kubelet records when it moves to it.
struct Wanted {
    kind: &'static str,
    status: &'static str,
    reason: &'static str,
    message: String,
    event: &'static str,
}

fn pressure_condition(kind: &'static str, under: bool) -> Wanted {
    let (reason, message, event) = match (kind, under) {
        ("MemoryPressure", true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
            "NodeHasInsufficientMemory",
        ),
        ("MemoryPressure", false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
            "NodeHasSufficientMemory",
        ),
        ("DiskPressure", true) => (
            "KubeletHasDiskPressure",
            "kubelet has disk pressure",
            "NodeHasDiskPressure",
        ),
        ("DiskPressure", false) => (
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
            "NodeHasNoDiskPressure",
        ),
        (_, true) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
            "NodeHasInsufficientPID",
        ),
        (_, false) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
            "NodeHasSufficientPID",
        ),
    };
    Wanted {
        kind,
        status: if under { "True" } else { "False" },
        reason,
        message: message.to_owned(),
        event,
    }
}

fn ready_condition(errors: &[String]) -> Wanted {
    match errors {
        [] => Wanted {
            kind: "Ready",
            status: "True",
            reason: "KubeletReady",
            message: "kubelet is posting ready status".into(),
            event: "NodeReady",
        },
        // One error reads as itself, several as a bracketed list, as Go's aggregate errors.
        [one] => not_ready(one.clone()),
        many => not_ready(format!("[{}]", many.join(", "))),
    }
}

fn not_ready(message: String) -> Wanted {
    Wanted {
        kind: "Ready",
        status: "False",
        reason: "KubeletNotReady",
        message,
        event: "NodeNotReady",
    }
}

/// The conditions after an update at `now`, from those the Node had, and the node events
/// (kubelet's `NodeReady`, `NodeHasSufficientMemory` …) the changes call for.
pub fn update(
    previous: &[NodeCondition],
    pressure: Pressure,
    runtime_errors: &[String],
    now: &Time,
) -> (Vec<NodeCondition>, Vec<&'static str>) {
    let wanted = [
        pressure_condition("MemoryPressure", pressure.memory),
        pressure_condition("DiskPressure", pressure.disk),
        pressure_condition("PIDPressure", pressure.pid),
        ready_condition(runtime_errors),
    ];
    let ours = |kind: &str| wanted.iter().any(|w| w.kind == kind);
    let mut conditions: Vec<NodeCondition> = previous
        .iter()
        .filter(|c| !ours(&c.type_))
        .cloned()
        .collect();
    let mut events = Vec::new();
    for want in wanted {
        let before = previous.iter().find(|c| c.type_ == want.kind);
        let changed = before.is_none_or(|c| c.status != want.status);
        if changed {
            events.push(want.event);
        }
        // Pressure conditions keep their reason and message until the status changes;
        // Ready's message is rewritten on every update (it carries the current errors).
        let keep_text = !changed && want.kind != "Ready";
        let (reason, message) = match before {
            Some(c) if keep_text => (c.reason.clone(), c.message.clone()),
            _ => (Some(want.reason.to_owned()), Some(want.message)),
        };
        let transition = match before {
            Some(c) if !changed => c.last_transition_time.clone(),
            _ => Some(now.clone()),
        };
        conditions.push(NodeCondition {
            type_: want.kind.to_owned(),
            status: want.status.to_owned(),
            reason,
            message,
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: transition,
        });
    }
    (conditions, events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::FsStats;
    use keel_types::k8s_openapi::chrono::{TimeZone, Utc};

    fn at(secs: i64) -> Time {
        Time(Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap())
    }

    fn condition(kind: &str, ready: bool, reason: &str, message: &str) -> RuntimeCondition {
        RuntimeCondition {
            r#type: kind.into(),
            status: ready,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn healthy() -> RuntimeHealth {
        RuntimeHealth::Answered(vec![
            condition("RuntimeReady", true, "", ""),
            condition("NetworkReady", true, "", ""),
        ])
    }

    fn find<'a>(conditions: &'a [NodeCondition], kind: &str) -> &'a NodeCondition {
        conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_ready_runtime_makes_the_node_ready_with_kubelets_reason() {
        let (conditions, events) = update(&[], Pressure::default(), &healthy().errors(), &at(0));
        let kinds: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            kinds,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let ready = find(&conditions, "Ready");
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let memory = find(&conditions, "MemoryPressure");
        assert_eq!(
            (memory.status.as_str(), memory.reason.as_deref()),
            ("False", Some("KubeletHasSufficientMemory"))
        );
        assert_eq!(
            find(&conditions, "DiskPressure").reason.as_deref(),
            Some("KubeletHasNoDiskPressure")
        );
        assert_eq!(
            find(&conditions, "PIDPressure").reason.as_deref(),
            Some("KubeletHasSufficientPID")
        );
        assert!(events.contains(&"NodeReady"));
    }

    #[test]
    fn a_runtime_whose_network_is_not_ready_gives_its_reason() {
        let health = RuntimeHealth::Answered(vec![
            condition("RuntimeReady", true, "", ""),
            condition(
                "NetworkReady",
                false,
                "NetworkPluginNotReady",
                "cni plugin not initialized",
            ),
        ]);
        let (conditions, _) = update(&[], Pressure::default(), &health.errors(), &at(0));
        let ready = find(&conditions, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni plugin not initialized")
        );
    }

    #[test]
    fn a_runtime_that_is_gone_or_unchecked_makes_the_node_not_ready() {
        assert_eq!(RuntimeHealth::Down.errors(), ["container runtime is down"]);
        assert!(!RuntimeHealth::Unchecked.is_ready());
        let silent = RuntimeHealth::Answered(vec![]);
        let (conditions, _) = update(&[], Pressure::default(), &silent.errors(), &at(0));
        assert_eq!(
            find(&conditions, "Ready").message.as_deref(),
            Some(
                "[container runtime not ready: <nil>, container runtime network not ready: <nil>]"
            )
        );
    }

    #[test]
    fn heartbeats_move_on_every_update_and_transitions_only_on_change() {
        let (first, _) = update(&[], Pressure::default(), &[], &at(0));
        let (second, events) = update(&first, Pressure::default(), &[], &at(10));
        let ready = find(&second, "Ready");
        assert_eq!(ready.last_heartbeat_time, Some(at(10)));
        assert_eq!(ready.last_transition_time, Some(at(0)));
        assert!(events.is_empty(), "{events:?}");

        let (third, events) = update(
            &second,
            Pressure::default(),
            &RuntimeHealth::Down.errors(),
            &at(20),
        );
        let ready = find(&third, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.last_transition_time, Some(at(20)));
        assert_eq!(events, ["NodeNotReady"]);
        assert_eq!(
            find(&third, "MemoryPressure").last_transition_time,
            Some(at(0))
        );
    }

    #[test]
    fn conditions_of_other_components_are_kept() {
        let foreign = NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            ..NodeCondition::default()
        };
        let (conditions, _) = update(
            std::slice::from_ref(&foreign),
            Pressure::default(),
            &[],
            &at(0),
        );
        assert_eq!(conditions[0], foreign);
        assert_eq!(
            conditions.last().unwrap().type_,
            "Ready",
            "Ready stays last"
        );
    }

    #[test]
    fn pressure_follows_the_hard_eviction_thresholds() {
        let roomy = HostUsage {
            memory_available_bytes: 1 << 30,
            nodefs: FsStats {
                capacity_bytes: 1000,
                available_bytes: 500,
            },
            pid_max: 1000,
            pids_running: 100,
        };
        assert_eq!(Pressure::of(&roomy), Pressure::default());
        let tight = HostUsage {
            memory_available_bytes: 50 << 20,
            nodefs: FsStats {
                capacity_bytes: 1000,
                available_bytes: 99,
            },
            pid_max: 1000,
            pids_running: 950,
        };
        assert_eq!(
            Pressure::of(&tight),
            Pressure {
                memory: true,
                disk: true,
                pid: true
            }
        );
        let (conditions, events) = update(&[], Pressure::of(&tight), &[], &at(0));
        assert_eq!(
            find(&conditions, "MemoryPressure").reason.as_deref(),
            Some("KubeletHasInsufficientMemory")
        );
        assert_eq!(
            find(&conditions, "DiskPressure").reason.as_deref(),
            Some("KubeletHasDiskPressure")
        );
        assert!(events.contains(&"NodeHasInsufficientPID"));
        assert_eq!(Pressure::of(&HostUsage::default()), Pressure::default());
    }
}
