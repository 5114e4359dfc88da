//! Probes against real containers on a private containerd: exec checks through CRI
//! `ExecSync`, and the probe manager following a busybox httpd's readiness as the file it
//! serves comes and goes.
//!
//! Needs root, containerd, runc, the CNI plugins and busybox-static
//! (`scripts/install-deps.sh`); without them every test says why and skips.

use std::time::{Duration, SystemTime};

use keel_agent::cri::ContainerState;
use keel_agent::prober::check::exec;
use keel_agent::prober::{CheckOutcome, ProbeKind, ProbeManager, ProbeResult, ProbeUpdate};
use keel_agent::testing::{container_config, sandbox_config, until, TestNode};
use keel_agent::RuntimeClient;
use keel_client::k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, Pod, PodSpec, PodStatus, Probe,
};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Runs a one-container pod; returns its sandbox, container id and pod IP once it runs.
async fn run_pod(
    client: &RuntimeClient,
    node: &TestNode,
    name: &str,
    uid: &str,
    command: &[&str],
) -> (String, String, String) {
    let logs = node.logs(name);
    let config = sandbox_config(name, uid, &logs);
    let sandbox = client
        .run_pod_sandbox(config.clone(), "")
        .await
        .expect("run sandbox");
    let ip = client
        .pod_sandbox_status(&sandbox)
        .await
        .expect("sandbox status")
        .network
        .map(|n| n.ip)
        .unwrap_or_default();
    let id = client
        .create_container(&sandbox, container_config("main", &logs, command), config)
        .await
        .expect("create");
    client.start_container(&id).await.expect("start");
    until(&format!("{id} to run"), || async {
        let status = client.container_status(&id).await.ok()?;
        (status.state == ContainerState::ContainerRunning as i32).then_some(())
    })
    .await;
    (sandbox, id, ip)
}

fn command(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_checks_succeed_on_exit_0_fail_otherwise_and_fail_on_timeout() {
    let Some(node) = TestNode::start(0).await else {
        return;
    };
    let client = node.client.clone();
    let (sandbox, id, _) = run_pod(&client, &node, "exec", "uid-exec", &["sleep", "3600"]).await;
    let timeout = Duration::from_secs(1);

    let done = client
        .exec_sync(
            &id,
            &command(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            timeout,
        )
        .await
        .expect("exec_sync");
    assert_eq!(done.exit_code, 3);
    assert_eq!(done.stdout, b"out\n");
    assert_eq!(done.stderr, b"err\n");

    assert_eq!(
        exec(&client, &id, &command(&["echo", "healthy"]), timeout).await,
        CheckOutcome::Success("healthy\n".into())
    );
    assert_eq!(
        exec(&client, &id, &command(&["cat", "/tmp/healthy"]), timeout).await,
        CheckOutcome::Failure("cat: can't open '/tmp/healthy': No such file or directory\n".into())
    );
    assert_eq!(
        exec(&client, &id, &command(&["sh", "-c", "exit 1"]), timeout).await,
        CheckOutcome::Failure(String::new())
    );
    assert_eq!(
        exec(&client, &id, &command(&["sleep", "30"]), timeout).await,
        CheckOutcome::Failure("command \"sleep 30\" timed out".into())
    );

    client
        .stop_pod_sandbox(&sandbox)
        .await
        .expect("stop sandbox");
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    node.stop().await;
}

fn web_pod(uid: &str) -> Pod {
    let readiness = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("http".into()),
            path: Some("/index.html".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        ..Probe::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..ContainerPort::default()
                }]),
                readiness_probe: Some(readiness),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: Some(PodStatus::default()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_an_http_server_as_its_file_comes_and_goes() {
    let Some(node) = TestNode::start(1).await else {
        return;
    };
    let client = node.client.clone();
    let uid = "uid-web";
    let serve = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www";
    let (sandbox, id, ip) = run_pod(&client, &node, "web", uid, &["sh", "-c", serve]).await;

    let (manager, mut updates) = ProbeManager::new(client.clone(), None);
    let pod = web_pod(uid);
    manager.add_pod(&pod);
    assert!(manager.has_probes(uid, "main"));
    assert!(!manager.readiness(uid, "main"), "not ready before it runs");
    manager.set_pod_ip(uid, &ip);
    manager.container_started(uid, "main", &id, SystemTime::now());

    let update = |result| ProbeUpdate {
        uid: uid.into(),
        container: "main".into(),
        container_id: id.clone(),
        kind: ProbeKind::Readiness,
        result,
    };
    // Not ready until shown to be, then ready once httpd serves the file.
    assert_eq!(updates.recv().await, Some(update(ProbeResult::Failure)));
    assert_eq!(updates.recv().await, Some(update(ProbeResult::Success)));
    assert!(manager.readiness(uid, "main"));
    assert!(
        manager.started(uid, "main"),
        "no startup probe: started when running"
    );

    let removed = client
        .exec_sync(
            &id,
            &command(&["rm", "/www/index.html"]),
            Duration::from_secs(5),
        )
        .await
        .expect("rm");
    assert_eq!(removed.exit_code, 0);
    assert_eq!(updates.recv().await, Some(update(ProbeResult::Failure)));
    assert!(!manager.readiness(uid, "main"));
    assert_eq!(
        manager.result(uid, "main", ProbeKind::Readiness),
        Some((id.clone(), ProbeResult::Failure))
    );

    manager.remove_pod(uid);
    assert!(!manager.has_probes(uid, "main"));
    manager.shutdown().await;
    client
        .stop_pod_sandbox(&sandbox)
        .await
        .expect("stop sandbox");
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    node.stop().await;
}
