//! The zone's answers, question by question, as the DNS specification lists them.

use std::sync::Arc;

use keel_types::k8s_openapi::api::core::v1::Service;
use keel_types::k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::zone::{Answer, QueryType, Record, Resolved, Zone, MAX_CNAME_CHAIN};

fn service(namespace: &str, name: &str, spec: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        )
        .unwrap_or_default(),
    )
}

fn slice(
    namespace: &str,
    service: &str,
    endpoints: serde_json::Value,
) -> Option<Arc<EndpointSlice>> {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{service}-x"), "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    }))
    .ok()
    .map(Arc::new)
}

fn zone() -> Zone {
    let services = [
        service(
            "shop",
            "web",
            json!({"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        service(
            "shop",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}),
        ),
        service(
            "shop",
            "payments",
            json!({"type": "ExternalName", "externalName": "pay.example.com."}),
        ),
        service(
            "shop",
            "front",
            json!({"type": "ExternalName", "externalName": "web.shop.svc.cluster.local"}),
        ),
        service(
            "shop",
            "loop-a",
            json!({"type": "ExternalName", "externalName": "loop-b.shop.svc.cluster.local"}),
        ),
        service(
            "shop",
            "loop-b",
            json!({"type": "ExternalName", "externalName": "loop-a.shop.svc.cluster.local"}),
        ),
    ];
    let slices: Vec<_> = slice(
        "shop",
        "db",
        json!([
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.2.6"], "hostname": "db-1", "conditions": {"ready": false}},
            {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
        ]),
    )
    .into_iter()
    .collect();
    Zone::build("cluster.local", &services, &slices)
}

fn a(name: &str, ip: &str) -> Record {
    Record::A(
        name.into(),
        ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
    )
}

#[test]
fn a_cluster_ip_service_has_an_a_record_srv_per_named_port_and_a_ptr() {
    let z = zone();
    assert_eq!(
        z.lookup("web.shop.svc.cluster.local.", QueryType::A),
        Answer::Records(vec![a("web.shop.svc.cluster.local", "10.96.0.20")])
    );
    assert_eq!(
        z.lookup("WEB.Shop.svc.cluster.local", QueryType::A),
        Answer::Records(vec![a("web.shop.svc.cluster.local", "10.96.0.20")]),
        "names are case-insensitive"
    );
    assert_eq!(
        z.lookup("_http._tcp.web.shop.svc.cluster.local", QueryType::Srv),
        Answer::Records(vec![Record::Srv {
            name: "_http._tcp.web.shop.svc.cluster.local".into(),
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.shop.svc.cluster.local".into(),
        }])
    );
    assert_eq!(
        z.lookup("20.0.96.10.in-addr.arpa", QueryType::Ptr),
        Answer::Records(vec![Record::Ptr(
            "20.0.96.10.in-addr.arpa".into(),
            "web.shop.svc.cluster.local".into()
        )])
    );
    assert_eq!(
        z.lookup("web.shop.svc.cluster.local", QueryType::Aaaa),
        Answer::NoData
    );
}

#[test]
fn a_headless_service_answers_with_its_ready_endpoints_and_their_names() {
    let z = zone();
    assert_eq!(
        z.lookup("db.shop.svc.cluster.local", QueryType::A),
        Answer::Records(vec![
            a("db.shop.svc.cluster.local", "10.244.1.5"),
            a("db.shop.svc.cluster.local", "10.244.2.7"),
        ])
    );
    assert_eq!(
        z.lookup("db-0.db.shop.svc.cluster.local", QueryType::A),
        Answer::Records(vec![a("db-0.db.shop.svc.cluster.local", "10.244.1.5")])
    );
    assert_eq!(
        z.lookup("db-1.db.shop.svc.cluster.local", QueryType::A),
        Answer::NxDomain,
        "a not-ready endpoint has no name"
    );
    assert_eq!(
        z.lookup("10-244-2-7.db.shop.svc.cluster.local", QueryType::A),
        Answer::Records(vec![a(
            "10-244-2-7.db.shop.svc.cluster.local",
            "10.244.2.7"
        )])
    );
    let Answer::Records(srv) = z.lookup("_pg._tcp.db.shop.svc.cluster.local", QueryType::Srv)
    else {
        panic!("no SRV for the headless service");
    };
    let targets: Vec<String> = srv
        .iter()
        .filter_map(|r| match r {
            Record::Srv {
                target, port: 5432, ..
            } => Some(target.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        targets,
        vec![
            "10-244-2-7.db.shop.svc.cluster.local",
            "db-0.db.shop.svc.cluster.local"
        ]
    );
}

#[test]
fn external_names_are_cnames_and_the_rest_follows_the_specification() {
    let z = zone();
    assert_eq!(
        z.lookup("payments.shop.svc.cluster.local", QueryType::A),
        Answer::Records(vec![Record::Cname(
            "payments.shop.svc.cluster.local".into(),
            "pay.example.com".into()
        )])
    );
    assert_eq!(
        z.lookup("dns-version.cluster.local", QueryType::Txt),
        Answer::Records(vec![Record::Txt(
            "dns-version.cluster.local".into(),
            "1.0.1".into()
        )])
    );
    assert_eq!(
        z.lookup("shop.svc.cluster.local", QueryType::A),
        Answer::NoData,
        "a namespace with Services exists as a name"
    );
    assert_eq!(
        z.lookup("nope.shop.svc.cluster.local", QueryType::A),
        Answer::NxDomain
    );
    assert_eq!(
        z.lookup("10-244-1-9.shop.pod.cluster.local", QueryType::A),
        Answer::Records(vec![a("10-244-1-9.shop.pod.cluster.local", "10.244.1.9")])
    );
    assert_eq!(z.lookup("example.com", QueryType::A), Answer::Elsewhere);
    assert_eq!(
        z.lookup("1.0.0.10.in-addr.arpa", QueryType::Ptr),
        Answer::Elsewhere
    );
}

#[test]
fn a_cname_into_the_zone_is_followed_and_one_out_of_it_is_left_to_the_upstream() {
    let z = zone();
    assert_eq!(
        z.resolve("front.shop.svc.cluster.local", QueryType::A),
        Resolved {
            answer: Answer::Records(vec![
                Record::Cname(
                    "front.shop.svc.cluster.local".into(),
                    "web.shop.svc.cluster.local".into()
                ),
                a("web.shop.svc.cluster.local", "10.96.0.20"),
            ]),
            external: None,
        }
    );
    let outside = z.resolve("payments.shop.svc.cluster.local", QueryType::A);
    assert_eq!(outside.external.as_deref(), Some("pay.example.com"));
    assert_eq!(
        z.resolve("front.shop.svc.cluster.local", QueryType::Cname)
            .answer,
        z.lookup("front.shop.svc.cluster.local", QueryType::Cname),
        "a question for the CNAME itself gets only the CNAME"
    );
    let Answer::Records(looped) = z
        .resolve("loop-a.shop.svc.cluster.local", QueryType::A)
        .answer
    else {
        panic!("a looping CNAME still answers");
    };
    assert_eq!(looped.len(), 1 + MAX_CNAME_CHAIN, "{looped:?}");
}
