//! The agent's own HTTPS server, kubelet's port 10250 API as the API server calls it for
//! `kubectl logs`, `exec`, `attach` and `port-forward`:
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}`: the container's CRI log file;
//! - `GET|POST /exec/{namespace}/{pod}/{container}?command=…`, `/attach/…` and
//!   `/portForward/{namespace}/{pod}`: the runtime prepares a stream (CRI `Exec`, `Attach`,
//!   `PortForward`) and the caller's upgraded connection is proxied to the runtime's
//!   streaming server.
//!
//! Callers authenticate with a client certificate signed by the cluster CA; only members of
//! `system:masters` (the API server's kubelet client identity) are served.

mod handlers;
mod log_stream;
pub mod logs;
mod lookup;
mod node_fields;
mod proxy;
pub mod query;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use node_fields::node_status_patch;
pub use tls::{Caller, Pem};

use crate::RuntimeClient;

/// kubelet's default `--port`.
pub const DEFAULT_PORT: u16 = 10250;
/// The group whose members the server serves: the API server's kubelet client certificate
/// carries it.
pub const AUTHORIZED_GROUP: &str = "system:masters";

/// How long a client has to finish its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a connection may finish at shutdown; streams never finish by themselves.
const DRAIN: Duration = Duration::from_secs(2);

/// The server's address and credentials: kubelet's `--address`/`--port`,
/// `--tls-cert-file`, `--tls-private-key-file` and `--client-ca-file`.
#[derive(Debug, Clone)]
pub struct AgentServerConfig {
    pub listen: SocketAddr,
    pub tls_cert: Pem,
    pub tls_key: Pem,
    pub client_ca: Pem,
}

impl AgentServerConfig {
    /// The configuration from kubelet-style file paths.
    pub fn from_files(listen: SocketAddr, cert: PathBuf, key: PathBuf, client_ca: PathBuf) -> Self {
        Self {
            listen,
            tls_cert: Pem::File(cert),
            tls_key: Pem::File(key),
            client_ca: Pem::File(client_ca),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reading the {what} from {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {what}: {message}")]
    Tls { what: &'static str, message: String },
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What every request handler shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub runtime: RuntimeClient,
    /// Owns the tasks of proxied streams, so they are joined at shutdown.
    pub tasks: TaskTracker,
    pub stop: CancellationToken,
}

/// The agent's server, bound and ready to serve.
pub struct AgentServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    runtime: RuntimeClient,
}

impl AgentServer {
    /// Binds the listener and loads the credentials.
    pub async fn bind(
        config: AgentServerConfig,
        runtime: RuntimeClient,
    ) -> Result<Self, ServeError> {
        let tls = tls::server_config(&config.tls_cert, &config.tls_key, &config.client_ca)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Listen {
                    address: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            tls,
            runtime,
        })
    }

    /// The address the server listens on (the port the kernel picked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Binds and serves until `stop`; returns once every connection and stream has ended.
    pub async fn serve(
        config: AgentServerConfig,
        runtime: RuntimeClient,
        stop: CancellationToken,
    ) -> Result<(), ServeError> {
        Self::bind(config, runtime).await?.run(stop).await;
        Ok(())
    }

    /// Serves until `stop`; returns once every connection and stream has ended.
    pub async fn run(self, stop: CancellationToken) {
        let tasks = TaskTracker::new();
        let shared = Shared {
            runtime: self.runtime,
            tasks: tasks.clone(),
            stop: stop.clone(),
        };
        let app = handlers::router(shared);
        let acceptor = TlsAcceptor::from(self.tls);
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection to the agent's server");
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                },
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake with the agent failed");
                        return;
                    }
                    Err(_) => return,
                };
                let caller = tls::caller(tls.get_ref().1);
                let service = hyper::service::service_fn(
                    move |mut request: hyper::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(handlers::Authenticated(caller.clone()));
                        app.clone().oneshot(request.map(axum::body::Body::new))
                    },
                );
                let builder = Builder::new(TokioExecutor::new());
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                tokio::pin!(connection);
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "agent connection ended");
                        }
                    }
                    _ = stop.cancelled() => {
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN, connection).await;
                    }
                }
            });
        }
        tasks.close();
        tasks.wait().await;
    }
}
