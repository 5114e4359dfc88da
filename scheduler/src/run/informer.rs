//! The scheduler's informers: one watch each on pods, nodes and namespaces, their events sent
//! to the scheduling loop in the order each watch delivered them. They run whether or not this
//! scheduler leads, so a new leader starts with a warm cache.

use std::fmt::Debug;

use futures::StreamExt;
use keel_client::k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::{ListableResource, Metadata, Resource};
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, Client, WatchParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One event from one of the informers.
#[derive(Debug)]
pub enum Update {
    Pod(Box<Event<Pod>>),
    Node(Box<Event<Node>>),
    Namespace(Box<Event<Namespace>>),
}

/// Pods that can still need or hold a node: finished ones hold nothing.
pub const POD_FIELD_SELECTOR: &str = "status.phase!=Succeeded,status.phase!=Failed";

async fn feed<K>(
    api: Api<K>,
    params: WatchParams,
    wrap: fn(Event<K>) -> Update,
    tx: mpsc::Sender<Update>,
    shutdown: CancellationToken,
) where
    K: Resource
        + ListableResource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug
        + Send
        + 'static,
{
    let mut events = Box::pin(watcher(api, params));
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            next = events.next() => next,
        };
        match next {
            Some(Ok(event)) => {
                if tx.send(wrap(event)).await.is_err() {
                    return;
                }
            }
            Some(Err(e)) => {
                tracing::debug!(kind = K::KIND, error = %e, "scheduler informer: watch interrupted; resuming");
            }
            None => return,
        }
    }
}

/// Runs the three informers until `shutdown`, sending to `tx`.
pub async fn run(client: Client, tx: mpsc::Sender<Update>, shutdown: CancellationToken) {
    let pods = feed(
        Api::<Pod>::all(client.clone()),
        WatchParams {
            field_selector: POD_FIELD_SELECTOR.into(),
            ..Default::default()
        },
        |e| Update::Pod(Box::new(e)),
        tx.clone(),
        shutdown.clone(),
    );
    let nodes = feed(
        Api::<Node>::all(client.clone()),
        WatchParams::default(),
        |e| Update::Node(Box::new(e)),
        tx.clone(),
        shutdown.clone(),
    );
    let namespaces = feed(
        Api::<Namespace>::all(client),
        WatchParams::default(),
        |e| Update::Namespace(Box::new(e)),
        tx,
        shutdown,
    );
    tokio::join!(pods, nodes, namespaces);
}
