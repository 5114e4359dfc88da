//! Whether a node is alive, and what that means for its status and taints, as Kubernetes'
//! node lifecycle controller decides it: a node whose kubelet has not renewed its Lease (nor
//! posted status) for the grace period is unreachable — its conditions become Unknown and it
//! gets the `node.kubernetes.io/unreachable` taints; a node whose kubelet reports Ready=False
//! gets the `not-ready` taints; a healthy node gets neither. Pure: observations and the
//! clock are arguments.
//!
//! Liveness is judged by local observation, never by comparing clocks: a heartbeat counts at
//! the instant this controller saw the Lease (or status) change.

use std::time::{Duration, Instant};

use keel_client::k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::{DateTime, Utc};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// The conditions a kubelet reports and that go Unknown when it stops.
const KUBELET_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// A node's health as this controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The kubelet reports Ready=False (or Unknown itself).
    NotReady,
    /// No heartbeat for longer than the grace period.
    Unreachable,
}

/// When this controller last saw a sign of life from a node's kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The Lease's (or the node status') version last seen.
    pub version: String,
    pub seen_at: Instant,
}

impl Heartbeat {
    /// The heartbeat after observing `version` at `now`: a new version is a new beat.
    pub fn observe(previous: Option<&Heartbeat>, version: &str, now: Instant) -> Heartbeat {
        match previous {
            Some(p) if p.version == version => p.clone(),
            _ => Heartbeat {
                version: version.to_string(),
                seen_at: now,
            },
        }
    }
}

/// The node's health at `now`, given its last heartbeat.
pub fn health(node: &Node, beat: &Heartbeat, grace: Duration, now: Instant) -> Health {
    if now.saturating_duration_since(beat.seen_at) > grace {
        return Health::Unreachable;
    }
    match ready_status(node) {
        Some("True") => Health::Ready,
        _ => Health::NotReady,
    }
}

fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The node's conditions once it is unreachable: every kubelet condition Unknown (reason
/// NodeStatusUnknown), keeping the last heartbeat time; None if they already are.
pub fn unknown_conditions(node: &Node, now: DateTime<Utc>) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        let message = "Kubelet stopped posting node status.".to_string();
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some(message);
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.to_string(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: None,
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The taints `node` should carry for `health`: its own taints minus this controller's, plus
/// the ones the health calls for. `execute` says whether the NoExecute taint may be added now
/// (it is rate-limited); one already present is kept. Existing taints keep their timeAdded.
/// None when nothing changes.
pub fn taints(
    node: &Node,
    health: Health,
    execute: bool,
    now: DateTime<Utc>,
) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let key = match health {
        Health::Ready => None,
        Health::NotReady => Some(NOT_READY),
        Health::Unreachable => Some(UNREACHABLE),
    };
    let ours = |t: &Taint| {
        (t.key == UNREACHABLE || t.key == NOT_READY)
            && (t.effect == NO_SCHEDULE || t.effect == NO_EXECUTE)
    };
    let mut next: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    if let Some(key) = key {
        for effect in [NO_SCHEDULE, NO_EXECUTE] {
            let existing = current
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .cloned();
            match existing {
                Some(t) => next.push(t),
                None if effect == NO_EXECUTE && !execute => {}
                None => next.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (effect == NO_EXECUTE).then_some(Time(now)),
                }),
            }
        }
    }
    (next != current).then_some(next)
}

/// Whether `node` already has the NoExecute taint `health` calls for.
pub fn has_execute_taint(node: &Node, health: Health) -> bool {
    let key = match health {
        Health::Ready => return false,
        Health::NotReady => NOT_READY,
        Health::Unreachable => UNREACHABLE,
    };
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == key && t.effect == NO_EXECUTE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_is_unreachable_only_after_the_grace_period_without_a_new_heartbeat() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(50);
        let beat = Heartbeat::observe(None, "1", t0);
        let n = node("True", vec![]);
        assert_eq!(health(&n, &beat, grace, t0 + grace), Health::Ready);
        assert_eq!(
            health(&n, &beat, grace, t0 + grace + Duration::from_secs(1)),
            Health::Unreachable
        );
        let same = Heartbeat::observe(Some(&beat), "1", t0 + grace);
        assert_eq!(same.seen_at, t0, "an unchanged Lease is not a heartbeat");
        let renewed = Heartbeat::observe(Some(&beat), "2", t0 + grace);
        assert_eq!(
            health(&n, &renewed, grace, t0 + grace + Duration::from_secs(1)),
            Health::Ready
        );
        assert_eq!(
            health(&node("False", vec![]), &renewed, grace, t0 + grace),
            Health::NotReady
        );
    }

    #[test]
    fn an_unreachable_node_gets_both_taints_and_unknown_conditions() {
        let now = Utc::now();
        let n = node("True", vec![taint("dedicated", NO_SCHEDULE)]);
        let next = taints(&n, Health::Unreachable, true, now).unwrap_or_default();
        let keys: Vec<(&str, &str)> = next
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("dedicated", NO_SCHEDULE),
                (UNREACHABLE, NO_SCHEDULE),
                (UNREACHABLE, NO_EXECUTE)
            ]
        );
        assert!(next[2].time_added.is_some());
        let conditions = unknown_conditions(&n, now).unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        assert_eq!(ready.map(|c| c.status.as_str()), Some("Unknown"));
        assert_eq!(
            ready.and_then(|c| c.reason.as_deref()),
            Some("NodeStatusUnknown")
        );
        assert_eq!(conditions.len(), 4);
    }

    #[test]
    fn the_no_execute_taint_waits_for_the_rate_limiter() {
        let now = Utc::now();
        let n = node("True", vec![]);
        let next = taints(&n, Health::Unreachable, false, now).unwrap_or_default();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].effect, NO_SCHEDULE);
    }

    #[test]
    fn a_recovered_node_loses_the_taints_and_keeps_its_own() {
        let now = Utc::now();
        let n = node(
            "True",
            vec![
                taint("dedicated", NO_SCHEDULE),
                taint(UNREACHABLE, NO_SCHEDULE),
                taint(UNREACHABLE, NO_EXECUTE),
            ],
        );
        let next = taints(&n, Health::Ready, true, now).unwrap_or_default();
        assert_eq!(next, vec![taint("dedicated", NO_SCHEDULE)]);
        assert_eq!(
            taints(&node("True", vec![]), Health::Ready, true, now),
            None
        );
    }

    #[test]
    fn a_not_ready_node_trades_unreachable_for_not_ready() {
        let now = Utc::now();
        let n = node("False", vec![taint(UNREACHABLE, NO_SCHEDULE)]);
        let next = taints(&n, Health::NotReady, true, now).unwrap_or_default();
        assert!(next.iter().all(|t| t.key == NOT_READY));
        assert_eq!(next.len(), 2);
    }
}
