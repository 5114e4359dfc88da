//! Proxies an upgrade request (exec, attach, port-forward) to the runtime's streaming server
//! and, once both sides have switched protocols, copies bytes both ways until either closes:
//! SPDY or websocket framing passes through untouched, so every protocol version the client
//! and the runtime agree on works. A refused upgrade's answer is passed back as it came.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Request headers that belong to the hop to us, not to the one onwards.
const HOP_BY_HOP: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "content-length",
];

/// Sends `request` to `target` (an `http://` URL the runtime gave) and bridges the upgraded
/// connections. Connection and copy tasks run on `tasks` and end with `stop`.
pub async fn proxy_upgrade(
    target: &str,
    mut request: Request,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Response {
    let uri: Uri = match target.parse() {
        Ok(u) => u,
        Err(e) => return failed(format!("the runtime's stream URL {target:?}: {e}")),
    };
    let Some(authority) = uri.authority().map(|a| a.as_str().to_owned()) else {
        return failed(format!("the runtime's stream URL {target:?} names no host"));
    };
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.as_str().to_owned());
    let stream = match TcpStream::connect(&authority).await {
        Ok(s) => s,
        Err(e) => return failed(format!("connecting to the runtime's stream server: {e}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return failed(format!("the runtime's stream server: {e}")),
        };
    let connection_stop = stop.clone();
    tasks.spawn(async move {
        tokio::select! {
            _ = connection.with_upgrades() => {}
            _ = connection_stop.cancelled() => {}
        }
    });

    let client_upgrade = hyper::upgrade::on(&mut request);
    let mut onward = axum::http::Request::builder()
        .method(request.method().clone())
        .uri(path);
    for (name, value) in request.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            onward = onward.header(name, value);
        }
    }
    let onward = match onward
        .header(header::HOST, authority.as_str())
        .body(Body::empty())
    {
        Ok(r) => r,
        Err(e) => return failed(format!("building the stream request: {e}")),
    };
    let mut response = match sender.send_request(onward).await {
        Ok(r) => r,
        Err(e) => return failed(format!("the runtime's stream server: {e}")),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        return Response::from_parts(parts, Body::new(body));
    }
    let backend_upgrade = hyper::upgrade::on(&mut response);
    let copy_stop = stop.clone();
    tasks.spawn(async move {
        let (client, backend) = match tokio::join!(client_upgrade, backend_upgrade) {
            (Ok(c), Ok(b)) => (c, b),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "a stream upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "a proxied stream ended");
                }
            }
            _ = copy_stop.cancelled() => {}
        }
    });
    let mut switching = Response::new(Body::empty());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in response.headers() {
        switching.headers_mut().append(name, value.clone());
    }
    switching
}

fn failed(message: String) -> Response {
    let mut response = (StatusCode::INTERNAL_SERVER_ERROR, message).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
