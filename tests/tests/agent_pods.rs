//! The node agent end to end on a real containerd: pods bound to its node run as real
//! containers, report status as kubelet does (phase, IPs, container states, restart counts,
//! waiting reasons), restart by their policy behind the crash-loop back-off, and are
//! stopped, removed and deleted when they are deleted; a killed agent adopts what it ran.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Event, Pod};
use keel_agent::cri::{ContainerFilter, PodSandboxFilter};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_client::{Api, Client, DeleteParams, ListParams};
use keel_tests::agent::AgentNode;
use keel_tests::sim::{ready, until, until_some};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

fn pod(name: &str, node: &str, spec: Value) -> Result<Pod> {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]})
}

async fn pod_now(pods: &Api<Pod>, name: &str) -> Option<Pod> {
    pods.get(name).await.ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

async fn reasons(client: &Client, pod: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(pod))
                .filter_map(|e| e.reason)
                .collect()
        })
        .unwrap_or_default()
}

/// A master and one agent; `index` keeps the node's bridge and subnet apart from other
/// tests running at the same time.
async fn start(index: u32) -> Result<Option<(Cluster, Client, AgentNode)>> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let Some(node) = AgentNode::start(&cluster, "agent-a", index, &[]).await? else {
        return Ok(None);
    };
    Ok(Some((cluster, client, node)))
}

