//! `pods/log`, `pods/exec`, `pods/attach` and `pods/portforward`: authorized as Kubernetes
//! authorizes them (get on `pods/log`, create on the others), the pod's container and node
//! looked up, then the request sent on to the node's agent over TLS. Logs stream back as the
//! agent writes them; upgrade requests are bridged byte for byte once both sides have
//! switched to SPDY/3.1.
//!
//! WebSocket upgrades (kubectl's first attempt) are served by translating to SPDY towards
//! the node (`pod_websocket.rs`); one offering no protocol served that way is refused with
//! 400, and client-go then falls back to SPDY, which the node's runtime speaks for every
//! protocol version kubectl offers.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use hyper_util::rt::TokioIo;

use super::pod_streams::{self, Stream};
use super::pod_websocket::{self, Channels};
use super::{response, Core};
use crate::auth::{Attributes, Authenticated};
use crate::error::ApiError;
use crate::storage::Storage;

/// Request headers that belong to the hop to us, not to the one onwards.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "impersonate-user",
    "impersonate-group",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
];

/// The most of an agent's error answer read into the Status returned.
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub async fn log<S: Storage>(
    state: State<Core<S>>,
    path: Path<(String, String)>,
    request: Request,
) -> Response {
    serve(state, path, request, Stream::Log).await
}

pub async fn exec<S: Storage>(
    state: State<Core<S>>,
    path: Path<(String, String)>,
    request: Request,
) -> Response {
    serve(state, path, request, Stream::Exec).await
}

pub async fn attach<S: Storage>(
    state: State<Core<S>>,
    path: Path<(String, String)>,
    request: Request,
) -> Response {
    serve(state, path, request, Stream::Attach).await
}

pub async fn port_forward<S: Storage>(
    state: State<Core<S>>,
    path: Path<(String, String)>,
    request: Request,
) -> Response {
    serve(state, path, request, Stream::PortForward).await
}

async fn serve<S: Storage>(
    State(core): State<Core<S>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
    stream: Stream,
) -> Response {
    match handle(&core, &namespace, &name, request, stream).await {
        Ok(response) => response,
        Err(e) => response::error(&e),
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("websocket"))
}

