//! The Service proxy's rules under real traffic: a "node" network namespace gets the ruleset
//! rendered for a Service whose endpoint is an HTTP server in a second namespace, joined by a
//! veth pair. From the node, the cluster IP reaches the server; a Service with no endpoint is
//! refused at once (host unreachable) instead of timing out; from the server's namespace, the
//! node port on the node's address reaches the server (DNAT and masquerade on the way back);
//! rendering again and re-applying replaces the rules without breaking anything.
//!
//! The iptables mode gets the same traffic.
//!
//! Needs root, `ip`, `nft`, `iptables`, `curl` and busybox, as the project's scripts install.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_agent::proxy::bed::{Bed, NODE_ADDRESS, SERVER_ADDRESS};
use keel_agent::proxy::model::service_ports;
use keel_agent::proxy::nft::Nft;
use keel_agent::proxy::rules::{render, render_changes};
use keel_client::k8s_openapi::api::core::v1::Service;
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

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
        "endpoints": [{"addresses": [SERVER_ADDRESS.to_string()], "nodeName": "elsewhere",
            "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .ok();
    (
        vec![Arc::new(web), Arc::new(empty)],
        slice.into_iter().map(Arc::new).collect(),
    )
}

/// What both modes' rules must do for `objects()`: the cluster IP reaches the server; a port
/// without endpoints is refused at once (curl exit 7, could not connect), not a 5 s timeout
/// (28); the node port, from the server's own namespace, is DNATed back to it and masqueraded
/// so the reply comes back through the node.
fn the_services_carry_traffic(net: &Bed) {
    assert_eq!(
        net.curl(&net.node, "http://10.96.0.20/who").as_deref(),
        Ok("server-a")
    );
    let started = Instant::now();
    assert_eq!(net.curl(&net.node, "http://10.96.0.21/who"), Err(7));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        net.curl(&net.server, &format!("http://{NODE_ADDRESS}:30080/who"))
            .as_deref(),
        Ok("server-a")
    );
}

#[tokio::test]
async fn cluster_ips_and_node_ports_reach_the_endpoint_and_empty_services_are_refused() {
    let mut net = Bed::create("kp").expect("network namespaces");
    let files = tempfile::tempdir().expect("a directory to serve");
    std::fs::write(files.path().join("who"), "server-a").expect("a file to serve");
    net.serve(files.path()).expect("http server");
    let (services, slices) = objects();
    let nft = Nft::in_namespace(&net.node);
    assert!(nft.available().await, "nft runs in the node namespace");
    let document = render(&service_ports(&services, &slices, "node-a"));
    nft.apply(&document).await.expect("ruleset applies");

    the_services_carry_traffic(&net);

    // Applying the same document again replaces the table in one transaction.
    nft.apply(&document).await.expect("ruleset applies again");
    assert_eq!(
        net.curl(&net.node, "http://10.96.0.20/who").as_deref(),
        Ok("server-a")
    );

    // Partial syncs: the empty Service gains the endpoint, then web gets a second endpoint
    // (its chain now chooses) and loses it again, then web goes; each change is applied alone.
    let before = service_ports(&services, &slices, "node-a");
    let mut after = before.clone();
    after[0].internal = after[1].internal.clone();
    let change = render_changes(&before, &after).expect("a change");
    nft.apply(&change).await.expect("the change applies");
    assert_eq!(
        net.curl(&net.node, "http://10.96.0.21/who").as_deref(),
        Ok("server-a")
    );
    let mut two = after.clone();
    let mut second = two[1].internal[0].clone();
    second.port += 1;
    two[1].internal.push(second);
    nft.apply(&render_changes(&after, &two).expect("a change"))
        .await
        .expect("a second endpoint applies");
    nft.apply(&render_changes(&two, &after).expect("a change"))
        .await
        .expect("removing it applies");
    assert_eq!(
        net.curl(&net.node, "http://10.96.0.20/who").as_deref(),
        Ok("server-a")
    );
    let without_web: Vec<_> = after
        .iter()
        .filter(|p| !p.id.contains("/web/"))
        .cloned()
        .collect();
    nft.apply(&render_changes(&after, &without_web).expect("a change"))
        .await
        .expect("removing a Service applies");
    assert!(render_changes(&without_web, &without_web).is_none());
    let listed = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.node,
            "nft",
            "list",
            "table",
            "ip",
            "keel-proxy",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(!listed.contains("shop/web"), "{listed}");
    assert!(listed.contains("svc-shop/empty/tcp/80"), "{listed}");
}

