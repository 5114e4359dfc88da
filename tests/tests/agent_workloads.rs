//! Real workloads on a real node agent, driven with kubectl as a user would: a two-container
//! pod serving a ConfigMap over HTTP to its sidecar on localhost, with a Secret in its
//! environment and the downward API; `kubectl logs` (also -f and --previous), `kubectl exec`
//! and `kubectl port-forward` through the API server to the agent; a missing ConfigMap held
//! as CreateContainerConfigError without touching the node's other pods; and a Deployment
//! scheduled onto the agent's node, rolled to a new image with `kubectl rollout status`.
//!
//! Needs root, containerd, runc and the CNI plugins (scripts/install-deps.sh); skips
//! elsewhere, saying why.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::Pod;
use keel_agent::image::{BUSYBOX_IMAGE, BUSYBOX_IMAGE_2};
use keel_client::{Api, Client};
use keel_tests::agent::AgentNode;
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;

const WAIT: Duration = Duration::from_secs(120);

async fn start(index: u32) -> Result<Option<(Cluster, Client, Kubectl, AgentNode)>> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let Some(node) = AgentNode::start(&cluster, "worker-1", index, &[]).await? else {
        return Ok(None);
    };
    Ok(Some((cluster, client, kubectl, node)))
}

fn phase_and_ready(pod: &Pod) -> (String, bool) {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    (status.phase.unwrap_or_default(), ready)
}

async fn until_running_and_ready(pods: &Api<Pod>, name: &str, node: &AgentNode) -> Result<()> {
    until(&format!("{name} runs and is ready"), WAIT, || async {
        pods.get(name)
            .await
            .is_ok_and(|p| phase_and_ready(&p) == ("Running".into(), true))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))
}

/// `kubectl port-forward` to `port` of `pod`; returns the process and the local port. Its
/// output goes on being read: kubectl prints a line per connection, and a closed stdout would
/// kill it (SIGPIPE) at the first one.
fn port_forward(kubectl: &Kubectl, pod: &str, port: u16) -> Result<(std::process::Child, u16)> {
    let mut child = kubectl
        .command(&[
            "port-forward",
            "-v=7",
            &format!("pod/{pod}"),
            &format!(":{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let line = lines.next().context("port-forward printed nothing")??;
    std::thread::spawn(move || lines.for_each(drop));
    let local = line
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .with_context(|| format!("no local port in {line:?}"))?;
    Ok((child, local))
}

/// `child`'s output once it exits, killing it if it runs longer than `limit`.
fn wait_within(child: std::process::Child, limit: Duration) -> Result<std::process::Output> {
    let id = child.id();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(limit) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &id.to_string()])
                .status();
            bail!("still running after {limit:?}")
        }
    }
}

/// The first line `child` writes that contains `text`, waiting at most a minute.
fn first_line_with(child: &mut std::process::Child, text: &str) -> Result<String> {
    let stdout = child.stdout.take().context("stdout")?;
    let (send, receive) = std::sync::mpsc::channel();
    let wanted = text.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains(&wanted) {
                let _ = send.send(line);
                return;
            }
        }
    });
    receive
        .recv_timeout(Duration::from_secs(60))
        .with_context(|| format!("no line with {text:?}"))
}

/// A plain HTTP/1.0 GET of `path` on a local port; the whole reply.
fn http_get(port: u16, path: &str) -> Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_container_pod_serves_its_config_map_and_kubectl_reads_execs_and_forwards(
) -> Result<()> {
    let Some((_cluster, client, kubectl, node)) = start(20).await? else {
        return Ok(());
    };
    let manifest = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: web-content}}
data:
  index.html: "hello from a configmap"
---
apiVersion: v1
kind: Secret
metadata: {{name: api}}
stringData: {{token: s3cret-value}}
---
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 2
  volumes:
    - name: content
      configMap: {{name: web-content}}
    - name: podinfo
      downwardAPI:
        items: [{{path: name, fieldRef: {{fieldPath: metadata.name}}}}]
  containers:
    - name: server
      image: {image}
      command: [sh, -c, 'echo serving; echo token=$API_TOKEN; exec httpd -f -p 8080 -h /www']
      env:
        - name: API_TOKEN
          valueFrom: {{secretKeyRef: {{name: api, key: token}}}}
      ports: [{{containerPort: 8080}}]
      volumeMounts: [{{name: content, mountPath: /www}}]
    - name: fetcher
      image: {image}
      command: [sh, -c, 'while true; do wget -q -O - http://localhost:8080/index.html; echo; echo "me=$(cat /etc/podinfo/name) name=$POD_NAME ip=$POD_IP"; sleep 1; done']
      env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
      volumeMounts: [{{name: podinfo, mountPath: /etc/podinfo}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: crasher}}
