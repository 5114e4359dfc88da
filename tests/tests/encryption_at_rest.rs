//! Secrets encrypted at rest, as kube-apiserver's `--encryption-provider-config` does it: the
//! API reads them back as written, the store holds only `k8s:enc:aesgcm:v1:<key>:` and
//! ciphertext, and rotating the key (new key first, restart, `kubectl get secrets -o json |
//! kubectl replace -f -`, old key dropped) rewrites every secret.

use std::time::Duration;

use anyhow::Result;
use keel_tests::etcdctl::etcdctl;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

const KEY_1: &str = "c2VjcmV0IGlzIHNlY3VyZSwgb3IgaXMgaXQ/IDMyIGI=";
const KEY_2: &str = "YW5vdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMgbG9uZyE=";

fn config(keys: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources: [secrets]\n    providers:\n      - aesgcm:\n          keys:\n",
    );
    for (name, secret) in keys {
        text.push_str(&format!(
            "            - name: {name}\n              secret: {secret}\n"
        ));
    }
    text.push_str("      - identity: {}\n");
    text
}

/// The raw bytes the store holds for a key, through the real etcdctl.
fn raw(cluster: &Cluster, key: &str) -> Result<String> {
    let mut args = cluster.members[0].etcdctl_flags();
    args.extend(["get", key, "--print-value-only"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = etcdctl(&cluster.endpoints()[..1], &args, None)?;
    anyhow::ensure!(out.status == 0, "etcdctl get {key}: {}", out.stderr);
    Ok(out.stdout)
}

async fn until_serving(kubectl: &Kubectl) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !kubectl.run(&["get", "ns", "default"]).ok {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the API does not come back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_encrypted_and_a_key_rotation_rewrites_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("encryption.yaml");
    std::fs::write(&file, config(&[("key1", KEY_1)]))?;
    let flag = format!("--encryption-provider-config={}", file.display());
    let mut cluster = Cluster::start_with(Flavor::Keel, 1, &[flag]).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    until_serving(&kubectl).await?;
    kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=hunter2-plaintext",
    ]);
    kubectl.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=visible-plaintext",
    ]);

    let stored = raw(&cluster, "/registry/secrets/default/db")?;
    assert!(stored.starts_with("k8s:enc:aesgcm:v1:key1:"), "{stored:?}");
    assert!(!stored.contains("hunter2"), "no plaintext in the store");
    let password = kubectl.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(
        password.trim(),
        "aHVudGVyMi1wbGFpbnRleHQ=",
        "the API reads it back"
    );
    let configmap = raw(&cluster, "/registry/configmaps/default/settings")?;
    assert!(
        configmap.contains("visible-plaintext"),
        "other resources are stored as they are"
    );

    // Rotation: the new key first, the old one still readable.
    std::fs::write(&file, config(&[("key2", KEY_2), ("key1", KEY_1)]))?;
    cluster.restart(0)?;
    until_serving(&kubectl).await?;
    let listed = kubectl.ok(&["get", "secrets", "-A", "-o", "json"]);
    let manifest = kubectl.manifest("all-secrets.json", &listed);
    kubectl.ok(&["replace", "-f", &manifest]);
    let rotated = raw(&cluster, "/registry/secrets/default/db")?;
    assert!(
        rotated.starts_with("k8s:enc:aesgcm:v1:key2:"),
        "{rotated:?}"
    );

    // The old key dropped: everything still reads.
    std::fs::write(&file, config(&[("key2", KEY_2)]))?;
    cluster.restart(0)?;
    until_serving(&kubectl).await?;
    let password = kubectl.ok(&["get", "secret", "db", "-o", "jsonpath={.data.password}"]);
    assert_eq!(password.trim(), "aHVudGVyMi1wbGFpbnRleHQ=");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_encryption_configuration_stops_the_server_with_the_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("encryption.yaml");
    std::fs::write(&file, config(&[("key1", "c2hvcnQ=")]))?;
    let output = std::process::Command::new(keel_tests::cluster::keel_bin()?)
        .args(["server", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg(format!("--encryption-provider-config={}", file.display()))
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("16, 24 or 32"), "{stderr}");
    Ok(())
}
