//! The node lifecycle controller and taint-based eviction: watches node heartbeats (their
//! Leases in `kube-node-lease` and their status), marks a node that stopped beating as
//! unreachable (conditions Unknown, pods Ready=False, the `unreachable` taints), gives nodes
//! whose kubelet reports NotReady the `not-ready` taints, lifts both when the node is back,
//! and evicts pods from NoExecute-tainted nodes once their tolerations run out.
//!
//! Decisions are pure ([`health`], [`eviction`], [`zones`]); this module is a periodic
//! monitor, as Kubernetes' is: every [`PERIOD`] it looks at every node, so a toleration that
//! runs out is acted on within a period without timers per pod.

pub mod eviction;
pub mod health;
pub mod zones;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use keel_client::k8s_openapi::api::coordination::v1::Lease;
use keel_client::k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use keel_client::k8s_openapi::chrono::Utc;
use keel_client::store::Store;
use keel_client::{DeleteParams, Error, ObjectKey, Patch};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::{self, NORMAL};
use health::{Health, Heartbeat};

/// The component name on this controller's Events (Kubernetes' node lifecycle controller).
pub const COMPONENT: &str = "node-controller";
/// The component name on eviction Events.
pub const EVICTION_COMPONENT: &str = "taint-eviction-controller";
/// How often every node is looked at (`--node-monitor-period`; Kubernetes' default is 5 s,
/// shorter here because the whole pass is a scan of in-memory caches).
pub const PERIOD: Duration = Duration::from_secs(1);
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

struct Monitor {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    beats: HashMap<String, Heartbeat>,
    buckets: HashMap<String, zones::Bucket>,
    /// The health last acted on per node, so each transition is recorded once.
    last: HashMap<String, Health>,
}

/// Runs the controller until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let nodes = ctx.informers.of::<Node>().store();
        let leases = ctx.informers.of::<Lease>().store();
        let pods = ctx.informers.of::<Pod>().store();
        let ready = async {
            nodes.wait_until_ready().await?;
            leases.wait_until_ready().await?;
            pods.wait_until_ready().await
        };
        let ready = tokio::select! {
            _ = stop.cancelled() => return,
            ready = ready => ready,
        };
        if ready.is_err() {
            return;
        }
        let mut monitor = Monitor {
            ctx,
            nodes,
            leases,
            pods,
            beats: HashMap::new(),
            buckets: HashMap::new(),
            last: HashMap::new(),
        };
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            monitor.pass().await;
        }
    })
}

impl Monitor {
    /// One look at every node.
    async fn pass(&mut self) {
        let now = Instant::now();
        let wall = Utc::now();
        let grace = self.ctx.options.node_monitor_grace_period;
        let nodes = self.nodes.state();
        let mut healths: Vec<(Arc<Node>, Health)> = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let version = self.heartbeat_version(node, &name);
            let beat = Heartbeat::observe(self.beats.get(&name), &version, now);
            let health = health::health(node, &beat, grace, now);
            self.beats.insert(name, beat);
            healths.push((node.clone(), health));
        }
        // Forget nodes that are gone: a set of names, as scanning the nodes for each beat
        // costs the square of their number every pass.
        let present: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        self.beats.retain(|name, _| present.contains(name.as_str()));

