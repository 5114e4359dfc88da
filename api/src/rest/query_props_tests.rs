//! Query parameters as a careless or hostile client writes them: numbers at and past the ends
//! of their types, negative counts, text where numbers go, on every verb. Whatever the
//! combination, the answer is a Kubernetes Status with a 4xx code (or success), never a panic
//! and never a 500: integer overflow anywhere on the request path is an error.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use axum::Router;
use proptest::prelude::*;
use tower::ServiceExt;

use super::router;
use crate::server::ApiServer;
use crate::storage::memory::MemoryStorage;

/// One runtime and one server for every case: each case's writes are harmless to the next.
fn fixture() -> &'static (tokio::runtime::Runtime, Router) {
    static FIXTURE: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let app = runtime.block_on(async {
            let core = Arc::new(ApiServer::new(MemoryStorage::new()));
            crate::bootstrap::ensure_namespaces(&core).await;
            router(core)
        });
        (runtime, app)
    })
}

const PARAMS: &[&str] = &[
    "resourceVersion",
    "resourceVersionMatch",
    "limit",
    "continue",
    "timeoutSeconds",
    "gracePeriodSeconds",
    "allowWatchBookmarks",
    "sendInitialEvents",
    "labelSelector",
    "fieldSelector",
    "propagationPolicy",
    "dryRun",
    "fieldValidation",
    "orphanDependents",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(i64::MAX.to_string()),
        Just(i64::MIN.to_string()),
        Just(u64::MAX.to_string()),
        Just("99999999999999999999999999".to_string()),
        Just("-1".to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("NotOlderThan".to_string()),
        Just("Exact".to_string()),
        Just("true".to_string()),
        Just("All".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-zA-Z0-9=!(),.-]{0,12}",
    ]
}

/// A request: method, path, and whether it is a watch (its body is never read).
fn target() -> impl Strategy<Value = (&'static str, &'static str, bool)> {
    prop_oneof![
        Just(("GET", "/api/v1/namespaces/default/configmaps", false)),
        Just(("GET", "/api/v1/configmaps", false)),
        Just((
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true",
            true
        )),
        Just(("GET", "/api/v1/namespaces/default/configmaps/c", false)),
        Just(("POST", "/api/v1/namespaces/default/configmaps", false)),
        Just(("PUT", "/api/v1/namespaces/default/configmaps/c", false)),
        Just(("PATCH", "/api/v1/namespaces/default/configmaps/c", false)),
        Just(("DELETE", "/api/v1/namespaces/default/configmaps/c", false)),
        Just(("DELETE", "/api/v1/namespaces/default/configmaps", false)),
    ]
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn no_query_makes_the_server_fail(
        (method, path, watch) in target(),
        params in proptest::collection::vec((proptest::sample::select(PARAMS), value()), 0..4),
    ) {
        let (runtime, app) = fixture();
        let mut uri = path.to_string();
        for (i, (name, value)) in params.iter().enumerate() {
            let sep = if i == 0 && !uri.contains('?') { '?' } else { '&' };
            uri.push_str(&format!("{sep}{name}={}", encode(value)));
        }
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}"#;
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let request = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request");
        let (status, text) = runtime.block_on(async {
            let response = app.clone().oneshot(request).await.expect("infallible");
            let status = response.status();
            if watch && status.is_success() {
                // A watch streams until its timeout: its status is the answer.
                return (status, String::new());
            }
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        });
        prop_assert!(status.as_u16() < 500 || status.as_u16() == 504, "{method} {uri}: {status} {text}");
        if !status.is_success() {
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            prop_assert_eq!(&parsed["kind"], "Status", "{} {}: {}", method, uri, text);
        }
    }
}
