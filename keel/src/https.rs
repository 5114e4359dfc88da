//! The HTTPS listener of the Kubernetes REST API and the `keelapi.Api` gRPC service: TLS
//! (rustls) with the master's serving certificate, client certificates verified against the
//! cluster CA when offered (a verified certificate's CN is the user, its O entries the groups,
//! as Kubernetes reads them), HTTP/1.1 and HTTP/2, and every connection owned and joined at
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use keel_api::audit::PeerAddress;
use keel_api::auth::{PeerCertificate, UserInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::multiplex::Multiplex;
use crate::pki::{Ca, Issued};

/// How long a connection may finish its requests once shutdown begins. Watches (kubectl's, and
/// every SDK controller's) never finish by themselves, and one left open must not hold the
/// master up: past this the connection is dropped, and the client resumes elsewhere.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a client has to finish its TLS handshake: a connection that opens and stalls must
/// not hold a socket (and a file descriptor) for ever.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// How long a client has to send a request's headers, as kube-apiserver's read-header
/// timeout: a connection that sends half a request must not hold its socket for ever.
const HEADER_READ: Duration = Duration::from_secs(32);

/// The TLS configuration of one master's API endpoint.
pub fn tls_config(ca: &Ca, serving: &Issued) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(cert.context("CA certificate")?)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    // The serving certificate, then the CA, so clients that trust the CA verify the chain.
    let chain = CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes())
        .chain(CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .context("serving certificate")?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).context("serving key")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The user a verified client certificate names: CN, and O entries as groups.
fn peer_user(conn: &rustls::ServerConnection) -> Option<UserInfo> {
    let cert = conn.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let name = subject
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .next()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    groups.push(keel_api::auth::authn::AUTHENTICATED.to_string());
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

/// Serves `app` on `listener` until `shutdown`, at most `max_connections` connections at once
/// (past that, new ones wait in the listen backlog until one closes); returns after every
/// connection has ended.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Multiplex,
    max_connections: usize,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let connections = TaskTracker::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let mut backoff = crate::accept::Backoff::default();
    loop {
        let slot = tokio::select! {
            _ = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                // The semaphore is never closed.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.succeeded();
                    a
                }
                Err(e) => {
                    let next = backoff.failed(std::time::Instant::now());
                    if let Some(failures) = next.log {
                        tracing::warn!(
                            error = %e,
                            failures,
                            "accepting API connections fails; pausing between attempts"
                        );
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(next.pause) => {}
                    }
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let tls = match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = app.for_connection(
                PeerCertificate(peer_user(tls.get_ref().1)),
                PeerAddress(Some(peer)),
            );
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ);
            let conn = builder.serve_connection_with_upgrades(
                TokioIo::new(tls),
                TowerToHyperService::new(service),
            );
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "API connection ended");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    if tokio::time::timeout(DRAIN, conn).await.is_err() {
                        tracing::debug!(%peer, "API connection still busy at shutdown; closed");
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}
