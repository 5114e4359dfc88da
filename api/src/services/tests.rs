//! Service allocation: the plan for each kind of write, and the allocator on the in-memory
//! store (numbers are unique, released on delete and type change, chosen ones checked).

use serde_json::{json, Value};

use super::plan::{carry_over, plan, Plan, Want};
use super::range::{IpRange, PortRange};
use super::*;
use crate::server::{DeleteOptions, WriteOptions};
use crate::storage::memory::MemoryStorage;

fn ranges() -> (IpRange, PortRange) {
    (
        IpRange::parse("10.96.0.0/12").expect("cidr"),
        PortRange::parse("30000-32767").expect("ports"),
    )
}

fn svc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"}, "spec": spec})
}

#[test]
fn a_new_cluster_ip_service_wants_any_ip_and_no_node_port() {
    let (ips, ports) = ranges();
    let new = svc(json!({"type": "ClusterIP", "ports": [{"port": 80}]}));
    let got = plan(Some(&new), None, &ips, &ports).expect("plan");
    assert_eq!(
        got,
        Plan {
            ip: Some(Want::Any),
            ..Plan::default()
        }
    );
}

#[test]
fn headless_and_external_name_services_get_no_ip() {
    let (ips, ports) = ranges();
    for spec in [
        json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
    ] {
        let got = plan(Some(&svc(spec)), None, &ips, &ports).expect("plan");
        assert!(got.is_empty(), "{got:?}");
    }
}

#[test]
fn node_port_services_want_a_port_per_service_port_and_chosen_ones_are_checked() {
    let (ips, ports) = ranges();
    let new = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.20",
        "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}));
    let got = plan(Some(&new), None, &ips, &ports).expect("plan");
    assert_eq!(
        got.ip,
        Some(Want::Chosen("10.96.0.20".parse().expect("ip")))
    );
    assert_eq!(
        got.node_ports,
        vec![(0, Want::Chosen(30080)), (1, Want::Any)]
    );

    let out_of_range = svc(json!({"type": "NodePort", "clusterIP": "10.0.0.1",
        "ports": [{"port": 80, "nodePort": 8080}]}));
    let errors = plan(Some(&out_of_range), None, &ips, &ports).expect_err("out of range");
    let messages: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message_without_field()))
        .collect();
    assert_eq!(
        messages,
        vec![
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.1\"}: failed to allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12",
            "spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
        ]
    );
}

#[test]
fn load_balancers_get_node_ports_unless_told_not_to() {
    let (ips, ports) = ranges();
    let lb = svc(json!({"type": "LoadBalancer", "ports": [{"port": 80}]}));
    assert_eq!(
        plan(Some(&lb), None, &ips, &ports)
            .expect("plan")
            .node_ports
            .len(),
        1
    );
    let without = svc(
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
        "ports": [{"port": 80}]}),
    );
    assert!(plan(Some(&without), None, &ips, &ports)
        .expect("plan")
        .node_ports
        .is_empty());
}

#[test]
fn updates_keep_what_is_held_and_release_what_is_dropped() {
    let (ips, ports) = ranges();
    let old = svc(json!({"type": "NodePort", "clusterIP": "10.96.0.20",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}));
    // The request leaves both numbers out: they are carried over and nothing changes.
    let mut new = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
    carry_over(&mut new, &old);
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.20");
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert!(plan(Some(&new), Some(&old), &ips, &ports)
        .expect("plan")
        .is_empty());
    // Back to ClusterIP: the node port goes, the IP stays.
    let cluster_ip = svc(json!({"type": "ClusterIP", "clusterIP": "10.96.0.20",
        "ports": [{"port": 80}]}));
    let got = plan(Some(&cluster_ip), Some(&old), &ips, &ports).expect("plan");
    assert_eq!(got.release_ports, vec![30080]);
    assert_eq!(got.release_ip, None);
    // To ExternalName: the IP is dropped from the request and released.
    let mut external = svc(
        json!({"type": "ExternalName", "externalName": "x.example.com",
        "clusterIP": "10.96.0.20"}),
    );
    carry_over(&mut external, &old);
    assert!(external["spec"].get("clusterIP").is_none());
    let got = plan(Some(&external), Some(&old), &ips, &ports).expect("plan");
    assert_eq!(got.release_ip, Some("10.96.0.20".parse().expect("ip")));
    // Deleted: everything goes.
    let got = plan(None, Some(&old), &ips, &ports).expect("plan");
    assert_eq!(got.release_ip, Some("10.96.0.20".parse().expect("ip")));
    assert_eq!(got.release_ports, vec![30080]);
}

