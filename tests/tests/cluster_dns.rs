//! The cluster DNS every master serves, on a 3-master keel: the `kube-dns` Service in
//! kube-system at 10.96.0.10 lists each master's DNS; each of them answers, per the
//! Kubernetes DNS specification, for a Service created through kubectl (A, SRV, PTR), a
//! headless Service's endpoints by hostname (`db-0.db.shop.svc.cluster.local`), an
//! ExternalName Service (CNAME), `dns-version`, and NXDOMAIN for a name that does not exist;
//! a deleted Service stops resolving.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Endpoints, Service};
use keel_client::Api;
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::until;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;

const MANIFESTS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  clusterIP: 10.96.5.5
  selector:
    app: web
  ports:
  - name: http
    port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: shop
spec:
  clusterIP: None
  ports:
  - name: pg
    port: 5432
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-1
  namespace: shop
  labels:
    kubernetes.io/service-name: db
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  hostname: db-0
  conditions:
    ready: true
ports:
- name: pg
  port: 5432
  protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: payments
  namespace: shop
spec:
  type: ExternalName
  externalName: pay.example.com
";

async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Result<Message> {
    let mut message = Message::new();
    message
        .set_id(7)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name)?, kind));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&message.to_vec()?, server).await?;
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
        .await
        .context("no DNS answer in 3 s")??;
    Ok(Message::from_vec(&buf[..n])?)
}

fn rdata(message: &Message) -> Vec<String> {
    message
        .answers()
        .iter()
        .map(|r| match r.data() {
            RData::A(a) => a.0.to_string(),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            RData::PTR(p) => format!("PTR {}", p.0),
            RData::SRV(s) => format!("SRV {} {}", s.port(), s.target()),
            RData::TXT(t) => format!("TXT {t}"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_master_answers_for_services_by_name() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let file = k.manifest("shop.yaml", MANIFESTS);
    k.ok(&["apply", "-f", &file]);

    // The kube-dns Service, with each master's DNS behind it.
    let services: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "kube-system");
    let wanted: BTreeSet<String> = cluster
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.dns_port))
        .collect();
    until(
        "kube-dns lists every master",
        Duration::from_secs(60),
        || async {
            let Ok(e) = endpoints.get("kube-dns").await else {
                return false;
            };
            let mut listed = BTreeSet::new();
            for subset in e.subsets.unwrap_or_default() {
                for address in subset.addresses.iter().flatten() {
                    for port in subset.ports.iter().flatten() {
                        listed.insert(format!("{}:{}", address.ip, port.port));
                    }
                }
            }
            listed == wanted
        },
    )
    .await?;
    let kube_dns = services.get("kube-dns").await?.spec.unwrap_or_default();
    assert_eq!(kube_dns.cluster_ip.as_deref(), Some("10.96.0.10"));
    let ports: Vec<(String, i32)> = kube_dns
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| (p.protocol.clone().unwrap_or_default(), p.port))
        .collect();
    assert_eq!(ports, vec![("UDP".into(), 53), ("TCP".into(), 53)]);

    for member in &cluster.members {
        let server: SocketAddr = ([127, 0, 0, 1], member.dns_port).into();
        until(
            &format!("{} answers for everything applied", member.name),
            Duration::from_secs(30),
            // Each object of the apply reaches the master's caches on its own: wait for the
            // last kinds written (the Services and the EndpointSlice) before asking the rest.
            || async {
                let web = ask(server, "web.shop.svc.cluster.local.", RecordType::A).await;
                let db = ask(server, "db-0.db.shop.svc.cluster.local.", RecordType::A).await;
                let payments = ask(
                    server,
                    "payments.shop.svc.cluster.local.",
                    RecordType::CNAME,
                )
                .await;
                web.is_ok_and(|m| rdata(&m) == ["10.96.5.5"])
                    && db.is_ok_and(|m| !rdata(&m).is_empty())
                    && payments.is_ok_and(|m| !rdata(&m).is_empty())
            },
        )
        .await?;
        let srv = ask(
            server,
            "_http._tcp.web.shop.svc.cluster.local.",
            RecordType::SRV,
        )
        .await?;
        assert_eq!(rdata(&srv), ["SRV 80 web.shop.svc.cluster.local."]);
        let ptr = ask(server, "5.5.96.10.in-addr.arpa.", RecordType::PTR).await?;
        assert_eq!(rdata(&ptr), ["PTR web.shop.svc.cluster.local."]);
        let pod = ask(server, "db-0.db.shop.svc.cluster.local.", RecordType::A).await?;
        assert_eq!(rdata(&pod), ["10.244.1.5"]);
        let headless = ask(server, "db.shop.svc.cluster.local.", RecordType::A).await?;
        assert_eq!(rdata(&headless), ["10.244.1.5"]);
        let external = ask(
            server,
            "payments.shop.svc.cluster.local.",
            RecordType::CNAME,
        )
        .await?;
        assert_eq!(rdata(&external), ["CNAME pay.example.com."]);
        let version = ask(server, "dns-version.cluster.local.", RecordType::TXT).await?;
        assert_eq!(rdata(&version), ["TXT 1.0.1"]);
        let api = ask(
            server,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
        )
        .await?;
        assert_eq!(rdata(&api), ["10.96.0.1"]);
        let missing = ask(server, "nope.shop.svc.cluster.local.", RecordType::A).await?;
        assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    }

    // A deleted Service stops resolving.
    k.ok(&["delete", "service", "web", "-n", "shop"]);
    let server: SocketAddr = ([127, 0, 0, 1], cluster.members[0].dns_port).into();
    until("web is gone from DNS", Duration::from_secs(30), || async {
        ask(server, "web.shop.svc.cluster.local.", RecordType::A)
            .await
            .is_ok_and(|m| m.response_code() == ResponseCode::NXDomain)
    })
    .await?;
    Ok(())
}
