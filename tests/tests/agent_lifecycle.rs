//! Container lifecycle on a real agent and containerd, as kubelet runs it: postStart and
//! preStop hooks (exec, httpGet and sleep; a failed one reported as kubelet reports it), and
//! what a container sees of its resources and security context from inside (cgroup limits,
//! user and group, read-only root, capabilities, privileged), and an OOM kill reported as
//! OOMKilled.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Event, Pod};
use keel_agent::image::BUSYBOX_IMAGE;
use keel_client::{Api, DeleteParams, ListParams};
use keel_tests::agent::AgentNode;
use keel_tests::pods::{phase, pod, pod_now, running_id, start};
use keel_tests::sim::{until, until_some};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

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
