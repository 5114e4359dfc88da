//! Where a pod's ConfigMaps, Secrets and ServiceAccount tokens come from.

use std::future::Future;

use chrono::{DateTime, Utc};
use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::SourceError;

/// What a projected `serviceAccountToken` asks for, bound to one pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    /// Empty for the API server's own audiences.
    pub audience: String,
    pub expiration_seconds: i64,
    pub pod_name: String,
    pub pod_uid: String,
}

/// A token and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expiration: DateTime<Utc>,
}

/// Reads what pods refer to. Implementations are shared by every pod of the node.
pub trait Sources: Send + Sync {
    /// The ConfigMap `namespace/name`; [`SourceError::NotFound`] (kind `configmap`) if absent.
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<ConfigMap, SourceError>> + Send;

    /// The Secret `namespace/name`; [`SourceError::NotFound`] (kind `secret`) if absent.
    fn secret(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Secret, SourceError>> + Send;

    /// A new token (a TokenRequest on the ServiceAccount) bound to the pod `spec` names.
    fn token(&self, spec: &TokenSpec) -> impl Future<Output = Result<Token, SourceError>> + Send;
}
