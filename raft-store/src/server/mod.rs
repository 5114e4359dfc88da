//! Serving a member: the etcd v3 client API on the client port and the raft transport on the peer
//! port, plus the member's background duties.
//!
//! Shutdown order: cancel the token; the servers stop accepting and finish in-flight calls, watch
//! and keep-alive sessions end, background loops end; then raft stops. `run` returns after all of
//! that is joined.

pub mod auth;
pub mod authority;
pub mod cluster;
pub mod guard;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod status;
pub mod watch;

use std::net::SocketAddr;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use keel_proto::etcdserverpb::auth_server::AuthServer;
use keel_proto::etcdserverpb::cluster_server::ClusterServer;
use keel_proto::etcdserverpb::kv_server::KvServer;
use keel_proto::etcdserverpb::lease_server::LeaseServer;
use keel_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use keel_proto::etcdserverpb::watch_server::WatchServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NodeConfig;
use crate::node::{Node, StartError};
use crate::raft::peer_service::PeerService;
use crate::tls::MaybeTls;
use crate::validate::MAX_REQUEST_BYTES;

/// gRPC framing headroom over the largest request etcd accepts, as etcd allows.
const GRPC_OVERHEAD: usize = 512 * 1024;
const LEASE_TICK: Duration = Duration::from_millis(250);
/// How long a removed member keeps answering peers before it stops.
const REMOVED_LINGER: Duration = Duration::from_secs(2);

/// Failures that stop a member.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

async fn bind(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServeError> {
    let mut out = Vec::new();
    for addr in addrs {
        out.push(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: *addr,
                    source,
                })?,
        );
    }
    Ok(out)
}

/// Connections accepted on `listener`, through TLS when the port is configured for it.
fn incoming(
    listener: TcpListener,
    tls: Option<&std::sync::Arc<rustls::ServerConfig>>,
    stop: &CancellationToken,
) -> BoxStream<'static, std::io::Result<MaybeTls>> {
    match tls {
        Some(config) => crate::tls::incoming(listener, config.clone(), stop.clone())
            .map(|conn| conn.map(|c| MaybeTls::Tls(Box::new(c))))
            .boxed(),
        None => TcpListenerStream::new(listener)
            .map(|conn| {
                conn.map(|s| {
                    // Small request/response messages: latency matters more than packet count.
                    let _ = s.set_nodelay(true);
                    MaybeTls::Plain(s)
                })
            })
            .boxed(),
    }
}

fn server_tls(
    files: &Option<crate::tls::TlsFiles>,
) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ServeError> {
    files
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()
        .map_err(|e| ServeError::Start(StartError::Config(e.to_string())))
}

