//! The proxy's pure parts: which endpoints each Service port uses, and the ruleset rendered
//! for them.

use std::sync::Arc;

use keel_client::k8s_openapi::api::core::v1::Service;
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::model::{service_ports, Endpoint};
use super::rules::render;

fn service(name: &str, spec: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "shop"}, "spec": spec}),
        )
        .unwrap_or_default(),
    )
}

fn slice(service: &str, endpoints: serde_json::Value) -> Arc<EndpointSlice> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-abc"), "namespace": "shop",
                "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .unwrap_or_else(|_| EndpointSlice {
            address_type: String::new(),
            endpoints: Vec::new(),
            metadata: Default::default(),
            ports: None,
        }),
    )
}

fn endpoint(ip: &str, node: &str, ready: bool, terminating: bool) -> serde_json::Value {
    json!({"addresses": [ip], "nodeName": node,
        "conditions": {"ready": ready, "serving": ready || terminating, "terminating": terminating}})
}

fn web() -> Arc<Service> {
    service(
        "web",
        json!({"type": "NodePort", "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    )
}

fn ep(ip: &str, local: bool) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
        port: 8080,
        local,
    }
}

#[test]
fn ready_endpoints_take_traffic_and_terminating_ones_only_when_none_is_ready() {
    let slices = [slice(
        "web",
        json!([
            endpoint("10.244.1.5", "n1", true, false),
            endpoint("10.244.2.7", "n2", false, false),
            endpoint("10.244.2.8", "n2", false, true),
        ]),
    )];
    let ports = service_ports(&[web()], &slices, "n1");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].id, "shop/web/tcp/80");
    assert_eq!(ports[0].internal, vec![ep("10.244.1.5", true)]);

    let only_terminating = [slice(
        "web",
        json!([
            endpoint("10.244.2.7", "n2", false, false),
            endpoint("10.244.2.8", "n2", false, true),
        ]),
    )];
    let ports = service_ports(&[web()], &only_terminating, "n1");
    assert_eq!(ports[0].internal, vec![ep("10.244.2.8", false)]);
}

#[test]
fn local_traffic_policies_keep_to_this_nodes_endpoints() {
    let svc = service(
        "web",
        json!({"type": "NodePort", "clusterIP": "10.96.0.20", "externalTrafficPolicy": "Local",
            "internalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    );
    let slices = [slice(
        "web",
        json!([
            endpoint("10.244.1.5", "n1", true, false),
            endpoint("10.244.2.7", "n2", true, false),
        ]),
    )];
    let on_n2 = service_ports(std::slice::from_ref(&svc), &slices, "n2");
    assert_eq!(on_n2[0].internal, vec![ep("10.244.2.7", true)]);
    assert_eq!(on_n2[0].external, vec![ep("10.244.2.7", true)]);
    let on_n3 = service_ports(&[svc], &slices, "n3");
    assert!(on_n3[0].internal.is_empty());
    let rules = render(&on_n3);
    assert!(
        rules.contains("elements = { 10.96.0.20 . tcp . 80 }"),
        "a port without endpoints here is rejected:\n{rules}"
    );
}

#[test]
fn headless_and_external_name_services_get_no_rules() {
    let services = [
        service(
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "http", "port": 5432}]}),
        ),
        service(
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ),
    ];
    assert!(service_ports(&services, &[], "n1").is_empty());
}

#[test]
fn the_ruleset_maps_each_service_to_a_chain_choosing_among_its_endpoints() {
    let slices = [slice(
        "web",
        json!([
            endpoint("10.244.1.5", "n1", true, false),
            endpoint("10.244.2.7", "n2", true, false),
        ]),
    )];
    let rules = render(&service_ports(&[web()], &slices, "n1"));
    for expected in [
        "table ip keel-proxy\ndelete table ip keel-proxy\ntable ip keel-proxy {",
        "elements = { 10.96.0.20 . tcp . 80 : goto svc-shop/web/tcp/80 }",
        "elements = { tcp . 30080 : goto ext-shop/web/tcp/80 }",
        "numgen random mod 2 vmap { 0 : goto ep-shop/web/tcp/80__10.244.1.5/8080, 1 : goto ep-shop/web/tcp/80__10.244.2.7/8080 }",
        "ip saddr 10.244.1.5 jump mark-for-masquerade",
        "meta l4proto tcp dnat to 10.244.2.7:8080",
    ] {
        assert!(rules.contains(expected), "missing {expected:?} in\n{rules}");
    }
    // The node port masquerades (externalTrafficPolicy Cluster) and shares the Service chain.
    assert!(rules.contains(
        "chain ext-shop/web/tcp/80 {\n\t\tjump mark-for-masquerade\n\t\tgoto svc-shop/web/tcp/80\n"
    ));
}

#[test]
fn client_ip_affinity_remembers_each_clients_endpoint_for_its_timeout() {
    let svc = service(
        "web",
        json!({"clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    );
    let slices = [slice(
        "web",
        json!([endpoint("10.244.1.5", "n1", true, false)]),
    )];
    let rules = render(&service_ports(&[svc], &slices, "n1"));
    for expected in [
        "set affinity-shop/web/tcp/80__10.244.1.5/8080 {\n\t\ttype ipv4_addr; flags dynamic,timeout; timeout 60s;",
        "ip saddr @affinity-shop/web/tcp/80__10.244.1.5/8080 goto ep-shop/web/tcp/80__10.244.1.5/8080",
        "update @affinity-shop/web/tcp/80__10.244.1.5/8080 { ip saddr }",
    ] {
        assert!(rules.contains(expected), "missing {expected:?} in\n{rules}");
    }
}
