//! Authentication and authorization of one request against the API server's configuration:
//! the token file, and either AlwaysAllow or RBAC over the Roles and bindings in the watch
//! cache (rebuilt only when one of them changes).

use std::sync::Arc;

use keel_types::k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use super::rbac::{forbidden_message, RbacAuthorizer};
use super::{Attributes, AuthorizationMode, Decision, UserInfo, MASTERS};
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage};

impl<S: Storage> ApiServer<S> {
    /// The user behind a request's `authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        self.auth.authenticator.authenticate(authorization)
    }

    /// Recognises `token` as `user` from now on.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.auth.authenticator.add_token(token, user);
    }

    /// Allows the request or refuses it with Kubernetes' Forbidden message.
    pub async fn authorize(&self, attrs: &Attributes) -> Result<(), ApiError> {
        if self.auth.mode == AuthorizationMode::AlwaysAllow
            || attrs.user.groups.iter().any(|g| g == MASTERS)
        {
            return Ok(());
        }
        let rbac = self.rbac().await?;
        match rbac.authorize(attrs) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => Err(ApiError::Forbidden(forbidden_message(attrs, &reason))),
            Decision::NoOpinion => Err(ApiError::Forbidden(forbidden_message(attrs, ""))),
        }
    }

    async fn rbac(&self) -> Result<Arc<RbacAuthorizer>, ApiError> {
        let generation = self.cache.as_ref().map(|c| c.rbac_generation());
        if let (Some(g), Ok(memo)) = (generation, self.rbac_memo.lock()) {
            if let Some((seen, authorizer)) = memo.as_ref() {
                if *seen == g {
                    return Ok(authorizer.clone());
                }
            }
        }
        let authorizer = Arc::new(RbacAuthorizer::new(
            self.all_of::<Role>("roles").await?,
            self.all_of::<ClusterRole>("clusterroles").await?,
            self.all_of::<RoleBinding>("rolebindings").await?,
            self.all_of::<ClusterRoleBinding>("clusterrolebindings")
                .await?,
        ));
        if let (Some(g), Ok(mut memo)) = (generation, self.rbac_memo.lock()) {
            *memo = Some((g, authorizer.clone()));
        }
        Ok(authorizer)
    }

    /// Every stored object of one RBAC kind (from the cache when there is one).
    async fn all_of<K: DeserializeOwned>(&self, plural: &str) -> Result<Vec<K>, ApiError> {
        let prefix = format!("/registry/{plural}/").into_bytes();
        let end = prefix_end(&prefix);
        let items = match self.cache.as_ref().and_then(|c| c.list(&prefix, &end)) {
            Some(snapshot) => snapshot.items,
            None => {
                self.storage
                    .list(&prefix, &end, 0, 0)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?
                    .items
            }
        };
        Ok(items
            .iter()
            .filter_map(|s| serde_json::from_slice(&s.value).ok())
            .collect())
    }
}
