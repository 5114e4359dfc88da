//! Pods on a real agent, as the agent tests make and read them: a master with one agent, pod
//! manifests bound to its node, and the phase, conditions, running containers and Events a
//! test checks.

use std::collections::HashMap;

use anyhow::Result;
use keel_agent::image::BUSYBOX_IMAGE;
use keel_client::{Api, Client, ListParams};
use keel_types::k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::{json, Value};

use crate::agent::AgentNode;
use crate::sim::ready;
use crate::{Cluster, Flavor};

/// A master and one agent named `agent-a`; `index` keeps the node's bridge and subnet apart
/// from other tests running at the same time. `None` where containers cannot run.
pub async fn start(index: u32) -> Result<Option<(Cluster, Client, AgentNode)>> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let Some(node) = AgentNode::start(&cluster, "agent-a", index, &[]).await? else {
        return Ok(None);
    };
    Ok(Some((cluster, client, node)))
}

/// Pod `name` in `default` with `spec`, bound to `node`.
pub fn pod(name: &str, node: &str, spec: Value) -> Result<Pod> {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

/// A busybox container running `script` in `sh -c`.
pub fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX_IMAGE, "command": ["sh", "-c", script]})
}

pub async fn pod_now(pods: &Api<Pod>, name: &str) -> Option<Pod> {
    pods.get(name).await.ok()
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// The status of condition `type_`.
pub fn condition(pod: &Pod, type_: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

/// The runtime's id of `container` while it runs.
pub fn running_id(pod: &Pod, container: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == container && s.state.as_ref().is_some_and(|st| st.running.is_some()))?
        .container_id
        .as_ref()?
        .strip_prefix("containerd://")
        .map(str::to_owned)
}

/// The CRI label filter of a pod's sandboxes and containers.
pub fn uid_filter(uid: &str) -> HashMap<String, String> {
    HashMap::from([("io.kubernetes.pod.uid".to_owned(), uid.to_owned())])
}

/// The (reason, message) of every Event about pod `name` in `default`.
pub async fn events_about(client: &Client, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .into_iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(name))
                .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}
