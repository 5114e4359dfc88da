//! Keeping simulated nodes alive, as kubelet does: each node renews its Lease
//! `kube-node-lease/<node>` every renew interval, and posts its status when it drifted from
//! what the kubelet would post (someone marked it NotReady, say) or at least every five
//! minutes. The Lease objects are pure functions below; [`Heartbeats::run`] is one node's
//! loop, timed by [`Schedule`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_client::{reflector, watcher, Api, Client, Error, Store, WatchParams};
use keel_types::k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use keel_types::k8s_openapi::api::core::v1::Node;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    MicroTime, ObjectMeta, OwnerReference, Time,
};
use keel_types::k8s_openapi::chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::limit::WriteLimit;
use super::nodes::{Fleet, SIM_LABEL};
use super::schedule::Schedule;
use super::stats::Stats;

/// Where kubelets keep their node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Lease node `node`'s kubelet holds, renewed at `now`; owned by the Node (uid
/// `node_uid`) so that it goes when the node does, as kubelet's does.
pub fn lease(node: &str, node_uid: &str, duration: Duration, now: DateTime<Utc>) -> Lease {
    let owner = (!node_uid.is_empty()).then(|| OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        ..Default::default()
    });
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(
                i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// `current` renewed at `now` by `node`'s kubelet: its holder and duration set again (a
/// Lease found with someone else's is taken over, as kubelet takes its own back), the rest
/// of the object — resourceVersion included, so the write is conditional — kept.
pub fn renewed(
    current: Lease,
    node: &str,
    node_uid: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Lease {
    let fresh = lease(node, node_uid, duration, now);
    let mut next = current;
    if next
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        next.metadata.owner_references = fresh.metadata.owner_references;
    }
    let mut spec = next.spec.unwrap_or_default();
    let wanted = fresh.spec.unwrap_or_default();
    spec.holder_identity = wanted.holder_identity;
    spec.lease_duration_seconds = wanted.lease_duration_seconds;
    spec.renew_time = wanted.renew_time;
    next.spec = Some(spec);
    next
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::k8s_openapi::chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_node_lease_is_held_by_the_node_and_owned_by_it() {
        let l = lease("sim-node-0001", "uid-1", Duration::from_secs(40), at(0));

        assert_eq!(l.metadata.name.as_deref(), Some("sim-node-0001"));
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let owner = &l.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("sim-node-0001"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(at(0))));
    }

    #[test]
    fn renewing_moves_the_renew_time_and_keeps_the_version_to_write_against() {
        let mut current = lease("n", "uid-1", Duration::from_secs(40), at(0));
        current.metadata.resource_version = Some("17".into());

        let next = renewed(current, "n", "uid-1", Duration::from_secs(40), at(10));

        assert_eq!(next.metadata.resource_version.as_deref(), Some("17"));
        assert_eq!(next.spec.unwrap().renew_time, Some(MicroTime(at(10))));
    }

    #[test]
    fn renewing_a_lease_someone_else_wrote_takes_it_back() {
        let mut current = lease("n", "", Duration::from_secs(15), at(0));
        if let Some(spec) = current.spec.as_mut() {
            spec.holder_identity = Some("intruder".into());
            spec.lease_transitions = Some(3);
        }

        let next = renewed(current, "n", "uid-1", Duration::from_secs(40), at(10));

        assert_eq!(next.metadata.owner_references.unwrap()[0].uid, "uid-1");
        let spec = next.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.lease_transitions, Some(3), "untouched");
    }
}
