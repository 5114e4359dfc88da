//! The httpGet check: one GET (HTTP, or HTTPS without verifying the certificate, as kubelet)
//! with the probe's headers and kubelet's User-Agent; 200 ≤ status < 400 is a success.
//! Redirects to the same host are followed (ten at most); a redirect elsewhere is not, and
//! counts as a success with a warning. Connections are not kept, and only the first 10 KiB
//! of a body are read.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, CONNECTION, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use super::net::{dial, join_host_port};
use super::{output_text, CheckOutcome, MAX_OUTPUT, USER_AGENT as KUBE_PROBE};

/// kubelet's `User-Agent` for lifecycle hooks.
const KUBE_LIFECYCLE: &str = "kube-lifecycle/1.32";
use crate::prober::spec::{HttpGet, Scheme};

const MAX_REDIRECTS: usize = 10;

/// One URL the check requests.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Url {
    scheme: Scheme,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    target: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        write!(
            f,
            "{scheme}://{}{}",
            join_host_port(&self.host, self.port),
            self.target
        )
    }
}

/// A response, its body cut short.
struct Reply {
    status: StatusCode,
    location: Option<String>,
    body: Vec<u8>,
}

/// Requests `get` of `host` (the probe's own host, or the pod IP).
pub async fn http_get(get: &HttpGet, host: &str, timeout: Duration) -> CheckOutcome {
    let (url, headers) = match request(get, host, KUBE_PROBE) {
        Ok(request) => request,
        Err(outcome) => return outcome,
    };
    // Go's client timeout covers the whole exchange, redirects and body included.
    match tokio::time::timeout(timeout, follow(url.clone(), &headers)).await {
        Ok(outcome) => outcome,
        Err(_) => CheckOutcome::Failure(format!(
            "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            url.to_string()
        )),
    }
}

/// Sends `get` to `host` once, as kubelet sends an httpGet lifecycle hook: any answer, of
/// whatever status, is a success; only an exchange that fails (no connection, no answer
/// within `timeout`) is an error, told as Go's client tells it.
pub async fn lifecycle_get(get: &HttpGet, host: &str, timeout: Duration) -> Result<(), String> {
    let (url, headers) = match request(get, host, KUBE_LIFECYCLE) {
        Ok(request) => request,
        Err(CheckOutcome::Failure(error) | CheckOutcome::Error(error)) => return Err(error),
        Err(_) => return Err(format!("Get {:?}: no request", get.path)),
    };
    let host_header = headers
        .iter()
        .find(|(name, _)| name == HOST)
        .map(|(_, v)| v.clone());
    match tokio::time::timeout(timeout, fetch(&url, &headers, host_header)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!("Get {:?}: {error}", url.to_string())),
        Err(_) => Err(format!(
            "Get {:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            url.to_string()
        )),
    }
}

/// The first URL of `get` aimed at `host`, and the headers to send with `user_agent`; or
/// the outcome that ends the check before any request.
fn request(
    get: &HttpGet,
    host: &str,
    user_agent: &'static str,
) -> Result<(Url, Vec<(HeaderName, HeaderValue)>), CheckOutcome> {
    let port = match &get.port {
        Ok(port) => *port,
        Err(error) => return Err(CheckOutcome::Error(error.clone())),
    };
    let mut target = get.path.clone();
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    let url = Url {
        scheme: get.scheme,
        host: host.to_owned(),
        port,
        target,
    };
    match headers(&get.headers, user_agent) {
        Ok(headers) => Ok((url, headers)),
        Err(error) => Err(CheckOutcome::Failure(format!(
            "Get {:?}: {error}",
            url.to_string()
        ))),
    }
}

/// The request headers: the probe's, then `user_agent` and `Accept: */*` unless the probe
/// sets them (an empty Accept removes it).
fn headers(
    given: &[(String, String)],
    user_agent: &'static str,
) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    let mut headers = Vec::with_capacity(given.len() + 2);
    for (name, value) in given {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("net/http: invalid header field name {name:?}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("net/http: invalid header field value for {name:?}"))?;
        headers.push((name, value));
    }
    let has = |headers: &[(HeaderName, HeaderValue)], wanted: &HeaderName| {
        headers.iter().any(|(name, _)| name == wanted)
    };
    if !has(&headers, &USER_AGENT) {
        headers.push((USER_AGENT, HeaderValue::from_static(user_agent)));
    }
    if !has(&headers, &ACCEPT) {
        headers.push((ACCEPT, HeaderValue::from_static("*/*")));
    } else if headers
        .iter()
        .filter(|(name, _)| name == ACCEPT)
        .all(|(_, value)| value.is_empty())
    {
        headers.retain(|(name, _)| name != ACCEPT);
    }
    Ok(headers)
}

async fn follow(first: Url, headers: &[(HeaderName, HeaderValue)]) -> CheckOutcome {
    let mut url = first.clone();
    let mut redirects = 0;
    loop {
        // A Host header of the probe's names the first request's host only, as in Go.
        let host_header = (url == first)
            .then(|| {
                headers
                    .iter()
                    .find(|(name, _)| name == HOST)
                    .map(|(_, v)| v.clone())
            })
            .flatten();
        let reply = match fetch(&url, headers, host_header).await {
            Ok(reply) => reply,
            Err(error) => {
                return CheckOutcome::Failure(format!("Get {:?}: {error}", url.to_string()))
            }
        };
        let next = reply
            .status
            .is_redirection()
            .then(|| reply.location.as_deref().and_then(|l| resolve(&url, l)))
            .flatten();
        match next {
            Some(next) if next.host == first.host => {
                if redirects >= MAX_REDIRECTS {
                    return CheckOutcome::Failure(format!(
                        "Get {:?}: stopped after 10 redirects",
                        next.to_string()
                    ));
                }
                redirects += 1;
                url = next;
            }
            _ => return verdict(&reply),
        }
    }
}

