//! The Service proxy (kube-proxy's job, in its nftables mode, or its iptables mode where
//! nftables cannot be used): Services and EndpointSlices are watched into caches, and after
//! each change (at most once per [`MIN_SYNC`]) the Service ports that changed are rewritten in
//! one nftables transaction. The whole table is written anew at the first sync, after a failed
//! one, and every [`RESYNC`] (to repair rules changed by hand). The iptables mode writes all its
//! chains at every sync, one `iptables-restore` transaction per table.
//!
//! - [`model`]: Service ports and their usable endpoints, from the API objects;
//! - [`rules`]: the nftables ruleset document; [`nft`]: applying it;
//! - [`iptables`]: the iptables layout and applying it;
//! - [`bed`]: two network namespaces to try rules with real traffic (tests, benchmarks).

pub mod bed;
pub mod iptables;
pub mod model;
pub mod nft;
pub mod rules;
#[cfg(test)]
mod tests;
pub mod tool;

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

/// Which rules the proxy writes, and with what.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The table `ip keel-proxy`, through `nft`.
    Nftables(nft::Nft),
    /// kube-proxy's iptables chains, through `iptables-restore`.
    Iptables(iptables::Iptables),
}

impl Backend {
    /// Brings the rules from `applied` (what the last successful sync wrote, if known) to
    /// `ports`; returns whether anything was written, and whether it was everything.
    async fn sync(
        &self,
        applied: Option<&[model::ServicePort]>,
        ports: &[model::ServicePort],
    ) -> Result<Option<bool>, String> {
        match self {
            Backend::Nftables(nft) => {
                let (document, full) = match applied {
                    Some(old) => match rules::render_changes(old, ports) {
                        Some(changes) => (changes, false),
                        None => return Ok(None),
                    },
                    None => (rules::render(ports), true),
                };
                nft.apply(&document).await.map(|()| Some(full))
            }
            Backend::Iptables(tables) => {
                if applied == Some(ports) {
                    return Ok(None);
                }
                tables.sync(ports).await.map(|()| Some(true))
            }
        }
    }
}

/// The proxy for one node.
pub struct ServiceProxy {
    client: Client,
    node: String,
    backend: Backend,
}

impl ServiceProxy {
    pub fn new(client: Client, node: impl Into<String>, backend: Backend) -> Self {
        ServiceProxy {
            client,
            node: node.into(),
            backend,
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
            let started = std::time::Instant::now();
            let whole = applied.is_none();
            match self.backend.sync(applied.as_deref(), &ports).await {
                Ok(None) => {}
                Ok(Some(full)) => {
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
                    tracing::warn!(%error, full = whole, "syncing service rules failed; writing the whole table again");
                    applied = None;
                    next_resync = tokio::time::Instant::now() + MIN_SYNC;
                }
            }
        }
    }
}
