//! The node's [`PodFiles`]: the volume manager and environment resolution of
//! [`crate::podfiles`], reading the cluster through the API, with the node's facts (its
//! address and allocatable) for the downward API.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use keel_client::Client;
use keel_types::k8s_openapi::api::core::v1::{Container, Node, Pod};
use tokio::sync::watch;

use super::configs::Resolved;
use super::PodFiles;
use crate::podfiles::{resolve_env, ApiSources, NodeFacts, VolumeManager};

/// Volumes and environment of the pods on this node.
pub struct NodeFiles {
    volumes: VolumeManager<ApiSources>,
    node: watch::Receiver<Option<Arc<Node>>>,
    host_ip: String,
}

impl NodeFiles {
    /// Files under `root` (the agent's `--root-dir`), sources read through `client`, `node`
    /// the Node as the node agent last saw it.
    pub fn new(
        root: std::path::PathBuf,
        client: Client,
        node: watch::Receiver<Option<Arc<Node>>>,
        host_ip: String,
    ) -> Self {
        Self {
            volumes: VolumeManager::new(root, ApiSources::new(client)),
            node,
            host_ip,
        }
    }

    fn facts(&self, pod_ips: Vec<String>) -> NodeFacts {
        let allocatable = self
            .node
            .borrow()
            .as_ref()
            .and_then(|n| n.status.as_ref()?.allocatable.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, q)| Some((name, keel_types::Quantity::parse(&q.0).ok()?)))
            .collect();
        NodeFacts {
            pod_ips,
            host_ips: vec![self.host_ip.clone()],
            allocatable,
        }
    }
}

fn pod_ips(pod: &Pod) -> Vec<String> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ips.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|ip| ip.ip)
        .collect()
}

impl PodFiles for NodeFiles {
    fn setup<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), Vec<String>>> {
        async move {
            let facts = self.facts(pod_ips(pod));
            self.volumes
                .setup(pod, &facts)
                .await
                .map_err(|errors| errors.iter().map(ToString::to_string).collect())
        }
        .boxed()
    }

    fn resolve<'a>(
        &'a self,
        pod: &'a Pod,
        container: &'a Container,
        pod_ip: &'a str,
    ) -> BoxFuture<'a, Result<Resolved, String>> {
        async move {
            let ips = if pod_ip.is_empty() {
                pod_ips(pod)
            } else {
                vec![pod_ip.to_owned()]
            };
            let facts = self.facts(ips);
            let env = resolve_env(self.volumes.sources(), pod, container, &facts)
                .await
                .map_err(|e| e.to_string())?;
            for warning in &env.warnings {
                tracing::warn!(reason = warning.reason, message = %warning.message, "container environment");
            }
            let mounts = self.volumes.mounts(pod, container)?;
            Ok(Resolved {
                image_ref: String::new(),
                envs: env.vars,
                mounts,
            })
        }
        .boxed()
    }

    fn teardown<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, ()> {
        async move {
            if let Err(error) = self.volumes.teardown(uid) {
                tracing::warn!(pod_uid = %uid, %error, "tearing down a pod's volumes");
            }
        }
        .boxed()
    }
}
