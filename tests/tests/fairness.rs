//! The API under overload from one user stays responsive for another: with 500 REST watches
//! open on a namespace holding 3 MB of ConfigMaps and 20 clients listing it in a loop, kubectl
//! still gets its answers quickly, the load's own requests are served in turn or told to retry
//! (429 with Retry-After), and nothing is starved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use http_body_util::BodyExt;
use keel_tests::kubectl::Kubectl;
use keel_tests::rest::{retry_after, Rest};
use keel_tests::{Cluster, Flavor};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CONFIGMAPS: usize = 300;
const CONFIGMAP_BYTES: usize = 10_000;
const WATCHES: usize = 500;
const LISTERS: usize = 20;
const COLLECTION: &str = "/api/v1/namespaces/busy/configmaps";

#[derive(Default)]
struct Counts {
    watches_open: AtomicUsize,
    lists: AtomicUsize,
    refused: AtomicUsize,
    failed: AtomicUsize,
}

/// Keeps one watch of the collection open (from no resourceVersion, so it first receives
/// every object) until `stop`, reopening it when refused or ended.
async fn watcher(rest: Rest, counts: Arc<Counts>, stop: CancellationToken) {
    let path = format!("{COLLECTION}?watch=true");
    while !stop.is_cancelled() {
        let Ok(mut conn) = rest.connect().await else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let response = tokio::select! {
            _ = stop.cancelled() => return,
            r = conn.send("GET", &path, None) => r,
        };
        let Ok(response) = response else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if response.status() == 429 {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(retry_after(&response))).await;
            continue;
        }
        if response.status() != 200 {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.watches_open.fetch_add(1, Ordering::Relaxed);
        let mut body = response.into_body();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                frame = body.frame() => match frame {
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        counts.watches_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lists the whole collection over and over until `stop`.
async fn lister(rest: Rest, counts: Arc<Counts>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let Ok(mut conn) = rest.connect().await else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !stop.is_cancelled() {
            let response = tokio::select! {
                _ = stop.cancelled() => return,
                r = conn.send("GET", COLLECTION, None) => r,
            };
            let Ok(response) = response else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let status = response.status();
            let wait = retry_after(&response);
            let body = tokio::select! {
                _ = stop.cancelled() => return,
                b = response.into_body().collect() => b.map(|b| b.to_bytes().len()),
            };
            match (status.as_u16(), body) {
                (200, Ok(len)) if len > CONFIGMAPS * CONFIGMAP_BYTES => {
                    counts.lists.fetch_add(1, Ordering::Relaxed);
                }
                (429, Ok(_)) => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                _ => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// How long kubectl's namespace list took, as its own request log (`-v=6`) reports it: the
/// whole request, connection and TLS handshake included (each kubectl run connects anew).
fn kubectl_get_ns_millis(kubectl: &Kubectl) -> Result<u64> {
    let out = kubectl.run(&["get", "ns", "-v=6"]);
    ensure!(out.ok, "kubectl get ns: {}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("/api/v1/namespaces?limit=500"))
        .ok_or_else(|| anyhow::anyhow!("no request line in:\n{}", out.stderr))?;
    // "... 200 OK in 12 milliseconds" or, structured, `milliseconds=12`.
    let millis = line
        .split("milliseconds=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .or_else(|| {
            line.split(" in ")
                .last()
                .and_then(|rest| rest.split_whitespace().next())
        })
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no duration in {line:?}"))?;
    Ok(millis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_large_lists_of_one_user_leave_kubectl_responsive() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let admin = Rest::new(&cluster, 0, &cluster.admin_token()?)?;
    kubectl.ok(&["create", "namespace", "busy"]);
    let mut conn = admin.connect().await?;
    let blob = "x".repeat(CONFIGMAP_BYTES);
    for i in 0..CONFIGMAPS {
        let body = json!({"metadata": {"name": format!("cm-{i}")}, "data": {"blob": blob}});
        let (code, text) = conn
            .call("POST", COLLECTION, Some(serde_json::to_vec(&body)?))
            .await?;
        ensure!(code == 201, "{code}: {}", String::from_utf8_lossy(&text));
    }
    // The load runs as its own user, as a controller would.
    kubectl.ok(&["create", "serviceaccount", "load", "-n", "busy"]);
    kubectl.ok(&[
        "create",
        "rolebinding",
        "load-view",
        "--clusterrole=view",
        "--serviceaccount=busy:load",
        "-n",
        "busy",
    ]);
    let token = kubectl.ok(&["create", "token", "load", "-n", "busy", "--duration=2h"]);
    let load = admin.with_token(token.trim());
    // Discovery, cached for the measured runs.
    kubectl.ok(&["get", "ns"]);

    let counts = Arc::new(Counts::default());
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..WATCHES {
        tasks.spawn(watcher(load.clone(), counts.clone(), stop.clone()));
    }
    for _ in 0..LISTERS {
        tasks.spawn(lister(load.clone(), counts.clone(), stop.clone()));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while counts.watches_open.load(Ordering::Relaxed) < WATCHES {
        ensure!(
            Instant::now() < deadline,
            "only {} of {WATCHES} watches opened",
            counts.watches_open.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let opened_in = started.elapsed();
    let lists_before = counts.lists.load(Ordering::Relaxed);

    let mut millis = Vec::new();
    for _ in 0..50 {
        let kubectl = &kubectl;
        millis.push(tokio::task::block_in_place(|| {
            kubectl_get_ns_millis(kubectl)
        })?);
    }
    let lists_during = counts.lists.load(Ordering::Relaxed) - lists_before;
    let still_open = counts.watches_open.load(Ordering::Relaxed);
    stop.cancel();
    while tasks.join_next().await.is_some() {}

    millis.sort_unstable();
    let p99 = millis[(millis.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "watches open after {opened_in:?}; kubectl get ns ms: p50 {} p99 {p99} max {}; \
         lists during: {lists_during}; refused (429): {}; failed: {}",
        millis[millis.len() / 2],
        millis[millis.len() - 1],
        counts.refused.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    ensure!(p99 < 200, "kubectl get ns p99 {p99} ms: {millis:?}");
    ensure!(still_open == WATCHES, "{still_open} watches still open");
    ensure!(lists_during > 0, "the listers were starved");
    Ok(())
}
