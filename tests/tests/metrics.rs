//! Prometheus metrics and the health check on `--listen-metrics-urls`, under etcd's names.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::{watch_request, PutRequest, WatchCreateRequest, WatchRequest};
use keel_tests::cluster::{connect, free_ports};
use keel_tests::{Cluster, Flavor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/1.1 GET; returns the status code and body.
async fn get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_and_health_follow_the_member() -> Result<()> {
    let port = free_ports(1)?[0];
    let cluster = Cluster::start_with(
        Flavor::KeelStore,
        1,
        &[format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
    )
    .await?;
    let mut kv = cluster.kv(0).await?;
    for n in 0..20 {
        kv.put(PutRequest {
            key: format!("m/{n}").into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        })
        .await?;
    }
    // One watcher open while scraping.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: b"m/".to_vec(),
                range_end: b"m0".to_vec(),
                ..Default::default()
            },
        )),
    })
    .await?;
    let mut watch = WatchClient::new(connect(&cluster.endpoints()[0]).await?)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    watch.message().await?.context("watch created")?;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, page) = get(port, "/metrics").await?;
    assert_eq!(status, 200);
    assert_eq!(value(&page, "etcd_server_has_leader"), Some(1.0), "{page}");
    assert_eq!(value(&page, "etcd_server_is_leader"), Some(1.0));
    assert!(value(&page, "etcd_server_leader_changes_seen_total") >= Some(1.0));
    assert!(value(&page, "etcd_server_proposals_applied_total") >= Some(20.0));
    assert!(value(&page, "etcd_disk_wal_fsync_duration_seconds_count") >= Some(1.0));
    assert!(value(&page, "etcd_disk_backend_commit_duration_seconds_count") >= Some(20.0));
    assert_eq!(value(&page, "etcd_debugging_mvcc_watcher_total"), Some(1.0));
    assert!(value(&page, "etcd_mvcc_db_total_size_in_bytes") > Some(0.0));
    assert!(page.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"));

    let (status, body) = get(port, "/health").await?;
    assert_eq!((status, body.trim()), (200, "{\"health\":\"true\"}"));
    drop(tx);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_managers_work_queues_are_on_the_metrics_page() -> Result<()> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use keel_client::Api;
    use keel_types::k8s_openapi;
    let port = free_ports(1)?[0];
    let cluster = Cluster::start_with(
        Flavor::Keel,
        1,
        &[format!("--listen-metrics-urls=http://127.0.0.1:{port}")],
    )
    .await?;
    let client = cluster.client()?;
    keel_tests::sim::ready(&client).await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client, "default");
    sets.create(&serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}
    }))?)
    .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, page) = get(port, "/metrics").await?;
        assert_eq!(status, 200);
        let reconciled = value(
            &page,
            "workqueue_work_duration_seconds_count{name=\"replicaset\"}",
        )
        .unwrap_or(0.0);
        if reconciled >= 1.0 {
            assert!(
                value(&page, "workqueue_depth{name=\"replicaset\"}").is_some(),
                "{page}"
            );
            assert!(page.contains("# TYPE workqueue_work_duration_seconds histogram"));
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no replicaset reconcile on the metrics page:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
