//! Evicting pods over REST, on an in-memory store: `pods/{name}/eviction` as kubectl drain
//! uses it — budgets allow, refuse (429) and record disruptions, two evictions racing for one
//! disruption never both win, and discovery lists the subresource where kubectl looks for it.

use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use super::tests::{get_as, pod, send, server, Reply, TABLE};

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn eviction(pod: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}})
}

async fn evict(app: &Router, pod: &str) -> Reply {
    send(
        app,
        "POST",
        &format!("{PODS}/{pod}/eviction"),
        Some(eviction(pod)),
    )
    .await
}

/// A pod of app "web" bound to node-1, Running and Ready as a node would report it.
async fn running_pod(app: &Router, name: &str) {
    let created = send(app, "POST", PODS, Some(pod(name))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"kind": "Node", "name": "node-1"}});
    let bound = send(
        app,
        "POST",
        &format!("{PODS}/{name}/binding"),
        Some(binding),
    )
    .await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.body);
    let mut current = send(app, "GET", &format!("{PODS}/{name}"), None).await.body;
    current["status"]["phase"] = json!("Running");
    current["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    let updated = send(app, "PUT", &format!("{PODS}/{name}/status"), Some(current)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
}

/// A budget of minAvailable `min` over app "web" whose status (as the controller would write
/// it) allows `allowed` disruptions.
async fn budget(app: &Router, min: i64, allowed: i64, healthy: i64) {
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb"},
        "spec": {"minAvailable": min, "selector": {"matchLabels": {"app": "web"}}}});
    let created = send(app, "POST", PDBS, Some(pdb)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mut current = created.body;
    current["status"] = json!({"disruptionsAllowed": allowed, "currentHealthy": healthy,
        "desiredHealthy": min, "expectedPods": healthy, "observedGeneration": 1});
    let updated = send(app, "PUT", &format!("{PDBS}/web-pdb/status"), Some(current)).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
}

async fn stored_budget(app: &Router) -> Value {
    send(app, "GET", &format!("{PDBS}/web-pdb"), None)
        .await
        .body
}

#[tokio::test]
async fn an_eviction_within_the_budget_marks_the_pod_deleted_and_spends_a_disruption() {
    let app = server().await;
    running_pod(&app, "web-1").await;
    budget(&app, 1, 1, 2).await;
    let evicted = evict(&app, "web-1").await;
    assert_eq!(evicted.status, StatusCode::CREATED, "{}", evicted.body);
    assert_eq!(
        evicted.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    );
    let pod = send(&app, "GET", &format!("{PODS}/web-1"), None).await.body;
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    let target = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget").cloned())
        .unwrap_or_default();
    assert_eq!(target["reason"], "EvictionByEvictionAPI");
    let pdb = stored_budget(&app).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string(), "{pdb}");
    assert_eq!(pdb["status"]["conditions"][0]["reason"], "InsufficientPods");
}

#[tokio::test]
async fn an_eviction_beyond_the_budget_is_refused_with_429() {
    let app = server().await;
    running_pod(&app, "web-1").await;
    budget(&app, 2, 0, 2).await;
    let refused = evict(&app, "web-1").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(refused.body["reason"], "TooManyRequests");
    assert_eq!(
        refused.body["details"]["causes"],
        json!([{"reason": "DisruptionBudget",
                "message": "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"}])
    );
    let pod = send(&app, "GET", &format!("{PODS}/web-1"), None).await.body;
    assert!(pod["metadata"].get("deletionTimestamp").is_none(), "{pod}");
}

#[tokio::test]
async fn two_evictions_racing_for_one_disruption_never_both_succeed() {
    let app = server().await;
    running_pod(&app, "web-1").await;
    running_pod(&app, "web-2").await;
    budget(&app, 1, 1, 2).await;
    let (a, b) = tokio::join!(evict(&app, "web-1"), evict(&app, "web-2"));
    let mut codes = [a.status.as_u16(), b.status.as_u16()];
    codes.sort();
    assert_eq!(codes, [201, 429], "{} / {}", a.body, b.body);
    let pdb = stored_budget(&app).await;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    let disrupted = pdb["status"]["disruptedPods"]
        .as_object()
        .map_or(0, |m| m.len());
    assert_eq!(disrupted, 1, "{pdb}");
}

