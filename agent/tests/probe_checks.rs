//! The httpGet, tcpSocket and grpc probe checks against real listeners on loopback: what
//! counts as success, and the failure texts kubelet puts into `Unhealthy` Events.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_agent::prober::check::{grpc, http_get, tcp_socket};
use keel_agent::prober::spec::{HttpGet, Scheme};
use keel_agent::prober::{CheckOutcome, ProbeAction};
use keel_client::k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, HTTPHeader, Probe,
};
use keel_client::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TIMEOUT: Duration = Duration::from_secs(1);

/// An HTTP server on loopback answering each request with what `respond` makes of its path;
/// it keeps every request's head.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn serve(respond: fn(&str, u16) -> String) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(head);
                let reply = respond(&path, port);
                if !reply.is_empty() {
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                } else {
                    // Never answer: hold the connection until the client gives up.
                    let _ = stream.read(&mut buffer).await;
                }
            });
        }
    });
    Server { port, requests }
}

fn reply(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        body.len()
    )
}

fn routes(path: &str, port: u16) -> String {
    match path {
        "/healthz" => reply("200 OK", "", "all good"),
        "/broken" => reply("500 Internal Server Error", "", "boom"),
        "/moved" => reply("302 Found", "Location: /healthz\r\n", ""),
        "/elsewhere" => reply(
            "302 Found",
            &format!("Location: http://localhost:{port}/healthz\r\n"),
            "see localhost",
        ),
        "/loop" => reply("302 Found", "Location: /loop\r\n", ""),
        "/hang" => String::new(),
        _ => reply("404 Not Found", "", ""),
    }
}

fn get(port: u16, path: &str) -> HttpGet {
    HttpGet {
        scheme: Scheme::Http,
        host: None,
        port: Ok(port),
        path: path.to_owned(),
        headers: Vec::new(),
    }
}

#[tokio::test]
async fn http_2xx_is_success_with_the_body_as_output() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/healthz"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(outcome, CheckOutcome::Success("all good".into()));
}

#[tokio::test]
async fn http_500_fails_with_kubelets_statuscode_message() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/broken"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failure("HTTP probe failed with statuscode: 500".into())
    );
}

#[tokio::test]
async fn http_to_a_closed_port_fails_with_connection_refused() {
    let port = closed_port().await;
    let outcome = http_get(&get(port, "/healthz"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn http_without_an_answer_within_the_timeout_fails() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/hang"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{}/hang\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            server.port
        ))
    );
}

#[tokio::test]
async fn http_sends_the_probes_headers_and_kubelets_user_agent() {
    let server = serve(routes).await;
    let mut request = get(server.port, "/healthz");
    request.headers = vec![
        ("X-Probe".into(), "one".into()),
        ("Host".into(), "web.example".into()),
    ];
    let outcome = http_get(&request, "127.0.0.1", TIMEOUT).await;
    assert_eq!(
        outcome.result(),
        Some(keel_agent::prober::ProbeResult::Success)
    );
    let requests = server
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let head = requests.first().expect("one request").to_ascii_lowercase();
    assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nuser-agent: kube-probe/1.32\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nx-probe: one\r\n"), "{head}");
    assert!(head.contains("\r\nhost: web.example\r\n"), "{head}");
    assert!(head.contains("\r\naccept: */*\r\n"), "{head}");
}

#[tokio::test]
async fn http_port_may_be_a_named_container_port() {
    let server = serve(routes).await;
    let container = Container {
        name: "web".into(),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: i32::from(server.port),
            ..ContainerPort::default()
        }]),
        ..Container::default()
    };
    let probe = Probe {
        http_get: Some(HTTPGetAction {
            port: IntOrString::String("http".into()),
            path: Some("/healthz".into()),
            http_headers: Some(vec![HTTPHeader {
                name: "X-Named".into(),
                value: "yes".into(),
            }]),
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    };
    let ProbeAction::HttpGet(request) = ProbeAction::of(&probe, &container) else {
        panic!("an httpGet probe");
    };
    assert_eq!(request.port, Ok(server.port));
    let outcome = http_get(&request, "127.0.0.1", TIMEOUT).await;
    assert_eq!(outcome, CheckOutcome::Success("all good".into()));
}

#[tokio::test]
async fn http_redirects_to_the_same_host_are_followed() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/moved"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(outcome, CheckOutcome::Success("all good".into()));
    let requests = server
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .len();
    assert_eq!(requests, 2);
}

#[tokio::test]
async fn http_redirects_to_another_host_are_a_warning_success() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/elsewhere"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(outcome, CheckOutcome::Warning("see localhost".into()));
    assert_eq!(
        outcome.result(),
        Some(keel_agent::prober::ProbeResult::Success)
    );
}

#[tokio::test]
async fn http_redirect_loops_stop_after_ten() {
    let server = serve(routes).await;
    let outcome = http_get(&get(server.port, "/loop"), "127.0.0.1", TIMEOUT).await;
    assert_eq!(
        outcome,
        CheckOutcome::Failure(format!(
            "Get \"http://127.0.0.1:{}/loop\": stopped after 10 redirects",
            server.port
        ))
    );
}

/// A port nothing listens on: bound, then released.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn tcp_connecting_is_success_and_a_closed_port_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    assert_eq!(
        tcp_socket("127.0.0.1", port, TIMEOUT).await,
        CheckOutcome::Success(String::new())
    );
    drop(listener);
    assert_eq!(
        tcp_socket("127.0.0.1", port, TIMEOUT).await,
        CheckOutcome::Failure(format!(
            "dial tcp 127.0.0.1:{port}: connect: connection refused"
        ))
    );
}

#[tokio::test]
async fn grpc_serving_is_success_and_anything_else_fails() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("app", tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("sick", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn({
        let stop = stop.clone();
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.cancelled_owned(),
            )
    });

    assert_eq!(
        grpc("127.0.0.1", port, "app", TIMEOUT).await,
        CheckOutcome::Success("service healthy".into())
    );
    assert_eq!(
        grpc("127.0.0.1", port, "", TIMEOUT).await,
        CheckOutcome::Success("service healthy".into()),
        "the server as a whole"
    );
    assert_eq!(
        grpc("127.0.0.1", port, "sick", TIMEOUT).await,
        CheckOutcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
    );
    let unknown = grpc("127.0.0.1", port, "absent", TIMEOUT).await;
    assert!(
        matches!(&unknown, CheckOutcome::Failure(text) if text.starts_with("error: health rpc probe failed:")),
        "{unknown:?}"
    );
    stop.cancel();
    server.await.expect("server task").expect("server");

    let closed = closed_port().await;
    let refused = grpc("127.0.0.1", closed, "", TIMEOUT).await;
    assert!(
        matches!(&refused, CheckOutcome::Failure(text) if text.contains("connection refused")),
        "{refused:?}"
    );
}
