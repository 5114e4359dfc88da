//! The etcd Maintenance service: status, hashes, defragmentation, leader transfer and snapshots
//! (backups), alarms.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use keel_proto::etcdserverpb::maintenance_server::Maintenance;
use keel_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use crate::error::StoreError;
use crate::node::Node;
use crate::server::guard::{Guard, Identity};
use crate::storage::alarm_members;

/// The etcd API level keel speaks; clients read it to decide which features they may use.
pub const API_VERSION: &str = "3.4.0";

/// Bytes per message of a Maintenance Snapshot stream (etcd's size).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// How long MoveLeader waits for the transferee to take over.
const LEADER_TRANSFER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

pub struct MaintenanceService {
    node: Arc<Node>,
    guard: Arc<Guard>,
}

impl MaintenanceService {
    pub fn new(node: Arc<Node>, guard: Arc<Guard>) -> Self {
        Self { node, guard }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let req = req.into_inner();
        let header = Some(self.node.header(self.node.state().current_revision()));
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => alarm_members(&self.node.state().alarms()),
            Ok(AlarmAction::Activate | AlarmAction::Deactivate) => {
                self.node.alarm(req).await?.alarms
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        };
        Ok(Response::new(AlarmResponse { header, alarms }))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let metrics = self.node.metrics();
        let db_size = self.node.state().db().size_bytes() as i64;
        let is_learner = !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.node.id);
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(self.node.state().current_revision())),
            version: API_VERSION.to_string(),
            db_size,
            leader: metrics.current_leader.unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics
                .last_applied
                .as_ref()
                .map(|l| l.index())
                .unwrap_or(0),
            errors: self
                .node
                .state()
                .alarms()
                .iter()
                .map(|(member, alarm)| {
                    format!(
                        "memberID:{member} alarm:{} ",
                        crate::quota::alarm_name(*alarm)
                    )
                })
                .collect(),
            db_size_in_use: db_size,
            is_learner,
        }))
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let db = node.state().db();
            for cf in ["kv", "lease", "meta", "raft_log", "raft_meta"] {
                db.raw()
                    .compact_range_cf(db.cf(cf), None::<&[u8]>, None::<&[u8]>);
            }
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.node.header(self.node.state().current_revision())),
        }))
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let current = self.node.state().current_revision();
        let hash = self
            .node
            .state()
            .hash_kv(current)
            .map_err(StoreError::Mvcc)?;
        Ok(Response::new(HashResponse {
            header: Some(self.node.header(current)),
            hash: hash as u32,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let state = self.node.state();
        let (current, compacted) = {
            let m = state.mvcc().map_err(StoreError::Mvcc)?;
            (m.current_revision(), m.compacted_revision())
        };
        let at = match req.into_inner().revision {
            r if r <= 0 => current,
            r if r > current => {
                return Err(StoreError::Mvcc(crate::mvcc::MvccError::FutureRevision).into())
            }
            r if r < compacted => {
                return Err(StoreError::Mvcc(crate::mvcc::MvccError::Compacted).into())
            }
            r => r,
        };
        let hash = state.hash_kv(at).map_err(StoreError::Mvcc)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(current)),
            hash: hash as u32,
            compact_revision: compacted,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let node = self.node.clone();
        let bytes = tokio::task::spawn_blocking(move || crate::backup::save(node.state()))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        let header = self.node.header(self.node.state().current_revision());
        let total = bytes.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = bytes
            .chunks(SNAPSHOT_CHUNK)
            .enumerate()
            .map(|(i, blob)| {
                let sent = (i * SNAPSHOT_CHUNK + blob.len()) as u64;
                Ok(SnapshotResponse {
                    header: (i == 0).then_some(header),
                    remaining_bytes: total as u64 - sent,
                    blob: blob.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let target = req.into_inner().target_id;
        self.node
            .transfer_leadership(target, LEADER_TRANSFER_WAIT)
            .await?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.node.header(self.node.state().current_revision())),
        }))
    }
}
