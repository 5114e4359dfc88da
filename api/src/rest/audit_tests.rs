//! The audit log as kube-apiserver writes it: JSON lines of audit.k8s.io/v1 Events, two
//! stages per request, at the level of the policy's first matching rule.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{json, Value};

use super::router;
use super::tests::{pod, send};
use crate::audit::{Auditor, Policy};
use crate::server::ApiServer;
use crate::storage::memory::MemoryStorage;

/// A sink the test reads back.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn events(&self) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
  - level: Request
    verbs: ["create"]
  - level: None
"#;

async fn audited_server(lines: Lines) -> axum::Router {
    let auditor = Auditor::with_sink(Policy::parse(POLICY).expect("policy"), Box::new(lines));
    let core = Arc::new(ApiServer::new(MemoryStorage::new()).with_auditor(auditor));
    crate::bootstrap::ensure_namespaces(&core).await;
    router(core)
}

#[tokio::test]
async fn requests_are_audited_at_the_level_their_first_matching_rule_gives() {
    let lines = Lines::default();
    let app = audited_server(lines.clone()).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}});
    send(
        &app,
        "POST",
        "/api/v1/namespaces/default/secrets",
        Some(secret),
    )
    .await;
    send(
        &app,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod("web")),
    )
    .await;
    send(&app, "GET", "/api/v1/namespaces/default/pods/web", None).await;

    let events = lines.events();
    assert_eq!(
        events.len(),
        4,
        "two stages for each audited request: {events:#?}"
    );
    let secret_events: Vec<&Value> = events
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "secrets")
        .collect();
    assert_eq!(secret_events.len(), 2);
    for event in &secret_events {
        assert_eq!(event["kind"], "Event");
        assert_eq!(event["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(event["level"], "Metadata");
        assert_eq!(event["verb"], "create");
        assert_eq!(event["objectRef"]["namespace"], "default");
        assert!(
            event.get("requestObject").is_none(),
            "Metadata holds no bodies"
        );
        assert!(event["auditID"].as_str().is_some_and(|id| id.len() == 36));
    }
    assert_eq!(secret_events[0]["stage"], "RequestReceived");
    assert_eq!(secret_events[1]["stage"], "ResponseComplete");
    assert_eq!(secret_events[1]["responseStatus"]["code"], 201);
    assert_eq!(secret_events[0]["auditID"], secret_events[1]["auditID"]);

    let pod_create: Vec<&Value> = events
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "pods")
        .collect();
    assert_eq!(
        pod_create.len(),
        2,
        "the get of the pod is not audited (level None)"
    );
    assert_eq!(pod_create[0]["level"], "Request");
    assert!(
        pod_create[0].get("requestObject").is_none(),
        "not yet decoded when received"
    );
    assert_eq!(pod_create[1]["requestObject"]["metadata"]["name"], "web");
    assert_eq!(
        pod_create[1]["objectRef"]["name"], "web",
        "a create names its object in the body"
    );
}
