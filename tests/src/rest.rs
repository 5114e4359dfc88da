//! A small HTTPS client for the Kubernetes REST API, for tests that need many concurrent
//! requests or streams (more than curl or kubectl processes can give): HTTP/1.1 over rustls,
//! trusting the cluster CA, with a bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::Cluster;

/// Where and as whom requests go.
#[derive(Clone)]
pub struct Rest {
    address: SocketAddr,
    tls: TlsConnector,
    token: String,
}

/// One kept-alive connection.
pub struct Connection {
    send: SendRequest<Full<Bytes>>,
    token: String,
    /// Drives the connection; aborted when this is dropped.
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Rest {
    /// A client for member `i`'s REST port with `token`.
    pub fn new(cluster: &Cluster, i: usize, token: &str) -> Result<Self> {
        let ca = std::fs::read(cluster.ca_file()?)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.context("cluster CA")?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            address: SocketAddr::from(([127, 0, 0, 1], cluster.members[i].rest_port)),
            tls: TlsConnector::from(Arc::new(config)),
            token: token.to_string(),
        })
    }

    /// The same endpoint as another user.
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: token.to_string(),
            ..self.clone()
        }
    }

    /// A new connection (TCP, TLS, HTTP/1.1).
    pub async fn connect(&self) -> Result<Connection> {
        let tcp = tokio::net::TcpStream::connect(self.address).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::IpAddress(self.address.ip().into());
        let tls = self.tls.connect(name, tcp).await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection {
            send,
            token: self.token.clone(),
            driver,
        })
    }
}

impl Connection {
    /// Sends a request and returns the response with its body still to read.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>> {
        self.send.ready().await?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(self.send.send_request(request).await?)
    }

    /// Sends a request and reads the whole response: its status code and body.
    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes)> {
        let response = self.send(method, path, body).await?;
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        Ok((code, bytes))
    }
}

/// The `Retry-After` of a response, in seconds (1 when absent or unreadable).
pub fn retry_after(response: &Response<Incoming>) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}
