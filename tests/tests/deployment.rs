//! The Deployment controller end to end: three keel masters (one controller manager active),
//! five nodes simulated by `keel sim-nodes`, and a Deployment driven with the real kubectl —
//! created, rolled to a new image under watch (never more pods than replicas + maxSurge,
//! never fewer available than replicas − maxUnavailable), its history listed, undone, paused
//! and resumed, scaled, and its history pruned; a Recreate Deployment whose new pods start
//! only once every old one is gone; and a rollout that cannot progress exceeding its
//! progressDeadlineSeconds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod};
use keel_client::events::correlator::COMBINED_PREFIX;
use keel_client::watcher::{watcher, Event as WatchEvent};
use keel_client::{Api, ListParams, WatchParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);
const REPLICAS: usize = 6;
const MAX_SURGE: usize = 2;
const MAX_UNAVAILABLE: usize = 1;

const DEPLOYMENT: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "web", "namespace": "default"},
  "spec": {"replicas": 6,
    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}},
    "selector": {"matchLabels": {"app": "web"}},
    "template": {"metadata": {"labels": {"app": "web"}},
      "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}}}"#;

fn is_available(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

/// What a watch of the Deployment's pods saw, state by state.
#[derive(Debug, Default)]
struct Observed {
    states: usize,
    /// Some state held pods of both images at once: the update rolled.
    mixed: bool,
    violations: Vec<String>,
}

/// Watches the pods labelled `app=web` until `stop`, checking every state the watch shows
/// (each one the whole set of pods at one revision): live pods (not terminating) at most
/// replicas + maxSurge, available ones at least replicas − maxUnavailable.
async fn watch_pods(
    pods: Api<Pod>,
    stop: CancellationToken,
    listed: oneshot::Sender<()>,
) -> Observed {
    let mut listed = Some(listed);
    let params = WatchParams {
        label_selector: "app=web".into(),
        ..Default::default()
    };
    let mut stream = std::pin::pin!(watcher(pods, params));
    let mut state: BTreeMap<String, Pod> = BTreeMap::new();
    let mut seen = Observed::default();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return seen,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(WatchEvent::Applied(p))) => {
                state.insert(p.metadata.name.clone().unwrap_or_default(), p);
            }
            Some(Ok(WatchEvent::Deleted(p))) => {
                state.remove(p.metadata.name.as_deref().unwrap_or_default());
            }
            Some(Ok(WatchEvent::Restarted(all))) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                state = all
                    .into_iter()
                    .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                    .collect();
            }
            Some(Err(_)) => continue,
            None => return seen,
        }
        let live: Vec<&Pod> = state
            .values()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let available = live.iter().filter(|p| is_available(p)).count();
        seen.states += 1;
        let images: std::collections::BTreeSet<String> = live.iter().map(|p| image(p)).collect();
        seen.mixed |= images.len() > 1;
        if live.len() > REPLICAS + MAX_SURGE {
            seen.violations.push(format!("{} live pods", live.len()));
        }
        if available < REPLICAS - MAX_UNAVAILABLE {
            seen.violations
                .push(format!("{available} available pods of {}", live.len()));
        }
    }
}

/// Watches the Deployment's ReplicaSets until `stop`: together they never want more than
/// replicas + maxSurge pods. Returns the violations.
async fn watch_replica_sets(
    sets: Api<ReplicaSet>,
    stop: CancellationToken,
    listed: oneshot::Sender<()>,
) -> Vec<String> {
    let mut listed = Some(listed);
    let params = WatchParams {
        label_selector: "app=web".into(),
        ..Default::default()
    };
    let mut stream = std::pin::pin!(watcher(sets, params));
    let mut state: BTreeMap<String, i32> = BTreeMap::new();
    let mut violations = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return violations,
            event = stream.next() => event,
        };
        let wanted = |rs: &ReplicaSet| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        match event {
            Some(Ok(WatchEvent::Applied(rs))) => {
                state.insert(rs.metadata.name.clone().unwrap_or_default(), wanted(&rs));
            }
            Some(Ok(WatchEvent::Deleted(rs))) => {
                state.remove(rs.metadata.name.as_deref().unwrap_or_default());
            }
            Some(Ok(WatchEvent::Restarted(all))) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                state = all
                    .iter()
                    .map(|rs| (rs.metadata.name.clone().unwrap_or_default(), wanted(rs)))
                    .collect();
            }
            Some(Err(_)) => continue,
            None => return violations,
        }
        let total: i32 = state.values().sum();
        if total > (REPLICAS + MAX_SURGE) as i32 {
            violations.push(format!("ReplicaSets want {total} pods: {state:?}"));
        }
    }
}

