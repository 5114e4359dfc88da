//! The Kubernetes REST/JSON API over the core, as `kubectl` and client-go speak it: discovery,
//! resource paths under `/api/v1` and `/apis/{group}/{version}`, Table output, watches as
//! streams of JSON lines, and SelfSubjectAccessReview. Handlers decode, authorize, call the
//! core and encode; the transport (TLS, listener) is the caller's.

mod access_review;
mod aggregated;
mod columns;
mod columns_pod;
mod discovery;
mod handlers;
pub(crate) mod openapi;
mod openapi_schema;
mod path;
mod pod_proxy;
mod pod_streams;
mod protobuf;
mod query;
mod response;
mod scale;
mod strategic;
mod table;
mod watch;

use std::sync::Arc;

use axum::http::{HeaderMap, Method};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::{Attributes, Authenticated, PeerCertificate, UserInfo};
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::Storage;

pub use path::ResourcePath;
pub use table::{human_duration, IncludeObject};

/// The largest request body accepted, as kube-apiserver's (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The shared state of every handler.
type Core<S> = Arc<ApiServer<S>>;

/// Every route of the REST API, served from `core`.
pub fn router<S: Storage>(core: Arc<ApiServer<S>>) -> Router {
    Router::new()
        .route("/version", get(discovery::version::<S>))
        .route("/version/", get(discovery::version::<S>))
        .route("/healthz", get(discovery::health::<S>))
        .route("/livez", get(discovery::health::<S>))
        .route("/readyz", get(discovery::health::<S>))
        .route("/api", get(discovery::api_versions::<S>))
        .route("/api/", get(discovery::api_versions::<S>))
        .route("/apis", get(discovery::group_list::<S>))
        .route("/apis/", get(discovery::group_list::<S>))
        .route("/api/v1", get(discovery::core_resources::<S>))
        .route("/apis/{group}", get(discovery::group::<S>))
        .route(
            "/apis/{group}/{version}",
            get(discovery::group_resources::<S>),
        )
        .route("/openapi/v2", get(openapi::v2::<S>))
        .route("/openapi/v3", get(openapi::v3::<S>))
        .route("/openapi/v3/{*path}", get(openapi::v3_group_version::<S>))
        .route(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            post(access_review::create::<S>),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            get(pod_proxy::log::<S>),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            get(pod_proxy::exec::<S>).post(pod_proxy::exec::<S>),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/attach",
            get(pod_proxy::attach::<S>).post(pod_proxy::attach::<S>),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/portforward",
            get(pod_proxy::port_forward::<S>).post(pod_proxy::port_forward::<S>),
        )
        .fallback(handlers::resource::<S>)
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            authenticate::<S>,
        ))
        .with_state(core)
}

/// The request's `Authorization` header, if it is text.
fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Authorizes a request for a path that names no resource as a non-resource request
/// (lower-case HTTP method, the path).
async fn authorize_path<S: Storage>(
    core: &ApiServer<S>,
    user: &UserInfo,
    method: &Method,
    path: &str,
) -> Result<UserInfo, ApiError> {
    let attrs = Attributes {
        user: user.clone(),
        verb: method.as_str().to_ascii_lowercase(),
        path: Some(path.to_string()),
        ..Default::default()
    };
    core.authorize(&attrs).await?;
    Ok(user.clone())
}

/// Authenticates every request once, before its handler: a verified client certificate (from
/// the TLS listener), else the `Authorization` header, else anonymous; the user rides in the
/// request's extensions as [`Authenticated`].
async fn authenticate<S: Storage>(
    axum::extract::State(core): axum::extract::State<Core<S>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = request
        .extensions()
        .get::<PeerCertificate>()
        .and_then(|p| p.0.clone());
    let user = match peer {
        Some(user) => Ok(user),
        None => core.authenticate(authorization(request.headers())),
    };
    match user {
        Ok(user) => {
            request.extensions_mut().insert(Authenticated(user));
            next.run(request).await
        }
        Err(e) => response::error(&e),
    }
}

#[cfg(test)]
mod aggregated_tests;
#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod binding_tests;
#[cfg(test)]
mod eviction_tests;
#[cfg(test)]
mod output_tests;
#[cfg(test)]
mod priority_tests;
#[cfg(test)]
mod tests;
