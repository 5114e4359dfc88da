//! The raft transport's client side: openraft's `RaftNetworkV2` over gRPC to each peer's
//! `RaftPeer` service. Messages are openraft's own types in the store codec.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use keel_proto::keelpb::raft_peer_client::RaftPeerClient;
use keel_proto::keelpb::{ForwardRequest, RaftReply, RaftRequest, ReadIndexRequest, SnapshotChunk};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{stream_append_sequential, RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult,
    TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::{snapshot_transfer, ForwardReply, Forwarded};
use crate::codec;
use crate::types::{Member, NodeId, Snapshot, TypeConfig, Vote};

/// The shortest time an append is given before its peer counts as unreachable.
const APPEND_TIMEOUT_FLOOR: Duration = Duration::from_secs(1);

/// Largest peer message accepted (snapshots travel whole).
pub const MAX_PEER_MESSAGE: usize = 1 << 30;

/// TLS for dialling peers, when the peer port uses it.
pub type PeerTls = Option<Arc<rustls::ClientConfig>>;

/// A gRPC client for one peer.
pub fn peer_client(
    url: &str,
    tls: &PeerTls,
) -> Result<RaftPeerClient<Channel>, tonic::transport::Error> {
    Ok(RaftPeerClient::new(crate::tls::channel(url, tls.clone())?)
        .max_decoding_message_size(MAX_PEER_MESSAGE)
        .max_encoding_message_size(MAX_PEER_MESSAGE))
}

/// Creates one [`PeerNetwork`] per replication target.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    removed: Arc<AtomicBool>,
    tls: PeerTls,
}