fn verdict(reply: &Reply) -> CheckOutcome {
    let status = reply.status.as_u16();
    let body = output_text(&reply.body);
    match status {
        200..=299 => CheckOutcome::Success(body),
        300..=399 => CheckOutcome::Warning(body),
        _ => CheckOutcome::Failure(format!("HTTP probe failed with statuscode: {status}")),
    }
}

/// Where a `Location` header leads from `base`: absolute, scheme-relative, absolute-path or
/// relative to the base's directory.
fn resolve(base: &Url, location: &str) -> Option<Url> {
    if location.starts_with("//") {
        let scheme = match base.scheme {
            Scheme::Http => "http:",
            Scheme::Https => "https:",
        };
        return absolute(&format!("{scheme}{location}"));
    }
    if location.contains("://") {
        return absolute(location);
    }
    let target = if location.starts_with('/') {
        location.to_owned()
    } else {
        let path = base.target.split('?').next().unwrap_or("/");
        let directory = &path[..path.rfind('/').map_or(0, |at| at + 1)];
        format!("{directory}{location}")
    };
    Some(Url {
        target,
        ..base.clone()
    })
}

fn absolute(location: &str) -> Option<Url> {
    let uri: Uri = location.parse().ok()?;
    let scheme = match uri.scheme_str()? {
        s if s.eq_ignore_ascii_case("http") => Scheme::Http,
        s if s.eq_ignore_ascii_case("https") => Scheme::Https,
        _ => return None,
    };
    let host = uri
        .host()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    let target = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    Some(Url {
        scheme,
        host,
        port,
        target,
    })
}

/// One request on a connection of its own.
async fn fetch(
    url: &Url,
    headers: &[(HeaderName, HeaderValue)],
    host_header: Option<HeaderValue>,
) -> Result<Reply, String> {
    // The overall timeout bounds the dial as well; this one only has to be longer.
    let stream = dial(&url.host, url.port, Duration::from_secs(3600)).await?;
    match url.scheme {
        Scheme::Http => exchange(stream, url, headers, host_header).await,
        Scheme::Https => {
            let name = ServerName::try_from(url.host.clone()).map_err(|e| e.to_string())?;
            let tls = tokio_rustls::TlsConnector::from(tls_config()?)
                .connect(name, stream)
                .await
                .map_err(|e| e.to_string())?;
            exchange(tls, url, headers, host_header).await
        }
    }
}

async fn exchange<S>(
    stream: S,
    url: &Url,
    headers: &[(HeaderName, HeaderValue)],
    host_header: Option<HeaderValue>,
) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut request = Request::get(url.target.as_str());
    let default_host = join_host_port(&url.host, url.port);
    let host = match host_header {
        Some(host) => host,
        None => HeaderValue::from_str(&default_host).map_err(|e| e.to_string())?,
    };
    request = request.header(HOST, host).header(CONNECTION, "close");
    for (name, value) in headers.iter().filter(|(name, _)| name != HOST) {
        request = request.header(name, value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let exchange = async move {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut read = Vec::new();
        while read.len() < MAX_OUTPUT {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        read.extend_from_slice(data);
                    }
                }
                // A body cut off after the status line still carries the verdict.
                Some(Err(_)) | None => break,
            }
        }
        read.truncate(MAX_OUTPUT);
        Ok::<_, String>(Reply {
            status,
            location,
            body: read,
        })
    };
    tokio::pin!(exchange);
    tokio::pin!(connection);
    tokio::select! {
        reply = &mut exchange => reply,
        // The connection ended; whatever it delivered is on its way to the exchange.
        _ = &mut connection => exchange.await,
    }
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// kubelet probes HTTPS without verifying the certificate: a pod's serving certificate is
/// rarely one the node could verify, and a probe asks whether it answers, not who it is.
/// The handshake's signatures are still checked, so the certificate's key was used.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

    fn base() -> Url {
        Url {
            scheme: Scheme::Http,
            host: "10.0.0.5".into(),
            port: 8080,
            target: "/app/health?x=1".into(),
        }
    }

    #[test]
    fn urls_print_as_go_prints_them() {
        assert_eq!(base().to_string(), "http://10.0.0.5:8080/app/health?x=1");
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let b = base();
        assert_eq!(
            resolve(&b, "/ok").map(|u| u.to_string()).as_deref(),
            Some("http://10.0.0.5:8080/ok")
        );
        assert_eq!(
            resolve(&b, "ok").map(|u| u.to_string()).as_deref(),
            Some("http://10.0.0.5:8080/app/ok")
        );
        assert_eq!(
            resolve(&b, "https://10.0.0.5/secure")
                .map(|u| u.to_string())
                .as_deref(),
            Some("https://10.0.0.5:443/secure")
        );
        assert_eq!(
            resolve(&b, "//example.com:81/x").map(|u| (u.host, u.port)),
            Some(("example.com".to_owned(), 81))
        );
    }

    #[test]
    fn kubelets_user_agent_and_accept_are_added_unless_given() {
        let plain = headers(&[], KUBE_PROBE).expect("headers");
        assert!(plain.contains(&(USER_AGENT, HeaderValue::from_static("kube-probe/1.32"))));
        assert!(plain.contains(&(ACCEPT, HeaderValue::from_static("*/*"))));
        let custom = headers(
            &[
                ("user-agent".into(), "mine".into()),
                ("Accept".into(), String::new()),
            ],
            KUBE_PROBE,
        )
        .expect("headers");
        assert_eq!(custom, vec![(USER_AGENT, HeaderValue::from_static("mine"))]);
        assert!(headers(&[("bad name".into(), "x".into())], KUBE_PROBE).is_err());
    }
}