spec:
  nodeName: {node}
  containers:
    - name: app
      image: {image}
      command: [sh, -c, 'echo attempt-$(cat /proc/sys/kernel/random/uuid); exit 1']
---
apiVersion: v1
kind: Pod
metadata: {{name: talker}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
    - name: app
      image: {image}
      stdin: true
      command: [sh, -c, 'echo listening; while read line; do echo "got: $line"; done']
---
apiVersion: v1
kind: Pod
metadata: {{name: misconfigured}}
spec:
  nodeName: {node}
  containers:
    - name: app
      image: {image}
      command: [sleep, "3600"]
      env:
        - name: MISSING
          valueFrom: {{configMapKeyRef: {{name: does-not-exist, key: k}}}}
"#,
        node = node.name,
        image = BUSYBOX_IMAGE
    );
    let file = kubectl.manifest("web.yaml", &manifest);
    kubectl.ok(&["apply", "-f", &file]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    until_running_and_ready(&pods, "web", &node).await?;
    let ip = pods
        .get("web")
        .await?
        .status
        .and_then(|s| s.pod_ip)
        .context("pod IP")?;

    // The sidecar fetches the ConfigMap's page over localhost and sees the downward API.
    until("the sidecar has fetched the page", WAIT, || async {
        kubectl
            .run(&["logs", "web", "-c", "fetcher"])
            .stdout
            .contains("hello from a configmap")
    })
    .await?;
    let fetched = kubectl.ok(&["logs", "web", "-c", "fetcher", "--tail", "1"]);
    assert_eq!(fetched.trim(), format!("me=web name=web ip={ip}"));
    let served = kubectl.ok(&["logs", "web", "-c", "server"]);
    assert!(served.contains("token=s3cret-value"), "{served}");

    // exec runs in the container.
    let hostname = kubectl.ok(&["exec", "web", "-c", "server", "--", "cat", "/etc/hostname"]);
    assert_eq!(hostname.trim(), "web");
    let failed = kubectl.run(&["exec", "web", "-c", "server", "--", "sh", "-c", "exit 3"]);
    assert!(!failed.ok, "a failing command fails kubectl exec");

    // kubectl 1.32 asks for WebSocket (v5.channel.k8s.io) first: stdin reaches the command,
    // and its end (v5's close signal) ends the command's input. The same over SPDY, which
    // kubectl falls back to (or is told to use).
    for websockets in ["true", "false"] {
        let mut counting = kubectl
            .command(&[
                "exec", "-i", "web", "-c", "server", "-v=7", "--", "wc", "-c",
            ])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut input = counting.stdin.take().context("stdin")?;
        input.write_all(b"twelve bytes")?;
        drop(input);
        let done = wait_within(counting, Duration::from_secs(60))?;
        let log = String::from_utf8_lossy(&done.stderr).into_owned();
        assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), "12", "{log}");
        if websockets == "true" {
            assert!(
                log.contains("The subprotocol is v5.channel.k8s.io"),
                "WebSocket was used: {log}"
            );
        } else {
            assert!(
                log.contains("X-Stream-Protocol-Version: v4.channel.k8s.io")
                    && !log.contains("Sec-Websocket-Protocol"),
                "SPDY was used: {log}"
            );
        }
    }

    // logs -f follows the container.
    let mut follow = kubectl
        .command(&["logs", "-f", "web", "-c", "fetcher", "--tail", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = follow.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("logs -f printed nothing")??;
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        first.contains("hello from a configmap") || first.contains("me=web"),
        "{first}"
    );

    // port-forward reaches the server.
    let (mut forward, local) = port_forward(&kubectl, "web", 8080)?;
    let reply = http_get(local, "/index.html");
    let _ = forward.kill();
    let mut forward_err = String::new();
    if let Some(mut err) = forward.stderr.take() {
        let _ = err.read_to_string(&mut forward_err);
    }
    let _ = forward.wait();
    let reply = reply.with_context(|| format!("port-forward: {forward_err}"))?;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("hello from a configmap"), "{reply}");
    // kubectl 1.32 tunnels port-forward's SPDY through WebSocket, and the server took it.
    assert!(
        forward_err.contains("SPDY/3.1+portforward.k8s.io")
            && forward_err.contains("101 Switching Protocols"),
        "{forward_err}"
    );

    // attach shows what a running container writes, and -i feeds its stdin.
    let mut watching = kubectl
        .command(&["attach", "web", "-c", "fetcher"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let seen = first_line_with(&mut watching, "me=web");
    let _ = watching.kill();
    let _ = watching.wait();
    seen.context("kubectl attach showed the fetcher's output")?;
    until_running_and_ready(&pods, "talker", &node).await?;
    let mut talking = kubectl
        .command(&["attach", "-i", "talker", "-c", "app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut input = talking.stdin.take().context("stdin")?;
    input.write_all(b"hello through attach\n")?;
    input.flush()?;
    let answer = first_line_with(&mut talking, "got: ");
    let _ = talking.kill();
    let _ = talking.wait();
    assert_eq!(
        answer.context("the attached container answered")?.trim(),
        "got: hello through attach"
    );

    // --previous shows the last instance of a restarted container.
    until("the crashing container has restarted", WAIT, || async {
        pods.get("crasher").await.is_ok_and(|p| {
            p.status
                .and_then(|s| s.container_statuses)
                .and_then(|s| s.into_iter().next())
                .is_some_and(|s| s.restart_count >= 1)
        })
    })
    .await?;
    let previous = kubectl.ok(&["logs", "crasher", "--previous"]);
    assert!(previous.starts_with("attempt-"), "{previous}");

    // A missing ConfigMap holds its pod, and only its pod.
    until(
        "the misconfigured pod reports CreateContainerConfigError",
        WAIT,
        || async {
            pods.get("misconfigured").await.is_ok_and(|p| {
                p.status
                    .and_then(|s| s.container_statuses)
                    .and_then(|s| s.into_iter().next())
                    .and_then(|s| s.state?.waiting?.reason)
                    .as_deref()
                    == Some("CreateContainerConfigError")
            })
        },
    )
    .await?;
    let described = kubectl.ok(&["describe", "pod", "misconfigured"]);
    assert!(
        described.contains("configmap \"does-not-exist\" not found"),
        "{described}"
    );
    let web = pods.get("web").await?;
    assert_eq!(phase_and_ready(&web), ("Running".into(), true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_runs_on_the_agent_and_rolls_to_a_new_image() -> Result<()> {
    let Some((_cluster, client, kubectl, node)) = start(21).await? else {
        return Ok(());
    };
    until("the agent's node is Ready", WAIT, || async {
        kubectl
            .run(&[
                "get",
                "node",
                &node.name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .stdout
            .trim()
            == "True"
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\nagent log:\n{}", node.log()))?;
    let manifest = format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: app}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: app}}}}
  strategy: {{rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: app}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: app
          image: {image}
          command: [sh, -c, 'echo version=${{KEEL_IMAGE_VERSION:-1}}; exec sleep 3600']
          readinessProbe:
            exec: {{command: ['true']}}
            periodSeconds: 1
"#,
        image = BUSYBOX_IMAGE
    );
    let file = kubectl.manifest("app.yaml", &manifest);
    kubectl.ok(&["apply", "-f", &file]);
    let rolled = kubectl.run(&["rollout", "status", "deployment/app", "--timeout=120s"]);
    if !rolled.ok {
        bail!(
            "rollout status failed: {}\n{}\nagent log:\n{}",
            rolled.stdout,
            rolled.stderr,
            node.log()
        );
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let running = |image: &'static str| {
        let pods = pods.clone();
        async move {
            let Ok(list) = pods.list(&Default::default()).await else {
                return 0;
            };
            list.items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| phase_and_ready(p) == ("Running".into(), true))
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .is_some_and(|s| s.containers[0].image.as_deref() == Some(image))
                })
                .count()
        }
    };
    assert_eq!(running(BUSYBOX_IMAGE).await, 3);

    kubectl.ok(&[
        "set",
        "image",
        "deployment/app",
        &format!("app={BUSYBOX_IMAGE_2}"),
    ]);
    let started = Instant::now();
    let rolled = kubectl.run(&["rollout", "status", "deployment/app", "--timeout=180s"]);
    if !rolled.ok {
        bail!(
            "rollout status failed: {}\n{}\nagent log:\n{}",
            rolled.stdout,
            rolled.stderr,
            node.log()
        );
    }
    assert!(
        rolled.stdout.contains("successfully rolled out"),
        "{}",
        rolled.stdout
    );
    until("every replica runs the new image", WAIT, || async {
        running(BUSYBOX_IMAGE_2).await == 3 && running(BUSYBOX_IMAGE).await == 0
    })
    .await?;
    let pod = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.metadata.name)
        .context("a pod")?;
    let logs = kubectl.ok(&["logs", &pod]);
    assert_eq!(logs.trim(), "version=2", "the new image's own environment");
    eprintln!("rolled to the new image in {:?}", started.elapsed());
    Ok(())
}
