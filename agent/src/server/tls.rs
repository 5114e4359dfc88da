//! The TLS side of the agent's server, as kubelet's `--tls-cert-file`,
//! `--tls-private-key-file` and `--client-ca-file`: a serving certificate signed by the cluster
//! CA, and client certificates checked against the CA (the API server's kubelet client
//! certificate), their CN the user and their O entries the groups.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use super::ServeError;

/// PEM text, given inline or as a file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Text(String),
}

impl Pem {
    fn read(&self, what: &'static str) -> Result<Vec<u8>, ServeError> {
        match self {
            Pem::Text(text) => Ok(text.clone().into_bytes()),
            Pem::File(path) => std::fs::read(path).map_err(|source| ServeError::Read {
                what,
                path: path.clone(),
                source,
            }),
        }
    }
}

/// Who a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user: String,
    pub groups: Vec<String>,
}

/// The server's TLS configuration: `cert` (the serving certificate, then any chain), `key`,
/// and `client_ca`, the CA client certificates must chain to. A client without a certificate
/// still completes the handshake, so that it is told 401 in HTTP, as kubelet tells it.
pub fn server_config(
    cert: &Pem,
    key: &Pem,
    client_ca: &Pem,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let invalid = |what: &'static str| move |e: String| ServeError::Tls { what, message: e };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&client_ca.read("client CA")?) {
        let ca = ca.map_err(|e| invalid("client CA")(e.to_string()))?;
        roots
            .add(ca)
            .map_err(|e| invalid("client CA")(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid("client CA")("no certificate found".to_owned()));
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid("client CA")(e.to_string()))?;
    let chain = CertificateDer::pem_slice_iter(&cert.read("serving certificate")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("serving certificate")(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key.read("serving key")?)
        .map_err(|e| invalid("serving key")(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocol versions")(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| invalid("serving certificate")(e.to_string()))?;
    // Upgrades (exec, attach, port-forward) need HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The caller a connection's verified client certificate names, if it presented one.
pub fn caller(connection: &rustls::ServerConnection) -> Option<Caller> {
    let cert = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let user = subject
        .iter_common_name()
        .find_map(|c| c.as_str().ok())?
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some(Caller { user, groups })
}
