//! A connection to a keel control plane: one lazy gRPC channel per master, calls sent to the
//! current one, and on a transport failure the next master is tried. Masters are reached on
//! their plain client ports by URL, or on their HTTPS port as a kubeconfig names it.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_proto::keelapi::api_client::ApiClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::bearer::Bearer;
use crate::error::Error;
use crate::kubeconfig::Kubeconfig;

/// What every call goes through: a master's channel, with the client's credentials added.
pub(crate) type Transport = InterceptedService<Channel, Bearer>;

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
    bearer: Bearer,
}

/// A master's address, with the connection settings every channel shares.
fn endpoint(url: &str) -> Result<Endpoint, Error> {
    Endpoint::from_shared(url.to_string())
        .map_err(|_| Error::Endpoint(url.to_string()))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(1))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
        })
}

impl Client {
    /// A client for the masters at `urls` (`http://host:port`, each master's client port),
    /// sending no credentials. Connections are made on first use.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Result<Self, Error> {
        Self::plain(urls, Bearer::none())
    }

    /// As [`Client::new`], authenticating every call with the bearer `token`.
    pub fn with_token<S: AsRef<str>>(urls: &[S], token: &str) -> Result<Self, Error> {
        Self::plain(urls, Bearer::fixed(token)?)
    }

    /// A client for the master the current context of the kubeconfig at `path` names, with
    /// its credentials (as kubectl would connect).
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_config(&Kubeconfig::read(path)?)
    }

    /// As [`Client::from_kubeconfig`], with the kubeconfig given as text.
    pub fn from_kubeconfig_str(text: &str) -> Result<Self, Error> {
        Self::from_config(&Kubeconfig::parse(text)?)
    }

    /// A client for the server `config` names: over TLS for an `https://` server (the
    /// master's REST port, which serves gRPC too), in the clear for `http://`. Its token, if
    /// any, rides on every call; its client certificate, if any, is presented over TLS.
    pub fn from_config(config: &Kubeconfig) -> Result<Self, Error> {
        Self::from_config_for(config, std::slice::from_ref(&config.server))
    }

    /// As [`Client::from_config`], for several masters reached with the same settings
    /// (CA, client certificate, token): one channel per URL in `servers`, with failover as
    /// [`Client::new`]. `config.server` itself is not used.
    pub fn from_config_for<S: AsRef<str>>(
        config: &Kubeconfig,
        servers: &[S],
    ) -> Result<Self, Error> {
        let channels = servers
            .iter()
            .map(|server| {
                let server = server.as_ref();
                let endpoint = endpoint(server)?;
                Ok(if server.starts_with("https://") {
                    crate::tls::channel(endpoint, config)?
                } else {
                    if config.client_certificate.is_some() {
                        tracing::warn!(%server, "a plain server: the client certificate is not presented");
                    }
                    endpoint.connect_lazy()
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        if channels.is_empty() {
            return Err(Error::Endpoint("no endpoints".into()));
        }
        let bearer = match (&config.token, &config.token_file) {
            (Some(token), Some(file)) => Bearer::from_file(file.clone(), token)?,
            (Some(token), None) => Bearer::fixed(token)?,
            (None, _) => Bearer::none(),
        };
        Ok(Self::with_channels(channels, bearer))
    }

    fn plain<S: AsRef<str>>(urls: &[S], bearer: Bearer) -> Result<Self, Error> {
        let channels = urls
            .iter()
            .map(|u| endpoint(u.as_ref()).map(|e| e.connect_lazy()))
            .collect::<Result<Vec<_>, _>>()?;
        if channels.is_empty() {
            return Err(Error::Endpoint("no endpoints".into()));
        }
        Ok(Self::with_channels(channels, bearer))
    }

    fn with_channels(channels: Vec<Channel>, bearer: Bearer) -> Self {
        Self {
            inner: Arc::new(Inner {
                channels,
                current: AtomicUsize::new(0),
                bearer,
            }),
        }
    }

    fn api(&self, index: usize) -> ApiClient<Transport> {
        ApiClient::with_interceptor(
            self.inner.channels[index % self.inner.channels.len()].clone(),
            self.inner.bearer.clone(),
        )
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX)
    }

    /// Runs `call` against the current master; when the master cannot be reached (or the
    /// connection breaks), moves to the next one and tries again. A write retried this way may
    /// have been applied by the master that failed: creates may then report AlreadyExists and
    /// conditional updates Conflict, as with any Kubernetes client.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut(ApiClient<Transport>) -> Fut,
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
