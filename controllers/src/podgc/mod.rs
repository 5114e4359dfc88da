//! The pod garbage collector: every [`PERIOD`] it deletes finished pods beyond
//! `--terminated-pod-gc-threshold`, force-deletes pods bound to nodes that are gone (once a
//! node has been missing from the cache for [`QUARANTINE`] and a live read confirms it), and
//! force-deletes terminating pods that were never scheduled. Decisions in [`decide`].

pub mod decide;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, BoxFuture};
use keel_client::k8s_openapi::api::core::v1::{Node, Pod};
use keel_client::store::Store;
use keel_client::{DeleteParams, Error};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use decide::Why;

/// How often pods are looked at (Kubernetes' gcCheckPeriod).
pub const PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing before its pods are collected (Kubernetes': 40 s).
pub const QUARANTINE: Duration = Duration::from_secs(40);

struct Collector {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    missing_since: HashMap<String, Instant>,
}

/// Runs the collector until `stop`.
pub fn start(ctx: Arc<Context>, stop: CancellationToken) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        let pods = ctx.informers.of::<Pod>().store();
        let nodes = ctx.informers.of::<Node>().store();
        let ready = async {
            pods.wait_until_ready().await?;
            nodes.wait_until_ready().await
        };
        let ready = tokio::select! {
            _ = stop.cancelled() => return,
            ready = ready => ready,
        };
        if ready.is_err() {
            return;
        }
        let mut collector = Collector {
            ctx,
            pods,
            nodes,
            missing_since: HashMap::new(),
        };
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            collector.pass().await;
        }
    })
}

impl Collector {
    async fn pass(&mut self) {
        let pods = self.pods.state();
        let threshold = self.ctx.options.terminated_pod_gc_threshold;
        let mut doomed: Vec<(Arc<Pod>, Why)> = decide::terminated(&pods, threshold)
            .into_iter()
            .map(|p| (p, Why::Terminated))
            .collect();
        let nodes: HashSet<String> = self
            .nodes
            .state()
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let missing = decide::missing_nodes(&pods, &nodes);
        let now = Instant::now();
        self.missing_since.retain(|n, _| missing.contains(n));
        let mut gone = HashSet::new();
        for node in missing {
            let since = *self.missing_since.entry(node.clone()).or_insert(now);
            if now.duration_since(since) < QUARANTINE {
                continue;
            }
            // The cache may lag: only a live read saying NotFound counts.
            match self.ctx.api_all::<Node>().get(&node).await {
                Err(e) if e.is_not_found() => {
                    gone.insert(node);
                }
                _ => {}
            }
        }
        doomed.extend(
            decide::orphaned(&pods, &gone)
                .into_iter()
                .map(|p| (p, Why::Orphaned)),
        );
        doomed.extend(
            decide::unscheduled_terminating(&pods)
                .into_iter()
                .map(|p| (p, Why::UnscheduledTerminating)),
        );
        join_all(doomed.into_iter().map(|(pod, why)| self.delete(pod, why))).await;
    }

    async fn delete(&self, pod: Arc<Pod>, why: Why) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        // Finished pods go gracefully; the others have no kubelet left to finish them.
        let grace = match why {
            Why::Terminated => None,
            Why::Orphaned | Why::UnscheduledTerminating => Some(0),
        };
        let params = DeleteParams {
            grace_period_seconds: grace,
            preconditions: Some(keel_client::api::Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let result: Result<_, Error> = self.ctx.api::<Pod>(&namespace).delete(&name, &params).await;
        match result {
            Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), ?why, "pod collected"),
            Err(e) if e.is_not_found() => {}
            Err(error) => tracing::debug!(pod = %name, %error, "collecting a pod"),
        }
    }
}
