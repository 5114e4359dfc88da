//! The `keel` binary's command line: flags are checked before anything starts.

use std::process::Command;

fn keel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keel"))
}

#[test]
fn help_lists_the_server_and_bench_commands() {
    let out = keel().arg("--help").output().expect("run keel --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("server") && text.contains("bench"), "{text}");
}

#[test]
fn server_rejects_a_bad_initial_cluster_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = keel()
        .args([
            "server",
            "--initial-cluster-state",
            "sideways",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run keel server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--initial-cluster-state must be new or existing"),
        "{err}"
    );
}
