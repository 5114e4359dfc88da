//! Authentication and authorization of one request against the API server's configuration:
//! the token file, and either AlwaysAllow or RBAC over the Roles and bindings in the watch
//! cache (rebuilt only when one of them changes).

use std::sync::Arc;
use std::sync::PoisonError;

use keel_types::k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::de::DeserializeOwned;

use super::rbac::{forbidden_message, RbacAuthorizer};
use super::service_accounts;
use super::{Attributes, Decision, UserInfo, MASTERS};
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage};

impl<S: Storage> ApiServer<S> {
    /// The user behind a request's `authorization` header: a ServiceAccount token, or a
    /// token the authenticator knows, or anonymous.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim);
        if let Some(user) = token
            .filter(|t| service_accounts::looks_like_jwt(t))
            .and_then(|t| self.service_account_user(t))
        {
            return Ok(user);
        }
        self.auth.authenticator.authenticate(authorization)
    }

    /// The ServiceAccount a token names, if it is genuine, unexpired, and the account still
    /// exists with the uid the token was issued for.
    fn service_account_user(&self, token: &str) -> Option<UserInfo> {
        let signer = self
            .sa_signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let claims = signer.verify(token, chrono::Utc::now().timestamp())?;
        let info = keel_types::kinds::by_kind("v1", "ServiceAccount")?;
        let stored = self.cache.as_ref()?.get(&crate::keys::object(
            info,
            Some(&claims.namespace),
            &claims.name,
        ))?;
        let account: serde_json::Value = serde_json::from_slice(&stored.value).ok()?;
        (account.pointer("/metadata/uid").and_then(|u| u.as_str()) == Some(claims.uid.as_str()))
            .then(|| service_accounts::user_of(&claims))
    }

    /// Sets the cluster's key for ServiceAccount tokens (shared by every master).
    pub fn set_service_account_key(&self, secret: &[u8]) {
        *self
            .sa_signer
            .write()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(service_accounts::TokenSigner::new(secret));
    }

    /// A TokenRequest for the ServiceAccount `namespace/name`: a token and its expiry.
    pub async fn create_token(
        &self,
        namespace: &str,
        name: &str,
        request: &serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let info =
            keel_types::kinds::by_kind("v1", "ServiceAccount").ok_or(ApiError::UnknownResource)?;
        let account = self.get(info, Some(namespace), name).await?;
        let uid = crate::meta::str_field(&account, &["metadata", "uid"])
            .unwrap_or("")
            .to_string();
        let ttl = service_accounts::requested_ttl(request)?;
        let signer = self
            .sa_signer
            .read()
            .ok()
            .and_then(|s| s.clone())
            .ok_or_else(|| ApiError::Unavailable("service account tokens are not ready".into()))?;
        let now = chrono::Utc::now();
        let expires = now + chrono::Duration::seconds(ttl);
        let audiences = service_accounts::audiences_or_default(
            request
                .pointer("/spec/audiences")
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default(),
        );
        let token = signer.issue(
            &service_accounts::Claims {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid,
                expires: expires.timestamp(),
            },
            now.timestamp(),
            &audiences,
        );
        Ok(serde_json::json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": ttl, "boundObjectRef": null},
            "status": {
                "token": token,
                "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            },
        }))
    }

    /// Recognises `token` as `user` from now on.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.auth.authenticator.add_token(token, user);
    }

    /// Allows the request or refuses it with Kubernetes' Forbidden message, asking the Node
    /// authorizer and then RBAC as `--authorization-mode` says.
    pub async fn authorize(&self, attrs: &Attributes) -> Result<(), ApiError> {
        let mode = self.auth.mode;
        if mode.always_allow || attrs.user.groups.iter().any(|g| g == MASTERS) {
            return Ok(());
        }
        let mut reason = String::new();
        if mode.node {
            // The Node authorizer never denies outright: its reason is reported only if RBAC
            // does not allow the request either.
            match self.authorize_node(attrs).await {
                Decision::Allow => return Ok(()),
                Decision::Deny(why) => reason = why,
                Decision::NoOpinion => {}
            }
        }
        if mode.rbac {
            let rbac = self.rbac().await?;
            match rbac.authorize(attrs) {
                Decision::Allow => return Ok(()),
                Decision::Deny(why) => reason = why,
                Decision::NoOpinion => {}
            }
        }
        Err(ApiError::Forbidden(forbidden_message(attrs, &reason)))
    }

    /// Refuses a Role, ClusterRole or binding that would give `requester` (or anyone) a
    /// permission `requester` does not hold, unless it may `escalate` roles or `bind` the
    /// role (see `escalation`). Other kinds, the server's own writes, AlwaysAllow and
    /// `system:masters` pass.
    pub(crate) async fn check_escalation(
        &self,
        info: &keel_types::ResourceInfo,
        namespace: Option<&str>,
        object: &serde_json::Value,
        requester: Option<&UserInfo>,
    ) -> Result<(), ApiError> {
        const GROUP: &str = "rbac.authorization.k8s.io";
        let Some(user) = requester else {
            return Ok(());
        };
        if info.group != GROUP
            || self.auth.mode.always_allow
            || user.groups.iter().any(|g| g == MASTERS)
        {
            return Ok(());
        }
        let namespace = namespace.unwrap_or("");
        let name = crate::meta::name(object).to_string();
        let may = |verb: &str, resource: &str, target: &str| Attributes {
            user: user.clone(),
            verb: verb.into(),
            api_group: GROUP.into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: namespace.into(),
            name: target.into(),
            path: None,
        };
        let rbac = self.rbac().await?;
        let (wanted, held_in) = match info.kind {
            "Role" | "ClusterRole" => {
                let plural = info.plural;
                if rbac.authorize(&may("escalate", plural, &name)) == Decision::Allow {
                    return Ok(());
                }
                let rules: Vec<keel_types::k8s_openapi::api::rbac::v1::PolicyRule> = object
                    .get("rules")
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
                    .unwrap_or_default();
                (
                    Some(rules),
                    if info.kind == "Role" { namespace } else { "" },
                )
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let role: keel_types::k8s_openapi::api::rbac::v1::RoleRef = object
                    .get("roleRef")
                    .and_then(|r| serde_json::from_value(r.clone()).ok())
                    .unwrap_or_default();
                let role_plural = if role.kind == "Role" {
                    "roles"
                } else {
                    "clusterroles"
                };
                if rbac.authorize(&may("bind", role_plural, &role.name)) == Decision::Allow {
                    return Ok(());
                }
                let held_in = if info.kind == "RoleBinding" {
                    namespace
                } else {
                    ""
                };
                (rbac.role_ref_rules(&role, held_in), held_in)
            }
            _ => return Ok(()),
        };
        let resource = format!("{}.{GROUP}", info.plural);
        let who = format!(
            "user {:?} (groups=[{}])",
            user.name,
            user.groups
                .iter()
                .map(|g| format!("{g:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let Some(wanted) = wanted else {
            return Err(ApiError::Forbidden(format!(
                "{resource} {name:?} is forbidden: {who} is attempting to grant RBAC permissions not currently held: the role it refers to was not found"
            )));
        };
        let missing = super::escalation::uncovered(&rbac.rules_for(user, held_in), &wanted);
        if missing.is_empty() {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "{resource} {name:?} is forbidden: {who} is attempting to grant RBAC permissions not currently held:\n{}",
            super::escalation::describe(&missing)
        )))
    }

    async fn rbac(&self) -> Result<Arc<RbacAuthorizer>, ApiError> {
        let generation = self.cache.as_ref().map(|c| c.rbac_generation());
        if let Some(g) = generation {
            let memo = self
                .rbac_memo
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
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
        if let Some(g) = generation {
            *self
                .rbac_memo
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((g, authorizer.clone()));
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
