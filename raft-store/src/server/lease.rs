//! The etcd Lease service.

use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use keel_proto::etcdserverpb::lease_server::Lease;
use keel_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::error::StoreError;
use crate::mvcc::WriteRequest;
use crate::node::Node;
use crate::server::guard::{Guard, Identity};

pub struct LeaseService {
    node: Arc<Node>,
    guard: Arc<Guard>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl LeaseService {
    pub fn new(
        node: Arc<Node>,
        guard: Arc<Guard>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            node,
            guard,
            tasks,
            shutdown,
        }
    }

    async fn write<R: Message + Default>(&self, req: WriteRequest) -> Result<(R, i64), Status> {
        let result = self.node.write(&req).await?;
        let bytes = result.outcome.map_err(StoreError::Mvcc)?;
        let resp = R::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("undecodable apply result: {e}")))?;
        Ok((resp, result.revision))
    }
}

/// A fresh lease ID: positive, as etcd's are, and unlikely to collide (a collision is refused by
/// the state machine with "lease already exists", never silently merged).
fn new_lease_id() -> i64 {
    (rand::random::<u64>() >> 1).max(1) as i64
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        // Any authenticated caller, as etcd (leases hold no keys of their own).
        self.guard.caller(Identity::of(&req)).await?;
        let mut req = req.into_inner();
        if req.id == 0 {
            req.id = new_lease_id();
        }
        let (mut resp, rev): (LeaseGrantResponse, i64) =
            self.write(WriteRequest::LeaseGrant(req)).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        // Any authenticated caller, as etcd (leases hold no keys of their own).
        self.guard.caller(Identity::of(&req)).await?;
        let (mut resp, rev): (LeaseRevokeResponse, i64) = self
            .write(WriteRequest::LeaseRevoke(req.into_inner()))
            .await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    type LeaseKeepAliveStream =
        Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        // Any authenticated caller, as etcd (leases hold no keys of their own).
        self.guard.caller(Identity::of(&req)).await?;
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let node = self.node.clone();
        let shutdown = self.shutdown.child_token();
        self.tasks.spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = inbound.next() => next,
                };
                let Some(Ok(req)) = next else { break };
                let reply = match node.lease_keep_alive(req.id).await {
                    Ok(ttl) => Ok(LeaseKeepAliveResponse {
                        header: Some(node.header(node.state().current_revision())),
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(Status::from(e)),
                };
                let failed = reply.is_err();
                if tx.send(reply).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        // Any authenticated caller, as etcd (leases hold no keys of their own).
        self.guard.caller(Identity::of(&req)).await?;
        let req = req.into_inner();
        self.node.linearize().await?;
        let remaining = self.node.lease_remaining(req.id).await?;
        let state = self.node.state();
        let mvcc = state.mvcc().map_err(StoreError::Mvcc)?;
        let header = Some(self.node.header(mvcc.current_revision()));
        let resp = match mvcc.leases().get(&req.id) {
            Some(lease) if remaining >= 0 => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: remaining,
                granted_ttl: lease.ttl,
                keys: if req.keys {
                    lease.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            // etcd reports an unknown or expired lease as TTL -1 rather than an error.
            _ => LeaseTimeToLiveResponse {
                header,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        // Any authenticated caller, as etcd (leases hold no keys of their own).
        self.guard.caller(Identity::of(&req)).await?;
        self.node.linearize().await?;
        let state = self.node.state();
        let mvcc = state.mvcc().map_err(StoreError::Mvcc)?;
        let leases = mvcc
            .leases()
            .keys()
            .map(|id| LeaseStatus { id: *id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(mvcc.current_revision())),
            leases,
        }))
    }
}
