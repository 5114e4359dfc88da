//! The etcd KV service: thin handlers over [`Node`].

use std::sync::Arc;

use keel_proto::etcdserverpb::kv_server::Kv;
use keel_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::mvcc::WriteRequest;
use crate::node::Node;
use crate::server::guard::{Guard, Identity};
use crate::validate;

pub struct KvService {
    node: Arc<Node>,
    guard: Arc<Guard>,
}

impl KvService {
    pub fn new(node: Arc<Node>, guard: Arc<Guard>) -> Self {
        Self { node, guard }
    }

    /// Proposes a write and decodes the response type that matches it.
    async fn write<R: Message + Default>(&self, req: WriteRequest) -> Result<(R, i64), Status> {
        let result = self.node.write(&req).await?;
        let bytes = result.outcome.map_err(StoreError::Mvcc)?;
        let resp = R::decode(bytes.as_slice())
            .map_err(|e| Status::internal(format!("undecodable apply result: {e}")))?;
        Ok((resp, result.revision))
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        let req = req.into_inner();
        validate::check_range(&req)?;
        self.guard.check(&caller, &req.key, &req.range_end, false)?;
        if !req.serializable {
            self.node.linearize().await?;
        }
        let (mut resp, rev) = self.node.state().range(&req).map_err(StoreError::Mvcc)?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        let req = req.into_inner();
        validate::check_put(&req)?;
        self.guard.check(&caller, &req.key, &[], true)?;
        let (mut resp, rev): (PutResponse, i64) = self.write(WriteRequest::Put(req)).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        let req = req.into_inner();
        validate::check_delete(&req)?;
        self.guard.check(&caller, &req.key, &req.range_end, true)?;
        let (mut resp, rev): (DeleteRangeResponse, i64) =
            self.write(WriteRequest::DeleteRange(req)).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        let req = req.into_inner();
        validate::check_txn(&req)?;
        self.guard.check_txn(&caller, &req)?;
        let (mut resp, rev): (TxnResponse, i64) = self.write(WriteRequest::Txn(req)).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let (mut resp, rev): (CompactionResponse, i64) =
            self.write(WriteRequest::Compact(req.into_inner())).await?;
        resp.header = Some(self.node.header(rev));
        Ok(Response::new(resp))
    }
}
