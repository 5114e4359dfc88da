//! Thin etcd v3 client plumbing over the generated stubs: channels, timeouts, error class.

use std::time::Duration;

use keel_proto::etcdserverpb::cluster_client::ClusterClient;
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::lease_client::LeaseClient;
use keel_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::Error;

/// How long one client operation may take before its outcome counts as unknown.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// A lazily connected channel to one member: it reconnects by itself after the member restarts.
pub fn channel(url: &str) -> Result<Channel, Error> {
    channel_with_timeout(url, OP_TIMEOUT)
}

/// Membership changes wait for a configuration change to commit: they get longer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

fn channel_with_timeout(url: &str, timeout: Duration) -> Result<Channel, Error> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| Error::Command {
            command: format!("endpoint {url}"),
            detail: e.to_string(),
        })?
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2));
    Ok(endpoint.connect_lazy())
}

/// The stubs of one member.
#[derive(Clone)]
pub struct Client {
    pub kv: KvClient<Channel>,
    pub lease: LeaseClient<Channel>,
    pub watch: WatchClient<Channel>,
    pub cluster: ClusterClient<Channel>,
    pub maintenance: MaintenanceClient<Channel>,
}

impl Client {
    pub fn new(url: &str) -> Result<Client, Error> {
        let ch = channel(url)?;
        Ok(Client {
            kv: KvClient::new(ch.clone()),
            lease: LeaseClient::new(ch.clone()),
            watch: WatchClient::new(ch.clone()),
            cluster: ClusterClient::new(channel_with_timeout(url, ADMIN_TIMEOUT)?),
            maintenance: MaintenanceClient::new(ch),
        })
    }
}

/// Runs `fut` under [`OP_TIMEOUT`]; a timeout becomes `DEADLINE_EXCEEDED`.
pub async fn timed<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded("client timeout")),
    }
}

/// Whether a failed request certainly did not take effect: it never reached a server that could
/// apply it. Everything else (timeouts, unavailable after sending, internal errors) is unknown.
pub fn definitely_failed(status: &Status) -> bool {
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Unimplemented => true,
        Code::Unavailable => {
            let m = status.message().to_ascii_lowercase();
            m.contains("connection refused")
                || m.contains("tcp connect error")
                || m.contains("error trying to connect")
        }
        _ => false,
    }
}

/// Runs `fut` under [`ADMIN_TIMEOUT`].
pub async fn timed_admin<T>(
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(ADMIN_TIMEOUT, fut).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded("client timeout")),
    }
}

/// A short description of a failed request for the history.
pub fn describe(status: &Status) -> String {
    let mut m = status.message().to_string();
    m.truncate(200);
    format!("{:?}: {m}", status.code())
}

/// The end of the range covering every key with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