async fn deployment(api: &Api<Deployment>, name: &str) -> Deployment {
    api.get(name).await.unwrap_or_default()
}

fn progressing_reason(d: &Deployment) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Progressing"))
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The Deployment's live pods, by image.
async fn live_images(pods: &Api<Pod>) -> Vec<String> {
    let params = ListParams {
        label_selector: "app=web".into(),
        ..Default::default()
    };
    let mut images: Vec<String> = pods
        .list(&params)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(image)
        .collect();
    images.sort();
    images
}

fn rollout_status(k: &Kubectl) {
    let out = k.ok(&["rollout", "status", "deploy/web", "--timeout=90s"]);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_undoes_pauses_and_scales_within_its_bounds() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "5"])?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Created: one ReplicaSet named after the template hash, six available pods.
    let manifest = k.manifest("web.json", DEPLOYMENT);
    tokio::task::block_in_place(|| k.ok(&["apply", "-f", &manifest]));
    tokio::task::block_in_place(|| rollout_status(&k));
    let d = deployment(&deployments, "web").await;
    let status = d.status.clone().unwrap_or_default();
    assert_eq!(status.available_replicas, Some(6));
    assert_eq!(status.updated_replicas, Some(6));
    assert_eq!(progressing_reason(&d), "NewReplicaSetAvailable");
    let available = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Available")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let first = sets.list(&ListParams::default()).await?.items;
    assert_eq!(first.len(), 1);
    let first_name = first[0].metadata.name.clone().unwrap_or_default();
    let hash = first[0]
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(first_name, format!("web-{hash}"));
    assert_eq!(
        first[0]
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("deployment.kubernetes.io/revision"))
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(live_images(&pods).await, vec!["busybox:1.36"; 6]);

    // A rolling update, watched pod by pod and ReplicaSet by ReplicaSet.
    let stop = CancellationToken::new();
    let (pods_listed, pods_listed_rx) = oneshot::channel();
    let (sets_listed, sets_listed_rx) = oneshot::channel();
    let pod_watch = tokio::spawn(watch_pods(pods.clone(), stop.clone(), pods_listed));
    let rs_watch = tokio::spawn(watch_replica_sets(sets.clone(), stop.clone(), sets_listed));
    // Both watches have listed before the update starts.
    pods_listed_rx.await?;
    sets_listed_rx.await?;
    tokio::task::block_in_place(|| {
        k.ok(&["set", "image", "deploy/web", "app=busybox:1.37"]);
        rollout_status(&k);
    });
    until("the old pods are gone", WAIT, || async {
        live_images(&pods).await == vec!["busybox:1.37"; 6]
    })
    .await?;
    stop.cancel();
    let observed = pod_watch.await?;
    let rs_violations = rs_watch.await?;
    assert!(observed.violations.is_empty(), "{:?}", observed.violations);
    assert!(rs_violations.is_empty(), "{rs_violations:?}");
    assert!(
        observed.mixed,
        "the update rolled through old and new pods at once"
    );

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    until("ScalingReplicaSet events", WAIT, || async {
        events.list(&ListParams::default()).await.is_ok_and(|l| {
            l.items.iter().any(|e| {
                e.reason.as_deref() == Some("ScalingReplicaSet")
                    && e.message.as_deref().is_some_and(|m| {
                        // A rollout's scaling steps are similar Events about one Deployment:
                        // from the tenth distinct one on, they are combined into one Event that
                        // shows the latest step, as client-go's recorder combines them on
                        // Kubernetes; so the first ReplicaSet's scale-downs are looked for, not
                        // its last one.
                        let m = m.strip_prefix(COMBINED_PREFIX).unwrap_or(m);
                        m.starts_with(&format!("Scaled down replica set {first_name} from "))
                    })
                    && e.source.as_ref().and_then(|s| s.component.as_deref())
                        == Some("deployment-controller")
            })
        })
    })
    .await?;

    // History lists both revisions; undo brings the first template back as revision 3.
    let history = tokio::task::block_in_place(|| k.ok(&["rollout", "history", "deploy/web"]));
    assert!(
        history.lines().any(|l| l.starts_with("1 "))
            && history.lines().any(|l| l.starts_with("2 ")),
        "{history}"
    );
    tokio::task::block_in_place(|| {
        let undone = k.ok(&["rollout", "undo", "deploy/web"]);
        assert!(undone.contains("rolled back"), "{undone}");
        rollout_status(&k);
    });
    until("the first image is back", WAIT, || async {
        live_images(&pods).await == vec!["busybox:1.36"; 6]
    })
    .await?;
    let back = sets.get(&first_name).await?;
    let annotations = back.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3"),
        "the ReplicaSet made new again takes the next revision"
    );
    assert_eq!(
        annotations
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );
    assert_eq!(sets.list(&ListParams::default()).await?.items.len(), 2);

    // Paused: a new template is observed but not rolled out; scaling still applies.
    tokio::task::block_in_place(|| {
        k.ok(&["rollout", "pause", "deploy/web"]);
        k.ok(&["set", "image", "deploy/web", "app=busybox:1.38"]);
        k.ok(&["scale", "deploy/web", "--replicas=4"]);
    });
    until(
        "the paused deployment is observed and scaled",
        WAIT,
        || async {
            let d = deployment(&deployments, "web").await;
            let s = d.status.clone().unwrap_or_default();
            s.observed_generation == d.metadata.generation
                && s.replicas == Some(4)
                && s.available_replicas == Some(4)
                && progressing_reason(&d) == "DeploymentPaused"
        },
    )
    .await?;
    assert_eq!(
        sets.list(&ListParams::default()).await?.items.len(),
        2,
        "no ReplicaSet for the paused template"
    );
    assert_eq!(live_images(&pods).await, vec!["busybox:1.36"; 4]);

    // Resumed: the paused template rolls out at the new size.
    tokio::task::block_in_place(|| {
        k.ok(&["rollout", "resume", "deploy/web"]);
        rollout_status(&k);
    });
    until("the resumed template runs", WAIT, || async {
        live_images(&pods).await == vec!["busybox:1.38"; 4]
    })
    .await?;

    // Scaled up, and history pruned to the limit.
    tokio::task::block_in_place(|| {
        k.ok(&["scale", "deploy/web", "--replicas=7"]);
        k.ok(&[
            "patch",
            "deploy/web",
            "--type=merge",
            "-p",
            r#"{"spec":{"revisionHistoryLimit":1}}"#,
        ]);
    });
    until(
        "seven available pods and one old ReplicaSet",
        WAIT,
        || async {
            let d = deployment(&deployments, "web").await;
            let s = d.status.clone().unwrap_or_default();
            let count = sets
                .list(&ListParams::default())
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            s.available_replicas == Some(7) && s.updated_replicas == Some(7) && count == 2
        },
    )
    .await?;
    let history = tokio::task::block_in_place(|| k.ok(&["rollout", "history", "deploy/web"]));
    assert!(
        history.lines().any(|l| l.starts_with("3 "))
            && history.lines().any(|l| l.starts_with("4 ")),
        "{history}"
    );
    assert!(!history.lines().any(|l| l.starts_with("2 ")), "{history}");
    Ok(())
}

