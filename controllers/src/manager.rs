//! The controller manager: campaigns for the Lease `kube-system/kube-controller-manager` and,
//! for as long as it holds it, runs the selected controllers with every write fenced by that
//! term. Losing the Lease stops them all; winning it again starts a new term from scratch
//! (new fence, new expectations, every object queued again), so nothing a deposed term
//! believed carries over. Only the shared informers outlive terms: they are watches of what
//! the API holds, kept warm by every candidate, as kube-scheduler keeps its caches, so that a
//! successor acts as soon as it holds the Lease.
//!
//! The table of controllers is [`CONTROLLERS`]: each entry names a controller (as
//! kube-controller-manager's `--controllers` flag does), says whether it runs by default, and
//! starts it. Wiring happens here and nowhere else.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use keel_client::leader::{LeaseLock, Timing};
use keel_client::{Client, Fence};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::context::Context;
use crate::events::Recorder;
use crate::informer::Informers;
use crate::selection::{select, SelectionError};
use keel_client::k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use keel_client::k8s_openapi::api::batch::v1::{CronJob, Job};
use keel_client::k8s_openapi::api::coordination::v1::Lease;
use keel_client::k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, ReplicationController, Service, ServiceAccount,
};
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_client::k8s_openapi::api::policy::v1::PodDisruptionBudget;

/// How a controller starts: given the term's context, it runs until the token is cancelled.
pub type Start = fn(Arc<Context>, CancellationToken) -> BoxFuture<'static, ()>;

/// Starts the shared informers a controller reads. A candidate calls it for every selected
/// controller before it first leads, so that its caches are full when it wins: a successor
/// then reconciles at once instead of listing every kind first.
pub type Reads = fn(&Informers);

/// One entry of the table.
pub struct ControllerDef {
    /// Its name in `--controllers`, as kube-controller-manager names it.
    pub name: &'static str,
    pub on_by_default: bool,
    pub reads: Reads,
    pub start: Start,
}

/// Every controller this manager can run.
pub const CONTROLLERS: &[ControllerDef] = &[
    ControllerDef {
        name: "cronjob",
        on_by_default: true,
        reads: |i| {
            i.of::<CronJob>();
            i.of::<Job>();
        },
        start: crate::cronjob::start,
    },
    ControllerDef {
        name: "daemonset",
        on_by_default: true,
        reads: |i| {
            i.of::<DaemonSet>();
            i.of::<Pod>();
            i.of::<Node>();
            i.of::<ControllerRevision>();
        },
        start: crate::daemonset::start,
    },
    ControllerDef {
        name: "deployment",
        on_by_default: true,
        reads: |i| {
            i.of::<Deployment>();
            i.of::<ReplicaSet>();
            i.of::<Pod>();
        },
        start: crate::deployment::start,
    },
    ControllerDef {
        name: "disruption",
        on_by_default: true,
        reads: |i| {
            i.of::<PodDisruptionBudget>();
            i.of::<Pod>();
            i.of::<ReplicaSet>();
            i.of::<Deployment>();
            i.of::<StatefulSet>();
        },
        start: crate::disruption::start,
    },
    ControllerDef {
        name: "endpoint",
        on_by_default: true,
        reads: |i| {
            i.of::<Service>();
            i.of::<Pod>();
            i.of::<Endpoints>();
        },
        start: crate::endpoints::start,
    },
    ControllerDef {
        name: "endpointslice",
        on_by_default: true,
        reads: |i| {
            i.of::<Service>();
            i.of::<Pod>();
            i.of::<EndpointSlice>();
            i.of::<Node>();
        },
        start: crate::endpointslices::start,
    },
    ControllerDef {
        name: "garbagecollector",
        on_by_default: true,
        // Its graph is built from watches of its own, of every kind.
        reads: |_| {},
        start: crate::garbagecollector::start,
    },
    ControllerDef {
        name: "job",
        on_by_default: true,
        reads: |i| {
            i.of::<Job>();
            i.of::<Pod>();
        },
        start: crate::job::start,
    },
    ControllerDef {
        name: "nodelifecycle",
        on_by_default: true,
        reads: |i| {
            i.of::<Node>();
            i.of::<Lease>();
            i.of::<Pod>();
        },
        start: crate::nodelifecycle::start,
    },
    ControllerDef {
        name: "podgc",
        on_by_default: true,
        reads: |i| {
            i.of::<Pod>();
            i.of::<Node>();
        },
        start: crate::podgc::start,
    },
    ControllerDef {
        name: "replicaset",
        on_by_default: true,
        reads: |i| {
            i.of::<ReplicaSet>();
            i.of::<Pod>();
        },
        start: crate::replicaset::start,
    },
    ControllerDef {
        name: "replicationcontroller",
        on_by_default: true,
        reads: |i| {
            i.of::<ReplicationController>();
            i.of::<Pod>();
        },
        start: crate::replicaset::start_replication_controllers,
    },
    ControllerDef {
        name: "root-ca-cert-publisher",
        on_by_default: true,
        reads: |i| {
            i.of::<Namespace>();
            i.of::<ConfigMap>();
        },
        start: crate::rootca::start,
    },
    ControllerDef {
        name: "serviceaccount",
        on_by_default: true,
        reads: |i| {
            i.of::<Namespace>();
            i.of::<ServiceAccount>();
        },
        start: crate::serviceaccounts::start,
    },
    ControllerDef {
        name: "statefulset",
        on_by_default: true,
        reads: |i| {
            i.of::<StatefulSet>();
            i.of::<Pod>();
            i.of::<ControllerRevision>();
        },
        start: crate::statefulset::start,
    },
    ControllerDef {
        name: "ttl-after-finished",
        on_by_default: true,
        reads: |i| {
            i.of::<Job>();
        },
        start: crate::ttl_after_finished::start,
    },
];

