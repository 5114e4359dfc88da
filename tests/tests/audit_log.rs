//! The audit log end to end: a master started with kube-apiserver's `--audit-policy-file`
//! and `--audit-log-path` writes what kubectl did as audit.k8s.io/v1 Events, one JSON line
//! per stage, naming the user, the source address, the client and the object.

use std::time::Duration;

use anyhow::Result;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use serde_json::Value;

const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: ['/api*', '/apis*', '/openapi*', '/version', '/healthz*']
  - level: Metadata
    resources: [{group: '', resources: [secrets]}]
  - level: RequestResponse
    resources: [{group: '', resources: [configmaps]}]
    verbs: [create]
  - level: None
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectls_requests_are_written_to_the_audit_log_as_the_policy_says() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("policy.yaml");
    let log = dir.path().join("audit.log");
    std::fs::write(&policy, POLICY)?;
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", log.display()),
        ],
    )
    .await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !kubectl.run(&["get", "ns", "default"]).ok {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the API does not serve"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2",
    ]);
    kubectl.ok(&["get", "secret", "db"]);
    kubectl.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=fast",
    ]);

    let events: Vec<Value> = std::fs::read_to_string(&log)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let about = |resource: &str, verb: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["objectRef"]["resource"] == resource && e["verb"] == verb)
            .collect()
    };
    let created = about("secrets", "create");
    assert_eq!(created.len(), 1, "RequestReceived is omitted: {events:#?}");
    let event = created[0];
    assert_eq!(event["stage"], "ResponseComplete");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["responseStatus"]["code"], 201);
    assert_eq!(event["objectRef"]["name"], "db");
    assert_eq!(event["objectRef"]["namespace"], "default");
    assert!(
        event["user"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{event}"
    );
    assert!(event["sourceIPs"][0] == "127.0.0.1", "{event}");
    assert!(
        event["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("kubectl")),
        "{event}"
    );
    assert!(
        event.get("requestObject").is_none(),
        "no secret data at Metadata level"
    );
    assert_eq!(about("secrets", "get").len(), 1);
    let configmap = about("configmaps", "create");
    assert_eq!(configmap.len(), 1);
    assert_eq!(configmap[0]["requestObject"]["data"]["mode"], "fast");
    assert_eq!(
        configmap[0]["responseObject"]["metadata"]["name"],
        "settings"
    );
    assert!(
        !std::fs::read_to_string(&log)?.contains("hunter2"),
        "the secret's value never reaches the log"
    );
    Ok(())
}
