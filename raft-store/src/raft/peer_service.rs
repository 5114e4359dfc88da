//! The raft transport's server side: the `RaftPeer` gRPC service every member runs on its peer
//! port. Decodes, hands to openraft or the node, encodes.

use std::pin::Pin;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};

use keel_proto::keelpb::raft_peer_server::{RaftPeer, RaftPeerServer};
use keel_proto::keelpb::{
    ForwardReply as ForwardReplyPb, ForwardRequest, RaftReply, RaftRequest, ReadIndexReply,
    ReadIndexRequest, SnapshotChunk,
};
use openraft::raft::{AppendEntriesRequest, TransferLeaderRequest, VoteRequest};
use openraft::vote::RaftLeaderId;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::network::MAX_PEER_MESSAGE;
use super::snapshot_transfer::Assembler;
use super::Forwarded;
use crate::codec;
use crate::node::Node;
use crate::types::TypeConfig;

/// The peer service of one member.
pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub fn server(node: Arc<Node>) -> RaftPeerServer<Self> {
        RaftPeerServer::new(Self { node })
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE)
    }
}

fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, Status> {
    codec::decode(data).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Encodes a handler's outcome; openraft errors travel as text in `error`.
fn reply<T: Serialize, E: std::fmt::Display>(
    res: Result<T, E>,
) -> Result<Response<RaftReply>, Status> {
    match res {
        Ok(v) => {
            let data = codec::encode(&v).map_err(|e| Status::internal(e.to_string()))?;
            Ok(Response::new(RaftReply {
                data,
                error: String::new(),
                removed: false,
            }))
        }
        Err(e) => Ok(Response::new(RaftReply {
            data: Vec::new(),
            error: e.to_string(),
            removed: false,
        })),
    }
}

impl PeerService {
    /// A member removed from the cluster that still campaigns is told so, and stops; its vote
    /// request is not even considered.
    fn refuse_removed(&self, rpc: &VoteRequest<TypeConfig>) -> Option<Response<RaftReply>> {
        let candidate = *rpc.vote.leader_id().node_id();
        self.node.was_removed(candidate).then(|| {
            Response::new(RaftReply {
                data: Vec::new(),
                error: format!("member {candidate:x} was removed from the cluster"),
                removed: true,
            })
        })
    }
}

/// Replies of an append stream, in the order of its requests.
pub type AppendReplies = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send>>;

#[tonic::async_trait]
impl RaftPeer for PeerService {
    type AppendStreamStream = AppendReplies;

    async fn append_stream(
        &self,
        req: Request<Streaming<RaftRequest>>,
    ) -> Result<Response<AppendReplies>, Status> {
        // A request that cannot be read ends the input; its error is the stream's last reply,
        // after the replies to every request before it.
        let broken: Arc<Mutex<Option<Status>>> = Arc::default();
        let broken_in = broken.clone();
        let requests = req.into_inner().scan((), move |_, msg| {
            let rpc = msg.and_then(|m| decode::<AppendEntriesRequest<TypeConfig>>(&m.data));
            std::future::ready(match rpc {
                Ok(rpc) => Some(rpc),
                Err(status) => {
                    *broken_in.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
                    None
                }
            })
        });
        let replies = self
            .node
            .raft()
            .stream_append(requests)
            .map(|res| reply(res).map(Response::into_inner));
        let last = futures::stream::once(async move {
            broken.lock().unwrap_or_else(PoisonError::into_inner).take()
        })
        .filter_map(|status| std::future::ready(status.map(Err)));
        Ok(Response::new(Box::pin(replies.chain(last))))
    }

    async fn append_entries(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(self.node.raft().append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data)?;
        if let Some(refusal) = self.refuse_removed(&rpc) {
            return Ok(refusal);
        }
        reply(self.node.raft().vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data)?;
        if let Some(refusal) = self.refuse_removed(&rpc) {
            return Ok(refusal);
        }
        reply(self.node.raft().pre_vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftReply>, Status> {
        let mut chunks = req.into_inner();
        let mut assembler = Assembler::default();
        while let Some(chunk) = chunks.message().await? {
            assembler
                .push(chunk)
                .map_err(|e| Status::data_loss(e.to_string()))?;
        }
        // Verified before it is handed over: openraft treats an install failure as fatal, so a
        // damaged snapshot must be refused here, where the leader can simply send it again.
        let (vote, meta, data) = assembler
            .finish()
            .map_err(|e| Status::data_loss(e.to_string()))?;
        let snapshot = crate::types::Snapshot {
            meta,
            snapshot: crate::storage::snapshot::Image::Encoded(data),
        };
        reply(self.node.raft().install_full_snapshot(vote, snapshot).await)
    }

    async fn transfer_leader(
        &self,
        req: Request<RaftRequest>,
    ) -> Result<Response<RaftReply>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = decode(&req.into_inner().data)?;
        reply(self.node.raft().handle_transfer_leader(rpc).await)
    }

    async fn forward(
        &self,
        req: Request<ForwardRequest>,
    ) -> Result<Response<ForwardReplyPb>, Status> {
        let fwd: Forwarded = decode(&req.into_inner().data)?;
        let out = self.node.serve_forwarded(fwd).await;
        let data = codec::encode(&out).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ForwardReplyPb { data }))
    }

    async fn read_index(
        &self,
        _req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexReply>, Status> {
        let out = self.node.serve_read_index().await;
        let data = codec::encode(&out).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(ReadIndexReply { data }))
    }
}
