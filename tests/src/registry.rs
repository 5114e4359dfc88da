//! A private container registry for tests of image pulls: the read side of the OCI
//! distribution API (`/v2/`, manifests by tag or digest, blobs; GET and HEAD) over plain HTTP
//! on loopback, where containerd allows HTTP. Every request needs HTTP basic credentials, as a
//! private registry's do; without them the answer is 401 with a `Basic` challenge. It counts
//! the manifest requests made with credentials, by reference, so a test can tell whether a
//! pull reached it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keel_agent::image::busybox::host_image;
use keel_agent::image::oci::{OciArchive, MEDIA_TYPE_MANIFEST};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the registry serves and who may read it.
struct Contents {
    /// Images by `repository:tag`, each an archive of its own.
    images: HashMap<String, (OciArchive, String)>,
    /// The `Authorization` header value that is let in.
    credentials: String,
    /// Manifest requests with credentials, by `repository:reference`.
    manifest_requests: Mutex<HashMap<String, usize>>,
}

/// A registry running on loopback; it stops when dropped.
pub struct Registry {
    pub address: SocketAddr,
    contents: Arc<Contents>,
    task: JoinHandle<()>,
}

impl Registry {
    /// Serves a busybox image (the host's busybox-static) under each of `repositories`
    /// (`repository:tag`, e.g. `keel/busybox:1`), readable with `user` and `password`.
    pub async fn start(
        repositories: &[&str],
        user: &str,
        password: &str,
    ) -> anyhow::Result<Registry> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mut images = HashMap::new();
        for repository in repositories {
            let archive = host_image(&format!("{address}/{repository}"))?;
            let (_, digest) = archive
                .images()
                .into_iter()
                .next()
                .ok_or_else(|| anyhow::anyhow!("the archive holds no image"))?;
            images.insert((*repository).to_owned(), (archive, digest));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let contents = Arc::new(Contents {
            images,
            credentials: format!("Basic {token}"),
            manifest_requests: Mutex::default(),
        });
        let serving = contents.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let contents = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let contents = contents.clone();
                        async move { Ok::<_, Infallible>(contents.answer(&request)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Registry {
            address,
            contents,
            task,
        })
    }

    /// The reference a pod names to pull `repository` (`repository:tag`) from here.
    pub fn image(&self, repository: &str) -> String {
        format!("{}/{repository}", self.address)
    }

    /// How many manifest requests with credentials named `repository:reference`.
    pub fn manifest_requests(&self, repository: &str) -> usize {
        let requests = self
            .contents
            .manifest_requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests.get(repository).copied().unwrap_or(0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Contents {
    fn answer(&self, request: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "read only");
        }
        let authorized = request
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|given| given.as_bytes() == self.credentials.as_bytes());
        if !authorized {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keel-test-registry\""),
            );
            return response;
        }
        let path = request.uri().path();
        if path == "/v2/" || path == "/v2" {
            return body(request, "application/json", b"{}".to_vec(), None);
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "not a registry path");
        };
        if let Some((repository, reference)) = rest.split_once("/manifests/") {
            let key = format!("{repository}:{reference}");
            *self
                .manifest_requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key.clone())
                .or_default() += 1;
            let found = self.images.iter().find_map(|(name, (archive, digest))| {
                let (named, _) = name.rsplit_once(':')?;
                if named != repository || (*name != key && digest != reference) {
                    return None;
                }
                Some((archive.blob(digest)?.to_vec(), digest.clone()))
            });
            return match found {
                Some((manifest, digest)) => {
                    body(request, MEDIA_TYPE_MANIFEST, manifest, Some(&digest))
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "MANIFEST_UNKNOWN",
                    "manifest unknown",
                ),
            };
        }
        if let Some((repository, digest)) = rest.split_once("/blobs/") {
            let found = self.images.iter().find_map(|(name, (archive, _))| {
                let (named, _) = name.rsplit_once(':')?;
                (named == repository)
                    .then(|| archive.blob(digest))
                    .flatten()
            });
            return match found {
                Some(blob) => body(
                    request,
                    "application/octet-stream",
                    blob.to_vec(),
                    Some(digest),
                ),
                None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
            };
        }
        error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "not a registry path")
    }
}

/// A 200 with `data` (its length only, for HEAD).
fn body(
    request: &Request<hyper::body::Incoming>,
    content_type: &'static str,
    data: Vec<u8>,
    digest: Option<&str>,
) -> Response<Full<Bytes>> {
    let length = data.len();
    let mut response = Response::new(if request.method() == Method::HEAD {
        Full::new(Bytes::new())
    } else {
        Full::new(Bytes::from(data))
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(digest) = digest.and_then(|d| HeaderValue::from_str(d).ok()) {
        headers.insert("docker-content-digest", digest);
    }
    response
}

/// An error in the distribution API's JSON form.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let text = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
