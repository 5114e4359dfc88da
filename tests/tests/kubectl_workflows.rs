//! kubectl workflows against a 3-master keel with the real kubectl: typed `create` commands
//! (sent as protobuf), namespaces created and deleted, get across namespaces and wide, watch,
//! describe with events, edit through $EDITOR, delete with each cascade policy, the API part
//! of rollout history/pause/resume/undo/status, and explain.
//!
//! The cluster runs without the Deployment controller: the rollout part writes ReplicaSets and
//! Deployment status by hand to pin down exactly what kubectl reads, which a running
//! controller would overwrite. The controller itself, with kubectl's rollout commands, is
//! tested in `deployment.rs`.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keel_tests::kubectl::Kubectl;
use keel_tests::{Cluster, Flavor};

const NODE: &str = r#"{"apiVersion": "v1", "kind": "Node",
  "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}}}"#;

fn typed_creates_and_namespace_lifecycle(k: &Kubectl) {
    assert_eq!(
        k.ok(&["create", "namespace", "team-x"]).trim(),
        "namespace/team-x created"
    );
    k.ok(&[
        "create",
        "configmap",
        "c",
        "--from-literal=a=b",
        "-n",
        "team-x",
    ]);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=password=hunter2",
        "-n",
        "team-x",
    ]);
    k.ok(&[
        "create",
        "deployment",
        "d",
        "--image=busybox:1.36",
        "--replicas=0",
        "-n",
        "team-x",
    ]);
    let cm = k.json(&["get", "cm", "c", "-n", "team-x"]);
    assert_eq!(cm["data"]["a"], "b");
    let secret = k.json(&["get", "secret", "s", "-n", "team-x"]);
    assert_eq!(secret["data"]["password"], "aHVudGVyMg==", "{secret}");
    let deploy = k.json(&[
        "get",
        "deploy",
        "d",
        "-n",
        "team-x",
        "--show-managed-fields",
    ]);
    assert_eq!(deploy["spec"]["replicas"], 0, "an explicit zero is kept");
    assert_eq!(
        deploy["metadata"]["managedFields"][0]["manager"], "kubectl-create",
        "{deploy}"
    );

    let deleted = k.ok(&["delete", "namespace", "team-x", "--timeout=60s"]);
    assert_eq!(deleted.trim(), "namespace \"team-x\" deleted");
    let gone = k.fails(&["get", "namespace", "team-x"]);
    assert!(gone.contains("NotFound"), "{gone}");
    let cms = k.fails(&["create", "configmap", "late", "-n", "team-x"]);
    assert!(cms.contains("namespaces \"team-x\" not found"), "{cms}");
}

fn get_nodes_pods_and_wide(k: &Kubectl) {
    k.ok(&["create", "-f", &k.manifest("node.json", NODE)]);
    k.ok(&[
        "patch",
        "node",
        "node-a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.7"}]}}"#,
    ]);
    let nodes = k.ok(&["get", "nodes"]);
    assert!(nodes.starts_with("NAME"), "{nodes}");
    assert!(nodes.contains("node-a"), "{nodes}");
    let wide = k.ok(&["get", "nodes", "-o", "wide"]);
    assert!(
        wide.contains("INTERNAL-IP") && wide.contains("10.0.0.7"),
        "{wide}"
    );

    k.ok(&["create", "namespace", "apps"]);
    k.ok(&["run", "p1", "--image=busybox:1.36", "-n", "apps"]);
    k.ok(&["run", "p2", "--image=busybox:1.36", "-n", "default"]);
    let all = k.ok(&["get", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("apps") && l.contains("p1")),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.starts_with("default") && l.contains("p2")),
        "{all}"
    );
    let wide = k.ok(&["get", "pods", "-n", "apps", "-o", "wide"]);
    let header = wide.lines().next().unwrap_or_default();
    for column in ["NAME", "READY", "STATUS", "IP", "NODE", "NOMINATED NODE"] {
        assert!(header.contains(column), "{column} missing: {header}");
    }
}

