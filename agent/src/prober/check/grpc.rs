//! The grpc check: grpc.health.v1 `Health/Check` for the probe's service on the pod IP, in
//! plain text (kubelet offers no TLS here); SERVING is a success. The health protocol comes
//! from tonic-health, generated from the same proto gRPC publishes.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::net::{dial, join_host_port};
use super::{CheckOutcome, USER_AGENT};

/// Asks `host:port` whether `service` ("" for the whole server) is serving.
pub async fn grpc(host: &str, port: u16, service: &str, timeout: Duration) -> CheckOutcome {
    let address = join_host_port(host, port);
    let seconds = timeout.as_secs();
    let Ok(endpoint) = Endpoint::from_shared(format!("http://{address}")) else {
        return CheckOutcome::Error(format!("invalid address {address:?}"));
    };
    let Ok(endpoint) = endpoint.user_agent(USER_AGENT) else {
        return CheckOutcome::Error("invalid user agent".into());
    };
    let started = tokio::time::Instant::now();
    let (host, dial_timeout) = (host.to_owned(), timeout);
    let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
        let host = host.clone();
        async move {
            dial(&host, port, dial_timeout)
                .await
                .map(TokioIo::new)
                .map_err(std::io::Error::other)
        }
    }));
    let channel = match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => {
            let cause = std::error::Error::source(&error).map_or_else(|| error.to_string(), ToString::to_string);
            return CheckOutcome::Failure(format!(
                "error: failed to connect service at {address:?}: {cause}"
            ));
        }
        Err(_) => {
            return CheckOutcome::Failure(format!(
                "timeout: failed to connect service {address:?} within {seconds}s: context deadline exceeded"
            ))
        }
    };
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    let left = timeout.saturating_sub(started.elapsed());
    request.set_timeout(left);
    let deadline = format!("timeout: health rpc did not complete within {seconds}s");
    let reply = match tokio::time::timeout(left, HealthClient::new(channel).check(request)).await {
        Ok(reply) => reply,
        Err(_) => return CheckOutcome::Failure(deadline),
    };
    match reply {
        Ok(reply) => match ServingStatus::try_from(reply.into_inner().status) {
            Ok(ServingStatus::Serving) => CheckOutcome::Success("service healthy".into()),
            status => {
                let name = status.map_or("UNKNOWN", |s| s.as_str_name());
                CheckOutcome::Failure(format!("service unhealthy (responded with {name:?})"))
            }
        },
        Err(status) => match status.code() {
            tonic::Code::Unimplemented => CheckOutcome::Failure(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                status.message()
            )),
            tonic::Code::DeadlineExceeded => CheckOutcome::Failure(deadline),
            _ => CheckOutcome::Failure(format!("error: health rpc probe failed: {status}")),
        },
    }
}
