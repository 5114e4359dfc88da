//! The official Kubernetes Python client (pinned in tests/python/requirements.txt, installed by
//! scripts/python-env.sh) against a 3-master keel with the admin kubeconfig: it creates,
//! lists, patches, watches and deletes a pod (tests/python/pods.py), and what it printed is
//! checked here.

use std::path::PathBuf;
use std::process::Command;

use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

/// The venv's interpreter, or `KEEL_PYTHON`.
fn python() -> PathBuf {
    std::env::var_os("KEEL_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/.venv/bin/python"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_creates_lists_patches_watches_and_deletes_pods() -> anyhow::Result<()> {
    let python = python();
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run scripts/python-env.sh",
        python.display()
    );
    // Without a scheduler: with no nodes it would mark the pod unschedulable, an extra
    // MODIFIED event in the exact sequence this test expects from the client.
    let cluster = Cluster::start_with(Flavor::Keel, 3, &["--scheduler=false".to_string()]).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/pods.py");
    let out = tokio::task::block_in_place(|| {
        Command::new(&python)
            .arg(&script)
            .arg(&k.kubeconfig)
            .arg("default")
            .output()
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "created py-pod uid=True",
            "listed ['py-pod']",
            "patched tier=backend",
            "deleted py-pod",
            "watched MODIFIED:backend,DELETED:backend",
            "read after delete: 404 Not Found",
        ],
        "{stderr}"
    );
    Ok(())
}
