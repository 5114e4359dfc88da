//! TLS to a master's HTTPS port as a kubeconfig describes it: the server's certificate checked
//! against the kubeconfig's CA (or not at all, with `insecure-skip-tls-verify`), under the URL's
//! host or `tls-server-name`, and the user's client certificate presented when it has one.

use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;
use crate::kubeconfig::Kubeconfig;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A lazily connecting channel to `endpoint` over TLS configured by `config`.
pub fn channel(endpoint: Endpoint, config: &Kubeconfig) -> Result<Channel, Error> {
    let connector = TlsConnector::from(client_config(config)?);
    let fail = |problem: String| Error::Kubeconfig {
        origin: config.origin.clone(),
        problem,
    };
    let server_name = config
        .tls_server_name
        .as_deref()
        .map(|name| {
            ServerName::try_from(name.to_string())
                .map_err(|e| fail(format!("tls-server-name {name:?}: {e}")))
        })
        .transpose()?;
    Ok(endpoint.connect_with_connector_lazy(tower::service_fn(
        move |uri: tonic::codegen::http::Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_string();
                let port = uri.port_u16().unwrap_or(443);
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                let _ = tcp.set_nodelay(true);
                let name = match server_name {
                    Some(name) => name,
                    None => ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                };
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        },
    )))
}

/// The rustls client configuration a kubeconfig asks for.
fn client_config(config: &Kubeconfig) -> Result<Arc<rustls::ClientConfig>, Error> {
    let fail = |problem: String| Error::Kubeconfig {
        origin: config.origin.clone(),
        problem,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?;
    let builder = match (
        &config.certificate_authority,
        config.insecure_skip_tls_verify,
    ) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider()))),
        (Some(pem), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in
                certificates(pem).map_err(|e| fail(format!("certificate-authority: {e}")))?
            {
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("certificate-authority: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        // The SDK carries no system roots: a master's certificate is from its own CA anyway.
        (None, false) => {
            return Err(fail(format!(
                "context {:?} names no certificate-authority to verify {} against",
                config.context, config.server
            )))
        }
    };
    let mut tls = match &config.client_certificate {
        Some(client) => {
            let chain = certificates(&client.cert_pem)
                .map_err(|e| fail(format!("client-certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&client.key_pem)
                .map_err(|e| fail(format!("client-key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(format!("client certificate: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    // gRPC needs HTTP/2; the master's port offers it beside HTTP/1.1.
    tls.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(tls))
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// `insecure-skip-tls-verify`: any server certificate is accepted, but the handshake is still
/// signed by its key, so the connection is encrypted to whoever holds it.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::ClientCertificate;

    fn config(ca: Option<&str>, insecure: bool) -> Kubeconfig {
        Kubeconfig {
            origin: "(test)".into(),
            context: "c".into(),
            server: "https://127.0.0.1:6443".into(),
            certificate_authority: ca.map(|c| c.as_bytes().to_vec()),
            insecure_skip_tls_verify: insecure,
            tls_server_name: None,
            token: None,
            token_file: None,
            client_certificate: None,
            namespace: None,
        }
    }

    fn problem(result: Result<Arc<rustls::ClientConfig>, Error>) -> String {
        match result {
            Err(Error::Kubeconfig { problem, .. }) => problem,
            Err(other) => panic!("not a kubeconfig error: {other}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn a_server_is_verified_against_the_kubeconfigs_ca_or_not_at_all() {
        let refused = problem(client_config(&config(None, false)));
        assert!(
            refused.contains("names no certificate-authority"),
            "{refused}"
        );
        let insecure = client_config(&config(None, true)).expect("skips verification");
        assert_eq!(insecure.alpn_protocols, vec![b"h2".to_vec()]);
    }

    #[test]
    fn certificates_that_are_not_pem_are_refused_naming_the_field() {
        let ca = problem(client_config(&config(Some("not a certificate"), false)));
        assert!(
            ca.starts_with("certificate-authority: no PEM certificate"),
            "{ca}"
        );
        let mut with_client = config(None, true);
        with_client.client_certificate = Some(ClientCertificate {
            cert_pem: b"garbage".to_vec(),
            key_pem: b"garbage".to_vec(),
        });
        let client = problem(client_config(&with_client));
        assert!(client.starts_with("client-certificate:"), "{client}");
    }
}
