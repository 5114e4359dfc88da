//! Specification of the eviction decisions: reading an Eviction, which pods skip budgets, and
//! how a budget allows, refuses and records a disruption.

use chrono::TimeZone;
use serde_json::json;

use super::*;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

fn budget(allowed: i64, current: i64, desired: i64) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default", "generation": 1},
        "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"disruptionsAllowed": allowed, "currentHealthy": current,
                   "desiredHealthy": desired, "expectedPods": 3, "observedGeneration": 1}})
}

fn refusal_cause(err: &ApiError) -> String {
    err.status()["details"]["causes"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn an_eviction_names_its_pod_and_carries_delete_options() {
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 5, "preconditions": {"uid": "u1"}}});
    let read = read_eviction(body, "web-1", "default").expect("reads");
    assert_eq!(read.pod, "web-1");
    assert_eq!(read.delete.grace_period_seconds, Some(5));
    assert_eq!(read.delete.uid.as_deref(), Some("u1"));
    // kubectl's fallback version is read the same way.
    let older = json!({"apiVersion": "policy/v1beta1", "kind": "Eviction",
        "metadata": {"name": "web-1"}});
    assert!(read_eviction(older, "web-1", "default").is_ok());
}

#[test]
fn an_eviction_must_name_the_pod_of_the_url() {
    let body =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}});
    assert_eq!(
        read_eviction(body, "web-1", "default")
            .expect_err("mismatch")
            .to_string(),
        "name in URL does not match name in Eviction object"
    );
    let wrong = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"}});
    assert_eq!(
        read_eviction(wrong, "web-1", "default")
            .expect_err("kind")
            .code(),
        400
    );
}

#[test]
fn pending_finished_and_terminating_pods_skip_budgets() {
    for phase in ["Pending", "Succeeded", "Failed"] {
        assert!(
            can_ignore_budgets(&json!({"status": {"phase": phase}})),
            "{phase}"
        );
    }
    assert!(!can_ignore_budgets(
        &json!({"status": {"phase": "Running"}})
    ));
    assert!(can_ignore_budgets(&json!({
        "metadata": {"deletionTimestamp": "2025-01-01T00:00:00Z"},
        "status": {"phase": "Running"}})));
}

#[test]
fn spending_a_disruption_decrements_the_budget_and_records_the_pod() {
    let Ok(Judgement::Spend(next)) = judge(&budget(2, 3, 1), "web-1", true, now()) else {
        panic!("a budget with disruptions to spare allows the eviction");
    };
    assert_eq!(next["status"]["disruptionsAllowed"], 1);
    assert_eq!(
        next["status"]["disruptedPods"]["web-1"],
        "2025-01-01T00:00:00Z"
    );
    assert!(
        next["status"].get("conditions").is_none(),
        "still allowed: no change"
    );
}

#[test]
fn spending_the_last_disruption_marks_the_budget_insufficient() {
    let mut pdb = budget(1, 3, 2);
    pdb["status"]["conditions"] = json!([{"type": "DisruptionAllowed", "status": "True",
        "reason": "SufficientPods", "message": "", "observedGeneration": 1,
        "lastTransitionTime": "2024-01-01T00:00:00Z"}]);
    let Ok(Judgement::Spend(next)) = judge(&pdb, "web-1", true, now()) else {
        panic!("one disruption is allowed");
    };
    assert_eq!(next["status"]["disruptionsAllowed"], 0);
    let condition = &next["status"]["conditions"][0];
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "InsufficientPods");
    assert_eq!(condition["lastTransitionTime"], "2025-01-01T00:00:00Z");
}

#[test]
fn a_budget_without_disruptions_refuses_with_429_and_kubernetes_message() {
    let err = judge(&budget(0, 2, 2), "web-1", true, now()).expect_err("refused");
    assert_eq!(err.code(), 429);
    assert_eq!(
        err.to_string(),
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let status = err.status();
    assert_eq!(status["reason"], "TooManyRequests");
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        refusal_cause(&err),
        "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
    );
}

#[test]
fn a_stale_budget_status_refuses_until_the_controller_catches_up() {
    let mut pdb = budget(1, 3, 2);
    pdb["metadata"]["generation"] = json!(2);
    let err = judge(&pdb, "web-1", true, now()).expect_err("stale");
    assert_eq!(err.code(), 429);
    assert_eq!(
        refusal_cause(&err),
        "The disruption budget web-pdb is still being processed by the server."
    );
}

#[test]
fn an_unready_pod_goes_free_while_the_budget_is_met() {
    assert_eq!(
        judge(&budget(0, 2, 2), "web-1", false, now()),
        Ok(Judgement::Unhealthy)
    );
    // Not met: the unready pod must wait for a disruption like any other.
    assert_eq!(
        judge(&budget(0, 1, 2), "web-1", false, now())
            .expect_err("budget not met")
            .code(),
        429
    );
    let mut always = budget(0, 1, 2);
    always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    assert_eq!(
        judge(&always, "web-1", false, now()),
        Ok(Judgement::Unhealthy)
    );
}

#[test]
fn negative_or_overfull_budgets_are_forbidden() {
    let err = judge(&budget(-1, 0, 0), "web-1", true, now()).expect_err("negative");
    assert_eq!(err.code(), 403);
    let mut full = budget(1, 3, 2);
    let many: Map<String, Value> = (0..=MAX_DISRUPTED_PODS)
        .map(|i| (format!("p{i}"), json!("2025-01-01T00:00:00Z")))
        .collect();
    full["status"]["disruptedPods"] = Value::Object(many);
    assert_eq!(
        judge(&full, "web-1", true, now()).expect_err("full").code(),
        403
    );
}

#[test]
fn an_evicted_pod_is_marked_as_a_disruption_target() {
    let pod = with_disruption_target(json!({"status": {"phase": "Running"}}), "t");
    assert_eq!(pod["status"]["conditions"][0]["type"], "DisruptionTarget");
    assert_eq!(
        pod["status"]["conditions"][0]["reason"],
        "EvictionByEvictionAPI"
    );
    assert_eq!(
        pod["status"]["conditions"][0]["message"],
        "Eviction API: evicting"
    );
}

#[test]
fn a_budget_without_selector_covers_nothing_and_an_empty_one_everything() {
    let labels = std::collections::BTreeMap::from([("app".to_string(), "web".to_string())]);
    let typed = |v: Value| serde_json::from_value::<PodDisruptionBudget>(v).unwrap_or_default();
    assert!(!covers(&typed(json!({"spec": {}})), &labels));
    assert!(covers(&typed(json!({"spec": {"selector": {}}})), &labels));
    assert!(covers(&typed(budget(1, 1, 1)), &labels));
    assert!(!covers(
        &typed(json!({"spec": {"selector": {"matchLabels": {"app": "db"}}}})),
        &labels
    ));
}
