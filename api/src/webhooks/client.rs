//! One HTTPS POST of an AdmissionReview to a webhook: TLS verified against the webhook's
//! caBundle for the name the configuration gives (the URL's host, or `<service>.<namespace>.svc`),
//! HTTP/1.1, within the webhook's timeout. Errors read as kube-apiserver's do:
//! `Post "https://…": <why>`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address dialled.
    pub host: String,
    pub port: u16,
    /// The name the serving certificate must carry.
    pub server_name: String,
    /// Path and query.
    pub path: String,
    /// The URL as messages show it.
    pub url: String,
}

impl Endpoint {
    /// Reads a configuration's `url` (`https://host[:port][/path]`).
    pub fn from_url(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?}: the webhook URL must use https"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{url:?}: the webhook URL's host is not valid"))?;
        Ok(Endpoint {
            server_name: host.clone(),
            host,
            port,
            path: path.to_string(),
            url: url.to_string(),
        })
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => 443,
        };
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_string(), 443)),
        None => None,
    }
}

/// Posts `body` to `endpoint`, trusting the PEM certificates in `ca_bundle`; the answer's
/// body when the webhook answers 200.
pub async fn post(
    endpoint: &Endpoint,
    ca_bundle: &[u8],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let url = &endpoint.url;
    let fail = |why: String| format!("Post {url:?}: {why}");
    match tokio::time::timeout(timeout, exchange(endpoint, ca_bundle, body)).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(
            "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into(),
        )),
    }
}

async fn exchange(endpoint: &Endpoint, ca_bundle: &[u8], body: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle) {
        roots
            .add(cert.map_err(|e| format!("caBundle: {e}"))?)
            .map_err(|e| format!("caBundle: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let address = crate::kubelet::join_host_port(&endpoint.host, endpoint.port);
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|e| format!("dial tcp {address}: connect: {e}"))?;
    let name = ServerName::try_from(endpoint.server_name.clone()).map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::post(&endpoint.path)
        .header(hyper::header::HOST, &endpoint.server_name)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string());
    let result = match response {
        Ok(response) => {
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if status == hyper::StatusCode::OK {
                Ok(bytes.to_vec())
            } else {
                Err(format!(
                    "the server responded with the status code {}",
                    status.as_u16()
                ))
            }
        }
        Err(e) => Err(e),
    };
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_name_and_path() {
        let e = Endpoint::from_url("https://127.0.0.1:8443/validate?x=1").expect("url");
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 8443, "/validate?x=1")
        );
        let e = Endpoint::from_url("https://hooks.example.com").expect("url");
        assert_eq!(
            (e.port, e.path.as_str(), e.server_name.as_str()),
            (443, "/", "hooks.example.com")
        );
        let e = Endpoint::from_url("https://[::1]:9443/m").expect("url");
        assert_eq!((e.host.as_str(), e.port), ("::1", 9443));
        assert!(Endpoint::from_url("http://insecure").is_err());
    }
}
