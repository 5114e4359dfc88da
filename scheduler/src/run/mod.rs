//! The scheduler's async shell: informers, the scheduling loop, binding and recording, and the
//! leader election that decides which of the running schedulers acts. Wiring only; each job is
//! in its own module.
//!
//! Shutdown order: cancelling stops the election (a leader releases its Lease), the informers
//! and the loop; then the bind and record tasks already started are awaited.

pub mod binder;
pub mod informer;
pub mod recorder;
pub mod scheduler;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use keel_client::leader::{LeaseLock, Timing};
use keel_client::Client;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cycle::Algorithm;
use crate::plugins::{default_profile, Profile};
use crate::queue::SchedulingQueue;

pub use scheduler::Stats;

/// Binds in flight at once unless configured.
pub const DEFAULT_BIND_CONCURRENCY: u32 = 256;

/// How one scheduler runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pods whose `spec.schedulerName` is this are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// This candidate's identity in the Lease.
    pub identity: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub timing: Timing,
    /// percentageOfNodesToScore; 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    /// Binds in flight at once.
    pub bind_concurrency: usize,
}

impl Config {
    /// Defaults: kube-scheduler's names, and a lease much shorter than Kubernetes' 15 s / 10 s /
    /// 2 s, so a dead leader's successor binds within about 3 s; the fence keeps a leader that
    /// merely missed a renewal from doing harm.
    pub fn new(identity: &str) -> Config {
        Config {
            scheduler_name: "default-scheduler".into(),
            identity: identity.into(),
            lease_namespace: "kube-system".into(),
            lease_name: "kube-scheduler".into(),
            timing: Timing {
                lease_duration: Duration::from_secs(2),
                renew_deadline: Duration::from_secs(1),
                retry_period: Duration::from_millis(250),
            },
            percentage_of_nodes_to_score: 0,
            bind_concurrency: DEFAULT_BIND_CONCURRENCY as usize,
        }
    }
}

/// The queueing hints of `profile`: which events wake pods each filter rejected.
pub fn hints(profile: &Profile) -> HashMap<&'static str, HashSet<crate::framework::ClusterEvent>> {
    profile
        .filters
        .iter()
        .map(|f| (f.name(), f.events().iter().copied().collect()))
        .collect()
}

/// Runs a scheduler against the masters `client` reaches until `shutdown`.
pub async fn run(client: Client, config: Config, shutdown: CancellationToken) -> Stats {
    let tasks = TaskTracker::new();
    let (leader_tx, leader_rx) = watch::channel(None);
    let lock = LeaseLock::new(
        client.clone(),
        &config.lease_namespace,
        &config.lease_name,
        &config.identity,
        config.timing.lease_duration,
    );
    tasks.spawn(lock.run(config.timing, leader_tx, shutdown.clone()));
    let (updates_tx, updates_rx) = mpsc::channel(4096);
    tasks.spawn(informer::run(client.clone(), updates_tx, shutdown.clone()));
    let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
    // Writes (binds, events, statuses) are tracked apart from the long-running tasks so the
    // loop's end can wait for them.
    let writes = TaskTracker::new();
    let binder = binder::Binder::new(
        client.clone(),
        config.bind_concurrency,
        writes.clone(),
        outcomes_tx,
    );
    let recorder = recorder::Recorder::new(client, config.identity.clone(), writes.clone(), 16);
    let profile = default_profile();
    let queue = SchedulingQueue::new(hints(&profile));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let algorithm = Algorithm::new(profile, config.percentage_of_nodes_to_score, seed);
    let scheduler = scheduler::Scheduler::new(
        algorithm,
        queue,
        config.scheduler_name.clone(),
        binder,
        recorder,
    );
    let stats = scheduler
        .run(updates_rx, outcomes_rx, leader_rx, shutdown.clone())
        .await;
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    writes.close();
    writes.wait().await;
    stats
}
