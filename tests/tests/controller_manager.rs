//! The controller manager's election and fence, end to end: three masters each run one, a
//! single one acts (the holder of the Lease kube-system/kube-controller-manager), and when its
//! master is paused past the lease another takes over within seconds while nothing the paused
//! one still had in flight lands — so a ReplicaSet never gets a pod too many.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Pod};
use keel_client::api::WatchEvent;
use keel_client::{Api, Client, ListParams, Patch, WatchParams};
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

/// The member whose controller manager holds the Lease (identities are
/// `<host>_<member>_<suffix>`; members are m0, m1, m2).
async fn leader(client: &Client) -> Result<Option<usize>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = match leases.get("kube-controller-manager").await {
        Ok(l) => l.spec.and_then(|s| s.holder_identity).unwrap_or_default(),
        Err(e) if e.is_not_found() => String::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(holder
        .split('_')
        .nth(1)
        .and_then(|m| m.strip_prefix('m'))
        .and_then(|i| i.parse().ok()))
}

fn owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_controller_manager_is_replaced_and_fenced() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "10"])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(first) = leader(&client).await? {
            break first;
        }
        if Instant::now() > deadline {
            bail!("no controller manager leads");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Talk only to the masters that stay up.
    let others: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    let client = cluster.client_for(&others)?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rs = sets
        .create(&serde_json::from_value(json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}
                }
            }
        }))?)
        .await?;
    let uid = rs.metadata.uid.clone().unwrap_or_default();

    // Every pod of the ReplicaSet the API ever reports alive at once.
    let mut stream = pods.watch(&WatchParams::default(), "0").await?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watch_uid = uid.clone();
    let watcher = tokio::spawn(async move {
        let mut live: HashSet<String> = HashSet::new();
        let mut most = 0;
        loop {
            let event = tokio::select! {
                _ = &mut stop_rx => break,
                event = stream.next() => event,
            };
            let Some(Ok(event)) = event else { break };
            match event {
                WatchEvent::Added(p) | WatchEvent::Modified(p) if owned_by(&p, &watch_uid) => {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if p.metadata.deletion_timestamp.is_none() {
                        live.insert(name);
                    } else {
                        live.remove(&name);
                    }
                }
                WatchEvent::Deleted(p) => {
                    live.remove(&p.metadata.name.clone().unwrap_or_default());
                }
                _ => {}
            }
            most = most.max(live.len());
        }
        most
    });

    // Scale up in steps; pause the leading master after the first.
    let target = 240;
    sets.patch("web", &Patch::Merge(json!({"spec": {"replicas": 60}})))
        .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.signal(first, true)?;
    let paused = Instant::now();
    for replicas in [120, 180, target] {
        sets.patch(
            "web",
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let next = loop {
        if let Some(next) = leader(&client).await?.filter(|&n| n != first) {
            break next;
        }
        if paused.elapsed() > Duration::from_secs(20) {
            bail!("no other controller manager took over within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "m{next}'s controller manager took over {:.1} s after m{first} was paused",
        paused.elapsed().as_secs_f64()
    );
    // Keep it paused past the new leader's first creates, then let it go on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.signal(first, false)?;
    until(
        "the ReplicaSet has all its pods",
        Duration::from_secs(120),
        || async {
            let Ok(rs) = sets.get("web").await else {
                return false;
            };
            rs.status
                .is_some_and(|s| s.replicas == target && s.ready_replicas == Some(target))
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let live = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| owned_by(p, &uid) && p.metadata.deletion_timestamp.is_none())
        .count();
    let _ = stop_tx.send(());
    let most = watcher.await?;
    assert_eq!(live, target as usize);
    assert!(
        most <= target as usize,
        "the ReplicaSet had {most} live pods at once, more than its {target} replicas"
    );

    // Fencing: once the next controller manager held the Lease, nothing the paused one did
    // took effect. Its Events are written under the same fence as its creates.
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-controller-manager")
        .await?;
    let taken_over = lease
        .spec
        .unwrap_or_default()
        .acquire_time
        .context("acquire time")?
        .0;
    let old = format!("_m{first}_");
    let late: Vec<String> = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_instance
                .as_deref()
                .is_some_and(|i| i.contains(&old))
                && e.first_timestamp.as_ref().is_some_and(|t| t.0 > taken_over)
        })
        .filter_map(|e| e.message)
        .collect();
    assert!(
        late.is_empty(),
        "the deposed controller manager wrote after losing its lease: {late:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_completes_under_the_next_controller_manager_when_the_active_one_is_paused(
) -> Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "10"])?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(first) = leader(&client).await? {
            break first;
        }
        if Instant::now() > deadline {
            bail!("no controller manager leads");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let others: Vec<usize> = (0..3).filter(|&i| i != first).collect();
    let client = cluster.client_for(&others)?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicas = 40;
    deployments
        .create(&serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "strategy": {"rollingUpdate": {"maxSurge": 4, "maxUnavailable": 4}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"terminationGracePeriodSeconds": 1,
                        "containers": [{"name": "app", "image": "web:1"}]}
                }
            }
        }))?)
        .await?;
    let done = |image: &'static str| {
        let deployments = deployments.clone();
        async move {
            let Ok(d) = deployments.get("web").await else {
                return false;
            };
            let current = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            let s = d.status.unwrap_or_default();
            current.as_deref() == Some(image)
                && s.observed_generation == d.metadata.generation
                && s.updated_replicas == Some(replicas)
                && s.available_replicas == Some(replicas)
                && s.replicas == Some(replicas)
        }
    };
    until(
        "the first rollout completes",
        Duration::from_secs(120),
        || done("web:1"),
    )
    .await?;

    // Roll a new image, and pause the leading master a moment into the rollout.
    deployments
        .patch(
            "web",
            &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": "web:2"}]}}}})),
        )
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.signal(first, true)?;
    let paused = Instant::now();
    let next = loop {
        if let Some(next) = leader(&client).await?.filter(|&n| n != first) {
            break next;
        }
        if paused.elapsed() > Duration::from_secs(20) {
            bail!("no other controller manager took over within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "m{next}'s controller manager took over {:.1} s after m{first} was paused",
        paused.elapsed().as_secs_f64()
    );
    // The rollout finishes while the old leader is still paused, then it resumes.
    until(
        "the rollout completes under the new leader",
        Duration::from_secs(120),
        || done("web:2"),
    )
    .await?;
    cluster.signal(first, false)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(done("web:2").await, "the finished rollout stays finished");

    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-controller-manager")
        .await?;
    let taken_over = lease
        .spec
        .unwrap_or_default()
        .acquire_time
        .context("acquire time")?
        .0;
    let old = format!("_m{first}_");
    let late: Vec<String> = Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_instance
                .as_deref()
                .is_some_and(|i| i.contains(&old))
                && e.last_timestamp.as_ref().is_some_and(|t| t.0 > taken_over)
        })
        .filter_map(|e| e.message)
        .collect();
    assert!(
        late.is_empty(),
        "the deposed controller manager wrote after losing its lease: {late:?}"
    );
    Ok(())
}
