//! Running the pods bound to this node, kubelet's pod workers: one watch of the pods whose
//! `spec.nodeName` is this node feeds the SDK's controller runtime, which syncs each pod one
//! at a time (many pods at once), when it changes, when the runtime reports a change for it
//! ([`relist`]), and when its next step is due; [`cleanup`] removes what vanished pods left.
//!
//! The parts: [`configs`] (Pod → CRI configuration), [`observed`] (what the runtime holds),
//! [`plan`] (what a sync must do), [`status`] (what to report), [`backoff`] and [`images`]
//! (crash-loop and image-pull back-off), [`sync`] (the I/O of one sync), wired here.

pub mod backoff;
pub mod cleanup;
pub mod configs;
pub mod events;
pub mod hooks;
pub mod images;
pub mod observed;
pub mod plan;
pub mod pull_secrets;
pub mod relist;
pub mod status;
pub mod sync;
pub mod volumes;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::StreamExt;
use keel_client::events::Recorder;
use keel_client::runtime::{Action, Backoff, Config, Controller, ReconcileError};
use keel_client::watcher::Event;
use keel_client::{watcher, Api, Client, ObjectKey, WatchParams};
use keel_types::k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::backoff::Backoffs;
use self::configs::{NodeSettings, Resolved};
use self::images::ImagePuller;
use self::sync::Syncer;
use crate::prober::ProbeManager;
use crate::RuntimeClient;

/// What a pod's containers see of the cluster: the files of its volumes and the environment
/// of each container. The agent's volume manager implements it; errors are the messages
/// kubelet reports (FailedMount, CreateContainerConfigError).
pub trait PodFiles: Send + Sync {
    /// Sets up (or refreshes) the pod's volumes; one FailedMount message per volume that
    /// could not be.
    fn setup<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), Vec<String>>>;
    /// The environment and mounts of one container, `pod_ip` being the sandbox's address.
    fn resolve<'a>(
        &'a self,
        pod: &'a Pod,
        container: &'a Container,
        pod_ip: &'a str,
    ) -> BoxFuture<'a, Result<Resolved, String>>;
    /// Removes what was set up for pod `uid` (unmounting what it mounted); the agent removes
    /// the pod's directory afterwards.
    fn teardown<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, ()>;
}

/// How the pod side of an agent runs.
#[derive(Clone)]
pub struct PodsConfig {
    pub node_name: String,
    pub host_ip: String,
    pub node: NodeSettings,
    /// Pods synced at once.
    pub concurrency: usize,
}

/// Retry delays of a pod whose syncs keep failing.
const SYNC_BACKOFF: Backoff = Backoff {
    initial: std::time::Duration::from_millis(500),
    max: std::time::Duration::from_secs(30),
};

/// Runs the pods bound to `config.node_name` until `stop`.
pub async fn run(
    client: Client,
    runtime: RuntimeClient,
    recorder: Arc<Recorder>,
    files: Arc<dyn PodFiles>,
    config: PodsConfig,
    stop: CancellationToken,
) {
    let (probes, mut probe_updates) = ProbeManager::new(runtime.clone(), Some(recorder.clone()));
    let syncer = Arc::new(Syncer {
        client: client.clone(),
        runtime: runtime.clone(),
        recorder,
        node: config.node.clone(),
        host_ip: config.host_ip.clone(),
        backoffs: Backoffs::default(),
        images: ImagePuller::default(),
        files: files.clone(),
        probes: probes.clone(),
        reported: Default::default(),
    });
    let params = WatchParams {
        field_selector: format!("spec.nodeName={}", config.node_name),
        ..Default::default()
    };
    let (changes_tx, mut changes_rx) = mpsc::unbounded_channel::<ObjectKey>();
    let changes = futures::stream::poll_fn(move |cx| changes_rx.poll_recv(cx))
        .map(|key| Ok::<_, keel_client::Error>(Event::Applied(key)));
    let controller = Controller::for_events(watcher::watcher(Api::<Pod>::all(client), params))
        .watches_events(changes, |key: &ObjectKey| [key.clone()])
        .with_config(Config {
            concurrency: config.concurrency.max(1),
            backoff: SYNC_BACKOFF,
        });
    let store = controller.store();
    let tasks = TaskTracker::new();
    // A probe's changed verdict syncs its pod: a failed liveness probe kills the container, a
    // readiness change is posted.
    let probed = changes_tx.clone();
    let pods_by_uid = store.clone();
    let probe_stop = stop.clone();
    tasks.spawn(async move {
        loop {
            let update = tokio::select! {
                () = probe_stop.cancelled() => return,
                update = probe_updates.recv() => update,
            };
            let Some(update) = update else { return };
            let pod = pods_by_uid
                .state()
                .into_iter()
                .find(|p| p.metadata.uid.as_deref() == Some(update.uid.as_str()));
            if let Some(pod) = pod {
                if probed.send(ObjectKey::of(pod.as_ref())).is_err() {
                    return;
                }
            }
        }
    });
    tasks.spawn(relist::run(runtime.clone(), changes_tx, stop.clone()));
    let forgetting = syncer.clone();
    tasks.spawn(cleanup::run(
        runtime,
        cleanup::Dirs {
            root: config.node.root_dir.clone(),
            logs: config.node.logs_dir.clone(),
        },
        store,
        files,
        Arc::new(move |uid: &str| {
            forgetting.backoffs.forget_pod(uid);
            forgetting.images.forget_pod(uid);
            forgetting.forget_probes(uid);
        }),
        stop.clone(),
    ));
    tasks.close();
    controller
        .run(
            |pod, syncer: Arc<Syncer>| async move { syncer.sync(pod).await },
            |pod, error, _| {
                tracing::warn!(pod = %ObjectKey::of(pod.as_ref()), %error, "syncing a pod failed; retrying");
                Action::requeue(SYNC_BACKOFF.initial)
            },
            syncer,
            stop,
        )
        .for_each(|outcome| async move {
            if let Err(ReconcileError::Watch(error)) = outcome {
                tracing::warn!(%error, "the pod watch failed; it resumes by itself");
            }
        })
        .await;
    probes.shutdown().await;
    tasks.wait().await;
}
