//! A job's `podFailurePolicy`: which rule, if any, a failed pod matches, and what that means
//! (fail the whole job, ignore the failure, or count it against `backoffLimit`). Rules are
//! tried in order and the first match wins, as in Kubernetes; a container that exited 0 never
//! matches an exit-code rule.

use keel_client::k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use keel_client::k8s_openapi::api::core::v1::Pod;

/// What a matched rule says about one failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fail the job at once; the message is the FailureTarget/Failed condition's.
    FailJob(String),
    /// Do not count this failure.
    Ignore,
    /// Count it (also what an unmatched failure, or a FailIndex rule here, does).
    Count,
}

/// The verdict of `policy` on the failed pod `pod`.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Count;
    };
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(cause) = matches(rule, pod, index) {
            return match rule.action.as_str() {
                "FailJob" => Verdict::FailJob(cause),
                "Ignore" => Verdict::Ignore,
                _ => Verdict::Count,
            };
        }
    }
    Verdict::Count
}

/// Why `rule` (at `index`) matches `pod`, worded as Kubernetes' FailJob message.
fn matches(rule: &PodFailurePolicyRule, pod: &Pod, index: usize) -> Option<String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let status = pod.status.as_ref()?;
    if let Some(requirement) = &rule.on_exit_codes {
        let containers = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for container in containers {
            if requirement
                .container_name
                .as_ref()
                .is_some_and(|n| *n != container.name)
            {
                continue;
            }
            let Some(code) = container
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            if code == 0 {
                continue;
            }
            let listed = requirement.values.contains(&code);
            let hit = match requirement.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                    container.name, rule.action
                ));
            }
        }
        return None;
    }
    for pattern in rule.on_pod_conditions.iter().flatten() {
        let present = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == pattern.type_ && c.status == pattern.status);
        if present {
            return Some(format!(
                "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                pattern.type_, rule.action
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    };
    use keel_client::k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    exit_codes
                        .iter()
                        .map(|(name, code)| ContainerStatus {
                            name: name.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|t| PodCondition {
                            type_: t.to_string(),
                            status: "True".into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn exit_rule(action: &str, operator: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: operator.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = PodFailurePolicy {
            rules: vec![
                condition_rule("Ignore", "DisruptionTarget"),
                exit_rule("FailJob", "In", &[42]),
                exit_rule("Count", "NotIn", &[]),
            ],
        };
        assert_eq!(
            judge(
                Some(&policy),
                &failed_pod(&[("main", 1)], &["DisruptionTarget"])
            ),
            Verdict::Ignore
        );
        assert_eq!(
            judge(Some(&policy), &failed_pod(&[("side", 0), ("main", 42)], &[])),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(
            judge(Some(&policy), &failed_pod(&[("main", 3)], &[])),
            Verdict::Count
        );
    }

    #[test]
    fn exit_code_zero_and_other_containers_never_match() {
        let mut rule = exit_rule("FailJob", "NotIn", &[1]);
        let policy = PodFailurePolicy {
            rules: vec![rule.clone()],
        };
        assert_eq!(
            judge(Some(&policy), &failed_pod(&[("main", 0)], &[])),
            Verdict::Count
        );
        if let Some(req) = rule.on_exit_codes.as_mut() {
            req.container_name = Some("other".into());
        }
        let policy = PodFailurePolicy { rules: vec![rule] };
        assert_eq!(
            judge(Some(&policy), &failed_pod(&[("main", 7)], &[])),
            Verdict::Count
        );
    }

    #[test]
    fn without_a_policy_every_failure_counts() {
        assert_eq!(
            judge(None, &failed_pod(&[("main", 1)], &[])),
            Verdict::Count
        );
    }
}
