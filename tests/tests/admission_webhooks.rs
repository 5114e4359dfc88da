//! Admission webhooks against a real keel and the test's own HTTPS webhook servers: a mutating
//! webhook's JSONPatch lands in the stored object (its warning reaches kubectl), a validating
//! webhook's denial fails the request with Kubernetes' message and the webhook's code, rules,
//! namespace and object selectors decide who is called, updates carry the old object, deletes
//! reach validating webhooks, dry runs reach only webhooks without side effects, and a webhook
//! that cannot be reached fails the request under failurePolicy Fail and is skipped under
//! Ignore.

use std::sync::Arc;

use base64::Engine;
use keel_tests::kubectl::api_only_cluster;
use keel_tests::webhook::WebhookServer;
use serde_json::{json, Value};

/// Labels every new ConfigMap `mutated=yes`, with a warning.
fn mutate(request: &Value) -> Value {
    let patch = if request["object"]["metadata"]["labels"].is_object() {
        json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
    };
    json!({
        "allowed": true,
        "patchType": "JSONPatch",
        "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
        "warnings": ["mutated by the test webhook"],
    })
}

/// Denies ConfigMaps holding a key named `forbidden`, and deletes of `protected=yes` ones.
fn validate(request: &Value) -> Value {
    let object = &request["object"];
    if object["data"].get("forbidden").is_some() {
        return json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "the key \"forbidden\" is not allowed"}});
    }
    if request["operation"] == "DELETE"
        && request["oldObject"]["metadata"]["labels"]["protected"] == "yes"
    {
        return json!({"allowed": false, "status": {"message": "protected ConfigMaps stay"}});
    }
    json!({"allowed": true})
}

