//! HorizontalPodAutoscaler (autoscaling/v2) defaults, as Kubernetes fills them: one minimum
//! replica, a CPU utilization target of 80 % when no metric is given, and, once a behaviour is
//! given, both scaling directions completed from Kubernetes' default rules.

use k8s_openapi::api::autoscaling::v2::{
    HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler, MetricSpec, MetricTarget,
    ResourceMetricSource,
};

const DEFAULT_CPU_UTILIZATION: i32 = 80;
const DEFAULT_SCALE_DOWN_WINDOW_SECONDS: i32 = 300;

fn policy(type_: &str, value: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds: 15,
    }
}

/// `given` completed from `defaults`: what the client set is kept.
fn complete(given: Option<HPAScalingRules>, defaults: HPAScalingRules) -> HPAScalingRules {
    let Some(given) = given else {
        return defaults;
    };
    HPAScalingRules {
        stabilization_window_seconds: given
            .stabilization_window_seconds
            .or(defaults.stabilization_window_seconds),
        select_policy: given.select_policy.or(defaults.select_policy),
        policies: given.policies.or(defaults.policies),
    }
}

pub fn default_hpa(hpa: &mut HorizontalPodAutoscaler) {
    let Some(spec) = hpa.spec.as_mut() else {
        return;
    };
    spec.min_replicas.get_or_insert(1);
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(DEFAULT_CPU_UTILIZATION),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
    if let Some(behavior) = spec.behavior.as_mut() {
        behavior.scale_up = Some(complete(
            behavior.scale_up.take(),
            HPAScalingRules {
                stabilization_window_seconds: Some(0),
                select_policy: Some("Max".into()),
                policies: Some(vec![policy("Pods", 4), policy("Percent", 100)]),
            },
        ));
        behavior.scale_down = Some(complete(
            behavior.scale_down.take(),
            HPAScalingRules {
                stabilization_window_seconds: Some(DEFAULT_SCALE_DOWN_WINDOW_SECONDS),
                select_policy: Some("Max".into()),
                policies: Some(vec![policy("Percent", 100)]),
            },
        ));
    }
}