/// Settings the controllers read (kube-controller-manager's flags of the same names).
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a node's Lease may go unrenewed before the node is marked unreachable
    /// (`--node-monitor-grace-period`, Kubernetes 1.32's default 50 s).
    pub node_monitor_grace_period: Duration,
    /// Terminated pods kept before PodGC deletes the oldest (`--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// Endpoints an EndpointSlice holds at most (`--max-endpoints-per-slice`).
    pub max_endpoints_per_slice: usize,
    /// The cluster's CA certificate (PEM) that root-ca-cert-publisher publishes in every
    /// namespace; None when the masters serve no TLS (that controller then does not run).
    pub root_ca: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(50),
            terminated_pod_gc_threshold: 12_500,
            max_endpoints_per_slice: 100,
            root_ca: None,
        }
    }
}

/// How one controller manager runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// This candidate's identity in the Lease.
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub timing: Timing,
    /// The names of the controllers to run (see [`Config::select`]).
    pub controllers: BTreeSet<&'static str>,
    pub options: Arc<Options>,
}

impl Config {
    /// kube-controller-manager's Lease name, every default controller, and the same short
    /// lease as the scheduler's (a successor acts within about 3 s; the fence keeps a leader
    /// that merely missed a renewal harmless).
    pub fn new(identity: &str) -> Config {
        Config {
            identity: identity.into(),
            lease_namespace: "kube-system".into(),
            lease_name: "kube-controller-manager".into(),
            timing: Timing {
                lease_duration: Duration::from_secs(2),
                renew_deadline: Duration::from_secs(1),
                retry_period: Duration::from_millis(250),
            },
            controllers: CONTROLLERS
                .iter()
                .filter(|c| c.on_by_default)
                .map(|c| c.name)
                .collect(),
            options: Arc::new(Options::default()),
        }
    }

    /// Sets the CA certificate the controllers publish (see [`Options::root_ca`]).
    pub fn set_root_ca(&mut self, root_ca: Option<String>) {
        Arc::make_mut(&mut self.options).root_ca = root_ca;
    }

    /// Applies a `--controllers` value (`*`, `name`, `-name`).
    pub fn select(&mut self, flags: &[String]) -> Result<(), SelectionError> {
        let known: Vec<(&'static str, bool)> = CONTROLLERS
            .iter()
            .map(|c| (c.name, c.on_by_default))
            .collect();
        self.controllers = select(flags, &known)?;
        Ok(())
    }
}

/// Runs the controller manager against the masters `client` reaches until `shutdown`.
///
/// Shutdown order: the running term's controllers are cancelled and joined (their in-flight
/// writes finish or fail on the fence), then the election stops and a leader releases its
/// Lease.
pub async fn run(client: Client, config: Config, shutdown: CancellationToken) {
    let watching = TaskTracker::new();
    let informers = Arc::new(Informers::new(
        client.clone(),
        watching.clone(),
        shutdown.clone(),
    ));
    for def in CONTROLLERS {
        if config.controllers.contains(def.name) {
            (def.reads)(&informers);
        }
    }
    let election = TaskTracker::new();
    let (leader_tx, mut leader_rx) = watch::channel(None);
    let lock = LeaseLock::new(
        client.clone(),
        &config.lease_namespace,
        &config.lease_name,
        &config.identity,
        config.timing.lease_duration,
    );
    let campaign = shutdown.child_token();
    election.spawn(lock.run(config.timing, leader_tx, campaign.clone()));
    election.close();
    loop {
        let fence = tokio::select! {
            _ = shutdown.cancelled() => break,
            fence = next_term(&mut leader_rx) => fence,
        };
        let Some(fence) = fence else { break };
        tracing::info!(identity = %config.identity, transitions = fence.transitions, "leading the controller manager");
        let term = shutdown.child_token();
        let tasks = TaskTracker::new();
        start_term(&client, &config, &informers, fence.clone(), &tasks, &term);
        tasks.close();
        // The term lasts while the fence is unchanged.
        let election_over = tokio::select! {
            _ = shutdown.cancelled() => false,
            changed = leader_rx.wait_for(|current| current.as_ref() != Some(&fence)) => changed.is_err(),
        };
        term.cancel();
        tasks.wait().await;
        tracing::info!(identity = %config.identity, "stopped leading the controller manager");
        if election_over || shutdown.is_cancelled() {
            break;
        }
    }
    campaign.cancel();
    election.wait().await;
    watching.close();
    watching.wait().await;
}

/// Waits until this candidate leads; None when the election ended.
async fn next_term(leader_rx: &mut watch::Receiver<Option<Fence>>) -> Option<Fence> {
    leader_rx
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|fence| fence.clone())
}

/// Starts every selected controller on `tasks`, sharing one context and the manager's
/// informers.
fn start_term(
    client: &Client,
    config: &Config,
    informers: &Arc<Informers>,
    fence: Fence,
    tasks: &TaskTracker,
    term: &CancellationToken,
) {
    let recorder = Recorder::new(client.clone(), config.identity.clone(), tasks.clone())
        .with_fence(fence.clone());
    let context = Arc::new(Context::new(
        client.clone(),
        fence,
        informers.clone(),
        recorder,
        config.options.clone(),
    ));
    for def in CONTROLLERS {
        if config.controllers.contains(def.name) {
            tracing::debug!(controller = def.name, "starting");
            tasks.spawn((def.start)(context.clone(), term.clone()));
        }
    }
}
