//! The conformance corpus (`tests/corpus/`): real manifests from public repositories, each put
//! through what users do with kubectl 1.32 — `apply --dry-run=server`, `apply`, a re-apply,
//! `apply --server-side`, `diff` and `delete` — on one keel, and each step's outcome compared
//! with what Kubernetes 1.32 does, as `tests/corpus/EXPECTED` records it per file (from
//! Kubernetes' source and documented behaviour). Every difference is reported, not only the
//! first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_tests::kubectl::{api_only_cluster, Kubectl};

/// What Kubernetes does with one file.
#[derive(Debug, Default)]
struct Expected {
    /// `apply --dry-run=server` fails with this text (a namespace the file creates is not
    /// there in a dry run).
    dry_run_fails: Option<String>,
    /// A re-apply prints `configured` for some object (defaults land in a list kubectl
    /// replaces whole) instead of only `unchanged`.
    reapply_configured: bool,
    /// A namespace the file needs and does not create.
    needs_namespace: Option<String>,
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// Reads EXPECTED: `file: outcome[; key: value]…`.
fn expectations() -> anyhow::Result<BTreeMap<String, Expected>> {
    let text = std::fs::read_to_string(corpus_dir().join("EXPECTED"))?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (file, rest) = line
            .split_once(": ")
            .ok_or_else(|| anyhow::anyhow!("EXPECTED line without a file: {line}"))?;
        let mut expected = Expected::default();
        for part in rest.split("; ") {
            if let Some(why) = part.strip_prefix("fails: re-apply") {
                anyhow::ensure!(why.contains("configured"), "{line}");
                expected.reapply_configured = true;
            } else if let Some(ns) = part.strip_prefix("needs-namespace: ") {
                expected.needs_namespace = Some(ns.trim().to_string());
            } else if let Some(error) = part.strip_prefix("dry-run: fails: ") {
                expected.dry_run_fails = Some(error.trim().to_string());
            }
        }
        out.insert(file.to_string(), expected);
    }
    Ok(out)
}

/// Runs one step; a difference from `expect_ok` is recorded in `problems`.
fn step(k: &Kubectl, problems: &mut Vec<String>, file: &str, args: &[&str]) -> Option<String> {
    let out = k.run(args);
    if out.ok {
        Some(out.stdout)
    } else {
        problems.push(format!(
            "{file}: kubectl {} failed: {}",
            args.join(" "),
            out.stderr.trim()
        ));
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_file_behaves_as_on_kubernetes() -> anyhow::Result<()> {
    let (_cluster, k) = api_only_cluster().await?;
    let expected = expectations()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 40, "{} files", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(want) = expected.get(&name) else {
            problems.push(format!("{name}: no line in EXPECTED"));
            continue;
        };
        let file = path.to_str().unwrap_or_default();
        let made_namespace = match &want.needs_namespace {
            Some(ns) if !["default", "kube-system"].contains(&ns.as_str()) => {
                k.ok(&["create", "namespace", ns]);
                Some(ns.clone())
            }
            _ => None,
        };

        let dry = k.run(&["apply", "--dry-run=server", "-f", file]);
        match (&want.dry_run_fails, dry.ok) {
            (None, false) => problems.push(format!(
                "{name}: apply --dry-run=server failed: {}",
                dry.stderr.trim()
            )),
            (Some(error), true) => problems.push(format!(
                "{name}: apply --dry-run=server passed where Kubernetes fails with {error}"
            )),
            (Some(error), false) if !dry.stderr.contains(error.trim_matches('"')) => {
                problems.push(format!(
                    "{name}: apply --dry-run=server failed otherwise than with {error}: {}",
                    dry.stderr.trim()
                ))
            }
            _ => {}
        }
        if step(&k, &mut problems, &name, &["apply", "-f", file]).is_none() {
            continue;
        }
        if let Some(again) = step(&k, &mut problems, &name, &["apply", "-f", file]) {
            let configured: Vec<&str> = again
                .lines()
                .filter(|l| !l.ends_with(" unchanged"))
                .collect();
            match (want.reapply_configured, configured.is_empty()) {
                (false, false) => problems.push(format!("{name}: re-apply changed: {configured:?}")),
                (true, true) => problems.push(format!("{name}: re-apply printed only `unchanged`, where Kubernetes prints `configured`")),
                _ => {}
            }
        }
        step(
            &k,
            &mut problems,
            &name,
            &["apply", "--server-side", "--force-conflicts", "-f", file],
        );
        let diff = k.run(&["diff", "-f", file]);
        if !diff.ok {
            problems.push(format!(
                "{name}: kubectl diff exited non-zero: {}{}",
                diff.stdout,
                diff.stderr.trim()
            ));
        }
        step(
            &k,
            &mut problems,
            &name,
            &[
                "delete",
                "--ignore-not-found",
                "--wait=true",
                "--timeout=60s",
                "-f",
                file,
            ],
        );
        if let Some(ns) = made_namespace {
            step(
                &k,
                &mut problems,
                &name,
                &["delete", "namespace", &ns, "--wait=true", "--timeout=60s"],
            );
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences from Kubernetes:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Ok(())
}