fn uid_filter(uid: &str) -> HashMap<String, String> {
    HashMap::from([("io.kubernetes.pod.uid".to_owned(), uid.to_owned())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_runs_as_real_containers_reports_kubelets_status_and_goes_when_deleted(
) -> Result<()> {
    let Some((_cluster, client, node)) = start(11).await? else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let spec = json!({"containers": [
        container("web", "echo serving; exec sleep 3600"),
        container("side", "exec sleep 3600"),
    ], "terminationGracePeriodSeconds": 5});
    pods.create(&pod("web", &node.name, spec)?).await?;
    until("the pod runs and is ready", WAIT, || async {
        pod_now(&pods, "web").await.is_some_and(|p| {
            phase(&p) == "Running" && condition(&p, "Ready").as_deref() == Some("True")
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let running = pods.get("web").await?;
    let status = running.status.clone().unwrap_or_default();
    let ip: std::net::Ipv4Addr = status.pod_ip.clone().unwrap_or_default().parse()?;
    let subnet_prefix: Vec<&str> = node.subnet().split('.').take(3).collect();
    assert_eq!(
        ip.to_string().split('.').take(3).collect::<Vec<_>>(),
        subnet_prefix,
        "the pod's IP {ip} comes from the node's subnet {}",
        node.subnet()
    );
    let statuses = status.container_statuses.clone().unwrap_or_default();
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for s in &statuses {
        assert!(s.ready, "{s:?}");
        assert_eq!(s.restart_count, 0);
        assert!(
            s.state
                .as_ref()
                .and_then(|st| st.running.as_ref())
                .is_some(),
            "{s:?}"
        );
        assert!(
            s.container_id
                .as_deref()
                .unwrap_or_default()
                .starts_with("containerd://"),
            "{s:?}"
        );
        assert!(s.image_id.starts_with("sha256:"), "{s:?}");
    }
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.start_time.is_some());
    let uid = running.metadata.uid.clone().unwrap_or_default();
    let sandboxes = node
        .runtime()
        .list_pod_sandboxes(Some(PodSandboxFilter {
            label_selector: uid_filter(&uid),
            ..Default::default()
        }))
        .await?;
    assert_eq!(sandboxes.len(), 1, "one sandbox per pod");
    let meta = sandboxes[0].metadata.clone().unwrap_or_default();
    assert_eq!(
        (
            meta.name.as_str(),
            meta.namespace.as_str(),
            meta.uid.as_str()
        ),
        ("web", "default", uid.as_str())
    );
    until("the kubelet's events are written", WAIT, || async {
        let seen = reasons(&client, "web").await;
        ["Pulled", "Created", "Started"]
            .iter()
            .all(|r| seen.iter().any(|s| s == r))
    })
    .await?;

    pods.delete("web", &DeleteParams::default()).await?;
    until("the deleted pod is gone from the API", WAIT, || async {
        pod_now(&pods, "web").await.is_none()
    })
    .await?;
    let left = node
        .runtime()
        .list_containers(Some(ContainerFilter {
            label_selector: uid_filter(&uid),
            ..Default::default()
        }))
        .await?;
    assert!(
        left.is_empty(),
        "the pod's containers are removed: {left:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_containers_restart_by_policy_and_finished_pods_reach_their_phase() -> Result<()> {
    let Some((_cluster, client, node)) = start(12).await? else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pod(
        "crashing",
        &node.name,
        json!({"containers": [container("app", "echo dying; exit 3")]}),
    )?)
    .await?;
    pods.create(&pod(
        "job-like",
        &node.name,
        json!({"restartPolicy": "Never",
               "initContainers": [container("prepare", "exit 0")],
               "containers": [container("work", "exit 0")]}),
    )?)
    .await?;
    pods.create(&pod(
        "failing",
        &node.name,
        json!({"restartPolicy": "Never", "containers": [
            container("work", "printf 'disk full' > /dev/termination-log; exit 7"),
            {"name": "logs", "image": BUSYBOX_IMAGE, "terminationMessagePolicy": "FallbackToLogsOnError",
             "command": ["sh", "-c", "echo last words >&2; exit 1"]},
        ]}),
    )?)
    .await?;
    pods.create(&pod(
        "no-image",
        &node.name,
        json!({"containers": [{"name": "app", "image": "keel.local/does-not-exist:1"}]}),
    )?)
    .await?;

    until(
        "the crashing container backs off after restarts",
        WAIT,
        || async {
            let Some(p) = pod_now(&pods, "crashing").await else {
                return false;
            };
            let Some(s) = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|s| s.into_iter().next())
            else {
                return false;
            };
            let waiting = s.state.and_then(|st| st.waiting).and_then(|w| w.reason);
            let last_exit = s.last_state.and_then(|l| l.terminated).map(|t| t.exit_code);
            s.restart_count >= 1
                && waiting.as_deref() == Some("CrashLoopBackOff")
                && last_exit == Some(3)
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let crashing = pods.get("crashing").await?;
    assert_eq!(
        phase(&crashing),
        "Running",
        "restartPolicy Always keeps it Running"
    );
    // The back-off grows: 10 s before the first restart, 20 s before the second.
    let backing_off = |p: Pod| {
        let s = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|s| s.into_iter().next())?;
        let message = s.state?.waiting?.message?;
        Some((s.restart_count, message))
    };
    let (first, _) = until_some("a 10 s back-off", WAIT, || async {
        pod_now(&pods, "crashing")
            .await
            .and_then(backing_off)
            .filter(|(_, m)| m.starts_with("back-off 10s restarting failed container=app"))
    })
    .await?;
    let (second, _) = until_some("a 20 s back-off", WAIT, || async {
        pod_now(&pods, "crashing")
            .await
            .and_then(backing_off)
            .filter(|(_, m)| m.starts_with("back-off 20s restarting failed container=app"))
    })
    .await?;
    assert!(second > first, "restarts {first} then {second}");

    until("the pod with an init container succeeds", WAIT, || async {
        pod_now(&pods, "job-like")
            .await
            .is_some_and(|p| phase(&p) == "Succeeded")
    })
    .await?;
    let done = pods.get("job-like").await?;
    let status = done.status.unwrap_or_default();
    let init = status.init_container_statuses.unwrap_or_default();
    assert_eq!(init.len(), 1);
    assert_eq!(
        init[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(0)
    );
    let work = status.container_statuses.unwrap_or_default();
    let terminated = work[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );

    until("the pod whose container fails fails", WAIT, || async {
        pod_now(&pods, "failing")
            .await
            .is_some_and(|p| phase(&p) == "Failed")
    })
    .await?;
    let failed = pods.get("failing").await?;
    let s = failed
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default();
    let terminated = s[0]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (7, Some("Error"))
    );
    assert_eq!(
        terminated.message.as_deref(),
        Some("disk full"),
        "the termination message file is read"
    );
    let fallback = s[1]
        .state
        .as_ref()
        .and_then(|s| s.terminated.clone())
        .expect("terminated");
    assert_eq!(
        fallback.message.as_deref(),
        Some("last words"),
        "FallbackToLogsOnError takes the log's tail"
    );
    assert_eq!(
        s[0].restart_count, 0,
        "restartPolicy Never does not restart"
    );

    until(
        "the missing image is reported as kubelet reports it",
        WAIT,
        || async {
            let Some(p) = pod_now(&pods, "no-image").await else {
                return false;
            };
            let reason = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|s| s.into_iter().next())
                .and_then(|s| s.state)
                .and_then(|s| s.waiting)
                .and_then(|w| w.reason);
            matches!(reason.as_deref(), Some("ErrImagePull" | "ImagePullBackOff"))
        },
    )
    .await?;
    let seen = reasons(&client, "no-image").await;
    assert!(seen.iter().any(|r| r == "Failed"), "{seen:?}");
    // The node's other pods are unaffected.
    let crashing = pods.get("crashing").await?;
    assert_eq!(phase(&crashing), "Running");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_adopts_its_containers_and_cleans_up_pods_deleted_meanwhile() -> Result<()> {
    let Some((_cluster, client, mut node)) = start(13).await? else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["keep", "drop"] {
        pods.create(&pod(name, &node.name, json!({"containers": [container("app", "exec sleep 3600")], "terminationGracePeriodSeconds": 1}))?)
            .await?;
    }
    until("both pods run", WAIT, || async {
        let mut running = 0;
        for name in ["keep", "drop"] {
            if pod_now(&pods, name)
                .await
                .is_some_and(|p| phase(&p) == "Running")
            {
                running += 1;
            }
        }
        running == 2
    })
    .await?;
    let before = node.runtime().list_containers(None).await?;
    let keep_uid = pods.get("keep").await?.metadata.uid.unwrap_or_default();
    let drop_uid = pods.get("drop").await?.metadata.uid.unwrap_or_default();
    node.kill_agent()?;
    // Deleted for good while no agent runs (as a force delete would).
    pods.delete(
        "drop",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    node.start_agent()?;
    until("the deleted pod's sandbox is removed", WAIT, || async {
        node.runtime()
            .list_pod_sandboxes(Some(PodSandboxFilter {
                label_selector: uid_filter(&drop_uid),
                ..Default::default()
            }))
            .await
            .is_ok_and(|s| s.is_empty())
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    // Give the restarted agent time to sync the surviving pod, then compare.
    until("the surviving pod is synced again", WAIT, || async {
        node.log().matches("agent starting").count() >= 2
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = node
        .runtime()
        .list_containers(Some(ContainerFilter {
            label_selector: uid_filter(&keep_uid),
            ..Default::default()
        }))
        .await?;
    let before_keep: Vec<&String> = before
        .iter()
        .filter(|c| c.labels.get("io.kubernetes.pod.uid") == Some(&keep_uid))
        .map(|c| &c.id)
        .collect();
    let after_ids: Vec<&String> = after.iter().map(|c| &c.id).collect();
    assert_eq!(
        after_ids, before_keep,
        "the same container adopted, none added"
    );
    let keep = pods.get("keep").await?;
    assert_eq!(phase(&keep), "Running");
    Ok(())
}

fn running_id(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container && s.state.as_ref().is_some_and(|st| st.running.is_some()))?
        .container_id
        .as_ref()?
        .strip_prefix("containerd://")
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_restart_unhealthy_containers_and_take_unready_pods_out_of_their_service(
) -> Result<()> {
    let Some((_cluster, client, node)) = start(14).await? else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let exec = |command: &str| json!({"exec": {"command": ["sh", "-c", command]}, "periodSeconds": 1, "failureThreshold": 1});
    pods.create(&pod(
        "unhealthy",
        &node.name,
        json!({"containers": [{
            "name": "app", "image": BUSYBOX_IMAGE,
            "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"],
            "livenessProbe": exec("cat /tmp/healthy"),
        }], "terminationGracePeriodSeconds": 1}),
    )?)
    .await?;
    let mut ready_pod = pod(
        "flip",
        &node.name,
        json!({"containers": [{
            "name": "app", "image": BUSYBOX_IMAGE,
            "command": ["sh", "-c", "touch /tmp/ready; exec sleep 3600"],
            "readinessProbe": exec("cat /tmp/ready"),
        }], "terminationGracePeriodSeconds": 1}),
    )?;
    ready_pod.metadata.labels = Some([("app".to_owned(), "flip".to_owned())].into());
    pods.create(&ready_pod).await?;
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    services
        .create(&serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "flip"},
            "spec": {"selector": {"app": "flip"}, "ports": [{"port": 80}]},
        }))?)
        .await?;

    until(
        "the unhealthy container is restarted and backs off",
        WAIT,
        || async {
            let Some(p) = pod_now(&pods, "unhealthy").await else {
                return false;
            };
            let Some(s) = p
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|s| s.into_iter().next())
            else {
                return false;
            };
            let waiting = s.state.and_then(|st| st.waiting).and_then(|w| w.reason);
            s.restart_count >= 2 && waiting.as_deref() == Some("CrashLoopBackOff")
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let seen = reasons(&client, "unhealthy").await;
    assert!(seen.iter().any(|r| r == "Unhealthy"), "{seen:?}");
    assert!(seen.iter().any(|r| r == "Killing"), "{seen:?}");
    assert!(seen.iter().any(|r| r == "BackOff"), "{seen:?}");

    let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
        Api::namespaced(client.clone(), "default");
    let addresses = |ready: bool| {
        let endpoints = endpoints.clone();
        async move {
            let Ok(e) = endpoints.get("flip").await else {
                return 0;
            };
            e.subsets
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    if ready {
                        s.addresses.as_ref().map_or(0, Vec::len)
                    } else {
                        s.not_ready_addresses.as_ref().map_or(0, Vec::len)
                    }
                })
                .sum::<usize>()
        }
    };
    until(
        "the ready pod is in its Service's endpoints",
        WAIT,
        || async { addresses(true).await == 1 },
    )
    .await?;
    let flip = pods.get("flip").await?;
    let id = running_id(&flip, "app").expect("a running container");
    let removed = node
        .runtime()
        .exec_sync(
            &id,
            &["rm".to_owned(), "/tmp/ready".to_owned()],
            Duration::from_secs(10),
        )
        .await?;
    assert_eq!(removed.exit_code, 0);
    until(
        "the unready pod leaves the ready addresses",
        WAIT,
        || async { addresses(true).await == 0 && addresses(false).await == 1 },
    )
    .await?;
    let flip = pods.get("flip").await?;
    assert_eq!(condition(&flip, "Ready").as_deref(), Some("False"));
    assert_eq!(phase(&flip), "Running", "an unready pod still runs");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_start_and_pre_stop_hooks_run_in_the_container() -> Result<()> {
    let Some((_cluster, client, node)) = start(15).await? else {
        return Ok(());
    };
    let out = node.containerd.dir.path().join("hook-out");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&pod(
        "hooked",
        &node.name,
        json!({"terminationGracePeriodSeconds": 10,
               "volumes": [{"name": "out", "hostPath": {"path": out.display().to_string(), "type": "DirectoryOrCreate"}}],
               "containers": [{
                   "name": "app", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
                   "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                   "lifecycle": {
                       "postStart": {"exec": {"command": ["sh", "-c", "echo started > /out/post-start"]}},
                       "preStop": {"exec": {"command": ["sh", "-c", "echo stopping > /out/pre-stop"]}},
                   },
               }]}),
    )?)
    .await?;
    until("the pod runs", WAIT, || async {
        pod_now(&pods, "hooked")
            .await
            .is_some_and(|p| phase(&p) == "Running")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    assert_eq!(
        std::fs::read_to_string(out.join("post-start"))?.trim(),
        "started"
    );
    assert!(!out.join("pre-stop").exists());
    pods.delete("hooked", &DeleteParams::default()).await?;
    until("the deleted pod is gone", WAIT, || async {
        pod_now(&pods, "hooked").await.is_none()
    })
    .await?;
    assert_eq!(
        std::fs::read_to_string(out.join("pre-stop"))?.trim(),
        "stopping"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_and_sleep_hooks_run_as_kubelet_runs_them() -> Result<()> {
    let Some((_cluster, client, node)) = start(16).await? else {
        return Ok(());
    };
    let out = node.containerd.dir.path().join("http-hooks");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // "web" logs each request it serves to the host; its own postStart waits until it
    // listens, so "app" (started after it, as kubelet starts containers in order) finds it.
    let web = r#"mkdir -p /www && echo ok > /www/index.html
httpd -f -vv -p 8080 -h /www 2>>/out/requests.log & trap 'kill $!; exit 0' TERM; wait"#;
    let app = "trap 'exit 0' TERM; while true; do sleep 0.2; done";
    pods.create(&pod(
        "http-hooked",
        &node.name,
        json!({"terminationGracePeriodSeconds": 20,
               "volumes": [{"name": "out", "hostPath": {"path": out.display().to_string(), "type": "DirectoryOrCreate"}}],
               "containers": [{
                   "name": "web", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", web],
                   "ports": [{"name": "http", "containerPort": 8080}],
                   "volumeMounts": [{"name": "out", "mountPath": "/out"}],
                   "lifecycle": {
                       "postStart": {"exec": {"command": ["sh", "-c",
                           "until wget -q -O /dev/null http://127.0.0.1:8080/; do sleep 0.1; done"]}},
                       "preStop": {"httpGet": {"path": "/pre-stop", "port": "http"}},
                   },
               }, {
                   "name": "app", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", app],
                   "lifecycle": {
                       "postStart": {"httpGet": {"path": "/post-start", "port": 8080}},
                       "preStop": {"sleep": {"seconds": 3}},
                   },
               }]}),
    )?)
    .await?;
    until("the pod runs", WAIT, || async {
        pod_now(&pods, "http-hooked")
            .await
            .is_some_and(|p| phase(&p) == "Running")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let requests = || std::fs::read_to_string(out.join("requests.log")).unwrap_or_default();
    assert!(
        requests().contains("/post-start"),
        "the postStart GET reached the pod: {}",
        requests()
    );
    assert!(!requests().contains("/pre-stop"));
    let app_id = running_id(&pods.get("http-hooked").await?, "app");
    assert!(app_id.is_some(), "app kept running after its hook");

    let deleting = std::time::Instant::now();
    pods.delete("http-hooked", &DeleteParams::default()).await?;
    until("the deleted pod is gone", WAIT, || async {
        pod_now(&pods, "http-hooked").await.is_none()
    })
    .await?;
    let took = deleting.elapsed();
    assert!(
        requests().contains("/pre-stop"),
        "the preStop GET reached the pod: {}",
        requests()
    );
    assert!(
        took >= Duration::from_secs(3),
        "app's 3 s preStop sleep came before its stop (deletion took {took:?})"
    );
    assert!(
        took < Duration::from_secs(15),
        "the containers stopped on SIGTERM after their hooks, not at the grace period's end ({took:?})"
    );

    // A hook whose request cannot be delivered fails the container, as kubelet's does.
    pods.create(&pod(
        "bad-hook",
        &node.name,
        json!({"containers": [{
            "name": "app", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
            "lifecycle": {"postStart": {"httpGet": {"path": "/nothing", "port": 9}}},
        }]}),
    )?)
    .await?;
    until("the failed hook is told", WAIT, || async {
        let events: Api<Event> = Api::namespaced(client.clone(), "default");
        events.list(&ListParams::default()).await.is_ok_and(|list| {
            list.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some("bad-hook")
                    && e.reason.as_deref() == Some("FailedPostStartHook")
                    && e.message.as_deref().is_some_and(|m| {
                        m.starts_with("HTTP lifecycle hook (/nothing) for Container \"app\"")
                    })
            })
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    Ok(())
}

/// What `script` prints run inside container `id`, as `key=value` words.
async fn inside(node: &AgentNode, id: &str, script: &str) -> Result<HashMap<String, String>> {
    let done = node
        .runtime()
        .exec_sync(id, &["sh".into(), "-c".into(), script.into()], WAIT)
        .await?;
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    Ok(out
        .split_whitespace()
        .filter_map(|word| word.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Reads, inside a container, its cgroup limits (cgroup v1 or v2), identity, root file system
/// and capability bounding set.
const SELF_REPORT: &str = r#"
echo uid=$(id -u) gid=$(id -g)
echo memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)
if [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
  echo cpu=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us)/$(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us) shares=$(cat /sys/fs/cgroup/cpu/cpu.shares)
else
  set -- $(cat /sys/fs/cgroup/cpu.max); echo cpu=$1/$2 weight=$(cat /sys/fs/cgroup/cpu.weight)
fi
if touch /written 2>/dev/null; then echo rootfs=rw; else echo rootfs=ro; fi
echo bounding=$(sed -n 's/^CapBnd:\t*//p' /proc/self/status) nnp=$(sed -n 's/^NoNewPrivs:\t*//p' /proc/self/status)
"#;

fn host_bounding_set() -> Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| anyhow::anyhow!("no CapBnd in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_security_context_hold_inside_containers_and_an_oom_kill_reads_oomkilled(
) -> Result<()> {
    let Some((_cluster, client, node)) = start(17).await? else {
        return Ok(());
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sleeper = |security: Value, resources: Value| {
        json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": BUSYBOX_IMAGE, "command": ["sleep", "3600"],
            "securityContext": security, "resources": resources,
        }]})
    };
    pods.create(&pod(
        "limited",
        &node.name,
        sleeper(
            json!({"runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": true,
                   "allowPrivilegeEscalation": false,
                   "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}),
            json!({"requests": {"cpu": "250m", "memory": "32Mi"},
                   "limits": {"cpu": "500m", "memory": "64Mi"}}),
        ),
    )?)
    .await?;
    pods.create(&pod(
        "privileged",
        &node.name,
        sleeper(json!({"privileged": true}), json!({})),
    )?)
    .await?;
    pods.create(&pod("plain", &node.name, sleeper(json!({}), json!({})))?)
        .await?;
    // Killed by the kernel for going over its memory limit: dd's 64 MiB buffer is filled.
    pods.create(&pod(
        "hog",
        &node.name,
        json!({"restartPolicy": "Never", "containers": [{
            "name": "app", "image": BUSYBOX_IMAGE,
            "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"],
            "resources": {"limits": {"memory": "32Mi"}},
        }]}),
    )?)
    .await?;
    let mut ids = HashMap::new();
    for name in ["limited", "privileged", "plain"] {
        let id = until_some(&format!("{name} runs"), WAIT, || async {
            pod_now(&pods, name)
                .await
                .and_then(|p| running_id(&p, "app"))
        })
        .await;
        let id = match id {
            Ok(id) => id,
            Err(e) => anyhow::bail!(
                "{e}\nstatus: {:?}\nagent log:\n{}",
                pod_now(&pods, name).await.and_then(|p| p.status),
                node.log()
            ),
        };
        ids.insert(name, id);
    }

    let limited = inside(&node, &ids["limited"], SELF_REPORT).await?;
    assert_eq!(limited["uid"], "1000", "{limited:?}");
    assert_eq!(limited["gid"], "3000", "{limited:?}");
    assert_eq!(limited["memory"], (64u64 << 20).to_string(), "{limited:?}");
    assert_eq!(
        limited["cpu"], "50000/100000",
        "500m is half of each period"
    );
    match (limited.get("shares"), limited.get("weight")) {
        (Some(shares), _) => assert_eq!(shares, "256", "250m is 256 shares"),
        (None, Some(weight)) => assert_eq!(weight, "10", "256 shares as a cgroup v2 weight"),
        (None, None) => panic!("no cpu weight read: {limited:?}"),
    }
    assert_eq!(limited["rootfs"], "ro", "{limited:?}");
    assert_eq!(
        limited["bounding"], "0000000000000400",
        "only NET_BIND_SERVICE"
    );
    assert_eq!(limited["nnp"], "1", "allowPrivilegeEscalation: false");

    let host = host_bounding_set()?;
    let privileged = inside(&node, &ids["privileged"], SELF_REPORT).await?;
    let plain = inside(&node, &ids["plain"], SELF_REPORT).await?;
    assert_eq!(
        privileged["bounding"], host,
        "a privileged container keeps every capability"
    );
    assert_ne!(
        plain["bounding"], host,
        "a plain one gets the runtime's default set"
    );
    assert_eq!(plain["uid"], "0");
    assert_eq!(plain["rootfs"], "rw");
    assert_eq!(plain["nnp"], "0");

    let hog = until_some("the hog is killed", WAIT, || async {
        pod_now(&pods, "hog").await.filter(|p| phase(p) == "Failed")
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let terminated = hog
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|s| s.first())
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.terminated.clone())
        .ok_or_else(|| anyhow::anyhow!("no terminated state: {:?}", hog.status))?;
    assert_eq!(
        terminated.reason.as_deref(),
        Some("OOMKilled"),
        "{terminated:?}"
    );
    assert_eq!(terminated.exit_code, 137, "{terminated:?}");
    for name in ["limited", "privileged", "plain"] {
        let now = pods.get(name).await?;
        assert_eq!(
            running_id(&now, "app").as_ref(),
            Some(&ids[name]),
            "{name} ran on"
        );
    }
    Ok(())
}

async fn sandboxes(node: &AgentNode, uid: &str) -> Result<Vec<keel_agent::cri::PodSandbox>> {
    Ok(node
        .runtime()
        .list_pod_sandboxes(Some(PodSandboxFilter {
            label_selector: uid_filter(uid),
            ..Default::default()
        }))
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_host_reboot_the_nodes_pods_run_again_and_finished_ones_stay_finished() -> Result<()>
{
    let Some((_cluster, client, mut node)) = start(18).await? else {
        return Ok(());
    };
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    maps.create(&serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "greeting"}, "data": {"text": "hello again"},
    }))?)
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Ready only while both volumes work: the copy in the memory-backed emptyDir (gone with
    // the reboot, so made again) of the ConfigMap's file.
    pods.create(&pod(
        "survivor",
        &node.name,
        json!({"terminationGracePeriodSeconds": 1,
        "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "config", "configMap": {"name": "greeting"}}],
        "containers": [{
            "name": "app", "image": BUSYBOX_IMAGE,
            "command": ["sh", "-c", "cp /config/text /scratch/copy; exec sleep 3600"],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                             {"name": "config", "mountPath": "/config"}],
            "readinessProbe": {"exec": {"command": ["grep", "-q", "hello again", "/scratch/copy"]},
                               "periodSeconds": 1},
        }]}),
    )?)
    .await?;
    pods.create(&pod(
        "finished",
        &node.name,
        json!({"restartPolicy": "Never", "containers": [container("app", "echo done")]}),
    )?)
    .await?;
    let ready_again = |pods: &Api<Pod>| {
        let pods = pods.clone();
        async move {
            pod_now(&pods, "survivor").await.is_some_and(|p| {
                phase(&p) == "Running" && condition(&p, "Ready").as_deref() == Some("True")
            })
        }
    };
    until("the survivor runs and is ready", WAIT, || {
        ready_again(&pods)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    until("the finished pod succeeds", WAIT, || async {
        pod_now(&pods, "finished")
            .await
            .is_some_and(|p| phase(&p) == "Succeeded")
    })
    .await?;
    let survivor_uid = pods.get("survivor").await?.metadata.uid.unwrap_or_default();
    let finished_uid = pods.get("finished").await?.metadata.uid.unwrap_or_default();
    let before: Vec<String> = sandboxes(&node, &survivor_uid)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(before.len(), 1, "{before:?}");
    let finished_containers = node
        .runtime()
        .list_containers(Some(ContainerFilter {
            label_selector: uid_filter(&finished_uid),
            ..Default::default()
        }))
        .await?
        .len();

    node.reboot().await?;
    until(
        "the survivor runs and is ready after the reboot",
        WAIT,
        || async {
            ready_again(&pods).await
                && pod_now(&pods, "survivor").await.is_some_and(|p| {
                    p.status
                        .and_then(|s| s.container_statuses)
                        .and_then(|s| s.into_iter().next())
                        .is_some_and(|s| s.restart_count >= 1)
                })
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let ready: Vec<String> = sandboxes(&node, &survivor_uid)
        .await?
        .into_iter()
        .filter(|s| s.state == keel_agent::cri::PodSandboxState::SandboxReady as i32)
        .map(|s| s.id)
        .collect();
    assert_eq!(ready.len(), 1, "one sandbox runs the pod: {ready:?}");
    assert!(
        !before.contains(&ready[0]),
        "a new sandbox, as after a reboot"
    );
    let finished = pods.get("finished").await?;
    assert_eq!(
        phase(&finished),
        "Succeeded",
        "a finished pod is not run again"
    );
    let now = node
        .runtime()
        .list_containers(Some(ContainerFilter {
            label_selector: uid_filter(&finished_uid),
            ..Default::default()
        }))
        .await?
        .len();
    assert!(
        now <= finished_containers,
        "no container started for the finished pod"
    );
    Ok(())
}
