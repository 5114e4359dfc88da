//! The API server's connections to node agents (kubelet's port 10250 API), as
//! kube-apiserver's `--kubelet-client-certificate`/`--kubelet-client-key` and
//! `--kubelet-certificate-authority`: TLS that verifies the agent's serving certificate
//! against the cluster CA for the address dialled, and presents the masters' kubelet client
//! certificate.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::ApiError;
use crate::server::ApiServer;

/// PEM credentials for talking to agents.
#[derive(Debug, Clone)]
pub struct KubeletClientConfig {
    /// The CA agents' serving certificates chain to.
    pub ca_pem: String,
    /// The client certificate presented to agents, and its key.
    pub cert_pem: String,
    pub key_pem: String,
}

/// A ready TLS client for agents.
#[derive(Clone)]
pub struct KubeletClient {
    connector: TlsConnector,
    /// Owns the connections and byte copies of proxied streams, so they end and are joined
    /// when the server shuts down.
    pub(crate) tasks: TaskTracker,
    pub(crate) stop: CancellationToken,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeletClient")
    }
}

impl KubeletClient {
    pub fn new(config: &KubeletClientConfig) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(config.ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(|e| format!("CA: {e}"))?)
                .map_err(|e| format!("CA: {e}"))?;
        }
        let chain = CertificateDer::pem_slice_iter(config.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("client certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(config.key_pem.as_bytes())
            .map_err(|e| format!("client key: {e}"))?;
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("client certificate: {e}"))?;
        // Upgrades (exec, attach, port-forward) need HTTP/1.1.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(tls)),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        })
    }

    /// A TLS connection to the agent at `host:port`, its certificate verified for `host`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TlsStream<TcpStream>, ApiError> {
        let unreachable = |e: String| {
            ApiError::Internal(format!(
                "error dialing backend: dial tcp {}: {e}",
                join_host_port(host, port)
            ))
        };
        let name = ServerName::try_from(host.to_owned()).map_err(|e| unreachable(e.to_string()))?;
        let tcp = TcpStream::connect(join_host_port(host, port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }
}

/// `host:port`, with an IPv6 address in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl<S> ApiServer<S> {
    /// Configures how this server reaches node agents. Until it is called, requests that
    /// need an agent fail as unavailable.
    pub fn set_kubelet_client(&self, config: &KubeletClientConfig) -> Result<(), String> {
        let client = KubeletClient::new(config)?;
        *self
            .kubelet
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(client);
        Ok(())
    }

    /// Ends every proxied stream to node agents and waits until their tasks are done.
    pub async fn close_node_streams(&self) {
        if let Some(client) = self.kubelet_client() {
            client.stop.cancel();
            client.tasks.close();
            client.tasks.wait().await;
        }
    }

    /// The client for node agents, if configured.
    pub(crate) fn kubelet_client(&self) -> Option<KubeletClient> {
        self.kubelet
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}
