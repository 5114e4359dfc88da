//! Who a client-port call comes from and whether it may do what it asks, once auth is
//! enabled: the user a simple token (the `token` metadata clientv3 and etcdctl send; issued
//! through the log, so every member knows it) names, or
//! else the common name of the client's verified TLS certificate, as etcd reads it. With auth
//! disabled every call is allowed, as etcd's.
//!
//! Checks run against the member's replicated auth state when the call arrives (etcd checks
//! writes again when it applies them, against the auth revision they were checked at; here a
//! permission revoked between the two takes effect for calls that arrive after it is applied).

use std::sync::Arc;
use std::time::Instant;

use keel_proto::etcdserverpb::{request_op, RequestOp, TxnRequest};
use tonic::{Request, Status};

use crate::auth::AuthError;
use crate::error::StoreError;
use crate::node::Node;
use crate::tls::ClientIdentity;

/// The caller of a request: a user when auth is enabled, `None` when it is not.
pub type Caller = Option<String>;

/// What a request offers to say who sent it, taken from it before any await (a streaming
/// request cannot be held across one).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    token: Option<String>,
    common_name: Option<String>,
}

impl Identity {
    pub fn of<T>(req: &Request<T>) -> Self {
        Self {
            // A token that is not text is no token anyone was given: it fails as unknown.
            token: req
                .metadata()
                .get("token")
                .map(|t| t.to_str().map(str::to_string).unwrap_or_default()),
            common_name: req
                .extensions()
                .get::<ClientIdentity>()
                .and_then(|c| c.common_name.clone()),
        }
    }
}

fn refused(e: AuthError) -> Status {
    StoreError::Auth(e).into()
}

/// The auth checks of one member's client port.
pub struct Guard {
    node: Arc<Node>,
}

impl Guard {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Who a request comes from, if auth is enabled.
    pub async fn caller(&self, who: Identity) -> Result<Caller, Status> {
        if !self.node.state().with_auth(|a| a.enabled) {
            return Ok(None);
        }
        if let Some(token) = who.token {
            let tokens = self.node.state().tokens();
            if let Some(user) = tokens.user(&token, Instant::now()) {
                return Ok(Some(user));
            }
            // Tokens are issued through the log: one handed out a moment ago by another
            // member may not be applied here yet. Catch up once before refusing it.
            self.node.linearize().await?;
            return match tokens.user(&token, Instant::now()) {
                Some(user) => Ok(Some(user)),
                None => Err(refused(AuthError::InvalidAuthToken)),
            };
        }
        match who.common_name {
            Some(name) => Ok(Some(name)),
            None => Err(refused(AuthError::UserEmpty)),
        }
    }

    /// Checks that `caller` may read (or write) `[key, range_end)`.
    pub fn check(
        &self,
        caller: &Caller,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), Status> {
        self.node
            .state()
            .with_auth(|a| a.permits(caller.as_deref(), key, range_end, write))
            .map_err(refused)
    }

    /// Checks that `caller` holds the root role (the admin calls).
    pub fn check_admin(&self, caller: &Caller) -> Result<(), Status> {
        let Some(user) = caller else {
            return Ok(());
        };
        let allowed = self
            .node
            .state()
            .with_auth(|a| !a.enabled || a.is_root(user));
        if allowed {
            Ok(())
        } else {
            Err(refused(AuthError::PermissionDenied))
        }
    }

    /// Checks every key a transaction compares (read) and every operation of both branches.
    pub fn check_txn(&self, caller: &Caller, txn: &TxnRequest) -> Result<(), Status> {
        if caller.is_none() {
            return Ok(());
        }
        for compare in &txn.compare {
            self.check(caller, &compare.key, &compare.range_end, false)?;
        }
        for op in txn.success.iter().chain(&txn.failure) {
            self.check_op(caller, op)?;
        }
        Ok(())
    }

    fn check_op(&self, caller: &Caller, op: &RequestOp) -> Result<(), Status> {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                self.check(caller, &r.key, &r.range_end, false)
            }
            Some(request_op::Request::RequestPut(p)) => self.check(caller, &p.key, &[], true),
            Some(request_op::Request::RequestDeleteRange(d)) => {
                self.check(caller, &d.key, &d.range_end, true)
            }
            Some(request_op::Request::RequestTxn(t)) => self.check_txn(caller, t),
            None => Ok(()),
        }
    }
}
