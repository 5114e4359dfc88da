//! End to end on a real containerd: a private containerd with locally built images runs a pod
//! sandbox on a CNI bridge and busybox containers in it, driven through the CRI client.
//!
//! Needs root, containerd, runc, ctr, the CNI plugins and busybox-static
//! (`scripts/install-deps.sh`); without them every test says why and skips.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_agent::containerd::Snapshotter;
use keel_agent::cri::{ContainerState, ContainerStatus, PodSandboxState};
use keel_agent::image::{BUSYBOX_IMAGE, PAUSE_IMAGE};
use keel_agent::testing::{container_config, sandbox_config, until, TestNode};
use keel_agent::{Error, RuntimeClient};

async fn status(client: &RuntimeClient, id: &str) -> ContainerStatus {
    client.container_status(id).await.expect("container status")
}

async fn until_state(client: &RuntimeClient, id: &str, state: ContainerState) -> ContainerStatus {
    until(&format!("container {id} to be {state:?}"), || async {
        let status = status(client, id).await;
        (status.state == state as i32).then_some(status)
    })
    .await
}

/// The messages of a CRI log file's lines on `stream`, checking each line's format:
/// `<RFC 3339 time> <stream> <F|P> <message>`.
fn log_messages(path: &Path, stream: &str) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let parts: Vec<&str> = line.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "CRI log line {line:?}");
            let (time, line_stream, tag, message) = (parts[0], parts[1], parts[2], parts[3]);
            assert!(
                time.contains('T') && time.len() > 20,
                "timestamp in {line:?}"
            );
            assert!(
                matches!(line_stream, "stdout" | "stderr"),
                "stream in {line:?}"
            );
            assert!(matches!(tag, "F" | "P"), "tag in {line:?}");
            (line_stream == stream && tag == "F").then(|| message.to_owned())
        })
        .collect()
}

