//! The Kubernetes REST/JSON API over the core, as `kubectl` and client-go speak it: discovery,
//! resource paths under `/api/v1` and `/apis/{group}/{version}`, Table output, watches as
//! streams of JSON lines, and SelfSubjectAccessReview. Handlers decode, authorize, call the
//! core and encode; the transport (TLS, listener) is the caller's.

mod access_review;
mod aggregated;
mod columns;
mod columns_pod;
mod discovery;
mod flow;
mod handlers;
mod oidc;
pub(crate) mod openapi;
mod openapi_schema;
mod openapi_v2;
mod path;
mod pod_proxy;
mod pod_streams;
mod pod_websocket;
mod protobuf;
mod query;
mod response;
mod scale;
mod spdy;
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

pub(crate) use openapi_schema::{
    component_name as openapi_component_name, message_components as openapi_message_components,
};
pub use path::ResourcePath;
pub(crate) use table::since as table_age;
pub use table::{human_duration, IncludeObject};

/// The largest request body accepted, as kube-apiserver's (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The shared state of every handler.
type Core<S> = Arc<ApiServer<S>>;

/// Every route of the REST API, served from `core`, every request served at once.
pub fn router<S: Storage>(core: Arc<ApiServer<S>>) -> Router {
    build(core, None)
}

/// Every route of the REST API, served from `core`, each authenticated request waiting its
/// turn in `fairness`' queues.
pub fn router_with_fairness<S: Storage>(
    core: Arc<ApiServer<S>>,
    fairness: Arc<crate::fairness::Fairness>,
) -> Router {
    build(core, Some(fairness))
}

fn build<S: Storage>(
    core: Arc<ApiServer<S>>,
    fairness: Option<Arc<crate::fairness::Fairness>>,
) -> Router {
    let routes = Router::new()
        .route("/version", get(discovery::version::<S>))
        .route("/version/", get(discovery::version::<S>))
        .route("/healthz", get(discovery::health::<S>))
        .route(
            "/.well-known/openid-configuration",
            get(oidc::configuration::<S>),
        )
        .route("/openid/v1/jwks", get(oidc::jwks::<S>))
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
        .fallback(handlers::resource::<S>);
    // Layers run outside in: authentication first, then the audit of what it found, then the
    // wait for a seat (so a refusal is audited too).
    let routes = match fairness {
        Some(fairness) => routes.layer(axum::middleware::from_fn_with_state(
            (core.clone(), fairness),
            flow::limited::<S>,
        )),
        None => routes,
    };
    routes
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            audited::<S>,
        ))
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
/// the TLS listener), else the `Authorization` header, else anonymous; then the user it
/// impersonates, if it asks and may (`auth::impersonation`). The user rides in the request's
/// extensions as [`Authenticated`].
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
    let user = match user {
        Ok(caller) => core.impersonate(caller, request.headers()).await,
        Err(e) => Err(e),
    };
    match user {
        Ok(user) => {
            request.extensions_mut().insert(Authenticated(user));
            next.run(request).await
        }
        Err(e) => response::error(&e),
    }
}

/// What the audit policy needs to know of a request: who, which verb, which object.
fn audit_facts(
    request: &axum::extract::Request,
    user: &UserInfo,
    custom: &crate::crd::CustomKinds,
) -> crate::audit::RequestFacts {
    use crate::audit::policy::{Attributes, ResourceAttributes};
    let uri = request.uri();
    let query = query::Query::from_uri(uri).unwrap_or_default();
    let mut attributes = Attributes {
        user: user.name.clone(),
        groups: user.groups.clone(),
        verb: request.method().as_str().to_ascii_lowercase(),
        resource: None,
        path: uri.path().to_owned(),
    };
    let mut api_version = String::new();
    let mut long_running = query.is_watch() || query.flag("follow");
    if let Ok(target) = path::ResourcePath::parse(uri.path(), custom) {
        if let Ok(verb) = handlers::Verb::of(request.method(), &target, &query) {
            attributes.verb = verb.as_str().to_owned();
            long_running |= verb == handlers::Verb::Watch;
        }
        let subresource = target.subresource.clone().unwrap_or_default();
        long_running |= matches!(
            subresource.as_str(),
            "exec" | "attach" | "portforward" | "proxy"
        );
        api_version = target.info.version.to_owned();
        attributes.resource = Some(ResourceAttributes {
            group: target.info.group.to_owned(),
            resource: target.resource.to_owned(),
            subresource,
            namespace: target.namespace.clone().unwrap_or_default(),
            name: target.name.clone().unwrap_or_default(),
        });
    }
    crate::audit::RequestFacts {
        attributes,
        uid: user.uid.clone(),
        api_version,
        long_running,
    }
}

/// A request body as JSON, whichever encoding it came in (JSON, YAML or protobuf), for the
/// audit log; `None` if it does not decode (the handler will say why).
fn body_object(headers: &HeaderMap, bytes: &[u8]) -> Option<serde_json::Value> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if content_type.contains("protobuf") {
        protobuf::object(bytes).ok()
    } else if content_type.contains("yaml") {
        serde_norway::from_slice(bytes).ok()
    } else {
        serde_json::from_slice(bytes).ok()
    }
}

/// Writes the audit events of a request, when the server keeps an audit log.
async fn audited<S: Storage>(
    axum::extract::State(core): axum::extract::State<Core<S>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(auditor) = core.auditor() else {
        return next.run(request).await;
    };
    let Some(Authenticated(user)) = request.extensions().get::<Authenticated>().cloned() else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<crate::audit::PeerAddress>()
        .and_then(|p| p.0);
    let facts = audit_facts(&request, &user, &core.custom_kinds_now());
    let long_running = facts.long_running;
    let Some(mut audit) = auditor.begin(facts, &request, peer) else {
        return next.run(request).await;
    };
    let has_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    );
    let request = if has_body {
        let (parts, body) = request.into_parts();
        match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => {
                audit.received(body_object(&parts.headers, &bytes));
                axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))
            }
            Err(_) => {
                audit.received(None);
                let error = ApiError::TooLarge(format!(
                    "Request entity too large: limit is {MAX_BODY_BYTES}"
                ));
                let response = response::error(&error);
                audit.responded(response.status().as_u16(), None);
                return response;
            }
        }
    } else {
        audit.received(None);
        request
    };
    let response = next.run(request).await;
    let code = response.status().as_u16();
    if audit.level() >= crate::audit::Level::RequestResponse && !long_running {
        let (response, body) = crate::audit::buffered(response, MAX_BODY_BYTES).await;
        audit.responded(code, body.as_deref());
        return response;
    }
    audit.responded(code, None);
    response
}

#[cfg(test)]
mod aggregated_tests;
#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod binding_tests;
#[cfg(test)]
mod eviction_tests;
#[cfg(test)]
mod output_tests;
#[cfg(test)]
mod priority_tests;
#[cfg(test)]
mod query_props_tests;
#[cfg(test)]
mod tests;
