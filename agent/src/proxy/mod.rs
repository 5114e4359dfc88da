//! The Service proxy (kube-proxy's job, in its nftables mode): Services and EndpointSlices are
//! watched into caches, and after each change (at most once per [`MIN_SYNC`]) the Service ports
//! that changed are rewritten in one nftables transaction. The whole table is written anew at
//! the first sync, after a failed one, and every [`RESYNC`] (to repair rules changed by hand).
//!
//! - [`model`]: Service ports and their usable endpoints, from the API objects;
//! - [`rules`]: the ruleset document;
//! - [`nft`]: applying it;
//! - [`bed`]: two network namespaces to try rules with real traffic (tests, benchmarks).

pub mod bed;
pub mod model;
pub mod nft;
pub mod rules;
#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_client::k8s_openapi::api::core::v1::Service;
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_client::reflector::{reflector, store, Store};
use keel_client::watcher::watcher;
use keel_client::{Api, Client, WatchParams};
use tokio_util::sync::CancellationToken;

/// The shortest time between two syncs.
pub const MIN_SYNC: Duration = Duration::from_secs(1);
/// The longest time between two full syncs.
pub const RESYNC: Duration = Duration::from_secs(3600);

/// The proxy for one node.
pub struct ServiceProxy {
    client: Client,
    node: String,
    nft: nft::Nft,
}

impl ServiceProxy {
    pub fn new(client: Client, node: impl Into<String>, nft: nft::Nft) -> Self {
        ServiceProxy {
            client,
            node: node.into(),
            nft,
        }
    }

    /// Keeps the node's rules in step with the Services until `stop`. Never fails: a watch
    /// error is retried by the watcher and a refused ruleset is logged and tried again.
    pub async fn run(self, stop: CancellationToken) {
        let (services, services_writer) = store::<Service>();
        let (slices, slices_writer) = store::<EndpointSlice>();
        let service_events = reflector(
            services_writer,
            watcher(
                Api::<Service>::all(self.client.clone()),
                WatchParams::default(),
            ),
        )
        .map(|_| ());
        let slice_events = reflector(
            slices_writer,
            watcher(
                Api::<EndpointSlice>::all(self.client.clone()),
                WatchParams::default(),
            ),
        )
        .map(|_| ());
        let changes = futures::stream::select(service_events, slice_events);
        self.sync_on(changes, &services, &slices, stop).await;
    }

    async fn sync_on(
        &self,
        changes: impl Stream<Item = ()>,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        stop: CancellationToken,
    ) {
        let mut changes = std::pin::pin!(changes);
        // The Service ports the table holds, when known.
        let mut applied: Option<Vec<model::ServicePort>> = None;
        let mut next_resync = tokio::time::Instant::now() + RESYNC;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                change = changes.next() => {
                    if change.is_none() {
                        return;
                    }
                    // Take in what else arrived in the meantime, up to MIN_SYNC.
                    let window = tokio::time::sleep(MIN_SYNC);
                    tokio::pin!(window);
                    loop {
                        tokio::select! {
                            _ = &mut window => break,
                            more = changes.next() => if more.is_none() { break },
                        }
                    }
                }
                _ = tokio::time::sleep_until(next_resync) => {
                    // Rules changed behind the proxy's back are put back.
                    applied = None;
                }
            }
            if !services.is_ready() || !slices.is_ready() {
                continue;
            }
            let ports = model::service_ports(&services.state(), &slices.state(), &self.node);
            let (document, full) = match &applied {
                Some(old) => match rules::render_changes(old, &ports) {
                    Some(changes) => (changes, false),
                    None => continue,
                },
                None => (rules::render(&ports), true),
            };
            let started = std::time::Instant::now();
            match self.nft.apply(&document).await {
                Ok(()) => {
                    tracing::debug!(
                        service_ports = ports.len(),
                        full,
                        took = ?started.elapsed(),
                        "service rules synced"
                    );
                    applied = Some(ports);
                    if full {
                        next_resync = tokio::time::Instant::now() + RESYNC;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, full, "syncing service rules failed; writing the whole table again");
                    applied = None;
                    next_resync = tokio::time::Instant::now() + MIN_SYNC;
                }
            }
        }
    }
}