impl NetworkFactory {
    /// `removed` is set when a peer answers that this member was removed from the cluster.
    pub fn new(removed: Arc<AtomicBool>, tls: PeerTls) -> Self {
        Self { removed, tls }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerNetwork {
        let url = node.peer_urls.first().cloned().unwrap_or_default();
        PeerNetwork {
            target,
            client: peer_client(&url, &self.tls).map_err(|e| e.to_string()),
            removed: self.removed.clone(),
            unary_appends: false,
        }
    }
}

/// The connection openraft uses to replicate to, or ask votes of, one peer.
pub struct PeerNetwork {
    target: NodeId,
    client: Result<RaftPeerClient<Channel>, String>,
    removed: Arc<AtomicBool>,
    /// The peer has no `AppendStream` (an older build): appends go one call at a time.
    unary_appends: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl PeerNetwork {
    async fn call<Req, Resp>(
        &mut self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let client = self
            .client
            .as_mut()
            .map_err(|e| unreachable(format!("bad peer url for {}: {e}", self.target)))?;
        let name = method.to_string();
        let reply = match method {
            Method::Snapshot(chunks) => {
                let fut = client.install_snapshot(futures::stream::iter(chunks));
                tokio::time::timeout(timeout, fut).await
            }
            _ => {
                let data =
                    codec::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                let request = tonic::Request::new(RaftRequest { data });
                let fut = async {
                    match method {
                        Method::Vote => client.vote(request).await,
                        Method::PreVote => client.pre_vote(request).await,
                        Method::TransferLeader => client.transfer_leader(request).await,
                        Method::Append | Method::Snapshot(_) => {
                            client.append_entries(request).await
                        }
                    }
                };
                tokio::time::timeout(timeout, fut).await
            }
        };
        let reply = match reply {
            Err(_) => {
                return Err(unreachable(format!(
                    "{name} to {} timed out after {timeout:?}",
                    self.target
                )))
            }
            Ok(Err(status)) => {
                return Err(unreachable(format!("{name} to {}: {status}", self.target)))
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        read_reply(self.target, &self.removed, reply)
    }
}

/// The payload of a peer's reply, or the error it carries.
fn read_reply<Resp: DeserializeOwned>(
    target: NodeId,
    removed: &AtomicBool,
    reply: RaftReply,
) -> Result<Resp, RPCError<TypeConfig>> {
    if reply.removed {
        tracing::error!(peer = %format_args!("{target:x}"), "a peer says this member was removed from the cluster");
        removed.store(true, Ordering::Relaxed);
    }
    if !reply.error.is_empty() {
        return Err(RPCError::Network(NetworkError::new(&TransportError(
            reply.error,
        ))));
    }
    codec::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

fn unreachable(msg: String) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&TransportError(msg)))
}

/// What the reply side of an append stream keeps between replies.
struct ReplyStream {
    target: NodeId,
    removed: Arc<AtomicBool>,
    replies: tonic::Streaming<RaftReply>,
    /// When each request not yet answered was sent, oldest first.
    unanswered: Arc<Mutex<VecDeque<Instant>>>,
    /// How long a request may wait for its answer.
    patience: Duration,
    /// Dropped with this reply side, which ends the request side before it asks openraft for
    /// another request: a request taken for a session openraft has abandoned would be lost.
    _session: oneshot::Sender<()>,
}

impl ReplyStream {
    /// The next reply; `None` once the stream is over, after an error included.
    async fn next(
        &mut self,
    ) -> Option<Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>> {
        let target = self.target;
        let reply = loop {
            let oldest = self
                .unanswered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .front()
                .copied();
            // With nothing asked, an idle stream is not a slow peer: look again later.
            let deadline = match oldest {
                Some(sent) => sent + self.patience,
                None => Instant::now() + self.patience,
            };
            match tokio::time::timeout_at(deadline.into(), self.replies.message()).await {
                Err(_) if oldest.is_none() => continue,
                Err(_) => {
                    return Some(Err(unreachable(format!(
                        "append to {target:x}: no reply within {:?}",
                        self.patience
                    ))))
                }
                Ok(Err(status)) => {
                    return Some(Err(unreachable(format!("append to {target:x}: {status}"))))
                }
                Ok(Ok(None)) => {
                    let left = self
                        .unanswered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .len();
                    if left == 0 {
                        return None;
                    }
                    return Some(Err(unreachable(format!(
                        "append stream to {target:x} ended with {left} requests unanswered"
                    ))));
                }
                Ok(Ok(Some(reply))) => break reply,
            }
        };
        let asked = self
            .unanswered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front();
        if asked.is_none() {
            return Some(Err(RPCError::Network(NetworkError::new(&TransportError(
                format!("append stream to {target:x}: a reply to no request"),
            )))));
        }
        Some(read_reply(target, &self.removed, reply))
    }
}

#[derive(Debug, Clone)]
enum Method {
    Append,
    Vote,
    PreVote,
    /// A snapshot, already cut into chunks (the request itself is then unused).
    Snapshot(Vec<SnapshotChunk>),
    TransferLeader,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Append => "append",
            Method::Vote => "vote",
            Method::PreVote => "pre-vote",
            Method::Snapshot(_) => "snapshot",
            Method::TransferLeader => "transfer-leader",
        })
    }
}

impl RaftNetworkV2<TypeConfig> for PeerNetwork {
    type SnapshotData = crate::storage::snapshot::Image;

