//! keel-dns: the cluster's DNS (the role CoreDNS plays in Kubernetes), following the
//! Kubernetes DNS specification 1.0.1.
//!
//! - [`zone`]: the records, built from Services and EndpointSlices; pure;
//! - [`server`]: answering over UDP and TCP with hickory-server, forwarding other names;
//! - [`run`] (here): the informers that keep the zone current, wired to the server.

pub mod server;
pub mod zone;
#[cfg(test)]
mod zone_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hickory_server::ServerFuture;
use keel_client::k8s_openapi::api::core::v1::Service;
use keel_client::k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_client::reflector::{reflector, store};
use keel_client::watcher::watcher;
use keel_client::{Api, Client, WatchParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use hickory_server::proto;
pub use zone::Zone;

/// Kubernetes' default cluster domain.
pub const DEFAULT_DOMAIN: &str = "cluster.local";
/// How long a TCP client may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// Changes arriving within this window are folded into one rebuild of the zone.
const REBUILD_WINDOW: Duration = Duration::from_millis(100);

/// Where and what to serve.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    pub domain: String,
    /// Servers for names outside the zone.
    pub upstream: Vec<SocketAddr>,
}

/// Binds UDP and TCP on `config.listen` and answers from `zones` until `stop`.
pub async fn serve(
    config: &DnsConfig,
    zones: watch::Receiver<Arc<Zone>>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handler = server::Handler::new(zones, config.upstream.clone());
    let mut server = ServerFuture::new(handler);
    server.register_socket(tokio::net::UdpSocket::bind(config.listen).await?);
    server.register_listener(
        tokio::net::TcpListener::bind(config.listen).await?,
        TCP_TIMEOUT,
    );
    tokio::select! {
        _ = stop.cancelled() => {
            let _ = server.shutdown_gracefully().await;
        }
        done = server.block_until_done() => {
            done.map_err(|e| std::io::Error::other(e.to_string()))?;
        }
    }
    Ok(())
}

/// Watches Services and EndpointSlices through `client` and serves the zone they make until
/// `stop`. Fails only if the address cannot be bound.
pub async fn run(
    client: Client,
    config: DnsConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let (zones_tx, zones) = watch::channel(Arc::new(Zone::build(&config.domain, &[], &[])));
    let domain = config.domain.clone();
    let keeper = async move {
        let (services, services_writer) = store::<Service>();
        let (slices, slices_writer) = store::<EndpointSlice>();
        let service_events = reflector(
            services_writer,
            watcher(Api::<Service>::all(client.clone()), WatchParams::default()),
        )
        .map(|_| ());
        let slice_events = reflector(
            slices_writer,
            watcher(Api::<EndpointSlice>::all(client), WatchParams::default()),
        )
        .map(|_| ());
        let mut changes = std::pin::pin!(futures::stream::select(service_events, slice_events));
        while changes.next().await.is_some() {
            let window = tokio::time::sleep(REBUILD_WINDOW);
            tokio::pin!(window);
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    more = changes.next() => if more.is_none() { break },
                }
            }
            if services.is_ready() && slices.is_ready() {
                zones_tx.send_replace(Arc::new(Zone::build(
                    &domain,
                    &services.state(),
                    &slices.state(),
                )));
            }
        }
    };
    tokio::select! {
        served = serve(&config, zones, stop.clone()) => served,
        _ = keeper => Ok(()),
        _ = stop.cancelled() => Ok(()),
    }
}