fn watch_sees_a_change_arrive(k: &Kubectl) {
    k.ok(&[
        "create",
        "configmap",
        "watched",
        "--from-literal=a=1",
        "-n",
        "apps",
    ]);
    let mut cmd = k.command(&[
        "get",
        "cm",
        "watched",
        "-n",
        "apps",
        "-w",
        "--output-watch-events",
    ]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("kubectl -w starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert!(first.starts_with("EVENT"), "{first}");
    let added = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert!(
        added.starts_with("ADDED") && added.contains("watched"),
        "{added}"
    );
    k.ok(&["label", "cm", "watched", "-n", "apps", "changed=yes"]);
    let modified = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    assert!(
        modified.starts_with("MODIFIED") && modified.contains("watched"),
        "{modified}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
}

fn describe_shows_the_pods_events(k: &Kubectl) {
    let uid = k.ok(&[
        "get",
        "pod",
        "p1",
        "-n",
        "apps",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let event = format!(
        r#"{{"apiVersion": "v1", "kind": "Event",
  "metadata": {{"name": "p1.scheduled", "namespace": "apps"}},
  "involvedObject": {{"apiVersion": "v1", "kind": "Pod", "name": "p1", "namespace": "apps", "uid": "{uid}"}},
  "reason": "Scheduled", "message": "Successfully assigned apps/p1 to node-a", "type": "Normal",
  "count": 1, "source": {{"component": "keel-scheduler"}},
  "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}}"#
    );
    k.ok(&["create", "-f", &k.manifest("event.json", &event)]);
    let described = k.ok(&["describe", "pod", "p1", "-n", "apps"]);
    // kubectl pads the labels to the longest one shown (here "Service Account:").
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("Name:") && l.split_whitespace().nth(1) == Some("p1")),
        "{described}"
    );
    let events = described
        .split("Events:")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(
        events.contains("Scheduled")
            && events.contains("keel-scheduler")
            && events.contains("Successfully assigned apps/p1 to node-a"),
        "{described}"
    );
}

fn edit_through_the_editor(k: &Kubectl) {
    k.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=greeting=hello",
        "-n",
        "apps",
    ]);
    let script = k.manifest(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/greeting: hello/greeting: edited/' \"$1\"\n",
    );
    let chmod = std::process::Command::new("chmod")
        .args(["+x", &script])
        .status();
    assert!(chmod.is_ok_and(|s| s.success()));
    let mut cmd = k.command(&["edit", "cm", "settings", "-n", "apps"]);
    cmd.env("EDITOR", &script);
    let out = k.run_with(cmd);
    assert!(out.ok, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("configmap/settings edited"),
        "{}",
        out.stdout
    );
    let cm = k.json(&["get", "cm", "settings", "-n", "apps"]);
    assert_eq!(cm["data"]["greeting"], "edited");
}

fn delete_with_each_cascade(k: &Kubectl) {
    for name in ["bg", "fg", "orphan"] {
        k.ok(&[
            "create",
            "deployment",
            name,
            "--image=busybox:1.36",
            "-n",
            "apps",
        ]);
        // A dependent of each, holding back its foreground deletion.
        let uid = k.ok(&[
            "get",
            "deploy",
            name,
            "-n",
            "apps",
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let file = k.manifest(&format!("{name}-dependent.json"), &dependent_of(name, &uid));
        k.ok(&["create", "-f", &file]);
    }
    let dependent_gone = |name: &str| {
        let out = k.run(&["get", "cm", &format!("{name}-dependent"), "-n", "apps"]);
        !out.ok && out.stderr.contains("NotFound")
    };

    // Background: the owner goes at once, the garbage collector deletes its dependent after.
    k.ok(&[
        "delete",
        "deploy",
        "bg",
        "-n",
        "apps",
        "--cascade=background",
    ]);
    assert!(k
        .fails(&["get", "deploy", "bg", "-n", "apps"])
        .contains("NotFound"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dependent_gone("bg") {
        assert!(
            Instant::now() < deadline,
            "the dependent outlived its owner"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Foreground: the owner stays (marked, with the finalizer) until its dependent is gone;
    // kubectl waits for it.
    k.ok(&[
        "delete",
        "deploy",
        "fg",
        "-n",
        "apps",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(k
        .fails(&["get", "deploy", "fg", "-n", "apps"])
        .contains("NotFound"));
    assert!(dependent_gone("fg"), "the owner went before its dependent");

    // Orphan: the owner goes once its dependent no longer names it; the dependent stays.
    k.ok(&[
        "delete",
        "deploy",
        "orphan",
        "-n",
        "apps",
        "--cascade=orphan",
        "--timeout=60s",
    ]);
    assert!(k
        .fails(&["get", "deploy", "orphan", "-n", "apps"])
        .contains("NotFound"));
    let orphan = k.json(&["get", "cm", "orphan-dependent", "-n", "apps"]);
    assert!(
        orphan["metadata"]["deletionTimestamp"].is_null(),
        "{orphan}"
    );
    assert!(orphan["metadata"]["ownerReferences"].is_null(), "{orphan}");
}

/// A ConfigMap naming Deployment `owner` (uid `owner_uid`) as its owner, blocking its
/// foreground deletion.
fn dependent_of(owner: &str, owner_uid: &str) -> String {
    format!(
        r#"{{"apiVersion": "v1", "kind": "ConfigMap",
  "metadata": {{"name": "{owner}-dependent", "namespace": "apps",
    "ownerReferences": [{{"apiVersion": "apps/v1", "kind": "Deployment", "name": "{owner}",
      "uid": "{owner_uid}", "blockOwnerDeletion": true}}]}}}}"#
    )
}

/// The ReplicaSet a Deployment controller would have made for revision `revision`.
fn replica_set(revision: u32, image: &str, owner_uid: &str) -> String {
    format!(
        r#"{{"apiVersion": "apps/v1", "kind": "ReplicaSet",
  "metadata": {{"name": "web-r{revision}", "namespace": "apps",
    "labels": {{"app": "web", "pod-template-hash": "h{revision}"}},
    "annotations": {{"deployment.kubernetes.io/revision": "{revision}"}},
    "ownerReferences": [{{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
      "uid": "{owner_uid}", "controller": true, "blockOwnerDeletion": true}}]}},
  "spec": {{"replicas": 0, "selector": {{"matchLabels": {{"app": "web", "pod-template-hash": "h{revision}"}}}},
    "template": {{"metadata": {{"labels": {{"app": "web", "pod-template-hash": "h{revision}"}}}},
      "spec": {{"containers": [{{"name": "busybox", "image": "{image}"}}]}}}}}}}}"#
    )
}

/// The Deployment status a controller writes through the status subresource: `observed`
/// generation seen, and `updated` of the one wanted replica on the new template, available.
fn deployment_status(observed: &str, updated: u32) -> String {
    format!(
        r#"{{"status": {{"observedGeneration": {observed}, "replicas": 1,
  "updatedReplicas": {updated}, "readyReplicas": {updated}, "availableReplicas": {updated},
  "conditions": [
    {{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
      "message": "Deployment has minimum availability.",
      "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}},
    {{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
      "message": "ReplicaSet \"web-r2\" has successfully progressed.",
      "lastUpdateTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}}]}}}}"#
    )
}

fn generation(k: &Kubectl) -> String {
    k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "apps",
        "-o",
        "jsonpath={.metadata.generation}",
    ])
}

fn write_status(k: &Kubectl, status: &str) {
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "apps",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
}

/// `rollout status` reads only the Deployment: it waits while the status is behind the spec
/// and succeeds once the status says the new template is rolled out, written here as the
/// Deployment controller would write it.
fn rollout_status_follows_the_deployment_status(k: &Kubectl) {
    let status = ["rollout", "status", "deploy/web", "-n", "apps"];
    let unobserved = k.run(&[&status[..], &["--timeout=2s"]].concat());
    assert!(!unobserved.ok, "{}", unobserved.stdout);
    assert!(
        unobserved
            .stdout
            .contains("Waiting for deployment spec update to be observed..."),
        "{}",
        unobserved.stdout
    );
    assert!(
        unobserved.stderr.contains("timed out"),
        "{}",
        unobserved.stderr
    );

    let observed = generation(k);
    write_status(k, &deployment_status(&observed, 0));
    assert_eq!(
        generation(k),
        observed,
        "a status write keeps the generation"
    );
    let behind = k.run(&[&status[..], &["--timeout=2s"]].concat());
    assert!(!behind.ok, "{}", behind.stdout);
    assert!(
        behind.stdout.contains(
            "Waiting for deployment \"web\" rollout to finish: 0 out of 1 new replicas have been updated..."
        ),
        "{}",
        behind.stdout
    );

    // A waiting `rollout status` sees the status catch up through its watch.
    let mut cmd = k.command(&[&status[..], &["--timeout=60s"]].concat());
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl rollout status starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    if !first.contains("0 out of 1 new replicas") {
        let _ = child.kill();
    }
    assert!(first.contains("0 out of 1 new replicas"), "{first}");
    write_status(k, &deployment_status(&observed, 1));
    let done = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let exit = child.wait();
    let _ = reader.join();
    assert_eq!(done, "deployment \"web\" successfully rolled out");
    assert!(exit.is_ok_and(|s| s.success()), "{done}");
    let rolled_out = k.ok(&[&status[..], &["--timeout=5s"]].concat());
    assert!(
        rolled_out.contains("successfully rolled out"),
        "{rolled_out}"
    );

    // A new template is a new generation, which the status has not observed yet.
    k.ok(&[
        "set",
        "image",
        "deploy/web",
        "busybox=busybox:1.38",
        "-n",
        "apps",
    ]);
    let next: u64 = generation(k).parse().unwrap_or_default();
    assert_eq!(next, observed.parse::<u64>().unwrap_or_default() + 1);
    let stale = k.run(&[&status[..], &["--timeout=2s"]].concat());
    assert!(!stale.ok, "{}", stale.stdout);
    assert!(
        stale
            .stdout
            .contains("Waiting for deployment spec update to be observed..."),
        "{}",
        stale.stdout
    );
}

/// History, pause, resume and undo are API reads and patches; status is read from the status
/// a controller writes.
fn rollout_api_part(k: &Kubectl) {
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.38",
        "-n",
        "apps",
    ]);
    let uid = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "apps",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    for (revision, image) in [(1, "busybox:1.36"), (2, "busybox:1.37")] {
        let file = k.manifest(
            &format!("rs{revision}.json"),
            &replica_set(revision, image, &uid),
        );
        k.ok(&["create", "-f", &file]);
    }
    // What the controller records on the Deployment; undo's JSON patch replaces it.
    k.ok(&[
        "annotate",
        "deploy",
        "web",
        "-n",
        "apps",
        "deployment.kubernetes.io/revision=3",
    ]);
    let history = k.ok(&["rollout", "history", "deploy/web", "-n", "apps"]);
    assert!(history.contains("REVISION"), "{history}");
    assert!(
        history.lines().any(|l| l.starts_with('1')) && history.lines().any(|l| l.starts_with('2')),
        "{history}"
    );
    let one = k.ok(&[
        "rollout",
        "history",
        "deploy/web",
        "-n",
        "apps",
        "--revision=1",
    ]);
    assert!(one.contains("busybox:1.36"), "{one}");

    k.ok(&["rollout", "pause", "deploy/web", "-n", "apps"]);
    let paused = k.json(&["get", "deploy", "web", "-n", "apps"]);
    assert_eq!(paused["spec"]["paused"], true);
    let refused = k.fails(&["rollout", "undo", "deploy/web", "-n", "apps"]);
    assert!(
        refused.contains("cannot rollback a paused deployment"),
        "{refused}"
    );
    k.ok(&["rollout", "resume", "deploy/web", "-n", "apps"]);
    let resumed = k.json(&["get", "deploy", "web", "-n", "apps"]);
    assert!(resumed["spec"]["paused"].is_null() || resumed["spec"]["paused"] == false);

    let undone = k.ok(&[
        "rollout",
        "undo",
        "deploy/web",
        "-n",
        "apps",
        "--to-revision=2",
    ]);
    assert!(undone.contains("rolled back"), "{undone}");
    let d = k.json(&["get", "deploy", "web", "-n", "apps"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert!(
        d["spec"]["template"]["metadata"]["labels"]
            .get("pod-template-hash")
            .is_none(),
        "undo drops the ReplicaSet's hash label: {d}"
    );
    rollout_status_follows_the_deployment_status(k);
}

fn explain_reads_the_schemas(k: &Kubectl) {
    let containers = k.ok(&["explain", "pod.spec.containers"]);
    assert!(containers.contains("KIND:       Pod"), "{containers}");
    assert!(
        containers.contains("FIELD: containers <[]Container>"),
        "{containers}"
    );
    assert!(
        containers
            .lines()
            .any(|l| l.trim_start().starts_with("name\t<string> -required-")),
        "{containers}"
    );
    assert!(
        containers.contains("ports\t<[]ContainerPort>"),
        "{containers}"
    );
    assert!(
        containers.contains("List of containers belonging to the pod."),
        "descriptions are served: {containers}"
    );
    let strategy = k.ok(&["explain", "deployment.spec.strategy.rollingUpdate"]);
    assert!(strategy.contains("GROUP:      apps"), "{strategy}");
    assert!(strategy.contains("maxSurge\t<IntOrString>"), "{strategy}");
    let unknown = k.fails(&["explain", "pod.spec.bogus"]);
    assert!(
        unknown.contains("field \"bogus\" does not exist"),
        "{unknown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_workflows_work_against_three_masters() -> anyhow::Result<()> {
    let cluster =
        Cluster::start_with(Flavor::Keel, 3, &["--controllers=*,-deployment".into()]).await?;
    let k = Kubectl::for_cluster(&cluster).await?;
    tokio::task::block_in_place(|| {
        typed_creates_and_namespace_lifecycle(&k);
        get_nodes_pods_and_wide(&k);
        watch_sees_a_change_arrive(&k);
        describe_shows_the_pods_events(&k);
        edit_through_the_editor(&k);
        delete_with_each_cascade(&k);
        rollout_api_part(&k);
        explain_reads_the_schemas(&k);
    });
    Ok(())
}
