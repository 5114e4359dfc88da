//! The etcd Auth service: users, roles and permissions changed through raft (see
//! [`crate::auth`]), and Authenticate handing out simple tokens (assigned through raft, so
//! every member honours them). With auth
//! enabled every call but Authenticate needs the root role, as etcd's.

use std::sync::Arc;

use keel_proto::authpb;
use keel_proto::etcdserverpb::auth_server::Auth;
use keel_proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::auth::tokens::Tokens;
use crate::auth::{password, Access, AuthError, AuthOp, Permission};
use crate::codec;
use crate::error::StoreError;
use crate::node::Node;
use crate::server::guard::{Guard, Identity};
use crate::types::Command;

pub struct AuthService {
    node: Arc<Node>,
    guard: Arc<Guard>,
}

fn refused(e: AuthError) -> Status {
    StoreError::Auth(e).into()
}

fn internal(e: codec::CodecError) -> Status {
    Status::internal(e.to_string())
}

impl AuthService {
    pub fn new(node: Arc<Node>, guard: Arc<Guard>) -> Self {
        Self { node, guard }
    }

    /// Refuses a request unless auth is off or its caller holds the root role.
    async fn admin(&self, who: Identity) -> Result<(), Status> {
        let caller = self.guard.caller(who).await?;
        self.guard.check_admin(&caller)
    }

    /// Proposes `op` and returns the header of the revision it was applied at.
    async fn change(&self, op: AuthOp) -> Result<ResponseHeader, Status> {
        let result = self
            .node
            .propose(Command::Auth(codec::encode(&op).map_err(internal)?))
            .await?;
        let bytes = result.outcome.map_err(StoreError::Mvcc)?;
        let applied: Result<(), AuthError> = codec::decode(&bytes).map_err(internal)?;
        applied.map_err(refused)?;
        Ok(self.node.header(result.revision))
    }

    /// The auth state as of now (after a linearizable read).
    async fn current<R>(&self, f: impl FnOnce(&crate::auth::AuthState) -> R) -> Result<R, Status> {
        self.node.linearize().await?;
        Ok(self.node.state().with_auth(f))
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(self.node.header(self.node.state().current_revision()))
    }
}

fn password_of(password: &str, no_password: bool) -> Result<Option<String>, Status> {
    match (no_password, password.is_empty()) {
        (true, _) => Ok(None),
        (false, true) => Err(refused(AuthError::PasswordEmpty)),
        (false, false) => Ok(Some(password::hash(password))),
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let header = self.change(AuthOp::Enable).await?;
        Ok(Response::new(AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let header = self.change(AuthOp::Disable).await?;
        Ok(Response::new(AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let req = req.into_inner();
        let (enabled, revision, checked) = self
            .current(|a| {
                (
                    a.enabled,
                    a.revision,
                    a.authenticate(&req.name, &req.password),
                )
            })
            .await?;
        if !enabled {
            return Err(refused(AuthError::AuthNotEnabled));
        }
        checked.map_err(refused)?;
        let token = Tokens::fresh(revision);
        let header = self
            .change(AuthOp::IssueToken {
                user: req.name,
                token: token.clone(),
            })
            .await?;
        Ok(Response::new(AuthenticateResponse {
            header: Some(header),
            token,
        }))
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let no_password = req.options.as_ref().is_some_and(|o| o.no_password);
        let password = password_of(&req.password, no_password)?;
        let header = self
            .change(AuthOp::UserAdd {
                name: req.name,
                password,
            })
            .await?;
        Ok(Response::new(AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let name = req.into_inner().name;
        let roles = self
            .current(|a| {
                a.users
                    .get(&name)
                    .map(|u| u.roles.iter().cloned().collect())
            })
            .await?
            .ok_or_else(|| refused(AuthError::UserNotFound))?;
        Ok(Response::new(AuthUserGetResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let users = self.current(|a| a.users.keys().cloned().collect()).await?;
        Ok(Response::new(AuthUserListResponse {
            header: self.header(),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let name = req.into_inner().name;
        let header = self.change(AuthOp::UserDelete { name }).await?;
        Ok(Response::new(AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let password = password_of(&req.password, false)?;
        let header = self
            .change(AuthOp::UserChangePassword {
                name: req.name,
                password,
            })
            .await?;
        Ok(Response::new(AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let header = self
            .change(AuthOp::UserGrantRole {
                user: req.user,
                role: req.role,
            })
            .await?;
        Ok(Response::new(AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let header = self
            .change(AuthOp::UserRevokeRole {
                user: req.name,
                role: req.role,
            })
            .await?;
        Ok(Response::new(AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let name = req.into_inner().name;
        let header = self.change(AuthOp::RoleAdd { name }).await?;
        Ok(Response::new(AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let role = req.into_inner().role;
        let perm = self
            .current(|a| {
                a.roles.get(&role).map(|perms| {
                    perms
                        .iter()
                        .map(|p| authpb::Permission {
                            perm_type: p.access.as_i32(),
                            key: p.key.clone(),
                            range_end: p.range_end.clone(),
                        })
                        .collect()
                })
            })
            .await?
            .ok_or_else(|| refused(AuthError::RoleNotFound))?;
        Ok(Response::new(AuthRoleGetResponse {
            header: self.header(),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let roles = self.current(|a| a.roles.keys().cloned().collect()).await?;
        Ok(Response::new(AuthRoleListResponse {
            header: self.header(),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let name = req.into_inner().role;
        let header = self.change(AuthOp::RoleDelete { name }).await?;
        Ok(Response::new(AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let perm = req
            .perm
            .ok_or_else(|| Status::invalid_argument("etcdserver: permission is not given"))?;
        let access = Access::from_i32(perm.perm_type)
            .ok_or_else(|| Status::invalid_argument("etcdserver: invalid permission type"))?;
        let header = self
            .change(AuthOp::RoleGrantPermission {
                role: req.name,
                permission: Permission {
                    access,
                    key: perm.key,
                    range_end: perm.range_end,
                },
            })
            .await?;
        Ok(Response::new(AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.admin(Identity::of(&req)).await?;
        let req = req.into_inner();
        let header = self
            .change(AuthOp::RoleRevokePermission {
                role: req.role,
                key: req.key,
                range_end: req.range_end,
            })
            .await?;
        Ok(Response::new(AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}
