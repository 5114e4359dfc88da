//! Differential test: one etcdctl 3.4 script run against a real 3-member etcd cluster (the
//! control) and a 3-member keel cluster, compared step by step — exit status, stdout field by field
//! and error text — with only IDs, terms, timings and URLs normalised. Revisions must be equal.

use std::time::Duration;

use anyhow::Result;
use keel_tests::differential::{differences, run_on, Norm, Outcome, Run};
use keel_tests::{Cluster, Flavor};
use serde_json::json;

/// The script. Every cluster starts at the same revision (the harness's readiness check writes
/// `__ready` once per member), so revisions in the outputs must match exactly.
fn run_script(cluster: &Cluster) -> Result<Vec<Outcome>> {
    use Norm::*;
    let mut r = Run::new(cluster);
    r.mark("start")?;

    // --- put / get ---
    r.step("put new key", &["put", "k/a", "1"], Lines)?;
    r.step(
        "put new key, json",
        &["put", "k/b", "22", "-w", "json"],
        Json,
    )?;
    r.step(
        "put new key with --prev-kv",
        &["put", "k/c", "3", "--prev-kv"],
        Lines,
    )?;
    r.step(
        "overwrite with --prev-kv",
        &["put", "k/a", "4", "--prev-kv"],
        Lines,
    )?;
    r.step(
        "overwrite with --prev-kv, json",
        &["put", "k/a", "5", "--prev-kv", "-w", "json"],
        Json,
    )?;
    r.step("put outside the prefix", &["put", "other", "x"], Lines)?;
    r.step("get --prefix", &["get", "k/", "--prefix"], Lines)?;
    r.step(
        "get --prefix, json",
        &["get", "k/", "--prefix", "-w", "json"],
        Json,
    )?;
    r.step("get single key, json", &["get", "k/a", "-w", "json"], Json)?;
    r.step("get missing key", &["get", "nope"], Lines)?;
    r.step(
        "get missing key, json",
        &["get", "nope", "-w", "json"],
        Json,
    )?;
    r.step(
        "get range [k/a, k/c), json",
        &["get", "k/a", "k/c", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix --rev=first write",
        &["get", "k/", "--prefix", "--rev={NEXT:start}"],
        Lines,
    )?;
    r.step(
        "get --prefix --rev=first write, json",
        &["get", "k/", "--prefix", "--rev={NEXT:start}", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix --rev=start, json (before any k/ key)",
        &["get", "k/", "--prefix", "--rev={REV:start}", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix --limit=2, json",
        &["get", "k/", "--prefix", "--limit=2", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix --limit=2",
        &["get", "k/", "--prefix", "--limit=2"],
        Lines,
    )?;
    r.step(
        "get --prefix --keys-only",
        &["get", "k/", "--prefix", "--keys-only"],
        Lines,
    )?;
    r.step(
        "get --prefix --keys-only, json",
        &["get", "k/", "--prefix", "--keys-only", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix --print-value-only",
        &["get", "k/", "--prefix", "--print-value-only"],
        Lines,
    )?;
    r.step(
        "get --from-key k/b, json",
        &["get", "k/b", "--from-key", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --from-key '' --keys-only (everything)",
        &["get", "", "--from-key", "--keys-only"],
        Lines,
    )?;
    r.step(
        "get --from-key --limit=2, json",
        &["get", "k/", "--from-key", "--limit=2", "-w", "json"],
        Json,
    )?;

    // --- sorting: every sort key gives a distinct order over s/a..s/e ---
    // create order c a e b d; final versions a5 d4 b3 e2 c1; mod order c a d b e;
    // values a=q b=d c=w d=a e=m.
    for (k, v) in [
        ("s/c", "w"),
        ("s/a", "q0"),
        ("s/e", "m0"),
        ("s/b", "d0"),
        ("s/d", "a0"),
    ] {
        r.step(&format!("sort data: create {k}"), &["put", k, v], Lines)?;
    }
    r.mark("sort created")?;
    for (k, v) in [
        ("s/a", "q1"),
        ("s/a", "q2"),
        ("s/a", "q3"),
        ("s/a", "q"),
        ("s/d", "a1"),
        ("s/d", "a2"),
        ("s/d", "a"),
        ("s/b", "d1"),
        ("s/b", "d"),
        ("s/e", "m"),
    ] {
        r.step(&format!("sort data: update {k}={v}"), &["put", k, v], Lines)?;
    }
    for target in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        for order in ["ASCEND", "DESCEND"] {
            let sort = format!("--sort-by={target}");
            let ord = format!("--order={order}");
            r.step(
                &format!("get --sort-by={target} --order={order}, json"),
                &["get", "s/", "--prefix", &sort, &ord, "-w", "json"],
                Json,
            )?;
        }
    }
    r.step(
        "get --sort-by=VALUE --order=DESCEND",
        &[
            "get",
            "s/",
            "--prefix",
            "--sort-by=VALUE",
            "--order=DESCEND",
        ],
        Lines,
    )?;
    r.step(
        "get --sort-by=MODIFY --order=DESCEND --limit=2, json",
        &[
            "get",
            "s/",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
            "--limit=2",
            "-w",
            "json",
        ],
        Json,
    )?;
    r.step(
        "get --order=DESCEND without --sort-by",
        &["get", "s/", "--prefix", "--order=DESCEND", "--keys-only"],
        Lines,
    )?;
    r.step(
        "get --sort-by=CREATE --order=DESCEND --keys-only --rev=before updates",
        &[
            "get",
            "s/",
            "--prefix",
            "--sort-by=CREATE",
            "--order=DESCEND",
            "--keys-only",
            "--rev={REV:sort created}",
        ],
        Lines,
    )?;
    r.mark("after sort")?;

    // --- delete ---
    r.step("del --prev-kv", &["del", "k/b", "--prev-kv"], Lines)?;
    r.step(
        "del --prev-kv of a deleted key, json",
        &["del", "k/b", "--prev-kv", "-w", "json"],
        Json,
    )?;
    r.step(
        "del --prev-kv, json",
        &["del", "other", "--prev-kv", "-w", "json"],
        Json,
    )?;
    r.step("del missing key", &["del", "nope"], Lines)?;
    for k in ["d/1", "d/2", "d/3"] {
        r.step(&format!("del data: {k}"), &["put", k, "x"], Lines)?;
    }
    r.mark("d created")?;
    r.step("del --prefix", &["del", "d/", "--prefix"], Lines)?;
    for k in ["d/x", "d/y"] {
        r.step(&format!("del data: {k}"), &["put", k, "y"], Lines)?;
    }
    r.step(
        "del --prefix --prev-kv, json",
        &["del", "d/", "--prefix", "--prev-kv", "-w", "json"],
        Json,
    )?;
    r.step(
        "get --prefix after deletes, json",
        &["get", "d/", "--prefix", "-w", "json"],
        Json,
    )?;
    r.step(
        "get deleted keys at a revision before the delete",
        &["get", "d/", "--prefix", "--rev={REV:d created}"],
        Lines,
    )?;

    // --- txn from stdin: compares, blank line, success ops, blank line, failure ops, blank line ---
    r.txn(
        "txn mod > 0 takes the success branch",
        "mod(\"k/a\") > \"0\"\n\nput k/a v2\n\nput k/a v3\n\n",
        false,
    )?;
    r.txn(
        "txn mod = 0 takes the failure branch, json",
        "mod(\"k/a\") = \"0\"\n\nput t/x 1\n\nput t/x 2\nget k/a\n\n",
        true,
    )?;
    r.txn(
        "txn several compares, get/del/put in success, json",
        "value(\"k/a\") = \"v2\"\nversion(\"k/a\") = \"4\"\ncreate(\"k/a\") > \"0\"\n\nget k/a\ndel k/c --prev-kv\nput t/y 1\n\nput k/a nope\n\n",
        true,
    )?;
    r.txn(
        "txn create = 0, get --prefix inside",
        "create(\"t/a\") = \"0\"\n\nput t/a 1\nput t/b 2\nget t/ --prefix --keys-only\n\ndel t/ --prefix\n\n",
        false,
    )?;
    r.txn(
        "txn create = 0 now false, del --prefix in failure, json",
        "create(\"t/a\") = \"0\"\n\nput t/a 1\n\nget t/ --prefix\ndel t/ --prefix\n\n",
        true,
    )?;
    r.txn(
        "txn without compares, json",
        "\nput t/z 1\nget t/z\n\n\n",
        true,
    )?;
    r.txn(
        "txn failed compare with empty failure branch, json",
        "value(\"t/z\") != \"1\"\n\nput t/z 2\n\n\n",
        true,
    )?;
    r.txn(
        "txn value < compare",
        "value(\"t/z\") < \"2\"\n\nput t/z 3\n\n\n",
        false,
    )?;
    r.txn(
        "txn with a malformed compare",
        "bogus\n\nput t/z 4\n\n\n",
        false,
    )?;
    r.step(
        "get after txns, json",
        &["get", "", "--from-key", "-w", "json"],
        Json,
    )?;

    // --- leases ---
    r.grant("lease grant", "600", false)?;
    r.grant("lease grant, json", "300", true)?;
    r.step(
        "put with LEASE1",
        &["put", "l/1", "v", "--lease={LEASE1}"],
        Lines,
    )?;
    r.step(
        "put another with LEASE1",
        &["put", "l/2", "v", "--lease={LEASE1}"],
        Lines,
    )?;
    r.step(
        "put with LEASE2, json",
        &["put", "l/3", "v", "--lease={LEASE2}", "-w", "json"],
        Json,
    )?;
    r.step(
        "get leased keys, json",
        &["get", "l/", "--prefix", "-w", "json"],
        Json,
    )?;
    r.step("lease list", &["lease", "list"], SortedLines)?;
    r.step("lease list, json", &["lease", "list", "-w", "json"], Json)?;
    r.step(
        "lease keep-alive --once",
        &["lease", "keep-alive", "--once", "{LEASE1}"],
        Lines,
    )?;
    r.step(
        "lease keep-alive --once, json",
        &["lease", "keep-alive", "--once", "{LEASE2}", "-w", "json"],
        Json,
    )?;
    r.step(
        "lease timetolive --keys",
        &["lease", "timetolive", "{LEASE1}", "--keys"],
        Lines,
    )?;
    r.step(
        "lease timetolive --keys, json",
        &["lease", "timetolive", "{LEASE1}", "--keys", "-w", "json"],
        Json,
    )?;
    r.step(
        "lease timetolive without --keys, json",
        &["lease", "timetolive", "{LEASE2}", "-w", "json"],
        Json,
    )?;
    r.step(
        "lease revoke deletes the attached keys",
        &["lease", "revoke", "{LEASE1}"],
        Lines,
    )?;
    r.step(
        "get leased keys after revoke, json",
        &["get", "l/", "--prefix", "-w", "json"],
        Json,
    )?;
    r.step(
        "lease revoke of a revoked lease",
        &["lease", "revoke", "{LEASE1}"],
        Lines,
    )?;
    r.step(
        "lease timetolive of a revoked lease",
        &["lease", "timetolive", "{LEASE1}", "--keys"],
        Lines,
    )?;
    r.step(
        "lease timetolive of a revoked lease, json",
        &["lease", "timetolive", "{LEASE1}", "-w", "json"],
        Json,
    )?;
    r.step(
        "lease keep-alive --once of a revoked lease",
        &["lease", "keep-alive", "--once", "{LEASE1}"],
        Lines,
    )?;
    r.step(
        "lease timetolive of a never-granted lease",
        &["lease", "timetolive", "1234"],
        Lines,
    )?;
    r.step(
        "put with a never-granted lease",
        &["put", "l/x", "v", "--lease=1234"],
        Lines,
    )?;
    r.step(
        "lease revoke, json",
        &["lease", "revoke", "{LEASE2}", "-w", "json"],
        Json,
    )?;
    r.step("lease list after revokes", &["lease", "list"], SortedLines)?;

    // --- watch: catch up on history from a revision, then a live event ---
    r.watch(
        "watch --prefix --rev --prev-kv, json, history then a live put",
        &[
            "watch",
            "--prefix",
            "--rev={NEXT:start}",
            "--prev-kv",
            "k/",
            "-w",
            "json",
        ],
        &[&["put", "k/live", "now"]],
        Duration::from_secs(4),
        WatchJson,
    )?;
    r.watch(
        "watch --prefix --rev --prev-kv (simple output)",
        &["watch", "--prefix", "--rev={NEXT:start}", "--prev-kv", "k/"],
        &[],
        Duration::from_secs(2),
        Lines,
    )?;
    r.watch(
        "watch everything from the first write, json (leases, txns, deletes)",
        &["watch", "--prefix", "--rev={NEXT:start}", "", "-w", "json"],
        &[],
        Duration::from_secs(2),
        WatchJson,
    )?;
    r.watch(
        "watch a single key from a revision",
        &["watch", "--rev={NEXT:start}", "--prev-kv", "k/a"],
        &[],
        Duration::from_secs(2),
        Lines,
    )?;

    // --- compaction ---
    r.mark("before compaction")?;
    r.step("compaction", &["compaction", "{REV:after sort}"], Lines)?;
    r.step(
        "get at the compaction revision still works, json",
        &[
            "get",
            "s/",
            "--prefix",
            "--rev={REV:after sort}",
            "-w",
            "json",
        ],
        Json,
    )?;
    r.step(
        "get at a compacted revision fails",
        &["get", "k/", "--prefix", "--rev={NEXT:start}"],
        Lines,
    )?;
    r.step(
        "get at a compacted revision fails, json",
        &["get", "k/a", "--rev={REV:start}", "-w", "json"],
        Json,
    )?;
    r.step(
        "get at a future revision fails",
        &["get", "k/a", "--rev=100000"],
        Lines,
    )?;
    r.step(
        "compaction at the compacted revision fails",
        &["compaction", "{REV:after sort}"],
        Lines,
    )?;
    r.step(
        "compaction below the compacted revision fails",
        &["compaction", "{NEXT:start}"],
        Lines,
    )?;
    r.step(
        "compaction at a future revision fails",
        &["compaction", "100000"],
        Lines,
    )?;
    r.watch(
        "watch from a compacted revision is canceled, json",
        &[
            "watch",
            "--prefix",
            "--rev={NEXT:start}",
            "k/",
            "-w",
            "json",
        ],
        &[],
        Duration::from_secs(5),
        WatchJson,
    )?;
    r.watch(
        "watch from a compacted revision is canceled",
        &["watch", "--rev={NEXT:start}", "k/a"],
        &[],
        Duration::from_secs(5),
        Lines,
    )?;
    r.step(
        "compaction --physical",
        &["compaction", "--physical", "{REV:before compaction}"],
        Lines,
    )?;
    r.step(
        "get after physical compaction, json",
        &["get", "", "--from-key", "-w", "json"],
        Json,
    )?;
    r.step(
        "get at the new compacted revision",
        &["get", "k/a", "--rev={REV:before compaction}", "-w", "json"],
        Json,
    )?;
    r.step(
        "get below the new compacted revision fails",
        &["get", "k/a", "--rev={REV:after sort}"],
        Lines,
    )?;

    // --- cluster ---
    r.step("member list", &["member", "list"], MemberList)?;
    r.step(
        "member list, json",
        &["member", "list", "-w", "json"],
        MemberListJson,
    )?;
    r.step("endpoint status", &["endpoint", "status"], EndpointStatus)?;
    r.step(
        "endpoint status, json",
        &["endpoint", "status", "-w", "json"],
        EndpointStatusJson,
    )?;
    r.step(
        "endpoint status --cluster, json",
        &["endpoint", "status", "--cluster", "-w", "json"],
        EndpointStatusJson,
    )?;
    r.step_without_scheme(
        "endpoint status, json, endpoints without scheme",
        &["endpoint", "status", "-w", "json"],
        EndpointStatusJson,
    )?;
    r.step_without_scheme(
        "endpoint hashkv, endpoints without scheme",
        &["endpoint", "hashkv", "-w", "json"],
        HashKvJson,
    )?;
    r.step("endpoint health", &["endpoint", "health"], EndpointHealth)?;
    r.step(
        "endpoint health, json",
        &["endpoint", "health", "-w", "json"],
        EndpointHealthJson,
    )?;
    r.step(
        "endpoint health --cluster, json",
        &["endpoint", "health", "--cluster", "-w", "json"],
        EndpointHealthJson,
    )?;
    r.header_consistency();
    Ok(r.outcomes)
}

fn outcome<'o>(outcomes: &'o [Outcome], step: &str) -> &'o Outcome {
    outcomes
        .iter()
        .find(|o| o.step == step)
        .unwrap_or_else(|| panic!("script has no step {step:?}"))
}

/// The control must show the behaviour the script is meant to exercise; otherwise an equal
/// result on keel would prove little.
fn check_control(etcd: &[Outcome]) {
    let start = outcome(etcd, "revision mark start");
    assert_eq!(
        start.stdout.pointer("/header/revision"),
        Some(&json!(4)),
        "three readiness puts after revision 1"
    );
    let ok = |step: &str| {
        let o = outcome(etcd, step);
        assert_eq!(o.status, "0", "control step {step:?} failed: {o:#?}");
        o
    };
    let failed = |step: &str, text: &str| {
        let o = outcome(etcd, step);
        assert_ne!(o.status, "0", "control step {step:?} should fail: {o:#?}");
        assert!(
            o.stderr.iter().any(|l| l.contains(text)),
            "control step {step:?} should say {text:?}: {o:#?}"
        );
    };
    let keys = |o: &Outcome| -> Vec<String> {
        o.stdout["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| kv["key"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // base64 of s/a .. s/e
    let (a, b, c, d, e) = ("cy9h", "cy9i", "cy9j", "cy9k", "cy9l");
    assert_eq!(
        keys(ok("get --sort-by=VERSION --order=ASCEND, json")),
        [c, e, b, d, a]
    );
    assert_eq!(
        keys(ok("get --sort-by=CREATE --order=DESCEND, json")),
        [d, b, e, a, c]
    );
    assert_eq!(
        keys(ok("get --sort-by=MODIFY --order=ASCEND, json")),
        [c, a, d, b, e]
    );
    assert_eq!(
        keys(ok("get --sort-by=VALUE --order=ASCEND, json")),
        [d, b, e, a, c]
    );
    assert_eq!(
        keys(ok("get --sort-by=KEY --order=DESCEND, json")),
        [e, d, c, b, a]
    );
    assert_eq!(
        ok("get --prefix --limit=2, json").stdout["more"],
        json!(true)
    );
    assert_eq!(
        ok("txn mod > 0 takes the success branch").stdout[0],
        json!("SUCCESS")
    );
    assert_eq!(
        ok("txn mod = 0 takes the failure branch, json").stdout["succeeded"],
        json!(null)
    );
    assert!(ok("lease timetolive --keys").stdout[0]
        .as_str()
        .is_some_and(|l| l.contains("remaining(<ttl>s)")));
    assert!(ok("lease list").stdout.to_string().contains("LEASE2"));
    let watched = ok_or_killed(
        etcd,
        "watch --prefix --rev --prev-kv, json, history then a live put",
    );
    let events = watched.stdout["events"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(
        events >= 8,
        "watch should replay history and see the live put: {watched:#?}"
    );
    assert!(
        watched.stdout.to_string().contains("prev_kv"),
        "watch --prev-kv shows previous values: {watched:#?}"
    );
    failed(
        "get at a compacted revision fails",
        "required revision has been compacted",
    );
    failed(
        "get at a future revision fails",
        "required revision is a future revision",
    );
    failed(
        "lease revoke of a revoked lease",
        "requested lease not found",
    );
    let canceled = outcome(etcd, "watch from a compacted revision is canceled, json");
    assert_ne!(
        canceled.status, "killed",
        "etcdctl exits when the watch is canceled: {canceled:#?}"
    );
    assert_eq!(
        ok("member list, json").stdout["members"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let health = ok("endpoint health, json");
    assert!(
        health
            .stdout
            .as_array()
            .is_some_and(|h| h.len() == 3 && h.iter().all(|e| e["health"] == json!(true))),
        "{health:#?}"
    );
    let status = ok("endpoint status, json");
    assert!(
        status
            .stdout
            .to_string()
            .contains("<leader, same on all, one of them>"),
        "{status:#?}"
    );
    let consistency = ok("header IDs are consistent");
    assert_eq!(
        consistency.stdout,
        json!({
            "distinct cluster ids in headers": 1,
            "listed members": 3,
            "header member ids all listed": true,
            "header member ids never zero": true,
        })
    );
}

fn ok_or_killed<'o>(outcomes: &'o [Outcome], step: &str) -> &'o Outcome {
    let o = outcome(outcomes, step);
    assert!(
        o.status == "0" || o.status == "killed",
        "control step {step:?} failed: {o:#?}"
    );
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_script_gives_the_same_results_on_keel_as_on_etcd() -> Result<()> {
    let etcd = run_on(Flavor::Etcd, run_script).await?;
    check_control(&etcd);
    let keel = run_on(Flavor::KeelStore, run_script).await?;
    let diffs = differences(&etcd, &keel);
    assert!(
        diffs.is_empty(),
        "keel differs from etcd in {} of {} etcdctl steps:\n\n{}",
        diffs.len(),
        etcd.len(),
        diffs.join("\n")
    );
    Ok(())
}
