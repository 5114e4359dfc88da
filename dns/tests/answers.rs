//! The DNS server on real sockets: a zone served on loopback answers A, SRV, PTR, TXT and
//! NXDOMAIN over UDP and TCP as the specification says, a Service created after start is
//! answered once the zone is rebuilt, a name outside the zone is answered by the upstream
//! server (a second instance serving another zone), and an ExternalName Service's answer
//! carries its CNAME and the target's address from upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use keel_dns::{serve, DnsConfig, Zone};
use keel_types::k8s_openapi::api::core::v1::Service;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn service(name: &str, ip: &str) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}))
        .unwrap_or_default(),
    )
}

fn question(name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Message::new();
    message
        .set_id(4242)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(
            Name::from_ascii(name).unwrap_or_default(),
            kind,
        ));
    message.to_vec().unwrap_or_default()
}

async fn ask_udp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    socket
        .send_to(&question(name, kind), server)
        .await
        .expect("send");
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("recv");
    Message::from_vec(&buf[..n]).expect("a DNS message")
}

async fn ask_tcp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let mut stream = tokio::net::TcpStream::connect(server)
        .await
        .expect("connect");
    let bytes = question(name, kind);
    let length = u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes();
    stream.write_all(&length).await.expect("write");
    stream.write_all(&bytes).await.expect("write");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).await.expect("length");
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut reply).await.expect("reply");
    Message::from_vec(&reply).expect("a DNS message")
}

fn addresses(message: &Message) -> Vec<String> {
    message
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

async fn start(
    domain: &str,
    zone: Zone,
    upstream: Vec<SocketAddr>,
) -> (SocketAddr, watch::Sender<Arc<Zone>>, CancellationToken) {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let (tx, rx) = watch::channel(Arc::new(zone));
    let stop = CancellationToken::new();
    let config = DnsConfig {
        listen,
        domain: domain.into(),
        upstream,
    };
    let token = stop.clone();
    tokio::spawn(async move { serve(&config, rx, token).await });
    // Until it answers.
    for _ in 0..50 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let _ = socket
            .send_to(
                &question("dns-version.cluster.local.", RecordType::TXT),
                listen,
            )
            .await;
        let mut buf = [0u8; 512];
        if tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf))
            .await
            .is_ok()
        {
            break;
        }
    }
    (listen, tx, stop)
}

#[tokio::test]
async fn the_zone_is_served_over_udp_and_tcp_and_other_names_go_upstream() {
    let upstream_zone = Zone::build("other.test", &[service("far", "10.0.0.9")], &[]);
    let (upstream, _keep, upstream_stop) = start("other.test", upstream_zone, Vec::new()).await;
    let external = Arc::new(
        serde_json::from_value(json!({"metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "far.shop.svc.other.test"}}))
        .unwrap_or_default(),
    );
    let zone = Zone::build(
        "cluster.local",
        &[service("web", "10.96.0.20"), external],
        &[],
    );
    let (server, zones, stop) = start("cluster.local", zone, vec![upstream]).await;

    let web = ask_udp(server, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(web.response_code(), ResponseCode::NoError);
    assert!(web.authoritative());
    assert_eq!(web.id(), 4242);
    assert_eq!(addresses(&web), vec!["10.96.0.20"]);
    assert_eq!(web.answers()[0].ttl(), 5);

    let over_tcp = ask_tcp(server, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&over_tcp), vec!["10.96.0.20"]);

    let srv = ask_udp(
        server,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    match srv.answers().first().map(|r| r.data()) {
        Some(RData::SRV(record)) => {
            assert_eq!(record.port(), 80);
            assert_eq!(record.target().to_string(), "web.shop.svc.cluster.local.");
        }
        other => panic!("no SRV answer: {other:?}"),
    }
    let ptr = ask_udp(server, "20.0.96.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(ptr.answers().len(), 1);

    let missing = ask_udp(server, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);

    // An ExternalName Service: its CNAME, and the target's address from upstream.
    let ext = ask_udp(server, "ext.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ext.response_code(), ResponseCode::NoError);
    match ext.answers().first().map(|r| r.data()) {
        Some(RData::CNAME(target)) => {
            assert_eq!(target.0.to_string(), "far.shop.svc.other.test.");
        }
        other => panic!("no CNAME first: {other:?}"),
    }
    assert_eq!(addresses(&ext), vec!["10.0.0.9"]);

    // A Service created later is answered once the zone is rebuilt.
    zones.send_replace(Arc::new(Zone::build(
        "cluster.local",
        &[service("web", "10.96.0.20"), service("api", "10.96.0.21")],
        &[],
    )));
    let api = ask_udp(server, "api.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&api), vec!["10.96.0.21"]);

    // Outside the zone: the upstream server's answer.
    let forwarded = ask_udp(server, "dns-version.other.test.", RecordType::TXT).await;
    assert_eq!(forwarded.response_code(), ResponseCode::NoError);
    assert_eq!(forwarded.answers().len(), 1, "{forwarded:?}");
    let nowhere = ask_udp(server, "nothing.other.test.", RecordType::A).await;
    assert_eq!(nowhere.response_code(), ResponseCode::NXDomain);

    stop.cancel();
    upstream_stop.cancel();
}