fn in_subnet(ip: Ipv4Addr, subnet: &str) -> bool {
    let network: Ipv4Addr = subnet
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("subnet address");
    ip.octets()[..3] == network.octets()[..3] && ip != network
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_serves_cri_v1_and_holds_the_local_images() {
    // What a host containerd would own; ours must neither create nor remove them.
    let host_paths = ["/run/containerd/containerd.sock", "/var/lib/containerd"];
    let host_before: Vec<bool> = host_paths.iter().map(|p| Path::new(p).exists()).collect();
    let Some(node) = TestNode::start(0).await else {
        return;
    };
    let version = node.client.version().await.expect("version");
    assert_eq!(version.runtime_name, "containerd");
    assert!(
        version.runtime_version.starts_with("1.6.") || version.runtime_version.starts_with("v1.6."),
        "{version:?}"
    );
    assert_eq!(version.runtime_api_version, "v1");

    let busybox = node
        .client
        .image_status(BUSYBOX_IMAGE)
        .await
        .expect("image status");
    let busybox = busybox.expect("the busybox image is present");
    assert!(
        busybox.repo_tags.contains(&BUSYBOX_IMAGE.to_owned()),
        "{busybox:?}"
    );
    assert!(busybox.id.starts_with("sha256:"), "{busybox:?}");
    let pause = node
        .client
        .image_status(PAUSE_IMAGE)
        .await
        .expect("image status");
    assert!(pause.is_some(), "the pause image is present");
    assert_eq!(
        node.client
            .image_status("keel.local/absent:1")
            .await
            .expect("image status"),
        None
    );

    let conditions = node.client.status().await.expect("status");
    let ready: Vec<_> = conditions
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| (c.r#type.as_str(), c.status))
        .collect();
    assert!(ready.contains(&("RuntimeReady", true)), "{ready:?}");
    assert!(ready.contains(&("NetworkReady", true)), "{ready:?}");
    node.stop().await;
    let host_after: Vec<bool> = host_paths.iter().map(|p| Path::new(p).exists()).collect();
    assert_eq!(host_before, host_after, "{host_paths:?}");
}

/// Runs `command` in a new sandbox until it exits; returns its exit code and stdout lines.
async fn run_to_completion(node: &TestNode, pod: &str, command: &[&str]) -> (i32, Vec<String>) {
    let client = &node.client;
    let logs = node.logs(pod);
    let config = sandbox_config(pod, &format!("uid-{pod}"), &logs);
    let sandbox = client
        .run_pod_sandbox(config.clone(), "")
        .await
        .expect("run sandbox");
    let container = client
        .create_container(&sandbox, container_config("main", &logs, command), config)
        .await
        .expect("create");
    client.start_container(&container).await.expect("start");
    let exited = until_state(client, &container, ContainerState::ContainerExited).await;
    let messages = log_messages(&logs.join("main/0.log"), "stdout");
    client
        .stop_pod_sandbox(&sandbox)
        .await
        .expect("stop sandbox");
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    (exited.exit_code, messages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_snapshotter_runs_containers_where_overlayfs_cannot() {
    let Some(node) = TestNode::start_with(3, Snapshotter::Native).await else {
        return;
    };
    let containerd = node.containerd.as_ref().expect("running");
    assert_eq!(containerd.config().snapshotter, Snapshotter::Native);
    let (code, out) =
        run_to_completion(&node, "native", &["sh", "-c", "echo native; ls /bin/nc"]).await;
    assert_eq!(
        (code, out),
        (0, vec!["native".to_owned(), "/bin/nc".to_owned()])
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_dropped_without_stopping_leaves_no_container_running() {
    let Some(mut node) = TestNode::start(4).await else {
        return;
    };
    let marker = format!("keel-drop-marker-{}", std::process::id());
    let logs = node.logs("orphan");
    let config = sandbox_config("orphan", "uid-orphan", &logs);
    let sandbox = node
        .client
        .run_pod_sandbox(config.clone(), "")
        .await
        .expect("run sandbox");
    // The shell stays (a loop, not an exec), so its command line carries the marker.
    let script = format!("echo {marker}; while :; do sleep 1; done");
    let command = ["sh", "-c", script.as_str()];
    let container = node
        .client
        .create_container(&sandbox, container_config("main", &logs, &command), config)
        .await
        .expect("create");
    node.client
        .start_container(&container)
        .await
        .expect("start");
    // Running in CRI's sense may precede runc's exec of the command; the log shows the shell.
    let log = logs.join("main/0.log");
    until("the marker in the log", || async {
        log_messages(&log, "stdout").contains(&marker).then_some(())
    })
    .await;

    let dir = node.dir.path().to_owned();
    let mounted_under = |dir: &Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(dir.to_string_lossy().as_ref()))
            .count()
    };
    let marked = || {
        std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(|e| e.ok())
            .filter(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&marker))
            })
            .count()
    };
    // containerd records each task's shim address in the task's state directory.
    let tasks = dir.join("state/io.containerd.runtime.v2.task/k8s.io");
    let our_shims: Vec<PathBuf> = std::fs::read_dir(&tasks)
        .expect("task state")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("address")).ok())
        .filter_map(|a| a.trim().strip_prefix("unix://").map(PathBuf::from))
        .collect();
    // At least the shell; for a moment its fork for `sleep` carries the same command line.
    assert!(marked() >= 1, "the container's shell runs");
    assert!(mounted_under(&dir) > 0, "the container's rootfs is mounted");
    assert!(
        !our_shims.is_empty() && our_shims.iter().all(|s| s.exists()),
        "{our_shims:?}"
    );

    drop(node.containerd.take());

    assert_eq!(marked(), 0, "no process of the container survives");
    assert_eq!(
        mounted_under(&dir),
        0,
        "nothing stays mounted under {dir:?}"
    );
    let left: Vec<_> = our_shims.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "shim sockets left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_gets_a_pod_ip_and_runs_containers_that_share_its_network() {
    let Some(node) = TestNode::start(1).await else {
        return;
    };
    let client = &node.client;
    let logs = node.logs("web");
    let pod = sandbox_config("web", "uid-web", &logs);

    let sandbox = client
        .run_pod_sandbox(pod.clone(), "")
        .await
        .expect("run sandbox");
    let sandbox_status = client
        .pod_sandbox_status(&sandbox)
        .await
        .expect("sandbox status");
    assert_eq!(sandbox_status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(
        sandbox_status.metadata.map(|m| m.name),
        Some("web".to_owned())
    );
    let ip: Ipv4Addr = sandbox_status
        .network
        .map(|n| n.ip)
        .unwrap_or_default()
        .parse()
        .expect("the sandbox has an IPv4 address");
    assert!(
        in_subnet(ip, &node.network.subnet),
        "{ip} in {}",
        node.network.subnet
    );

    // A long-running container writes to its log in CRI format.
    let hello_config = container_config("hello", &logs, &["sh", "-c", "echo hello; sleep 3600"]);
    let hello = client
        .create_container(&sandbox, hello_config, pod.clone())
        .await
        .expect("create");
    client.start_container(&hello).await.expect("start");
    let running = until_state(client, &hello, ContainerState::ContainerRunning).await;
    assert_eq!(
        running.image.map(|i| i.image).as_deref(),
        Some(BUSYBOX_IMAGE)
    );
    let log_path = PathBuf::from(&running.log_path);
    assert_eq!(log_path, logs.join("hello/0.log"));
    let messages = until("hello in the log", || async {
        let messages = log_messages(&log_path, "stdout");
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(messages, ["hello"]);

    // Two more containers in the same sandbox: one listens, the other reaches it on localhost.
    let server_config = container_config(
        "server",
        &logs,
        &["nc", "-l", "-p", "8080", "-e", "echo", "pong"],
    );
    let server = client
        .create_container(&sandbox, server_config, pod.clone())
        .await
        .expect("create server");
    client.start_container(&server).await.expect("start server");
    let fetch = "until nc 127.0.0.1 8080 </dev/null; do sleep 0.1; done";
    let client_config = container_config("client", &logs, &["sh", "-c", fetch]);
    let fetcher = client
        .create_container(&sandbox, client_config, pod.clone())
        .await
        .expect("create client");
    client
        .start_container(&fetcher)
        .await
        .expect("start client");
    let done = until_state(client, &fetcher, ContainerState::ContainerExited).await;
    assert_eq!(done.exit_code, 0, "{done:?}");
    assert_eq!(log_messages(&logs.join("client/0.log"), "stdout"), ["pong"]);
    let served = until_state(client, &server, ContainerState::ContainerExited).await;
    assert_eq!(served.exit_code, 0, "{served:?}");

    let listed = client.list_containers(None).await.expect("list containers");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|c| c.pod_sandbox_id == sandbox));

    // Stopping gives the container its grace period; PID 1 of its own PID namespace with no
    // handler ignores SIGTERM, so it is killed when the grace period ends.
    client
        .stop_container(&hello, Duration::from_secs(1))
        .await
        .expect("stop");
    let stopped = status(client, &hello).await;
    assert_eq!(stopped.state, ContainerState::ContainerExited as i32);
    assert_eq!(stopped.exit_code, 137, "killed by SIGKILL: {stopped:?}");
    client.remove_container(&hello).await.expect("remove");
    let gone = client.container_status(&hello).await.err();
    assert!(gone.as_ref().is_some_and(Error::is_not_found), "{gone:?}");
    client
        .remove_container(&hello)
        .await
        .expect("removing again is done");

    client
        .stop_pod_sandbox(&sandbox)
        .await
        .expect("stop sandbox");
    let stopped = client
        .pod_sandbox_status(&sandbox)
        .await
        .expect("sandbox status");
    assert_eq!(stopped.state, PodSandboxState::SandboxNotready as i32);
    client
        .remove_pod_sandbox(&sandbox)
        .await
        .expect("remove sandbox");
    assert!(client
        .list_pod_sandboxes(None)
        .await
        .expect("list")
        .is_empty());
    assert!(client.list_containers(None).await.expect("list").is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_from_an_unreachable_registry_fails_with_a_pull_error() {
    let Some(node) = TestNode::start(2).await else {
        return;
    };
    // Nothing listens on port 1 of loopback: the registry refuses at once, so the pull fails
    // well within its deadline rather than running into it.
    let image = "127.0.0.1:1/keel/absent:1";
    let error = node
        .client
        .pull_image(image, None, None, Duration::from_secs(30))
        .await
        .err();
    match &error {
        Some(Error::PullFailed {
            image: failed,
            message,
        }) => {
            assert_eq!(failed, image);
            assert!(message.contains("127.0.0.1:1"), "{message}");
        }
        other => panic!("expected a pull failure, got {other:?}"),
    }
    assert!(!error.is_some_and(|e| e.is_retryable()));
    assert_eq!(
        node.client.image_status(image).await.expect("image status"),
        None
    );
    node.stop().await;
}
