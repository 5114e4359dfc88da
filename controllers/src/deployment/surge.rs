//! How far a rolling update may stray from the wanted replica count: maxSurge and
//! maxUnavailable resolved against `spec.replicas`, as Kubernetes resolves them (surge rounds
//! up, unavailability rounds down, and when both come to zero one pod may be unavailable so
//! that a rollout can still move).

use keel_client::k8s_openapi::api::apps::v1::Deployment;
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Kubernetes' default for both bounds when the strategy leaves them out.
const DEFAULT_BOUND: &str = "25%";

/// An int-or-percent the controller cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for IntOrString: invalid type: string is not a percentage: {0:?}")]
pub struct BadBound(pub String);

/// `value` as a count out of `total`: an int as is, a percentage of `total` rounded up or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, BadBound> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| BadBound(s.clone()))?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                scaled.div_euclid(100) + i64::from(scaled.rem_euclid(100) != 0)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).map_err(|_| BadBound(s.clone()))
        }
    }
}

/// The resolved (maxSurge, maxUnavailable) of a rolling update of `desired` replicas.
pub fn resolve_fenceposts(
    max_surge: &IntOrString,
    max_unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), BadBound> {
    let surge = scaled_value(max_surge, desired, true)?;
    let mut unavailable = scaled_value(max_unavailable, desired, false)?;
    if surge == 0 && unavailable == 0 {
        // Rounding down can make both zero; one unavailable pod keeps the rollout moving even
        // when surging is impossible (a quota, say).
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

/// Whether the Deployment rolls (the API server defaults a missing strategy to RollingUpdate).
pub fn is_rolling_update(d: &Deployment) -> bool {
    let kind = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref());
    matches!(kind, None | Some("RollingUpdate"))
}

/// `spec.replicas` (the API server defaults it to 1).
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The Deployment's resolved (maxSurge, maxUnavailable); (0, 0) for Recreate, which neither
/// surges nor counts unavailability.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), BadBound> {
    if !is_rolling_update(d) {
        return Ok((0, 0));
    }
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String(DEFAULT_BOUND.into());
    let surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&default);
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    resolve_fenceposts(surge, unavailable, replicas(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_of_surge_round_up_and_of_unavailability_round_down() {
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 10), Ok((3, 2)));
        assert_eq!(resolve_fenceposts(&pct("25%"), &pct("25%"), 1), Ok((1, 0)));
        assert_eq!(resolve_fenceposts(&pct("50%"), &pct("50%"), 3), Ok((2, 1)));
    }

    #[test]
    fn ints_are_taken_as_they_are() {
        assert_eq!(
            resolve_fenceposts(&IntOrString::Int(2), &IntOrString::Int(0), 5),
            Ok((2, 0))
        );
    }

    #[test]
    fn when_both_resolve_to_zero_one_pod_may_be_unavailable() {
        assert_eq!(resolve_fenceposts(&pct("0%"), &pct("1%"), 2), Ok((0, 1)));
        assert_eq!(
            resolve_fenceposts(&IntOrString::Int(0), &IntOrString::Int(0), 2),
            Ok((0, 1))
        );
    }

    #[test]
    fn a_string_that_is_not_a_percentage_is_refused() {
        assert!(scaled_value(&pct("many"), 3, true).is_err());
        assert!(scaled_value(&pct("25"), 3, true).is_err());
    }

    #[test]
    fn recreate_has_no_fenceposts_and_a_missing_strategy_rolls_with_the_defaults() {
        use keel_client::k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy};
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(4),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(fenceposts(&d), Ok((1, 1)));
        if let Some(spec) = d.spec.as_mut() {
            spec.strategy = Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            });
        }
        assert_eq!(fenceposts(&d), Ok((0, 0)));
        assert!(!is_rolling_update(&d));
    }
}