/// What an agent restart does to the rules (its first sync writes the whole table again) does
/// not break a connection already open through a cluster IP: its translation lives in
/// conntrack, not in the rules.
#[tokio::test]
async fn an_established_connection_survives_the_table_being_written_again() {
    use std::io::{Read, Write};
    let net = Bed::create("ke").expect("network namespaces");
    net.echo_on(7007).expect("echo server");
    let echo: Service = serde_json::from_value(json!({
        "metadata": {"name": "echo", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.30",
            "ports": [{"name": "echo", "port": 7, "protocol": "TCP"}]},
    }))
    .unwrap_or_default();
    let slice: Option<EndpointSlice> = serde_json::from_value(json!({
        "metadata": {"name": "echo-1", "namespace": "shop",
            "labels": {"kubernetes.io/service-name": "echo"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [SERVER_ADDRESS.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "echo", "port": 7007, "protocol": "TCP"}],
    }))
    .ok();
    let services = vec![Arc::new(echo)];
    let slices: Vec<_> = slice.into_iter().map(Arc::new).collect();
    let nft = Nft::in_namespace(&net.node);
    let document = render(&service_ports(&services, &slices, "node-a"));
    nft.apply(&document).await.expect("ruleset applies");

    let mut stream = net
        .connect_from_node(([10, 96, 0, 30], 7).into())
        .expect("a connection through the cluster IP");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut round_trip = |text: &[u8]| {
        stream.write_all(text).expect("write");
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).expect("the echo");
        back
    };
    assert_eq!(round_trip(b"before"), b"before");
    // The table goes and comes back, as at an agent's first sync after a restart.
    nft.apply(&keel_agent::proxy::rules::remove())
        .await
        .expect("the table goes");
    nft.apply(&document).await.expect("and comes back");
    assert_eq!(round_trip(b"after"), b"after");
}

/// The iptables mode under the same traffic: the cluster IP reaches the endpoint, a Service
/// without endpoints is refused at once, the node port reaches it from the server's side
/// (masqueraded), a second sync changes nothing that works, and a Service that goes takes its
/// chains with it while the jumps into ours stay single.
#[tokio::test]
async fn the_iptables_mode_proxies_the_same_traffic() {
    use keel_agent::proxy::iptables::Iptables;
    let mut net = Bed::create("ki").expect("network namespaces");
    let files = tempfile::tempdir().expect("a directory to serve");
    std::fs::write(files.path().join("who"), "server-a").expect("a file to serve");
    net.serve(files.path()).expect("http server");
    let (services, slices) = objects();
    let tables = Iptables::in_namespace(&net.node);
    assert!(
        tables.available().await,
        "iptables-restore runs in the node namespace"
    );
    let ports = service_ports(&services, &slices, "node-a");
    tables.sync(&ports).await.expect("rules apply");

    the_services_carry_traffic(&net);

    tables.sync(&ports).await.expect("rules apply again");
    let without_web: Vec<_> = ports
        .iter()
        .filter(|p| !p.id.contains("/web/"))
        .cloned()
        .collect();
    tables
        .sync(&without_web)
        .await
        .expect("removing a Service applies");
    let saved = std::process::Command::new("ip")
        .args(["netns", "exec", &net.node, "iptables-save"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(!saved.contains("KEEL-SVC-"), "{saved}");
    assert!(!saved.contains("KEEL-SEP-"), "{saved}");
    assert_eq!(
        saved.matches("-A PREROUTING -j KEEL-SERVICES").count(),
        1,
        "{saved}"
    );
    assert!(saved.contains("--dport 80 -j REJECT"), "{saved}");
}
