//! The Service proxy's rules under real traffic: a "node" network namespace gets the ruleset
//! rendered for a Service whose endpoint is an HTTP server in a second namespace, joined by a
//! veth pair. From the node, the cluster IP reaches the server; a Service with no endpoint is
//! refused at once (host unreachable) instead of timing out; from the server's namespace, the
//! node port on the node's address reaches the server (DNAT and masquerade on the way back);
//! rendering again and re-applying replaces the rules without breaking anything.
//!
//! Needs root, `ip`, `nft`, `curl` and python3 (for the HTTP server), as the project's
//! scripts install.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_agent::proxy::model::service_ports;
use keel_agent::proxy::nft::Nft;
use keel_agent::proxy::rules::render;
use keel_client::k8s_openapi::api::core::v1::Service;
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

/// Two namespaces joined by veth, removed (with everything in them) when dropped.
struct Net {
    node: String,
    server: String,
    http: Option<Child>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Net {
    fn create() -> Result<Net, String> {
        let tag = format!("{:x}", std::process::id() & 0xffff);
        let net = Net {
            node: format!("kp-node-{tag}"),
            server: format!("kp-srv-{tag}"),
            http: None,
        };
        let (veth_node, veth_server) = (format!("kpn{tag}"), format!("kps{tag}"));
        ip(&["netns", "add", &net.node])?;
        ip(&["netns", "add", &net.server])?;
        ip(&[
            "link",
            "add",
            &veth_node,
            "netns",
            &net.node,
            "type",
            "veth",
            "peer",
            "name",
            &veth_server,
            "netns",
            &net.server,
        ])?;
        for (ns, dev, addr) in [
            (&net.node, &veth_node, "10.200.0.1/24"),
            (&net.server, &veth_server, "10.200.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        // The node routes: cluster IPs are reached through it. On the node itself a route
        // must exist for the first routing decision (a real node's default route).
        ip(&[
            "-n",
            &net.server,
            "route",
            "add",
            "10.96.0.0/12",
            "via",
            "10.200.0.1",
        ])?;
        ip(&[
            "-n",
            &net.node,
            "route",
            "add",
            "default",
            "via",
            "10.200.0.2",
        ])?;
        ip(&[
            "netns",
            "exec",
            &net.node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        Ok(net)
    }

    /// Serves `body` at `/who` on 10.200.0.2:8080 in the server namespace.
    fn serve(&mut self, body: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join("who"), body).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "python3",
                "-m",
                "http.server",
                "8080",
            ])
            .args(["--bind", "10.200.0.2", "--directory"])
            .arg(dir.keep())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the HTTP server: {e}"))?;
        self.http = Some(child);
        Ok(())
    }

    /// `curl` from inside `ns`: the body, or curl's exit code.
    fn curl(&self, ns: &str, url: &str) -> Result<String, i32> {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "5", url])
            .output()
            .map_err(|_| -1)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut child) = self.http.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.node]);
        let _ = ip(&["netns", "del", &self.server]);
    }
}

fn objects() -> (Vec<Arc<Service>>, Vec<Arc<EndpointSlice>>) {
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
    }))
    .unwrap_or_default();
    let empty: Service = serde_json::from_value(json!({
        "metadata": {"name": "empty", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.21",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
    }))
    .unwrap_or_default();
    let slice: Option<EndpointSlice> = serde_json::from_value(json!({
        "metadata": {"name": "web-1", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.200.0.2"], "nodeName": "elsewhere",
            "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .ok();
    (
        vec![Arc::new(web), Arc::new(empty)],
        slice.into_iter().map(Arc::new).collect(),
    )
}

#[tokio::test]
async fn cluster_ips_and_node_ports_reach_the_endpoint_and_empty_services_are_refused() {
    let mut net = Net::create().expect("network namespaces");
    net.serve("server-a").expect("http server");
    let (services, slices) = objects();
    let nft = Nft::in_namespace(&net.node);
    assert!(nft.available().await, "nft runs in the node namespace");
    let document = render(&service_ports(&services, &slices, "node-a"));
    nft.apply(&document).await.expect("ruleset applies");

    // The server may take a moment to listen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let by_cluster_ip = loop {
        match net.curl(&net.node, "http://10.96.0.20/who") {
            Ok(body) => break Ok(body),
            Err(code) if Instant::now() > deadline => break Err(code),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(by_cluster_ip.as_deref(), Ok("server-a"));

    // No endpoint: refused at once (curl exit 7, could not connect), not a 5 s timeout (28).
    let started = Instant::now();
    assert_eq!(net.curl(&net.node, "http://10.96.0.21/who"), Err(7));
    assert!(started.elapsed() < Duration::from_secs(3));

    // The node port, from the server's own namespace: DNATed back to it, and masqueraded so
    // the reply comes back through the node.
    assert_eq!(
        net.curl(&net.server, "http://10.200.0.1:30080/who")
            .as_deref(),
        Ok("server-a")
    );

    // Applying the same document again replaces the table in one transaction.
    nft.apply(&document).await.expect("ruleset applies again");
    assert_eq!(
        net.curl(&net.node, "http://10.96.0.20/who").as_deref(),
        Ok("server-a")
    );
}
