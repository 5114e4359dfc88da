//! `keel lint` on the fixture sets (each class of mistake once in `fixtures/lint/broken/`, all
//! corrected in `fixtures/lint/fixed/`), and the same lint's warnings on writes, as kubectl
//! prints them.

use std::path::PathBuf;
use std::process::{Command, Output};

use keel_tests::cluster::keel_bin;
use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};
use serde_json::Value;

fn fixtures(set: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/lint")
        .join(set)
}

fn keel_lint(args: &[&str]) -> anyhow::Result<Output> {
    Ok(Command::new(keel_bin()?).arg("lint").args(args).output()?)
}

#[test]
fn lint_reports_each_mistake_of_the_broken_set_once_and_passes_the_fixed_set() -> anyhow::Result<()>
{
    let broken = fixtures("broken");
    let out = keel_lint(&["-f", broken.to_str().unwrap_or_default(), "-o", "json"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let findings: Vec<Value> = serde_json::from_str(&stdout)?;
    let mut seen: Vec<(String, String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["class"].as_str().unwrap_or_default().to_string(),
                f["severity"].as_str().unwrap_or_default().to_string(),
                f["object"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    seen.sort();
    let expected = [
        ("ingress-missing-port", "error", "Ingress/default/shop"),
        ("ingress-missing-service", "error", "Ingress/default/shop"),
        ("selector-invalid", "error", "DaemonSet/default/agent"),
        ("selector-matches-nothing", "error", "Service/default/api"),
        ("selector-missing", "error", "StatefulSet/default/db"),
        (
            "selector-template-mismatch",
            "error",
            "Deployment/default/worker",
        ),
        (
            "selectors-overlap",
            "error",
            "Deployment/default/web-canary",
        ),
        ("target-port-not-exposed", "error", "Service/default/web"),
    ]
    .map(|(c, s, o)| (c.to_string(), s.to_string(), o.to_string()));
    assert_eq!(seen, expected, "{stdout}");
    assert_eq!(out.status.code(), Some(1), "{stdout}");

    // Each finding names where the object was read from.
    let overlap = findings
        .iter()
        .find(|f| f["class"] == "selectors-overlap")
        .cloned()
        .unwrap_or_default();
    assert!(
        overlap["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken/shop.yaml")),
        "{overlap}"
    );
    assert_eq!(overlap["document"], 2, "{overlap}");
    assert!(
        overlap["message"]
            .as_str()
            .is_some_and(|m| m.contains("Deployment/default/web")),
        "{overlap}"
    );
    let invalid = findings
        .iter()
        .find(|f| f["class"] == "selector-invalid")
        .cloned()
        .unwrap_or_default();
    assert!(
        invalid["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken/extra/more.yaml")),
        "{invalid}"
    );
    assert_eq!(invalid["document"], 2, "{invalid}");

    let fixed = fixtures("fixed");
    let out = keel_lint(&["-f", fixed.to_str().unwrap_or_default(), "-o", "json"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        serde_json::from_str::<Value>(&stdout)?,
        serde_json::json!([]),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0));
    Ok(())
}

#[test]
fn lint_prints_one_line_per_finding_and_fails_warnings_only_when_strict() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("svc.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: p}}\nspec:\n  containers: [{name: c, image: i}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  selector: {app: p}\n  ports: [{port: 80, targetPort: 8080}]\n",
    )?;
    let path = file.to_str().unwrap_or_default();
    let out = keel_lint(&["-f", path])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{path}#2: warning[target-port-not-exposed]: Service/default/s: "
        )),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "a warning alone passes");
    let strict = keel_lint(&["-f", path, "--strict"])?;
    assert_eq!(strict.status.code(), Some(1));
    Ok(())
}

#[test]
fn lint_exits_2_naming_the_file_and_document_of_malformed_input() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bad.yml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\nkind: [oops\n",
    )?;
    let out = keel_lint(&["-f", dir.path().to_str().unwrap_or_default()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: document 2:", file.display())),
        "{stderr}"
    );
    let missing = keel_lint(&["-f", "/nonexistent/manifest.yaml"])?;
    assert_eq!(missing.status.code(), Some(2));
    Ok(())
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 80}]}]
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_warns_of_a_selector_matching_nothing_until_a_workload_matches(
) -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    k.ok(&["create", "namespace", "alone"]);
    k.ok(&["create", "namespace", "paired"]);
    let service = k.manifest("service.yaml", SERVICE);
    let deployment = k.manifest("deployment.yaml", DEPLOYMENT);

    let alone = k.run(&["apply", "-n", "alone", "-f", &service]);
    assert!(alone.ok, "{}", alone.stderr);
    assert!(
        alone
            .stderr
            .contains("Warning: Service/alone/web: selector app=web matches no pod template in namespace alone"),
        "{}",
        alone.stderr
    );

    let first = k.run(&["apply", "-n", "paired", "-f", &deployment]);
    assert!(first.ok, "{}", first.stderr);
    assert!(!first.stderr.contains("Warning:"), "{}", first.stderr);
    let paired = k.run(&["apply", "-n", "paired", "-f", &service]);
    assert!(paired.ok, "{}", paired.stderr);
    assert!(!paired.stderr.contains("Warning:"), "{}", paired.stderr);

    // A second controller taking the same pods is warned of, naming the first.
    let rival = k.manifest(
        "rival.yaml",
        &DEPLOYMENT.replace("name: web\nspec", "name: rival\nspec"),
    );
    let rival = k.run(&["apply", "-n", "paired", "-f", &rival]);
    assert!(rival.ok, "{}", rival.stderr);
    assert!(
        rival
            .stderr
            .contains("Warning: Deployment/paired/rival: selector app=web overlaps")
            && rival.stderr.contains("Deployment/paired/web"),
        "{}",
        rival.stderr
    );
    Ok(())
}
