//! Leader election with fencing on three masters: one holder at a time, a successor only after
//! the lease went unrenewed for its duration, and — beyond Kubernetes — a holder that stopped
//! renewing cannot write once it has been replaced: the store refuses its fenced writes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::leader::{LeaseLock, Timing};
use keel_client::Api;
use keel_tests::sim::ready;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use tokio_util::sync::CancellationToken;

fn cm(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".into(), value.into())])),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_leader_cannot_write() -> anyhow::Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    // Each candidate talks to a different master.
    let client_a = cluster.client_for(&[0])?;
    let client_b = cluster.client_for(&[1])?;
    ready(&client_a).await?;
    let duration = Duration::from_secs(2);
    let mut a = LeaseLock::new(client_a.clone(), "kube-system", "ctl", "a", duration);
    let mut b = LeaseLock::new(client_b.clone(), "kube-system", "ctl", "b", duration);

    let fence_a = a
        .try_acquire_or_renew()
        .await?
        .expect("a acquires a free lease");
    // a's last renewal: b may take over no sooner than a whole lease duration after it.
    let renewed = Instant::now();
    assert_eq!(fence_a.transitions, 0);
    assert_eq!(b.try_acquire_or_renew().await?, None, "held by a");
    let as_a: Api<ConfigMap> =
        Api::namespaced(client_a.clone(), "default").with_fence(fence_a.clone());
    as_a.create(&cm("x", "from a")).await?;

    // a stops renewing (paused). b takes over only after a whole lease duration.
    let fence_b = loop {
        if let Some(f) = b.try_acquire_or_renew().await? {
            break f;
        }
        anyhow::ensure!(
            renewed.elapsed() < Duration::from_secs(10),
            "b never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        renewed.elapsed() >= duration,
        "took over after {:?}",
        renewed.elapsed()
    );
    assert_eq!(fence_b.transitions, 1);

    // a's fenced writes are refused by the store; nothing changes.
    let refused = as_a
        .create(&cm("y", "from a"))
        .await
        .expect_err("fence lost");
    assert_eq!(refused.code(), Some(409), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("lease kube-system/ctl no longer names the writer"),
        "{refused}"
    );
    let mut x = as_a.get("x").await?;
    x.data = Some(BTreeMap::from([("v".into(), "a again".into())]));
    let refused = as_a.replace("x", &x).await.expect_err("fence lost");
    assert_eq!(refused.code(), Some(409), "{refused}");
    let plain: Api<ConfigMap> = Api::namespaced(client_b.clone(), "default");
    assert!(plain.get("y").await.is_err_and(|e| e.is_not_found()));
    assert_eq!(
        plain
            .get("x")
            .await?
            .data
            .and_then(|d| d.get("v").cloned())
            .as_deref(),
        Some("from a")
    );

    // b's fenced writes go through; a, renewing again, finds it lost.
    let as_b = plain.clone().with_fence(fence_b);
    as_b.create(&cm("y", "from b")).await?;
    assert_eq!(a.try_acquire_or_renew().await?, None);
    assert!(
        refused.is_fence_lost(),
        "a lost fence is told apart: {refused}"
    );

    // Deleting the Lease takes its fence with it: the last holder cannot write either.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client_b.clone(), "kube-system");
    leases.delete("ctl", &Default::default()).await?;
    let refused = as_b
        .create(&cm("z", "from b"))
        .await
        .expect_err("the fence went with the Lease");
    assert!(refused.is_fence_lost(), "{refused}");
    assert!(plain.get("z").await.is_err_and(|e| e.is_not_found()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_campaigners_leads_and_a_successor_follows_its_release() -> anyhow::Result<()>
{
    let cluster = Cluster::start(Flavor::Keel, 3).await?;

    ready(&cluster.client()?).await?;
    let timing = Timing {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(200),
    };
    let mut stops = Vec::new();
    let mut views = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..cluster.members.len() {
        let lock = LeaseLock::new(
            cluster.client_for(&[i])?,
            "kube-system",
            "campaign",
            &format!("m{i}"),
            timing.lease_duration,
        );
        let (tx, rx) = tokio::sync::watch::channel(None);
        let stop = CancellationToken::new();
        tasks.push(tokio::spawn(lock.run(timing, tx, stop.clone())));
        stops.push(stop);
        views.push(rx);
    }
    let leaders = |views: &[tokio::sync::watch::Receiver<Option<keel_client::Fence>>]| {
        views
            .iter()
            .enumerate()
            .filter(|(_, v)| v.borrow().is_some())
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let l = leaders(&views);
        anyhow::ensure!(l.len() <= 1, "two leaders at once: {l:?}");
        if let [one] = l[..] {
            break one;
        }
        anyhow::ensure!(Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Stopping the leader releases the lease: a successor leads well before it would expire.
    let stopped = Instant::now();
    stops[first].cancel();
    let _ = tasks.remove(first).await;
    let next = loop {
        let l = leaders(&views);
        anyhow::ensure!(l.len() <= 1, "two leaders at once: {l:?}");
        if let [one] = l[..] {
            break one;
        }
        anyhow::ensure!(stopped.elapsed() < Duration::from_secs(10), "no successor");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(next, first);
    assert!(
        stopped.elapsed() < timing.lease_duration,
        "released, not expired: {:?}",
        stopped.elapsed()
    );
    for s in &stops {
        s.cancel();
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}
