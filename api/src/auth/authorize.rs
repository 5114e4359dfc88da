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

    /// The audiences this API server accepts tokens for (`--api-audiences`, default the
    /// issuer).
    fn api_audiences(&self) -> Vec<String> {
        service_accounts::audiences_or_default(Vec::new(), &self.auth.api_audiences)
    }

    /// The ServiceAccount a token names, if it is genuine, unexpired, for this API server, and
    /// the account (and the pod or secret it is bound to, if any) still exists with the uid
    /// the token was issued for.
    fn service_account_user(&self, token: &str) -> Option<UserInfo> {
        let signer = self
            .sa_signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        let claims = signer.verify(token, chrono::Utc::now().timestamp(), &self.api_audiences())?;
        let live = |kind: &str, name: &str, uid: &str| {
            let Some(info) = keel_types::kinds::by_kind("v1", kind) else {
                return false;
            };
            let key = crate::keys::object(info, Some(&claims.namespace), name);
            let Some(stored) = self.cache.as_ref().and_then(|c| c.get(&key)) else {
                return false;
            };
            let Ok(object) = serde_json::from_slice::<serde_json::Value>(&stored.value) else {
                return false;
            };
            // An object being deleted ends the tokens bound to it at once, as Kubernetes
            // rejects them once the deletion is due.
            let deleting = object
                .pointer("/metadata/deletionTimestamp")
                .and_then(|t| t.as_str())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t <= chrono::Utc::now());
            object.pointer("/metadata/uid").and_then(|u| u.as_str()) == Some(uid) && !deleting
        };
        if !live("ServiceAccount", &claims.name, &claims.uid) {
            return None;
        }
        if let Some(bound) = &claims.bound {
            if !live(&bound.kind, &bound.name, &bound.uid) {
                return None;
            }
        }
        Some(service_accounts::user_of(&claims))
    }

    /// Sets the cluster's key for ServiceAccount tokens (a P-256 key in PKCS#8 DER, shared by
    /// every master).
    pub fn set_service_account_key(&self, pkcs8: &[u8]) -> Result<(), String> {
        let signer = service_accounts::TokenSigner::from_pkcs8(pkcs8)?;
        *self
            .sa_signer
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(signer);
        Ok(())
    }

    /// The public keys ServiceAccount tokens are verified with, as a JSON Web Key Set (None
    /// until the cluster's key is known).
    pub fn service_account_jwks(&self) -> Option<serde_json::Value> {
        self.sa_signer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(service_accounts::TokenSigner::jwks)
    }

    /// A TokenRequest for the ServiceAccount `namespace/name`: a token and its expiry, bound
    /// to the pod or secret `spec.boundObjectRef` names (which must exist, with the uid given).
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
        let bound = match service_accounts::requested_binding(request)? {
            None => None,
            Some((kind, object_name, want_uid)) => {
                let info =
                    keel_types::kinds::by_kind("v1", &kind).ok_or(ApiError::UnknownResource)?;
                let object = self.get(info, Some(namespace), &object_name).await?;
                let have = crate::meta::str_field(&object, &["metadata", "uid"])
                    .unwrap_or("")
                    .to_string();
                if want_uid.as_ref().is_some_and(|w| *w != have) {
                    return Err(ApiError::Conflict {
                        group: String::new(),
                        resource: kind.clone(),
                        name: object_name.clone(),
                        detail: format!(
                            "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                            want_uid.unwrap_or_default()
                        ),
                    });
                }
                Some(service_accounts::BoundObject {
                    kind,
                    name: object_name,
                    uid: have,
                })
            }
        };
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
            &self.auth.api_audiences,
        );
        let token = signer.issue(
            &service_accounts::Claims {
                namespace: namespace.to_string(),
                name: name.to_string(),
                uid,
                expires: expires.timestamp(),
                bound: bound.clone(),
            },
            now.timestamp(),
            &audiences,
        )?;
        let bound_ref = bound.map(|b| {
            serde_json::json!({"kind": b.kind, "apiVersion": "v1", "name": b.name, "uid": b.uid})
        });
        Ok(serde_json::json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": ttl, "boundObjectRef": bound_ref},
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
        let generation = self
            .cache
            .as_ref()
            .map(|c| c.generation(crate::cache::Derived::Rbac));
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
