//! The checks a probe runs (exec, httpGet, tcpSocket, grpc) and what their outcomes mean:
//! the verdict, and the Event kubelet writes for them.

mod exec;
mod grpc;
mod http;
mod net;
mod tcp;

use std::time::Duration;

pub use exec::exec;
pub use grpc::grpc;
pub use http::{http_get, lifecycle_get};
pub use tcp::tcp_socket;

use super::spec::{ProbeAction, ProbeKind};
use super::worker::ProbeResult;
use crate::RuntimeClient;

/// kubelet's `User-Agent` for HTTP and gRPC probes (`kube-probe/<major>.<minor>` of the
/// Kubernetes version whose API keel serves).
pub const USER_AGENT: &str = "kube-probe/1.32";

/// Probe outputs (command output, response bodies) are cut at 10 KiB, as kubelet's.
pub const MAX_OUTPUT: usize = 10 * 1024;

/// Checks that error (rather than fail) are tried this many times before giving up.
const MAX_ATTEMPTS: usize = 3;

/// How one check went. The text is the check's output as kubelet reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckOutcome {
    Success(String),
    /// A success with something to say (an HTTP redirect to another host, not followed).
    Warning(String),
    Failure(String),
    /// The check could not be made at all (no such port, the runtime refused the exec):
    /// no verdict either way.
    Error(String),
}

impl CheckOutcome {
    /// The verdict this outcome counts as; `None` for an error, which is not counted.
    pub fn result(&self) -> Option<ProbeResult> {
        match self {
            Self::Success(_) | Self::Warning(_) => Some(ProbeResult::Success),
            Self::Failure(_) => Some(ProbeResult::Failure),
            Self::Error(_) => None,
        }
    }

    /// The Warning Event kubelet writes for this outcome of a `kind` probe, as
    /// (reason, message); successes write none.
    pub fn event(&self, kind: ProbeKind) -> Option<(&'static str, String)> {
        let kind = kind.name();
        match self {
            Self::Success(_) => None,
            Self::Warning(output) => {
                Some(("ProbeWarning", format!("{kind} probe warning: {output}")))
            }
            Self::Failure(output) => Some(("Unhealthy", format!("{kind} probe failed: {output}"))),
            Self::Error(error) => Some((
                "Unhealthy",
                format!("{kind} probe errored and resulted in unknown state: {error}"),
            )),
        }
    }
}

/// Where a check is aimed.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The pod's IP, the host of checks that name none.
    pub pod_ip: Option<&'a str>,
    /// The container instance exec checks run in.
    pub container_id: &'a str,
}

/// Runs `action` against `target` within `timeout`, trying again (up to three times in all)
/// while it errors, as kubelet does.
pub async fn run(
    action: &ProbeAction,
    target: Target<'_>,
    timeout: Duration,
    runtime: &RuntimeClient,
) -> CheckOutcome {
    let mut outcome = CheckOutcome::Error(String::new());
    for _ in 0..MAX_ATTEMPTS {
        outcome = run_once(action, target, timeout, runtime).await;
        if !matches!(outcome, CheckOutcome::Error(_)) {
            break;
        }
    }
    outcome
}

async fn run_once(
    action: &ProbeAction,
    target: Target<'_>,
    timeout: Duration,
    runtime: &RuntimeClient,
) -> CheckOutcome {
    let host = |explicit: &Option<String>| {
        explicit
            .as_deref()
            .or(target.pod_ip)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| CheckOutcome::Error("the pod has no IP yet".into()))
    };
    match action {
        ProbeAction::Exec { command } => exec(runtime, target.container_id, command, timeout).await,
        ProbeAction::HttpGet(get) => match host(&get.host) {
            Ok(host) => http_get(get, &host, timeout).await,
            Err(error) => error,
        },
        ProbeAction::TcpSocket {
            host: explicit,
            port,
        } => match (host(explicit), port) {
            (Ok(host), Ok(port)) => tcp_socket(&host, *port, timeout).await,
            (Err(error), _) => error,
            (_, Err(error)) => CheckOutcome::Error(error.clone()),
        },
        ProbeAction::Grpc { port, service } => match (host(&None), port) {
            (Ok(host), Ok(port)) => grpc(&host, *port, service, timeout).await,
            (Err(error), _) => error,
            (_, Err(error)) => CheckOutcome::Error(error.clone()),
        },
        ProbeAction::Missing => CheckOutcome::Error("missing probe handler".into()),
    }
}

/// `bytes` as text, cut at [`MAX_OUTPUT`].
fn output_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_errors_write_unhealthy_events_in_kubelets_words() {
        assert_eq!(
            CheckOutcome::Failure("HTTP probe failed with statuscode: 500".into())
                .event(ProbeKind::Liveness),
            Some((
                "Unhealthy",
                "Liveness probe failed: HTTP probe failed with statuscode: 500".into()
            ))
        );
        assert_eq!(
            CheckOutcome::Error("invalid port number: 0".into()).event(ProbeKind::Readiness),
            Some((
                "Unhealthy",
                "Readiness probe errored and resulted in unknown state: invalid port number: 0"
                    .into()
            ))
        );
        assert_eq!(
            CheckOutcome::Warning("moved".into()).event(ProbeKind::Startup),
            Some(("ProbeWarning", "Startup probe warning: moved".into()))
        );
        assert_eq!(
            CheckOutcome::Success("ok".into()).event(ProbeKind::Startup),
            None
        );
    }

    #[test]
    fn warnings_count_as_success_and_errors_not_at_all() {
        assert_eq!(
            CheckOutcome::Warning(String::new()).result(),
            Some(ProbeResult::Success)
        );
        assert_eq!(
            CheckOutcome::Failure(String::new()).result(),
            Some(ProbeResult::Failure)
        );
        assert_eq!(CheckOutcome::Error(String::new()).result(), None);
    }
}
