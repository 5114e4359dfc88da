//! One port, two protocols: gRPC calls (`content-type: application/grpc…`) go to the
//! `keelapi.Api` service and every other request to the Kubernetes REST router, so the SDK
//! reaches a master where kubectl does, with the same TLS and credentials.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use axum::http::{header, HeaderMap, Request};
use axum::response::Response;
use axum::routing::future::RouteFuture;
use keel_api::audit::PeerAddress;
use keel_api::auth::PeerCertificate;

/// The REST router and the gRPC routes behind one HTTP service. Cloning is cheap (both are
/// shared routers), so each connection gets its own copy carrying its client certificate.
#[derive(Clone)]
pub struct Multiplex {
    rest: axum::Router,
    grpc: axum::Router,
    peer: PeerCertificate,
    address: PeerAddress,
}

impl Multiplex {
    pub fn new(rest: axum::Router, grpc: tonic::service::Routes) -> Self {
        Self {
            rest,
            grpc: grpc.into_axum_router(),
            peer: PeerCertificate::default(),
            address: PeerAddress::default(),
        }
    }

    /// This service for one connection: every request on it carries `peer` and the remote
    /// `address`, whichever protocol serves it.
    pub fn for_connection(&self, peer: PeerCertificate, address: PeerAddress) -> Self {
        Self {
            peer,
            address,
            ..self.clone()
        }
    }
}

/// Whether a request is a gRPC call. gRPC requires its content type on every call
/// (`application/grpc`, or with a `+proto`/`+json` suffix); REST clients never send it.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct == "application/grpc" || ct.starts_with("application/grpc+"))
}

impl<B> tower::Service<Request<B>> for Multiplex
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both routers are always ready: they route, and each route is cloned per request.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.peer.clone());
        request.extensions_mut().insert(self.address);
        if is_grpc(request.headers()) {
            self.grpc.call(request)
        } else {
            self.rest.call(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::routing::post;
    use axum::Extension;
    use keel_api::auth::UserInfo;
    use tower::ServiceExt;

    use super::*;

    /// Answers with which side served the request and the certificate's user it saw.
    fn side(name: &'static str) -> axum::Router {
        axum::Router::new().route(
            "/keelapi.Api/List",
            post(
                move |Extension(peer): Extension<PeerCertificate>| async move {
                    format!("{name}:{}", peer.0.map(|u| u.name).unwrap_or_default())
                },
            ),
        )
    }

    async fn served_by(app: &Multiplex, content_type: &str) -> String {
        let request = Request::post("/keelapi.Api/List")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::empty())
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8_lossy(&body).into_owned()
    }

    #[tokio::test]
    async fn grpc_content_types_go_to_grpc_and_the_rest_to_rest() {
        let app = Multiplex {
            rest: side("rest"),
            grpc: side("grpc"),
            peer: PeerCertificate::default(),
            address: PeerAddress::default(),
        };
        assert_eq!(served_by(&app, "application/grpc").await, "grpc:");
        assert_eq!(served_by(&app, "application/grpc+proto").await, "grpc:");
        assert_eq!(served_by(&app, "application/json").await, "rest:");
        assert_eq!(served_by(&app, "application/grpc-web").await, "rest:");
        assert_eq!(
            served_by(&app, "application/vnd.kubernetes.protobuf").await,
            "rest:"
        );
    }

    #[tokio::test]
    async fn both_sides_see_the_connections_client_certificate() {
        let app = Multiplex {
            rest: side("rest"),
            grpc: side("grpc"),
            peer: PeerCertificate::default(),
            address: PeerAddress::default(),
        }
        .for_connection(
            PeerCertificate(Some(UserInfo {
                name: "alice".into(),
                ..Default::default()
            })),
            PeerAddress::default(),
        );
        assert_eq!(served_by(&app, "application/grpc").await, "grpc:alice");
        assert_eq!(served_by(&app, "application/json").await, "rest:alice");
    }
}
