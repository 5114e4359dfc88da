//! REST requests into the fairness queues (see [`crate::fairness`]): each authenticated request
//! is classified by what it does and, for lists and watches, by the size of what it will send,
//! then waits for a seat of its class in its user's turn. A refused request gets kube-apiserver's
//! 429. The seat is held until the response body has been produced, or, for a watch, until it
//! has sent everything it had ready (its initial events) and waits for changes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::handlers::Verb;
use super::path::ResourcePath;
use super::query::Query;
use super::{response, Core};
use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::fairness::{self, Fairness, Kind, Refused, Seat};
use crate::storage::Storage;

/// The state of the fairness middleware.
pub(super) type Flow<S> = (Core<S>, Arc<Fairness>);

/// Paths every client may probe at any load (APF's exempt and probe flow schemas).
fn is_probe(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/version/"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// What `request` does, as the classes see it.
fn kind<S: Storage>(core: &Core<S>, method: &Method, uri: &axum::http::Uri) -> Kind {
    if is_probe(uri.path()) {
        return Kind::Exempt;
    }
    let Ok(target) = ResourcePath::parse(uri.path(), &core.custom_kinds_now()) else {
        // Discovery and OpenAPI.
        return Kind::Read;
    };
    let Ok(query) = Query::from_uri(uri) else {
        // The handler answers 400; reading the query costs nothing.
        return Kind::Read;
    };
    let long_running = match target.subresource.as_deref() {
        Some("exec" | "attach" | "portforward" | "proxy") => true,
        Some("log") => query.flag("follow"),
        _ => false,
    };
    if long_running {
        return Kind::Exempt;
    }
    let Ok(verb) = Verb::of(method, &target, &query) else {
        return Kind::Read;
    };
    let lists_first = matches!(query.get("resourceVersion"), None | Some("" | "0"));
    match verb {
        Verb::Get => Kind::Read,
        Verb::Watch if !lists_first => Kind::Watch,
        Verb::List | Verb::Watch => {
            let limit = match verb {
                Verb::List => query
                    .get("limit")
                    .and_then(|l| l.parse::<i64>().ok())
                    .unwrap_or(0),
                _ => 0,
            };
            core.list_kind(
                target.info,
                target.namespace.as_deref(),
                verb == Verb::Watch,
                limit,
            )
        }
        Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection => {
            Kind::Write
        }
    }
}

/// kube-apiserver's answer to a request APF refused.
fn refused(reason: Refused) -> Response {
    // One message for both reasons, as kube-apiserver's.
    let (Refused::QueueFull | Refused::TimedOut) = reason;
    let mut response = response::error(&fairness::refusal());
    response.headers_mut().insert(
        "retry-after",
        HeaderValue::from(fairness::RETRY_AFTER_SECONDS),
    );
    response
}

/// Admits an authenticated request into its class's queue, and holds its seat while it is
/// served.
pub(super) async fn limited<S: Storage>(
    State((core, fairness)): State<Flow<S>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(Authenticated(user)) = request.extensions().get::<Authenticated>().cloned() else {
        return next.run(request).await;
    };
    let class = fairness::classify(kind(&core, request.method(), request.uri()));
    let seat = match fairness.admit(class, &user.name).await {
        Ok(seat) => seat,
        Err(reason) => {
            tracing::debug!(user = %user.name, class = class.as_str(), ?reason, "request refused");
            return refused(reason);
        }
    };
    let response = if class == fairness::Class::LargeRead {
        match fairness.run_large(next.run(request)).await {
            Some(response) => response,
            None => response::error(&ApiError::Internal("the request's handler failed".into())),
        }
    } else {
        next.run(request).await
    };
    match seat {
        None => response,
        Some(seat) => {
            let (parts, body) = response.into_parts();
            Response::from_parts(
                parts,
                Body::new(Seated {
                    body,
                    seat: Some(seat),
                }),
            )
        }
    }
}

/// A response body holding its request's seat until it ends or first has nothing ready.
struct Seated {
    body: Body,
    seat: Option<Seat>,
}

impl HttpBody for Seated {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Pending | Poll::Ready(None)) {
            self.seat = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::StatusCode;
    use serde_json::json;

    use super::super::router_with_fairness;
    use super::super::tests::send;
    use super::*;
    use crate::fairness::{Class, Limits};
    use crate::server::ApiServer;
    use crate::storage::memory::MemoryStorage;

    async fn limited_server(limits: Limits) -> (axum::Router, Arc<Fairness>) {
        let core = Arc::new(ApiServer::new(MemoryStorage::new()));
        crate::bootstrap::ensure_namespaces(&core).await;
        let fairness = Arc::new(Fairness::new(limits).expect("runtime"));
        (router_with_fairness(core, fairness.clone()), fairness)
    }

    #[tokio::test]
    async fn a_full_class_answers_429_with_retry_after_and_other_classes_still_serve() {
        let (app, fairness) = limited_server(Limits {
            read_only: 1,
            queue_length: 0,
            queue_wait: Duration::from_millis(10),
            ..Limits::default()
        })
        .await;
        let held = fairness
            .admit(Class::ReadOnly, "system:anonymous")
            .await
            .expect("free seat");

        let refused = send(&app, "GET", "/api/v1/namespaces", None).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers["retry-after"], "1");
        assert_eq!(
            refused.body,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "Too many requests, please try again later.",
                "reason": "TooManyRequests",
                "details": {"retryAfterSeconds": 1},
                "code": 429,
            })
        );
        // Probes are never queued, and writes have their own seats.
        assert_eq!(
            send(&app, "GET", "/healthz", None).await.status,
            StatusCode::OK
        );
        let create = send(
            &app,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"metadata": {"name": "cm"}})),
        )
        .await;
        assert_eq!(create.status, StatusCode::CREATED);

        drop(held);
        assert_eq!(
            send(&app, "GET", "/api/v1/namespaces", None).await.status,
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn a_queued_request_is_served_when_a_seat_frees() {
        let (app, fairness) = limited_server(Limits {
            read_only: 1,
            ..Limits::default()
        })
        .await;
        let held = fairness
            .admit(Class::ReadOnly, "someone-else")
            .await
            .expect("free seat");
        let waiting = tokio::spawn({
            let app = app.clone();
            async move {
                send(&app, "GET", "/api/v1/namespaces/default", None)
                    .await
                    .status
            }
        });
        while fairness.stats().iter().all(|(_, s)| s.waiting == 0) {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert_eq!(waiting.await.expect("task"), StatusCode::OK);
    }
}