        // Per zone: how many are unhealthy, hence how fast NoExecute taints may go on.
        let mut per_zone: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (node, health) in &healths {
            let entry = per_zone.entry(zone_of(node)).or_default();
            entry.0 += 1;
            if *health != Health::Ready {
                entry.1 += 1;
            }
        }
        for (node, health) in &healths {
            if let Err(error) = self.act(node, *health, &per_zone, now, wall).await {
                tracing::debug!(node = ?node.metadata.name, %error, "node lifecycle");
            }
        }
        self.evict(&nodes, wall).await;
    }

    /// What counts as a heartbeat: a new version of the node's Lease, or a new Ready
    /// heartbeat time in its status.
    fn heartbeat_version(&self, node: &Node, name: &str) -> String {
        let lease = self
            .leases
            .get(&ObjectKey::namespaced(NODE_LEASE_NAMESPACE, name))
            .and_then(|l| l.metadata.resource_version.clone())
            .unwrap_or_default();
        let posted = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_rfc3339())
            .unwrap_or_default();
        format!("{lease}/{posted}")
    }

    async fn act(
        &mut self,
        node: &Node,
        health: Health,
        per_zone: &BTreeMap<String, (usize, usize)>,
        now: Instant,
        wall: keel_client::k8s_openapi::chrono::DateTime<Utc>,
    ) -> Result<(), Error> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let nodes = self.ctx.api_all::<Node>();
        if health == Health::Unreachable {
            if let Some(conditions) = health::unknown_conditions(node, wall) {
                nodes
                    .patch_status(
                        &name,
                        &Patch::Merge(json!({"status": {"conditions": conditions}})),
                    )
                    .await?;
            }
        }
        let previous = self.last.insert(name.clone(), health);
        if previous.is_some_and(|p| p != health) || (previous.is_none() && health != Health::Ready)
        {
            let status = match health {
                Health::Ready => "NodeReady",
                _ => "NodeNotReady",
            };
            self.ctx.recorder.event(
                COMPONENT,
                events::reference(node),
                NORMAL,
                status,
                format!("Node {name} status is now: {status}"),
            );
            if health == Health::Unreachable {
                self.mark_pods_not_ready(&name).await;
            }
        }
        // The NoExecute taint goes on at the zone's pace; one already there stays.
        let execute = health != Health::Ready
            && (health::has_execute_taint(node, health) || {
                let (total, unhealthy) = per_zone.get(&zone_of(node)).copied().unwrap_or((1, 1));
                let rate = zones::rate(zones::zone_state(total, unhealthy), total);
                self.buckets
                    .entry(zone_of(node))
                    .or_insert_with(|| zones::Bucket::new(now))
                    .try_take(rate, now)
            });
        if let Some(taints) = health::taints(node, health, execute, wall) {
            set_taints(&nodes, node, &taints).await?;
        }
        Ok(())
    }

    /// Marks every pod on `node` not ready (Kubernetes' MarkPodsNotReady), with an Event.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Time(Utc::now());
        for pod in self.pods_on(node) {
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
                continue;
            };
            if ready.status == "False" {
                continue;
            }
            *ready = PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(now.clone()),
                ..ready.clone()
            };
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
            match self
                .ctx
                .api::<Pod>(&namespace)
                .patch_status(&name, &patch)
                .await
            {
                Ok(_) => self.ctx.recorder.event(
                    COMPONENT,
                    events::reference(pod.as_ref()),
                    events::WARNING,
                    "NodeNotReady",
                    "Node is not ready".into(),
                ),
                Err(error) => tracing::debug!(pod = %name, %error, "marking a pod not ready"),
            }
        }
    }

    /// Deletes the pods whose tolerations of their node's NoExecute taints have run out.
    async fn evict(
        &self,
        nodes: &[Arc<Node>],
        now: keel_client::k8s_openapi::chrono::DateTime<Utc>,
    ) {
        // The pods of every node, gathered once per pass when some node needs them.
        let mut by_node: Option<HashMap<String, Vec<Arc<Pod>>>> = None;
        for node in nodes {
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            if !taints.iter().any(|t| t.effect == health::NO_EXECUTE) {
                continue;
            }
            let name = node.metadata.name.clone().unwrap_or_default();
            let by_node = by_node.get_or_insert_with(|| self.pods_by_node());
            for pod in by_node.get(&name).into_iter().flatten() {
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.clone())
                    .unwrap_or_default();
                if eviction::eviction(&tolerations, &taints, now) != eviction::Eviction::Now {
                    continue;
                }
                let namespace = pod.metadata.namespace.clone().unwrap_or_default();
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let params = DeleteParams {
                    preconditions: Some(keel_client::api::Preconditions {
                        uid: pod.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match self
                    .ctx
                    .api::<Pod>(&namespace)
                    .delete(&pod_name, &params)
                    .await
                {
                    Ok(_) => self.ctx.recorder.event(
                        EVICTION_COMPONENT,
                        events::reference(pod.as_ref()),
                        NORMAL,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {namespace}/{pod_name}"),
                    ),
                    Err(error) => {
                        tracing::debug!(pod = %pod_name, %error, "evicting a pod")
                    }
                }
            }
        }
    }

    /// Every pod not being deleted, by the node it is bound to.
    fn pods_by_node(&self) -> HashMap<String, Vec<Arc<Pod>>> {
        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in self.pods.state() {
            if let Some(node) = running_on(&pod).map(str::to_string) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        by_node
    }

    /// The pods bound to `node` that are not already on their way out.
    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| running_on(p) == Some(node))
            .collect()
    }
}

/// The node a pod not being deleted is bound to.
fn running_on(pod: &Pod) -> Option<&str> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn zone_of(node: &Node) -> String {
    node.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ZONE_LABEL))
        .cloned()
        .unwrap_or_default()
}

/// Replaces the node's taints if it is still at the version read (someone else's change to
/// the node wins, and the next pass looks again).
async fn set_taints(
    nodes: &keel_client::Api<Node>,
    node: &Node,
    taints: &[Taint],
) -> Result<(), Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": node.metadata.resource_version},
        {"op": "add", "path": "/spec/taints", "value": taints},
    ]);
    nodes.patch(&name, &Patch::Json(patch)).await.map(|_| ())
}