const RECREATE: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "worker", "namespace": "default"},
  "spec": {"replicas": 3, "strategy": {"type": "Recreate"},
    "selector": {"matchLabels": {"app": "worker"}},
    "template": {"metadata": {"labels": {"app": "worker"}},
      "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}}}}"#;

/// Watches the pods labelled `app=worker` until `stop`; returns how many states it saw and
/// those in which a pod of the new image existed while a pod of another image had not
/// finished (terminating or not).
async fn watch_recreate(
    pods: Api<Pod>,
    new_image: &'static str,
    stop: CancellationToken,
    listed: oneshot::Sender<()>,
) -> (usize, Vec<String>) {
    let params = WatchParams {
        label_selector: "app=worker".into(),
        ..Default::default()
    };
    let mut listed = Some(listed);
    let mut stream = std::pin::pin!(watcher(pods, params));
    let mut state: BTreeMap<String, Pod> = BTreeMap::new();
    let mut states = 0;
    let mut overlaps = Vec::new();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return (states, overlaps),
            event = stream.next() => event,
        };
        match event {
            Some(Ok(WatchEvent::Applied(p))) => {
                state.insert(p.metadata.name.clone().unwrap_or_default(), p);
            }
            Some(Ok(WatchEvent::Deleted(p))) => {
                state.remove(p.metadata.name.as_deref().unwrap_or_default());
            }
            Some(Ok(WatchEvent::Restarted(all))) => {
                if let Some(listed) = listed.take() {
                    let _ = listed.send(());
                }
                state = all
                    .into_iter()
                    .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                    .collect();
            }
            Some(Err(_)) => continue,
            None => return (states, overlaps),
        }
        states += 1;
        let finished = |p: &Pod| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        };
        let new = state.values().filter(|p| image(p) == new_image).count();
        let old = state
            .values()
            .filter(|p| image(p) != new_image && !finished(p))
            .count();
        if new > 0 && old > 0 {
            overlaps.push(format!("{new} new pods while {old} old ones run"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_deployment_starts_new_pods_only_once_every_old_one_is_gone() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "5"])?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let manifest = k.manifest("worker.json", RECREATE);
    tokio::task::block_in_place(|| {
        k.ok(&["apply", "-f", &manifest]);
        k.ok(&["rollout", "status", "deploy/worker", "--timeout=90s"]);
    });

    let stop = CancellationToken::new();
    let (listed, listed_rx) = oneshot::channel();
    let watch = tokio::spawn(watch_recreate(
        pods.clone(),
        "busybox:1.37",
        stop.clone(),
        listed,
    ));
    listed_rx.await?;
    tokio::task::block_in_place(|| {
        k.ok(&["set", "image", "deploy/worker", "app=busybox:1.37"]);
        k.ok(&["rollout", "status", "deploy/worker", "--timeout=90s"]);
    });
    let params = ListParams {
        label_selector: "app=worker".into(),
        ..Default::default()
    };
    until("three new pods run", WAIT, || async {
        pods.list(&params).await.is_ok_and(|l| {
            l.items.len() == 3
                && l.items
                    .iter()
                    .all(|p| image(p) == "busybox:1.37" && is_available(p))
        })
    })
    .await?;
    stop.cancel();
    let (states, overlaps) = watch.await?;
    assert!(overlaps.is_empty(), "{overlaps:?}");
    assert!(states > 3, "the watch saw the replacement happen");
    Ok(())
}

const STUCK: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "stuck", "namespace": "default"},
  "spec": {"replicas": 2, "progressDeadlineSeconds": 3,
    "selector": {"matchLabels": {"app": "stuck"}},
    "template": {"metadata": {"labels": {"app": "stuck"}},
      "spec": {"nodeSelector": {"example.com/no-such-node": "true"},
        "containers": [{"name": "app", "image": "busybox:1.36"}]}}}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_without_progress_exceeds_its_deadline() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "2"])?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let manifest = k.manifest("stuck.json", STUCK);
    tokio::task::block_in_place(|| k.ok(&["apply", "-f", &manifest]));

    // Its pods can never be scheduled: the rollout stalls and, once the deadline passes
    // without progress, says so.
    until("the deadline is exceeded", WAIT, || async {
        progressing_reason(&deployment(&deployments, "stuck").await) == "ProgressDeadlineExceeded"
    })
    .await?;
    let d = deployment(&deployments, "stuck").await;
    let conditions = d
        .status
        .clone()
        .unwrap_or_default()
        .conditions
        .unwrap_or_default();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .cloned()
        .unwrap_or_default();
    let rs = d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .cloned();
    assert_eq!(rs.as_deref(), Some("1"));
    assert_eq!(progressing.status, "False");
    let message = progressing.message.clone().unwrap_or_default();
    assert!(
        message.starts_with("ReplicaSet \"stuck-")
            && message.ends_with("\" has timed out progressing."),
        "{message}"
    );
    let available = conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
    let out = tokio::task::block_in_place(|| k.run(&["rollout", "status", "deploy/stuck"]));
    assert!(!out.ok, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("deployment \"stuck\" exceeded its progress deadline"),
        "{}",
        out.stderr
    );
    Ok(())
}
