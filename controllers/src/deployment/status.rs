//! A Deployment's status as kube-controller-manager writes it (sync.go `calculateStatus`,
//! progress.go): the replica counts summed over its ReplicaSets, the Available condition, and
//! the Progressing condition that `kubectl rollout status` and progressDeadlineSeconds read —
//! with Kubernetes' reasons and messages.

use std::time::Duration;

use keel_client::k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};

use super::view::Rs;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";

pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";

/// What of the Deployment itself its status depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub generation: i64,
    pub replicas: i32,
    pub max_unavailable: i32,
    /// `spec.progressDeadlineSeconds`, None when there is no deadline (absent or MaxInt32).
    pub progress_deadline: Option<i32>,
}

/// A condition stamped `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The condition of `type_`, if set.
pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Sets `c` (SetDeploymentCondition): nothing changes when one of its type already has its
/// status and reason; a change of reason alone keeps the transition time.
pub fn set(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(current) = get(status, &c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove(status, &c.type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
    }
}

/// The status the sets add up to (calculateStatus), with the Available condition.
pub fn calculate(
    f: &Facts,
    current: &DeploymentStatus,
    all: &[&Rs],
    new: Option<&Rs>,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|r| r.available).sum();
    let wanted: i32 = all.iter().map(|r| r.replicas).sum();
    let mut status = DeploymentStatus {
        observed_generation: Some(f.generation),
        replicas: Some(all.iter().map(|r| r.status_replicas).sum()),
        updated_replicas: Some(new.map_or(0, |n| n.status_replicas)),
        ready_replicas: Some(all.iter().map(|r| r.ready).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((wanted - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
    };
    if available >= f.replicas - f.max_unavailable {
        set(
            &mut status,
            condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut status,
            condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Whether the rollout is done (DeploymentComplete): every replica updated, no old pods, the
/// minimum available, and the latest spec observed.
pub fn complete(f: &Facts, status: &DeploymentStatus) -> bool {
    count(status.updated_replicas) == f.replicas
        && count(status.replicas) == f.replicas
        && count(status.available_replicas) >= f.replicas - f.max_unavailable
        && status.observed_generation.unwrap_or(0) >= f.generation
}

/// Whether `next` shows progress over `current` (DeploymentProgressing): more updated or
/// available pods, or fewer old ones.
pub fn progressing(current: &DeploymentStatus, next: &DeploymentStatus) -> bool {
    let old_before = count(current.replicas) - count(current.updated_replicas);
    let old_after = count(next.replicas) - count(next.updated_replicas);
    count(next.updated_replicas) > count(current.updated_replicas)
        || old_after < old_before
        || count(next.available_replicas) > count(current.available_replicas)
}

/// Whether the rollout has made no progress within its deadline (DeploymentTimedOut).
pub fn timed_out(f: &Facts, status: &DeploymentStatus, now: DateTime<Utc>) -> bool {
    let Some(deadline) = f.progress_deadline else {
        return false;
    };
    let Some(c) = get(status, PROGRESSING) else {
        return false;
    };
    if c.reason.as_deref() == Some(TIMED_OUT) {
        return true;
    }
    let from = c
        .last_update_time
        .as_ref()
        .map(|t| t.0)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    from + TimeDelta::seconds(i64::from(deadline)) < now
}

/// The status a rollout step ends with (syncRolloutStatus): `calculated` plus the Progressing
/// condition — complete, progressing, or out of time.
pub fn rollout(
    f: &Facts,
    name: &str,
    current: &DeploymentStatus,
    mut next: DeploymentStatus,
    new_rs: Option<&str>,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    if f.progress_deadline.is_none() {
        remove(&mut next, PROGRESSING);
        return next;
    }
    let current_cond = get(current, PROGRESSING).cloned();
    let already_complete = count(next.replicas) == count(next.updated_replicas)
        && current_cond
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if already_complete {
        return next;
    }
    let subject = |what: &str| match new_rs {
        Some(rs) => format!("ReplicaSet {rs:?} {what}"),
        None => format!("Deployment {name:?} {what}"),
    };
    if complete(f, &next) {
        let c = condition(
            PROGRESSING,
            "True",
            NEW_RS_AVAILABLE,
            subject("has successfully progressed."),
            now,
        );
        set(&mut next, c);
    } else if progressing(current, &next) {
        let mut c = condition(
            PROGRESSING,
            "True",
            RS_UPDATED,
            subject("is progressing."),
            now,
        );
        // Progress refreshes lastUpdateTime even when the reason stays the same.
        if let Some(cur) = &current_cond {
            if cur.status == "True" {
                c.last_transition_time = cur.last_transition_time.clone();
            }
            remove(&mut next, PROGRESSING);
        }
        set(&mut next, c);
    } else if timed_out(f, &next, now) {
        let c = condition(
            PROGRESSING,
            "False",
            TIMED_OUT,
            subject("has timed out progressing."),
            now,
        );
        set(&mut next, c);
    }
    next
}

/// The Progressing condition pausing or resuming sets (checkPausedConditions), if it changes:
/// Unknown with DeploymentPaused or DeploymentResumed, so that time spent paused never counts
/// against the deadline. A timed-out rollout keeps saying so.
pub fn paused_condition(
    f: &Facts,
    status: &DeploymentStatus,
    paused: bool,
    now: DateTime<Utc>,
) -> Option<DeploymentCondition> {
    f.progress_deadline?;
    let current = get(status, PROGRESSING);
    let reason = current.and_then(|c| c.reason.as_deref());
    if reason == Some(TIMED_OUT) {
        return None;
    }
    let paused_set = reason == Some(PAUSED);
    if paused && !paused_set {
        Some(condition(
            PROGRESSING,
            "Unknown",
            PAUSED,
            "Deployment is paused".into(),
            now,
        ))
    } else if !paused && paused_set {
        Some(condition(
            PROGRESSING,
            "Unknown",
            RESUMED,
            "Deployment is resumed".into(),
            now,
        ))
    } else {
        None
    }
}

/// When to look again at a rollout that made no progress (requeueStuckDeployment): just after
/// its deadline would pass. None when there is nothing to time out.
pub fn recheck_after(
    f: &Facts,
    current: &DeploymentStatus,
    next: &DeploymentStatus,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let deadline = f.progress_deadline?;
    let c = get(current, PROGRESSING)?;
    if complete(f, next) || c.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = c.last_update_time.as_ref()?.0;
    let after = (from + TimeDelta::seconds(i64::from(deadline)) - now)
        .to_std()
        .unwrap_or_default();
    Some(if after < Duration::from_secs(1) {
        Duration::from_secs(1)
    } else {
        after + Duration::from_secs(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::view::tests::rs;

    const F: Facts = Facts {
        generation: 2,
        replicas: 3,
        max_unavailable: 1,
        progress_deadline: Some(600),
    };

    fn reason(s: &DeploymentStatus, t: &str) -> Option<String> {
        get(s, t).and_then(|c| c.reason.clone())
    }

    #[test]
    fn counts_add_up_over_the_sets_and_updated_means_the_new_one() {
        let now = Utc::now();
        let old = rs("old", 2, 1, 1);
        let mut new = rs("new", 1, 3, 1);
        new.ready = 2;
        let s = calculate(
            &F,
            &DeploymentStatus::default(),
            &[&old, &new],
            Some(&new),
            now,
        );
        assert_eq!(s.replicas, Some(4));
        assert_eq!(s.updated_replicas, Some(3));
        assert_eq!(s.ready_replicas, Some(3));
        assert_eq!(s.available_replicas, Some(2));
        assert_eq!(s.unavailable_replicas, Some(2));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            reason(&s, AVAILABLE).as_deref(),
            Some(MINIMUM_REPLICAS_AVAILABLE)
        );
        let down = calculate(&F, &s, &[&rs("new", 1, 3, 1)], None, now);
        assert_eq!(
            reason(&down, AVAILABLE).as_deref(),
            Some(MINIMUM_REPLICAS_UNAVAILABLE)
        );
        let c = get(&down, AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(c.status, "False");
        assert_eq!(
            c.message.as_deref(),
            Some("Deployment does not have minimum availability.")
        );
    }

    #[test]
    fn a_finished_rollout_says_the_new_set_has_successfully_progressed() {
        let now = Utc::now();
        let new = rs("web-abc", 1, 3, 3);
        let calculated = calculate(&F, &DeploymentStatus::default(), &[&new], Some(&new), now);
        let s = rollout(
            &F,
            "web",
            &DeploymentStatus::default(),
            calculated,
            Some("web-abc"),
            now,
        );
        let c = get(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(c.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"web-abc\" has successfully progressed.")
        );
    }

    #[test]
    fn progress_refreshes_the_update_time_and_a_stall_times_out() {
        let start = Utc::now();
        let mut current = DeploymentStatus::default();
        set(
            &mut current,
            condition(PROGRESSING, "True", NEW_RS_CREATED, "x".into(), start),
        );
        let old = rs("old", 2, 3, 3);
        let new = rs("new", 1, 1, 0);
        let later = start + TimeDelta::seconds(10);
        let next = calculate(&F, &current, &[&old, &new], Some(&new), later);
        let s = rollout(&F, "web", &current, next, Some("new"), later);
        let c = get(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(
            c.reason.as_deref(),
            Some(RS_UPDATED),
            "old 0 → 3 is progress"
        );
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"new\" is progressing.")
        );
        assert_eq!(c.last_update_time, Some(Time(later)));
        assert_eq!(c.last_transition_time, Some(Time(start)));

        let much_later = later + TimeDelta::seconds(601);
        assert!(recheck_after(&F, &s, &s, later).is_some());
        let next = calculate(&F, &s, &[&old, &new], Some(&new), much_later);
        let stuck = rollout(&F, "web", &s, next, Some("new"), much_later);
        let c = get(&stuck, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason.as_deref(), Some(TIMED_OUT));
        assert_eq!(
            c.message.as_deref(),
            Some("ReplicaSet \"new\" has timed out progressing.")
        );
    }

    #[test]
    fn without_a_deadline_there_is_no_progressing_condition() {
        let f = Facts {
            progress_deadline: None,
            ..F
        };
        let mut current = DeploymentStatus::default();
        set(
            &mut current,
            condition(PROGRESSING, "True", RS_UPDATED, "x".into(), Utc::now()),
        );
        let s = rollout(&f, "web", &current, current.clone(), None, Utc::now());
        assert!(get(&s, PROGRESSING).is_none());
        assert!(paused_condition(&f, &s, true, Utc::now()).is_none());
    }

    #[test]
    fn pausing_and_resuming_set_an_unknown_progressing_condition() {
        let now = Utc::now();
        let mut s = DeploymentStatus::default();
        let paused = paused_condition(&F, &s, true, now).unwrap_or_default();
        assert_eq!(
            (paused.status.as_str(), paused.reason.as_deref()),
            ("Unknown", Some(PAUSED))
        );
        assert_eq!(paused.message.as_deref(), Some("Deployment is paused"));
        set(&mut s, paused);
        assert!(paused_condition(&F, &s, true, now).is_none());
        let resumed = paused_condition(&F, &s, false, now).unwrap_or_default();
        assert_eq!(resumed.reason.as_deref(), Some(RESUMED));
        assert_eq!(resumed.message.as_deref(), Some("Deployment is resumed"));
    }

    #[test]
    fn setting_the_same_status_and_reason_changes_nothing() {
        let t0 = Utc::now();
        let mut s = DeploymentStatus::default();
        set(&mut s, condition(AVAILABLE, "True", "A", "m".into(), t0));
        let before = s.clone();
        set(
            &mut s,
            condition(
                AVAILABLE,
                "True",
                "A",
                "m".into(),
                t0 + TimeDelta::seconds(5),
            ),
        );
        assert_eq!(s, before);
        set(
            &mut s,
            condition(
                AVAILABLE,
                "True",
                "B",
                "m".into(),
                t0 + TimeDelta::seconds(5),
            ),
        );
        let c = get(&s, AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(c.last_transition_time, Some(Time(t0)));
    }
}
