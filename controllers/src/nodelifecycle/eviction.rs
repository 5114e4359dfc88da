//! Taint-based eviction, as Kubernetes' taint eviction controller decides it: a pod on a node
//! with NoExecute taints it does not all tolerate is evicted at once; one that tolerates them
//! all stays for the shortest `tolerationSeconds` among the tolerations it uses, counted from
//! when the taint was added; a toleration without seconds lets it stay for ever. Pure.

use keel_client::k8s_openapi::api::core::v1::{Taint, Toleration};
use keel_client::k8s_openapi::chrono::{DateTime, TimeDelta, Utc};
use keel_scheduler::plugins::taint_toleration::toleration_tolerates_taint;

use super::health::NO_EXECUTE;

/// What to do with one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Never,
    Now,
    At(DateTime<Utc>),
}

/// The eviction of a pod with `tolerations` on a node with `taints` (all effects; only
/// NoExecute ones count).
pub fn eviction(tolerations: &[Toleration], taints: &[Taint], now: DateTime<Utc>) -> Eviction {
    let executing: Vec<&Taint> = taints.iter().filter(|t| t.effect == NO_EXECUTE).collect();
    if executing.is_empty() {
        return Eviction::Never;
    }
    let mut shortest: Option<i64> = None;
    for taint in &executing {
        let used: Vec<&Toleration> = tolerations
            .iter()
            .filter(|t| toleration_tolerates_taint(t, taint))
            .collect();
        if used.is_empty() {
            return Eviction::Now;
        }
        for toleration in used {
            if let Some(seconds) = toleration.toleration_seconds {
                let seconds = seconds.max(0);
                shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
            }
        }
    }
    let Some(seconds) = shortest else {
        return Eviction::Never;
    };
    let since = executing
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|t| t.0))
        .min()
        .unwrap_or(now);
    let at = since + TimeDelta::seconds(seconds);
    if at <= now {
        Eviction::Now
    } else {
        Eviction::At(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodelifecycle::health::UNREACHABLE;
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn unreachable(added: DateTime<Utc>) -> Taint {
        Taint {
            key: UNREACHABLE.into(),
            effect: NO_EXECUTE.into(),
            value: None,
            time_added: Some(Time(added)),
        }
    }

    fn tolerate(seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn an_untolerated_no_execute_taint_evicts_at_once() {
        let now = Utc::now();
        assert_eq!(eviction(&[], &[unreachable(now)], now), Eviction::Now);
    }

    #[test]
    fn toleration_seconds_count_from_when_the_taint_was_added() {
        let now = Utc::now();
        let added = now - TimeDelta::seconds(100);
        assert_eq!(
            eviction(&[tolerate(Some(300))], &[unreachable(added)], now),
            Eviction::At(added + TimeDelta::seconds(300))
        );
        assert_eq!(
            eviction(&[tolerate(Some(60))], &[unreachable(added)], now),
            Eviction::Now
        );
    }

    #[test]
    fn the_shortest_toleration_used_wins_and_no_seconds_means_for_ever() {
        let now = Utc::now();
        assert_eq!(
            eviction(&[tolerate(None)], &[unreachable(now)], now),
            Eviction::Never
        );
        assert_eq!(
            eviction(
                &[tolerate(None), tolerate(Some(10))],
                &[unreachable(now)],
                now
            ),
            Eviction::At(now + TimeDelta::seconds(10))
        );
    }

    #[test]
    fn no_schedule_taints_never_evict() {
        let now = Utc::now();
        let mut taint = unreachable(now);
        taint.effect = "NoSchedule".into();
        assert_eq!(eviction(&[], &[taint], now), Eviction::Never);
    }
}