#[tokio::test]
async fn pods_that_have_not_started_go_without_a_budget() {
    let app = server().await;
    let created = send(&app, "POST", PODS, Some(pod("web-1"))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    budget(&app, 2, 0, 2).await;
    let evicted = evict(&app, "web-1").await;
    assert_eq!(evicted.status, StatusCode::CREATED, "{}", evicted.body);
    let gone = send(&app, "GET", &format!("{PODS}/web-1"), None).await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "an unbound pod goes at once"
    );
    assert_eq!(stored_budget(&app).await["status"]["disruptionsAllowed"], 0);
}

#[tokio::test]
async fn a_pod_under_two_budgets_cannot_be_evicted() {
    let app = server().await;
    running_pod(&app, "web-1").await;
    budget(&app, 1, 1, 2).await;
    let second = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "all"}, "spec": {"maxUnavailable": 1, "selector": {}}});
    assert_eq!(
        send(&app, "POST", PDBS, Some(second)).await.status,
        StatusCode::CREATED
    );
    let refused = evict(&app, "web-1").await;
    assert_eq!(refused.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        refused.body["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
}

#[tokio::test]
async fn an_eviction_honours_its_delete_options() {
    let app = server().await;
    running_pod(&app, "web-1").await;
    let mut body = eviction("web-1");
    body["deleteOptions"] = json!({"gracePeriodSeconds": 0});
    let evicted = send(&app, "POST", &format!("{PODS}/web-1/eviction"), Some(body)).await;
    assert_eq!(evicted.status, StatusCode::CREATED, "{}", evicted.body);
    let gone = send(&app, "GET", &format!("{PODS}/web-1"), None).await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "grace 0 deletes at once"
    );

    running_pod(&app, "web-2").await;
    let mut stale = eviction("web-2");
    stale["deleteOptions"] = json!({"preconditions": {"uid": "not-this-pod"}});
    let refused = send(&app, "POST", &format!("{PODS}/web-2/eviction"), Some(stale)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    for method in ["GET", "PUT", "DELETE"] {
        let reply = send(&app, method, &format!("{PODS}/web-2/eviction"), None).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test]
async fn discovery_lists_pods_eviction_as_a_policy_v1_eviction() {
    let app = server().await;
    let core = send(&app, "GET", "/api/v1", None).await.body;
    let entry = core["resources"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "pods/eviction").cloned())
        .unwrap_or_default();
    assert_eq!(
        (
            &entry["group"],
            &entry["version"],
            &entry["kind"],
            &entry["verbs"]
        ),
        (
            &json!("policy"),
            &json!("v1"),
            &json!("Eviction"),
            &json!(["create"])
        )
    );
    let policy = send(&app, "GET", "/apis/policy/v1", None).await.body;
    let pdbs = policy["resources"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["name"] == "poddisruptionbudgets")
                .cloned()
        })
        .unwrap_or_default();
    assert_eq!(pdbs["shortNames"], json!(["pdb"]));
    assert_eq!(pdbs["namespaced"], true);
}

#[tokio::test]
async fn kubectl_get_pdb_shows_kubernetes_columns() {
    let app = server().await;
    budget(&app, 2, 1, 3).await;
    let table = get_as(&app, PDBS, TABLE).await.body;
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        names,
        [
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "web-pdb");
    assert_eq!(cells[1], "2");
    assert_eq!(cells[2], "N/A");
    assert_eq!(cells[3], 1);
}

#[tokio::test]
async fn a_budget_with_both_bounds_is_invalid() {
    let app = server().await;
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "both"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}});
    let refused = send(&app, "POST", PDBS, Some(pdb)).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
}
