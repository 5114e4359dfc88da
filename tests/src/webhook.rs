//! An admission webhook server for tests: HTTPS on loopback with a certificate of its own CA
//! (the caBundle a configuration names), answering AdmissionReviews with a function the test
//! gives. It records every review it receives, so a test can tell what the API server sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// What a webhook answers a review's request with: the `response` without its uid.
pub type Answer = dyn Fn(&Value) -> Value + Send + Sync;

/// A webhook server; it stops when dropped.
pub struct WebhookServer {
    pub address: SocketAddr,
    /// The PEM of the CA its certificate chains to.
    pub ca_pem: String,
    reviews: Arc<Mutex<Vec<Value>>>,
    task: JoinHandle<()>,
}

impl WebhookServer {
    /// Serves on 127.0.0.1, answering each review's request with `answer`.
    pub async fn start(answer: Arc<Answer>) -> anyhow::Result<WebhookServer> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "webhook test CA");
        ca_params.distinguished_name = dn;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let chain = vec![CertificateDer::from_pem_slice(cert.pem().as_bytes())?];
        let private = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private)?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let reviews: Arc<Mutex<Vec<Value>>> = Arc::default();
        let seen = reviews.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, answer, seen) = (acceptor.clone(), answer.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |request: hyper::Request<hyper::body::Incoming>| {
                            let (answer, seen) = (answer.clone(), seen.clone());
                            async move {
                                let body = request
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let review: Value =
                                    serde_json::from_slice(&body).unwrap_or(Value::Null);
                                seen.lock()
                                    .unwrap_or_else(PoisonError::into_inner)
                                    .push(review.clone());
                                let mut response = answer(&review["request"]);
                                response["uid"] = review["request"]["uid"].clone();
                                let reply = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                                let mut out =
                                    Response::new(Full::new(Bytes::from(reply.to_string())));
                                *out.status_mut() = StatusCode::OK;
                                Ok::<_, Infallible>(out)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(WebhookServer {
            address,
            ca_pem,
            reviews,
            task,
        })
    }

    /// The configuration's `clientConfig` for `path` here.
    pub fn client_config(&self, path: &str) -> Value {
        use base64::Engine;
        json!({
            "url": format!("https://{}{path}", self.address),
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&self.ca_pem),
        })
    }

    /// Every review received so far.
    pub fn reviews(&self) -> Vec<Value> {
        self.reviews
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for WebhookServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
