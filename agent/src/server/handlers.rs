//! The routes of the agent's server: authentication and authorization of each request, then
//! logs read from the container's log file, or a stream prepared by the runtime and proxied.
//! Errors are plain text with kubelet's status codes, which the API server passes on.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::logs::LogOptions;
use super::query::Params;
use super::{log_stream, lookup, proxy, Caller, Shared, AUTHORIZED_GROUP};
use crate::cri::ContainerState;
use crate::runtime_streaming::StreamFlags;
use crate::Error;

/// The caller of a request, as its connection's client certificate names it.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub Option<Caller>);

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{namespace}/{pod}/{container}", get(exec).post(exec))
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{namespace}/{pod}",
            get(port_forward).post(port_forward),
        )
        .layer(axum::middleware::from_fn(authorize))
        .with_state(shared)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// Anonymous callers are Unauthorized; authenticated ones outside the authorized group are
/// Forbidden, in kubelet's words.
async fn authorize(request: Request, next: axum::middleware::Next) -> Response {
    let caller = request
        .extensions()
        .get::<Authenticated>()
        .and_then(|a| a.0.clone());
    match caller {
        None => text(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Some(c) if !c.groups.iter().any(|g| g == AUTHORIZED_GROUP) => {
            let verb = if request.method() == axum::http::Method::GET {
                "get"
            } else {
                "create"
            };
            text(
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={}, verb={verb}, resource=nodes, subresource=proxy)",
                    c.user
                ),
            )
        }
        Some(_) => next.run(request).await,
    }
}

fn runtime_error(error: &Error) -> Response {
    let status = match error {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, error.to_string())
}

fn params(request: &Request) -> Params {
    Params::parse(request.uri().query().unwrap_or_default())
}

async fn container_logs(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let options = match LogOptions::from_query(&params(&request), chrono::Utc::now()) {
        Ok(o) => o,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let instances = match lookup::instances(&shared.runtime, &namespace, &pod, &container).await {
        Ok(i) => i,
        Err(e) => return runtime_error(&e),
    };
    let chosen = if options.previous {
        match lookup::previous(&instances) {
            Some(c) => c,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("previous terminated container {container:?} in pod {pod:?} not found"),
                )
            }
        }
    } else {
        match lookup::current(&instances) {
            Some(c) => c,
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
                ),
                )
            }
        }
    };
    let status = match shared.runtime.container_status(&chosen.id).await {
        Ok(s) => s,
        Err(e) => return runtime_error(&e),
    };
    if status.state == ContainerState::ContainerCreated as i32 {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "container {container:?} in pod {pod:?} is waiting to start: ContainerCreating"
            ),
        );
    }
    let stream = log_stream::log_stream(
        status.log_path.into(),
        options,
        shared.runtime.clone(),
        chosen.id.clone(),
    );
    (
        [(header::CONTENT_TYPE, "text/plain")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The streams a request asks for: kubelet's own names (`input`, `output`, `error`) or the
/// API's (`stdin`, `stdout`, `stderr`).
fn stream_flags(params: &Params) -> StreamFlags {
    StreamFlags {
        stdin: params.flag("input") || params.flag("stdin"),
        stdout: params.flag("output") || params.flag("stdout"),
        stderr: params.flag("error") || params.flag("stderr"),
        tty: params.flag("tty"),
    }
}

/// The id of the running instance of a container.
async fn running_container(
    shared: &Shared,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    let instances = lookup::instances(&shared.runtime, namespace, pod, container)
        .await
        .map_err(|e| runtime_error(&e))?;
    match lookup::current(&instances) {
        Some(c) if c.state == ContainerState::ContainerRunning as i32 => Ok(c.id.clone()),
        Some(_) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("container {container:?} in pod {pod:?} is not running"),
        )),
        None => Err(text(
            StatusCode::NOT_FOUND,
            format!("container not found ({container:?})"),
        )),
    }
}

async fn exec(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let params = params(&request);
    let command = params.all("command");
    if command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify a command");
    }
    let id = match running_container(&shared, &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    match shared
        .runtime
        .exec(&id, command, stream_flags(&params))
        .await
    {
        Ok(url) => proxy::proxy_upgrade(&url, request, &shared.tasks, &shared.stop).await,
        Err(e) => runtime_error(&e),
    }
}

async fn attach(
    State(shared): State<Shared>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let id = match running_container(&shared, &namespace, &pod, &container).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let flags = stream_flags(&params(&request));
    match shared.runtime.attach(&id, flags).await {
        Ok(url) => proxy::proxy_upgrade(&url, request, &shared.tasks, &shared.stop).await,
        Err(e) => runtime_error(&e),
    }
}

async fn port_forward(
    State(shared): State<Shared>,
    Path((namespace, pod)): Path<(String, String)>,
    request: Request,
) -> Response {
    let sandboxes = match lookup::sandboxes(&shared.runtime, &namespace, &pod).await {
        Ok(s) => s,
        Err(e) => return runtime_error(&e),
    };
    let Some(sandbox) = lookup::ready_sandbox(&sandboxes) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {namespace}/{pod} has no running sandbox"),
        );
    };
    // Ports ride in the stream's headers (SPDY); a websocket caller names them here.
    let ports = params(&request)
        .all("port")
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    match shared.runtime.port_forward(&sandbox.id, ports).await {
        Ok(url) => proxy::proxy_upgrade(&url, request, &shared.tasks, &shared.stop).await,
        Err(e) => runtime_error(&e),
    }
}
