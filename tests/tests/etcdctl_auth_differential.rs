//! Differential test of etcd's auth API: one etcdctl script (users, roles, key-range
//! permissions, `auth enable`, `--user name:password`, refusals) run against a real 3-member
//! etcd cluster and a 3-member keel store, compared step by step — exit status, output and
//! error text.

use anyhow::Result;
use keel_tests::differential::{differences, run_on, Norm, Outcome, Run};
use keel_tests::{Cluster, Flavor};

const ROOT: &str = "--user=root:rootpw";
const ALICE: &str = "--user=alice:alicepw";

fn run_script(cluster: &Cluster) -> Result<Vec<Outcome>> {
    use Norm::*;
    let mut r = Run::new(cluster);
    r.step("user add root", &["user", "add", "root:rootpw"], Lines)?;
    r.step(
        "auth enable (adds the root role)",
        &["auth", "enable"],
        Lines,
    )?;
    r.step("get without a user is refused", &["get", "k"], Lines)?;
    r.step("put as root", &[ROOT, "put", "k", "v"], Lines)?;
    r.step("get as root", &[ROOT, "get", "k"], Lines)?;
    r.step(
        "a wrong password is refused",
        &["--user=root:nope", "get", "k"],
        Lines,
    )?;
    r.step(
        "an unknown user is refused",
        &["--user=mallory:x", "get", "k"],
        Lines,
    )?;
    r.step("role add reader", &[ROOT, "role", "add", "reader"], Lines)?;
    r.step(
        "role add reader again",
        &[ROOT, "role", "add", "reader"],
        Lines,
    )?;
    r.step(
        "grant read on a prefix",
        &[
            ROOT,
            "role",
            "grant-permission",
            "reader",
            "read",
            "app/",
            "--prefix=true",
        ],
        Lines,
    )?;
    r.step(
        "grant write on one key",
        &[
            ROOT,
            "role",
            "grant-permission",
            "reader",
            "write",
            "app/log",
        ],
        Lines,
    )?;
    r.step("role get", &[ROOT, "role", "get", "reader"], Lines)?;
    r.step(
        "user add alice",
        &[ROOT, "user", "add", "alice:alicepw"],
        Lines,
    )?;
    r.step(
        "user add alice again",
        &[ROOT, "user", "add", "alice:other"],
        Lines,
    )?;
    r.step(
        "grant a missing role",
        &[ROOT, "user", "grant-role", "alice", "nope"],
        Lines,
    )?;
    r.step(
        "user grant-role",
        &[ROOT, "user", "grant-role", "alice", "reader"],
        Lines,
    )?;
    r.step("user get alice", &[ROOT, "user", "get", "alice"], Lines)?;
    r.step("user list", &[ROOT, "user", "list"], Lines)?;
    r.step("role list", &[ROOT, "role", "list"], Lines)?;
    r.step(
        "root writes under the prefix",
        &[ROOT, "put", "app/x", "1"],
        Lines,
    )?;
    r.step(
        "alice reads a key under the prefix",
        &[ALICE, "get", "app/x"],
        Lines,
    )?;
    r.step(
        "alice reads the prefix",
        &[ALICE, "get", "app/", "--prefix"],
        Lines,
    )?;
    r.step(
        "alice may not write there",
        &[ALICE, "put", "app/x", "2"],
        Lines,
    )?;
    r.step(
        "alice may write her one key",
        &[ALICE, "put", "app/log", "l"],
        Lines,
    )?;
    r.step("alice may not read outside", &[ALICE, "get", "k"], Lines)?;
    r.step("alice may not delete", &[ALICE, "del", "app/x"], Lines)?;
    r.step(
        "alice may not manage users",
        &[ALICE, "user", "list"],
        Lines,
    )?;
    r.step(
        "revoke the prefix",
        &[
            ROOT,
            "role",
            "revoke-permission",
            "reader",
            "app/",
            "--prefix=true",
        ],
        Lines,
    )?;
    r.step(
        "revoke it again",
        &[
            ROOT,
            "role",
            "revoke-permission",
            "reader",
            "app/",
            "--prefix=true",
        ],
        Lines,
    )?;
    r.step("alice reads nothing now", &[ALICE, "get", "app/x"], Lines)?;
    r.step(
        "root may not be deleted while auth is on",
        &[ROOT, "user", "delete", "root"],
        Lines,
    )?;
    r.step(
        "root may not lose its role while auth is on",
        &[ROOT, "user", "revoke-role", "root", "root"],
        Lines,
    )?;
    r.step_with_stdin(
        "change alice's password",
        &[ROOT, "user", "passwd", "alice", "--interactive=false"],
        Some("alicepw2\n"),
        Lines,
    )?;
    r.step(
        "the old password no longer works",
        &[ALICE, "put", "app/log", "l2"],
        Lines,
    )?;
    r.step(
        "the new one does",
        &["--user=alice:alicepw2", "put", "app/log", "l2"],
        Lines,
    )?;
    r.step("auth disable", &[ROOT, "auth", "disable"], Lines)?;
    r.step("get without a user again", &["get", "k"], Lines)?;
    r.step("user delete alice", &["user", "delete", "alice"], Lines)?;
    r.step("role delete reader", &["role", "delete", "reader"], Lines)?;
    r.step("user list after", &["user", "list"], Lines)?;
    Ok(r.outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_script_gives_the_same_results_on_keel_as_on_etcd() -> Result<()> {
    let etcd = run_on(Flavor::Etcd, run_script).await?;
    // The control run shows the script tests what it means to.
    let status = |step: &str| {
        etcd.iter()
            .find(|o| o.step == step)
            .map(|o| o.status.clone())
            .unwrap_or_default()
    };
    assert_eq!(status("get as root"), "0");
    assert_ne!(status("get without a user is refused"), "0");
    assert_ne!(status("alice may not write there"), "0");
    assert_eq!(status("alice may write her one key"), "0");
    assert_eq!(status("get without a user again"), "0");
    let keel = run_on(Flavor::KeelStore, run_script).await?;
    let diffs = differences(&etcd, &keel);
    assert!(
        diffs.is_empty(),
        "keel differs from etcd in {} of {} etcdctl auth steps:\n\n{}",
        diffs.len(),
        etcd.len(),
        diffs.join("\n")
    );
    Ok(())
}