/// Starts a member and serves until `shutdown` is cancelled.
///
/// `extra` are more gRPC services (keel's API server) served on every client listener next to
/// the etcd API.
pub async fn run(
    config: NodeConfig,
    extra: tonic::service::Routes,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    // Bind before starting raft so a port clash fails fast and nothing half-starts.
    let client_listeners = bind(&config.listen_client).await?;
    let peer_listeners = bind(&config.listen_peer).await?;
    let metrics_listeners = bind(&config.listen_metrics).await?;
    let client_tls = server_tls(&config.client_tls)?;
    let peer_tls = server_tls(&config.peer_tls)?;
    let node = Node::start(config).await?;
    tracing::info!(member = %format_args!("{:x}", node.id), cluster = %format_args!("{:x}", node.cluster_id), name = %node.name, "member started");

    let tasks = TaskTracker::new();
    let mut servers = Vec::new();
    for listener in peer_listeners {
        let router =
            tonic::transport::Server::builder().add_service(PeerService::server(node.clone()));
        let conns = incoming(listener, peer_tls.as_ref(), &shutdown);
        let stop = shutdown.clone();
        servers.push(tasks.spawn(async move {
            router
                .serve_with_incoming_shutdown(conns, stop.cancelled())
                .await
        }));
    }
    if let Some(queue) = node.take_read_queue() {
        tasks.spawn(node.clone().run_read_batches(queue, shutdown.clone()));
    }
    if let Some(queue) = node.take_write_queue() {
        tasks.spawn(node.clone().run_forward_batches(queue, shutdown.clone()));
    }
    // The peer transport serves first: recovery needs the cluster's commit point.
    tokio::select! {
        _ = shutdown.cancelled() => {}
        recovered = node.wait_for_recovery() => recovered?,
    }
    tracing::info!("state machine recovered; serving clients");
    let max = MAX_REQUEST_BYTES + GRPC_OVERHEAD;
    // One guard per member: the simple tokens it issues are good on any of its listeners.
    let guard = std::sync::Arc::new(guard::Guard::new(node.clone()));
    for listener in client_listeners {
        let incoming = incoming(listener, client_tls.as_ref(), &shutdown)
            .map(|conn| conn.map(authority::AuthorityFix::new));
        let router = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_routes(extra.clone())
            .add_service(
                KvServer::new(kv::KvService::new(node.clone(), guard.clone()))
                    .max_decoding_message_size(max),
            )
            .add_service(
                WatchServer::new(watch::WatchService::new(
                    node.clone(),
                    guard.clone(),
                    tasks.clone(),
                    shutdown.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(
                LeaseServer::new(lease::LeaseService::new(
                    node.clone(),
                    guard.clone(),
                    tasks.clone(),
                    shutdown.clone(),
                ))
                .max_decoding_message_size(max),
            )
            .add_service(ClusterServer::new(cluster::ClusterService::new(
                node.clone(),
                guard.clone(),
            )))
            .add_service(MaintenanceServer::new(
                maintenance::MaintenanceService::new(node.clone(), guard.clone()),
            ))
            .add_service(AuthServer::new(auth::AuthService::new(
                node.clone(),
                guard.clone(),
            )));
        let stop = shutdown.clone();
        servers.push(tasks.spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, stop.cancelled())
                .await
        }));
    }

    let publisher = node.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = publisher.publish() => {}
        }
    });
    // A member removed from the cluster stops, as etcd's does: it must never rejoin under the ID
    // it had, and serving stale data would mislead clients.
    // It also counts leader changes for the metrics.
    let watched = node.clone();
    let stop = shutdown.clone();
    let removed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let removed_flag = removed.clone();
    let fatal = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fatal_flag = fatal.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut last_leader = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if watched.is_removed() {
                        // Linger briefly: peers that have not yet learned of the removal still
                        // send here, and are told to look for the new leader.
                        tracing::error!("this member was removed from the cluster; stopping");
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(REMOVED_LINGER) => {}
                        }
                        removed_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        stop.cancel();
                        break;
                    }
                    // openraft stops its core on a fatal error (a storage failure, a
                    // violated invariant); a member whose raft is dead must not linger as if
                    // alive, holding clients and peers.
                    if let Err(fatal) = &watched.metrics().running_state {
                        tracing::error!(error = %fatal, "raft stopped; shutting down");
                        fatal_flag.store(true, std::sync::atomic::Ordering::Relaxed);
                        stop.cancel();
                        break;
                    }
                    let leader = watched.leader();
                    if leader.is_some() && leader != last_leader {
                        crate::metrics::METRICS
                            .leader_changes
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    last_leader = leader.or(last_leader);
                },
            }
        }
    });
    for listener in metrics_listeners {
        let node = node.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::metrics::serve(listener, node, stop).await {
                tracing::warn!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    if let Some(retention) = node.config().auto_compaction {
        let compacting = node.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = compacting.auto_compact(retention) => {}
            }
        });
    }
    let lessor_node = node.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(LEASE_TICK);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => lessor_node.expire_leases().await,
            }
        }
    });

    tasks.close();
    let mut first_error = None;
    for server in servers {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "server failed");
                shutdown.cancel();
                first_error.get_or_insert(ServeError::Transport(e));
            }
            Err(join) => tracing::error!(error = %join, "server task panicked"),
        }
    }
    shutdown.cancel();
    tasks.wait().await;
    node.shutdown().await;
    match first_error {
        Some(e) => Err(e),
        None if removed.load(std::sync::atomic::Ordering::Relaxed) => {
            Err(ServeError::Start(StartError::Removed))
        }
        None if fatal.load(std::sync::atomic::Ordering::Relaxed) => Err(ServeError::Start(
            StartError::Raft("raft stopped on a fatal error; see the log".into()),
        )),
        None => Ok(()),
    }
}
