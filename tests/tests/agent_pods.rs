//! The node agent end to end on a real containerd: pods bound to its node run as real
//! containers, report status as kubelet does (phase, IPs, container states, restart counts,
//! waiting reasons), restart by their policy behind the crash-loop back-off, and are
//! stopped, removed and deleted when they are deleted; a killed agent adopts what it ran,
//! and a rebooted host runs its pods again. Hooks, limits and security contexts are in
//! `agent_lifecycle.rs`.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use keel_agent::cri::{ContainerFilter, PodSandboxFilter};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_client::{Api, Client, DeleteParams};
use keel_tests::agent::AgentNode;
use keel_tests::pods::{
    condition, container, events_about, phase, pod, pod_now, running_id, start, uid_filter,
};
use keel_tests::sim::{until, until_some};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

async fn reasons(client: &Client, pod: &str) -> Vec<String> {
    events_about(client, pod)
        .await
        .into_iter()
        .map(|(reason, _)| reason)
        .collect()
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