async fn handle<S: Storage>(
    core: &Core<S>,
    namespace: &str,
    name: &str,
    request: Request,
    stream: Stream,
) -> Result<Response, ApiError> {
    let user = request
        .extensions()
        .get::<Authenticated>()
        .map(|a| a.0.clone())
        .ok_or_else(|| ApiError::Unauthorized("Unauthorized".into()))?;
    let verb = match (stream, request.method()) {
        (Stream::Log, &Method::GET | &Method::HEAD) => "get",
        (Stream::Log, _) => return Err(ApiError::MethodNotAllowed),
        (_, &Method::GET | &Method::POST) => "create",
        _ => return Err(ApiError::MethodNotAllowed),
    };
    core.authorize(&Attributes {
        user,
        verb: verb.to_owned(),
        api_group: String::new(),
        resource: "pods".to_owned(),
        subresource: stream.subresource().to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        path: None,
    })
    .await?;

    let pods = keel_types::kinds::by_kind("v1", "Pod").ok_or(ApiError::UnknownResource)?;
    let pod = core.get(pods, Some(namespace), name).await?;
    let query = pod_streams::parse_query(request.uri().query().unwrap_or_default());
    let container = match stream {
        Stream::PortForward => String::new(),
        _ => pod_streams::pick_container(&pod, name, pod_streams::requested_container(&query))?,
    };
    let Some(node_name) = pod_streams::node_name(&pod) else {
        if stream == Stream::Log {
            // A pod not yet on a node has no logs: an empty answer, as Kubernetes gives.
            return Ok(Response::new(Body::empty()));
        }
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let nodes = keel_types::kinds::by_kind("v1", "Node").ok_or(ApiError::UnknownResource)?;
    let node = core.get(nodes, None, node_name).await?;
    let (host, port) = pod_streams::agent_endpoint(&node)?;
    let websocket = if stream != Stream::Log && is_websocket(request.headers()) {
        let offered = request
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let protocol = pod_websocket::negotiate(offered, stream).map_err(ApiError::BadRequest)?;
        let key = request
            .headers()
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or_else(|| ApiError::BadRequest("a WebSocket upgrade without a key".into()))?;
        Some((protocol, pod_websocket::accept_key(key.as_bytes())))
    } else {
        None
    };
    let client = core.kubelet_client().ok_or_else(|| {
        ApiError::Unavailable("the API server has no credentials for node agents".into())
    })?;
    let path = pod_streams::agent_path(stream, namespace, name, &container, &query);
    let tls = client.connect(&host, port).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;
    let stop = client.stop.clone();
    client.tasks.spawn(async move {
        tokio::select! {
            _ = connection.with_upgrades() => {}
            _ = stop.cancelled() => {}
        }
    });

    let mut request = request;
    let client_upgrade = hyper::upgrade::on(&mut request);
    let mut onward = axum::http::Request::builder()
        .method(request.method().clone())
        .uri(path);
    if websocket.is_some() {
        // The node is asked for SPDY, whatever the caller speaks.
        let version = match stream {
            Stream::PortForward => pod_websocket::NODE_PORT_FORWARD,
            _ => pod_websocket::NODE_REMOTE_COMMAND,
        };
        onward = onward
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "SPDY/3.1")
            .header("X-Stream-Protocol-Version", version);
    } else if stream != Stream::Log {
        for (header_name, value) in request.headers() {
            if !HOP_BY_HOP.contains(&header_name.as_str()) {
                onward = onward.header(header_name, value);
            }
        }
    }
    let onward = onward
        .header(header::HOST, crate::kubelet::join_host_port(&host, port))
        .body(Body::empty())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut answer = sender
        .send_request(onward)
        .await
        .map_err(|e| ApiError::Internal(format!("error dialing backend: {e}")))?;

    if stream == Stream::Log {
        if !answer.status().is_success() {
            return Err(agent_error(answer, name).await);
        }
        let mut response = Response::new(Body::new(answer.into_body()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain"),
        );
        return Ok(response);
    }
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(agent_error(answer, name).await);
    }
    let agent_upgrade = hyper::upgrade::on(&mut answer);
    if let Some((protocol, accept)) = websocket {
        let channels = Channels::of(&query);
        let stop = client.stop.clone();
        client.tasks.spawn(async move {
            let Some((caller, agent)) = both_upgraded(client_upgrade, agent_upgrade).await else {
                return;
            };
            let caller = pod_websocket::caller(caller).await;
            let agent = TokioIo::new(agent);
            let bridged = async move {
                match stream {
                    Stream::PortForward => pod_websocket::tunnel(caller, agent).await,
                    _ => pod_websocket::translate(caller, agent, channels).await,
                }
            };
            tokio::select! {
                _ = bridged => {}
                _ = stop.cancelled() => {}
            }
        });
        let mut switching = Response::new(Body::empty());
        *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = switching.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            header::HeaderValue::from_static(protocol),
        );
        if let Ok(accept) = header::HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        return Ok(switching);
    }
    let stop = client.stop.clone();
    client.tasks.spawn(async move {
        let Some((caller, agent)) = both_upgraded(client_upgrade, agent_upgrade).await else {
            return;
        };
        let mut caller = TokioIo::new(caller);
        let mut agent = TokioIo::new(agent);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut caller, &mut agent) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "a pod stream ended");
                }
            }
            _ = stop.cancelled() => {}
        }
    });
    let mut switching = Response::new(Body::empty());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (header_name, value) in answer.headers() {
        switching.headers_mut().append(header_name, value.clone());
    }
    Ok(switching)
}

/// The caller's and the agent's connections once both have switched protocols; `None` (said
/// at debug level) if either upgrade did not complete.
async fn both_upgraded(
    caller: hyper::upgrade::OnUpgrade,
    agent: hyper::upgrade::OnUpgrade,
) -> Option<(hyper::upgrade::Upgraded, hyper::upgrade::Upgraded)> {
    match tokio::join!(caller, agent) {
        (Ok(caller), Ok(agent)) => Some((caller, agent)),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "a pod stream upgrade did not complete");
            None
        }
    }
}

/// An agent's refusal as the API error kube-apiserver makes of a kubelet's: its text as the
/// message, 400 staying BadRequest.
async fn agent_error(answer: hyper::Response<hyper::body::Incoming>, name: &str) -> ApiError {
    let status = answer.status();
    let body = axum::body::to_bytes(Body::new(answer.into_body()), MAX_ERROR_BYTES)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim_end().to_owned();
    match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest(text),
        StatusCode::NOT_FOUND => ApiError::NotFound {
            group: String::new(),
            resource: "pods".into(),
            name: name.to_owned(),
        },
        _ => ApiError::Internal(format!("{text} (the node agent answered {status})")),
    }
}
