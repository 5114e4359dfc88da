//! A connection to a keel control plane: one lazy gRPC channel per master, calls sent to the
//! current one, and on a transport failure the next master is tried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_proto::keelapi::api_client::ApiClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// How long to wait between rounds over every master.
const ROUND_BACKOFF: Duration = Duration::from_millis(200);
/// Rounds over every master before a call gives up.
const ROUNDS: usize = 25;

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Vec<Channel>,
    current: AtomicUsize,
}

impl Client {
    /// A client for the masters at `urls` (`http://host:port`, each master's client port).
    /// Connections are made on first use.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<Self, Error> {
        let channels = urls
            .iter()
            .map(|u| {
                Endpoint::from_shared(u.as_ref().to_string())
                    .map_err(|_| Error::Endpoint(u.as_ref().to_string()))
                    .map(|e| {
                        e.connect_timeout(Duration::from_secs(1))
                            .tcp_nodelay(true)
                            .http2_keep_alive_interval(Duration::from_secs(5))
                            .keep_alive_timeout(Duration::from_secs(5))
                            .connect_lazy()
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if channels.is_empty() {
            return Err(Error::Endpoint("no endpoints".into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                channels,
                current: AtomicUsize::new(0),
            }),
        })
    }

    fn api(&self, index: usize) -> ApiClient<Channel> {
        ApiClient::new(self.inner.channels[index % self.inner.channels.len()].clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    /// Runs `call` against the current master; when the master cannot be reached (or the
    /// connection breaks), moves to the next one and tries again. A write retried this way may
    /// have been applied by the master that failed: creates may then report AlreadyExists and
    /// conditional updates Conflict, as with any Kubernetes client.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut(ApiClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let n = self.inner.channels.len();
        let mut last = None;
        for round in 0..ROUNDS {
            for _ in 0..n {
                let index = self.inner.current.load(Ordering::Relaxed);
                match call(self.api(index)).await {
                    Ok(v) => return Ok(v),
                    Err(status) => {
                        let err = Error::from_grpc(status);
                        if !matches!(err, Error::Transport(_)) && !unavailable(&err) {
                            return Err(err);
                        }
                        tracing::debug!(master = index, error = %err, "master unavailable; trying the next");
                        let _ = self.inner.current.compare_exchange(
                            index,
                            (index + 1) % n,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                        last = Some(err);
                    }
                }
            }
            if round + 1 < ROUNDS {
                tokio::time::sleep(ROUND_BACKOFF).await;
            }
        }
        Err(last.unwrap_or_else(|| Error::Transport("no master answered".into())))
    }
}

/// A master that answered but cannot serve right now (its store has no leader, …).
fn unavailable(err: &Error) -> bool {
    matches!(err.code(), Some(503 | 504))
}