#[test]
fn a_type_change_drops_what_only_the_old_type_had() {
    let old = svc(
        json!({"type": "NodePort", "clusterIP": "10.96.0.20", "externalTrafficPolicy": "Cluster",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    // `kubectl apply` changing only the type sends the live node port and policy back.
    let mut new = svc(
        json!({"type": "ClusterIP", "clusterIP": "10.96.0.20", "externalTrafficPolicy": "Cluster",
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    carry_over(&mut new, &old);
    assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    assert!(new["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(new["spec"]["clusterIP"], "10.96.0.20");
    // A node port the request changed itself is left for validation to refuse.
    let mut changed = svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30081}]}));
    carry_over(&mut changed, &old);
    assert_eq!(changed["spec"]["ports"][0]["nodePort"], 30081);
}

fn service_info() -> &'static keel_types::ResourceInfo {
    keel_types::kinds::by_kind("v1", "Service").expect("services")
}

async fn api_with(network: &str, node_ports: &str) -> ApiServer<MemoryStorage> {
    let api = ApiServer::new(MemoryStorage::new()).with_service_network(ServiceNetwork {
        ips: IpRange::parse(network).expect("cidr"),
        node_ports: PortRange::parse(node_ports).expect("ports"),
    });
    crate::bootstrap::ensure_namespaces(&api).await;
    api
}

async fn create(
    api: &ApiServer<MemoryStorage>,
    name: &str,
    spec: Value,
) -> Result<Value, ApiError> {
    let mut obj = svc(spec);
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["namespace"] = json!("default");
    api.create(
        service_info(),
        Some("default"),
        obj,
        &WriteOptions::default(),
    )
    .await
    .map(|w| w.object)
}

#[tokio::test]
async fn every_service_gets_its_own_ip_until_the_range_is_full_and_a_delete_frees_one() {
    // A /29 has 6 usable addresses.
    let api = api_with("10.0.0.0/29", "30000-30002").await;
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..6 {
        let obj = create(&api, &format!("s{i}"), json!({"ports": [{"port": 80}]}))
            .await
            .expect("create");
        let ip = obj["spec"]["clusterIP"].as_str().expect("ip").to_string();
        assert_eq!(obj["spec"]["clusterIPs"], json!([ip.clone()]));
        assert_eq!(obj["spec"]["ipFamilies"], json!(["IPv4"]));
        assert!(seen.insert(ip));
    }
    let full = create(&api, "s6", json!({"ports": [{"port": 80}]}))
        .await
        .expect_err("full");
    assert_eq!(full.code(), 500);
    assert_eq!(
        full.to_string(),
        "failed to allocate a serviceIP: range is full"
    );
    api.delete(
        service_info(),
        Some("default"),
        "s2",
        &DeleteOptions::default(),
    )
    .await
    .expect("delete");
    create(&api, "s6", json!({"ports": [{"port": 80}]}))
        .await
        .expect("a freed address is handed out again");
}

#[tokio::test]
async fn a_chosen_ip_or_node_port_in_use_is_refused_as_kubernetes_refuses_it() {
    let api = api_with("10.96.0.0/12", "30000-32767").await;
    create(
        &api,
        "a",
        json!({"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 53, "nodePort": 30053}]}),
    )
    .await
    .expect("create");
    let ip_taken = create(
        &api,
        "b",
        json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}),
    )
    .await
    .expect_err("taken");
    assert_eq!(ip_taken.code(), 422);
    assert_eq!(
        ip_taken.to_string(),
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.96.0.10\"}: failed to allocate IP 10.96.0.10: provided IP is already allocated"
    );
    let port_taken = create(
        &api,
        "c",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30053}]}),
    )
    .await
    .expect_err("taken");
    assert_eq!(
        port_taken.to_string(),
        "Service \"c\" is invalid: spec.ports[0].nodePort: Invalid value: 30053: provided port is already allocated"
    );
    // Nothing was kept of the refused creates: their dynamic picks are free again.
    let ips = api.allocations(super::IP_KEYS).await.expect("ips");
    assert_eq!(ips.len(), 1);
}

#[tokio::test]
async fn an_update_keeps_the_ip_and_a_type_change_releases_node_ports() {
    let api = api_with("10.96.0.0/12", "30000-32767").await;
    let created = create(
        &api,
        "web",
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}),
    )
    .await
    .expect("create");
    let ip = created["spec"]["clusterIP"].clone();
    let node_port = created["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("node port");
    assert!((30000..=32767).contains(&node_port));
    // A replace without the numbers keeps them.
    let mut replaced = svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
    replaced["metadata"]["namespace"] = json!("default");
    let updated = api
        .update(
            service_info(),
            Some("default"),
            "web",
            None,
            replaced,
            &WriteOptions::default(),
        )
        .await
        .expect("update")
        .object;
    assert_eq!(updated["spec"]["clusterIP"], ip);
    assert_eq!(updated["spec"]["ports"][0]["nodePort"], node_port);
    // To ClusterIP: the node port is released.
    let mut cluster_ip =
        svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]}));
    cluster_ip["metadata"]["namespace"] = json!("default");
    api.update(
        service_info(),
        Some("default"),
        "web",
        None,
        cluster_ip,
        &WriteOptions::default(),
    )
    .await
    .expect("to ClusterIP");
    assert!(api
        .allocations(super::PORT_KEYS)
        .await
        .expect("ports")
        .is_empty());
    // Changing the IP is refused.
    let mut moved = svc(json!({"clusterIP": "10.96.0.99", "ports": [{"port": 80}]}));
    moved["metadata"]["namespace"] = json!("default");
    let err = api
        .update(
            service_info(),
            Some("default"),
            "web",
            None,
            moved,
            &WriteOptions::default(),
        )
        .await
        .expect_err("immutable");
    assert_eq!(err.code(), 422, "{err}");
}
