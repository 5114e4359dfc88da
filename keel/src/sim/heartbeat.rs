//! Keeping simulated nodes alive, as kubelet does: each node renews its Lease
//! `kube-node-lease/<node>` every renew interval, and posts its status when it drifted from
//! what the kubelet would post (someone marked it NotReady, say) or at least every five
//! minutes. The Lease objects are the pure functions of [`keel_client::node_lease`]; [`Heartbeats::run`] is one node's
//! loop, timed by [`Schedule`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_client::node_lease::{lease, renewed, LEASE_NAMESPACE};
use keel_client::{reflector, watcher, Api, Client, Error, Store, WatchParams};
use keel_types::k8s_openapi::api::coordination::v1::Lease;
use keel_types::k8s_openapi::api::core::v1::Node;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use keel_types::k8s_openapi::chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::limit::WriteLimit;
use super::nodes::{Fleet, SIM_LABEL};
use super::schedule::Schedule;
use super::stats::Stats;

/// A cache of every simulated node, as a watch reports it, and the future that fills it
/// (poll it until shutdown). Heartbeats read it to notice a status someone else changed.
pub fn node_cache(client: Client) -> (Store<Node>, impl Future<Output = ()> + Send) {
    let (store, writer) = reflector::store();
    let params = WatchParams {
        label_selector: format!("{SIM_LABEL}=true"),
        ..Default::default()
    };
    let events = reflector(writer, watcher::watcher(Api::<Node>::all(client), params));
    let fill = events.for_each(|event| async move {
        if let Err(error) = event {
            tracing::warn!(%error, "node watch failed; it resumes by itself");
        }
    });
    (store, fill)
}

/// What registering a node left for its heartbeat.
#[derive(Debug, Clone)]
pub struct Registered {
    /// The Node's UID, for its Lease's ownerReference.
    pub uid: String,
    /// Since when the posted conditions have held.
    pub since: Time,
}

/// One node's heartbeat state.
struct Beat {
    i: usize,
    name: String,
    /// The Node's UID, for its Lease's ownerReference.
    uid: String,
    /// Since when the posted conditions have held.
    since: Time,
    /// The Lease as last written, to renew with one conditional write.
    held: Option<Lease>,
    schedule: Schedule,
}

/// Everything the heartbeats of a fleet share.
pub struct Heartbeats {
    pub client: Client,
    pub fleet: Arc<Fleet>,
    pub writes: WriteLimit,
    pub stats: Arc<Stats>,
    pub lease_duration: Duration,
    pub interval: Duration,
    /// The instant every node's renewal slot is counted from.
    pub epoch: Instant,
    pub nodes: Store<Node>,
}

impl Heartbeats {
    /// Node `i`'s kubelet heartbeat, until `shutdown`. Errors are logged and retried: a
    /// renewal after a backoff, a status post on the next tick. Shutdown also cuts a tick
    /// short, so that a master that does not answer cannot hold the sim up.
    pub async fn run(
        self: Arc<Self>,
        i: usize,
        registered: Registered,
        shutdown: CancellationToken,
    ) {
        let mut beat = Beat {
            i,
            name: self.fleet.name(i),
            uid: registered.uid,
            since: registered.since,
            held: None,
            schedule: Schedule::new(
                i,
                self.fleet.count(),
                self.epoch,
                self.interval,
                Instant::now(),
            ),
        };
        loop {
            let wake = tokio::time::Instant::from_std(beat.schedule.next_wake());
            let tick = async {
                tokio::time::sleep_until(wake).await;
                self.tick(&mut beat).await;
            };
            if shutdown.run_until_cancelled(tick).await.is_none() {
                return;
            }
        }
    }

    /// One tick of one node: renew its Lease, then post its status if that is due.
    async fn tick(&self, beat: &mut Beat) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        match self
            .renew(&leases, &beat.name, &beat.uid, &mut beat.held)
            .await
        {
            Ok(()) => {
                Stats::count(&self.stats.lease_renewals);
                beat.schedule.renewed(Instant::now());
            }
            Err(error) => {
                Stats::count(&self.stats.failed_writes);
                tracing::warn!(node = %beat.name, %error, "renewing the node's Lease failed; retrying");
                beat.schedule.renew_failed(Instant::now());
            }
        }
        let drifted = self.drifted(beat.i, &beat.name);
        let now = Instant::now();
        if !beat.schedule.report_due(now, drifted) {
            return;
        }
        let stamp = Utc::now();
        if drifted {
            beat.since = Time(stamp);
        }
        let posted = Node {
            metadata: ObjectMeta {
                name: Some(beat.name.clone()),
                ..Default::default()
            },
            spec: None,
            status: Some(self.fleet.status(beat.i, Time(stamp), beat.since.clone())),
        };
        let nodes: Api<Node> = Api::all(self.client.clone());
        // Unconditional: the kubelet owns its node's status, whatever else changed.
        match self
            .writes
            .run(nodes.replace_status(&beat.name, &posted))
            .await
        {
            Ok(_) => {
                Stats::count(&self.stats.node_statuses);
                beat.schedule.reported(now);
            }
            Err(error) => {
                Stats::count(&self.stats.failed_writes);
                tracing::warn!(node = %beat.name, %error, "posting the node's status failed; retrying");
            }
        }
    }

    /// Whether the cached node's status differs from what its kubelet would post. A node
    /// the cache does not know (not filled yet, or deleted) has not drifted: a kubelet does
    /// not recreate its node, and the periodic post reports the loss.
    fn drifted(&self, i: usize, name: &str) -> bool {
        if !self.nodes.is_ready() {
            return false;
        }
        self.nodes
            .get(&keel_client::ObjectKey::cluster(name))
            .is_some_and(|node| self.fleet.status_drifted(i, node.status.as_ref()))
    }

    /// One renewal: from the Lease last written when there is one (a single conditional
    /// write), else from the stored one, else a new one. A failed write forgets the Lease
    /// held, so the next attempt starts from the stored one.
    async fn renew(
        &self,
        leases: &Api<Lease>,
        name: &str,
        node_uid: &str,
        held: &mut Option<Lease>,
    ) -> Result<(), Error> {
        let now = Utc::now();
        let current = match held.take() {
            Some(lease) => lease,
            None => match leases.get(name).await {
                Ok(stored) => stored,
                Err(e) if e.is_not_found() => {
                    let fresh = lease(name, node_uid, self.lease_duration, now);
                    *held = Some(self.writes.run(leases.create(&fresh)).await?);
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        let next = renewed(current, name, node_uid, self.lease_duration, now);
        *held = Some(self.writes.run(leases.replace(name, &next)).await?);
        Ok(())
    }
}