fn rules(operations: &[&str], resource: &str) -> Value {
    json!([{"operations": operations, "apiGroups": [""], "apiVersions": ["v1"], "resources": [resource], "scope": "Namespaced"}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_deny_and_fail_by_their_policy() -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let mutator = WebhookServer::start(Arc::new(mutate)).await?;
    let validator = WebhookServer::start(Arc::new(validate)).await?;
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "label"},
        "webhooks": [{
            "name": "label.example.com",
            "clientConfig": mutator.client_config("/mutate"),
            "rules": rules(&["CREATE"], "configmaps"),
            "namespaceSelector": {"matchExpressions": [{"key": "webhooks", "operator": "NotIn", "values": ["off"]}]},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]
    });
    let validating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "guard"},
        "webhooks": [{
            "name": "deny.example.com",
            "clientConfig": validator.client_config("/validate"),
            "rules": rules(&["CREATE", "UPDATE", "DELETE"], "configmaps"),
            "objectSelector": {"matchExpressions": [{"key": "unguarded", "operator": "DoesNotExist"}]},
            "sideEffects": "None",
            "timeoutSeconds": 5,
            "admissionReviewVersions": ["v1"],
        }]
    });
    let m = k.manifest("mutating.json", &mutating.to_string());
    let v = k.manifest("validating.json", &validating.to_string());
    k.ok(&["apply", "-f", &m, "-f", &v]);

    // The mutating webhook's patch is stored, its warning printed by kubectl.
    let out = k.run(&["create", "configmap", "plain", "--from-literal=a=1"]);
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("Warning: mutated by the test webhook"),
        "{}",
        out.stderr
    );
    let plain = k.json(&["get", "configmap", "plain"]);
    assert_eq!(plain["metadata"]["labels"]["mutated"], "yes", "{plain}");
    let reviews = mutator.reviews();
    let review = reviews.last().cloned().unwrap_or_default();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    let request = &review["request"];
    assert_eq!(request["operation"], "CREATE");
    assert_eq!(
        request["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(request["resource"]["resource"], "configmaps");
    assert_eq!(request["namespace"], "default");
    assert_eq!(request["object"]["data"]["a"], "1");
    assert!(
        request["userInfo"]["username"]
            .as_str()
            .is_some_and(|u| !u.is_empty()),
        "{request}"
    );

    // The validating webhook sees the mutated object, and denies with its own code.
    let validated = validator.reviews();
    assert_eq!(
        validated
            .last()
            .map(|r| r["request"]["object"]["metadata"]["labels"]["mutated"].clone()),
        Some(json!("yes"))
    );
    let denied = k.fails(&["create", "configmap", "bad", "--from-literal=forbidden=1"]);
    assert!(
        denied.contains("admission webhook \"deny.example.com\" denied the request: the key \"forbidden\" is not allowed"),
        "{denied}"
    );
    let (code, status) = k.post_json(
        "/api/v1/namespaces/default/configmaps",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad"}, "data": {"forbidden": "1"}}),
    )?;
    assert_eq!(code, 403, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert!(k
        .run(&["get", "configmap", "bad"])
        .stderr
        .contains("NotFound"));

    // Updates carry the old object; the object selector leaves labelled objects alone.
    k.ok(&[
        "patch",
        "configmap",
        "plain",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    let update = validator.reviews().last().cloned().unwrap_or_default();
    assert_eq!(update["request"]["operation"], "UPDATE");
    assert_eq!(update["request"]["oldObject"]["data"]["a"], "1");
    assert_eq!(update["request"]["object"]["data"]["a"], "2");
    let free = k.manifest(
        "free.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: free, labels: {unguarded: \"yes\"}}\ndata: {forbidden: \"1\"}\n",
    );
    let calls = validator.reviews().len();
    k.ok(&["apply", "-f", &free]);
    assert_eq!(
        validator.reviews().len(),
        calls,
        "not called for objects its selector leaves out"
    );

    // Deletes reach validating webhooks with the old object.
    k.ok(&["label", "configmap", "plain", "protected=yes"]);
    let kept = k.fails(&["delete", "configmap", "plain"]);
    assert!(
        kept.contains("denied the request: protected ConfigMaps stay"),
        "{kept}"
    );
    k.ok(&["get", "configmap", "plain"]);

    // Dry runs reach webhooks without side effects, marked as dry runs.
    k.ok(&[
        "create",
        "configmap",
        "dry",
        "--from-literal=a=1",
        "--dry-run=server",
    ]);
    assert_eq!(
        mutator
            .reviews()
            .last()
            .map(|r| r["request"]["dryRun"].clone()),
        Some(json!(true))
    );
    assert!(k
        .run(&["get", "configmap", "dry"])
        .stderr
        .contains("NotFound"));

    // A namespace labelled out of the namespace selector is not mutated.
    k.ok(&["create", "namespace", "quiet"]);
    k.ok(&["label", "namespace", "quiet", "webhooks=off"]);
    k.ok(&[
        "create",
        "configmap",
        "untouched",
        "-n",
        "quiet",
        "--from-literal=a=1",
    ]);
    let untouched = k.json(&["get", "configmap", "untouched", "-n", "quiet"]);
    assert_eq!(untouched["metadata"].get("labels"), None, "{untouched}");

    // A webhook that cannot be reached: Fail refuses the request, Ignore lets it through.
    let unreachable = |policy: &str| {
        json!({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "down"},
            "webhooks": [{
                "name": "down.example.com",
                "clientConfig": {"url": "https://127.0.0.1:1/validate", "caBundle": base64::engine::general_purpose::STANDARD.encode(&validator.ca_pem)},
                "rules": rules(&["CREATE"], "secrets"),
                "failurePolicy": policy,
                "sideEffects": "None",
                "timeoutSeconds": 2,
                "admissionReviewVersions": ["v1"],
            }]
        })
    };
    let down = k.manifest("down.json", &unreachable("Fail").to_string());
    k.ok(&["apply", "-f", &down]);
    let failed = k.fails(&["create", "secret", "generic", "s1", "--from-literal=a=1"]);
    assert!(
        failed.contains("Internal error occurred: failed calling webhook \"down.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/validate?timeout=2s\""),
        "{failed}"
    );
    let ignored = k.manifest("ignored.json", &unreachable("Ignore").to_string());
    k.ok(&["apply", "-f", &ignored]);
    k.ok(&["create", "secret", "generic", "s1", "--from-literal=a=1"]);

    // Webhook configurations themselves are never sent to webhooks: removing them works
    // whatever the webhooks say.
    k.ok(&["delete", "validatingwebhookconfiguration", "guard", "down"]);
    k.ok(&["delete", "configmap", "plain"]);
    Ok(())
}