    /// Pipelined replication over one gRPC stream: each request is sent as soon as openraft
    /// makes it, and the peer answers in order.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<
        's,
        Result<
            BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>>,
            RPCError<TypeConfig>,
        >,
    >
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let target = self.target;
            if self.unary_appends {
                return stream_append_sequential(self, input, option).await;
            }
            let client = self
                .client
                .as_mut()
                .map_err(|e| unreachable(format!("bad peer url for {target:x}: {e}")))?;
            let unanswered: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let sent = unanswered.clone();
            let (session, session_over) = oneshot::channel::<()>();
            // A request the codec cannot encode ends the stream; openraft then starts another.
            let requests = input.take_until(session_over).scan((), move |_, rpc| {
                let data = codec::encode(&rpc)
                    .map_err(|e| tracing::error!("cannot encode an append for {target:x}: {e}"))
                    .ok();
                if data.is_some() {
                    sent.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_back(Instant::now());
                }
                std::future::ready(data.map(|data| RaftRequest { data }))
            });
            let patience = option.soft_ttl().max(APPEND_TIMEOUT_FLOOR);
            let opened = tokio::time::timeout(patience, client.append_stream(requests))
                .await
                .map_err(|_| unreachable(format!("append stream to {target:x} timed out")))?;
            let replies = match opened {
                Ok(replies) => replies.into_inner(),
                Err(status) => {
                    if status.code() == tonic::Code::Unimplemented {
                        // Whatever this attempt took from openraft is resent by its next session.
                        tracing::warn!(peer = %format_args!("{target:x}"), "peer has no append stream; appending one call at a time");
                        self.unary_appends = true;
                    }
                    return Err(unreachable(format!(
                        "append stream to {target:x}: {status}"
                    )));
                }
            };
            let state = ReplyStream {
                target,
                removed: self.removed.clone(),
                replies,
                unanswered,
                patience,
                _session: session,
            };
            // The stream ends after an error, and after a refused append (conflict, higher
            // vote), as openraft's own sequential stream does.
            let replies = futures::stream::unfold(Some(state), |state| async move {
                let mut state = state?;
                let next = state.next().await?;
                let more = matches!(next, Ok(Ok(_))).then_some(state);
                Some((next, more))
            });
            Ok(replies.boxed())
        })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft bounds an append by the heartbeat interval; a batch for a member that is
        // catching up on a busy host can take longer, and timing it out only restarts it.
        let timeout = option.hard_ttl().max(APPEND_TIMEOUT_FLOOR);
        self.call(Method::Append, &rpc, timeout).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::PreVote, &rpc, option.hard_ttl()).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Method::TransferLeader, &req, option.hard_ttl())
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // Encoding a checkpoint reads the whole state from disk.
        let image = snapshot.snapshot;
        let data =
            tokio::task::spawn_blocking(move || image.into_bytes().map_err(|e| e.to_string()))
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
                .map_err(|e| StreamingError::Network(NetworkError::new(&TransportError(e))))?;
        let chunks = snapshot_transfer::chunks(&vote, &snapshot.meta, &data)
            .map_err(|e| StreamingError::Network(NetworkError::new(&TransportError(e))))?;
        // Snapshots can be large: a minute, plus a second for every 10 MiB.
        let timeout = option
            .hard_ttl()
            .max(Duration::from_secs(60 + data.len() as u64 / (10 << 20)));
        drop(data);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.call::<_, SnapshotResponse<TypeConfig>>(Method::Snapshot(chunks), &(), timeout) => res.map_err(|e| match e {
                RPCError::Timeout(t) => StreamingError::Timeout(t),
                RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                RPCError::Network(n) => StreamingError::Network(n),
                RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
            }),
        }
    }
}

/// Why a forwarded request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// The peer refused the connection: the request never left this member.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The request may have reached the peer and been carried out there.
    #[error("{0}")]
    Unanswered(String),
}

/// Sends a [`Forwarded`] request to the member at `url` (the leader, as far as the caller knows).
pub async fn forward(
    client: &mut RaftPeerClient<Channel>,
    req: &Forwarded,
    timeout: Duration,
) -> Result<ForwardReply, ForwardError> {
    let data = codec::encode(req).map_err(|e| ForwardError::NotSent(e.to_string()))?;
    let call = client.forward(ForwardRequest { data });
    let reply = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| ForwardError::Unanswered("forward timed out".to_string()))?
        .map_err(|s| {
            if connection_refused(&s) {
                ForwardError::NotSent(s.message().to_string())
            } else {
                ForwardError::Unanswered(s.message().to_string())
            }
        })?;
    codec::decode(&reply.into_inner().data).map_err(|e| ForwardError::Unanswered(e.to_string()))
}

/// Whether `status` comes from a connection the peer refused (nothing listens on its port: the
/// process is gone), so no byte of the request was sent.
fn connection_refused(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        source = e.source();
    }
    false
}

/// Asks the leader at `client` for a read index: the log index a linearizable read must wait for.
pub async fn read_index(
    client: &mut RaftPeerClient<Channel>,
    timeout: Duration,
) -> Result<Result<u64, Option<u64>>, String> {
    let call = client.read_index(ReadIndexRequest {});
    let reply = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| "read index timed out".to_string())?
        .map_err(|s| s.message().to_string())?;
    codec::decode(&reply.into_inner().data).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
