//! The etcd Cluster service: list, add (voter or learner), promote, update and remove members.

use std::sync::Arc;

use keel_proto::etcdserverpb::cluster_server::Cluster;
use keel_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::membership::MemberChange;
use crate::node::Node;
use crate::server::guard::{Guard, Identity};

pub struct ClusterService {
    node: Arc<Node>,
    guard: Arc<Guard>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>, guard: Arc<Guard>) -> Self {
        Self { node, guard }
    }
}

/// The members of the cluster as the latest membership config and published attributes say.
pub fn member_list(node: &Node) -> Vec<PbMember> {
    let metrics = node.metrics();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
    let published = node.state().members();
    membership
        .nodes()
        .map(|(id, member)| {
            let attrs = published.get(id);
            PbMember {
                id: *id,
                name: attrs.map(|a| a.name.clone()).unwrap_or_default(),
                peer_ur_ls: member.peer_urls.clone(),
                client_ur_ls: attrs.map(|a| a.client_urls.clone()).unwrap_or_default(),
                is_learner: !voters.contains(id),
            }
        })
        .collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let req = req.into_inner();
        let outcome = self
            .node
            .change_members(MemberChange::Add {
                peer_urls: req.peer_ur_ls.clone(),
                learner: req.is_learner,
            })
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.node.header(0)),
            member: Some(PbMember {
                id: outcome.id,
                name: String::new(),
                peer_ur_ls: req.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: req.is_learner,
            }),
            members: member_list(&self.node),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let id = req.into_inner().id;
        self.node
            .change_members(MemberChange::Remove { id })
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.node.header(0)),
            members: member_list(&self.node),
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let req = req.into_inner();
        self.node
            .change_members(MemberChange::Update {
                id: req.id,
                peer_urls: req.peer_ur_ls,
            })
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.node.header(0)),
            members: member_list(&self.node),
        }))
    }

    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        // Cluster responses carry no revision in etcd.
        let header = Some(self.node.header(0));
        Ok(Response::new(MemberListResponse {
            header,
            members: member_list(&self.node),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let caller = self.guard.caller(Identity::of(&req)).await?;
        self.guard.check_admin(&caller)?;
        let id = req.into_inner().id;
        self.node
            .change_members(MemberChange::Promote { id })
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.node.header(0)),
            members: member_list(&self.node),
        }))
    }
}
