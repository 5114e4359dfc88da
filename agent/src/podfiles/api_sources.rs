//! [`Sources`] over keel's API, with kubelet's short-lived cache: an object read for one pod
//! serves every other pod that asks within a few seconds, so a hundred pods on one ConfigMap
//! cost one GET per sync, not a hundred. Concurrent misses on one object wait for one read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use keel_client::{Api, Client};
use serde_json::{json, Value};

use super::{SourceError, Sources, Token, TokenSpec};

/// How long a read object is served from the cache.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
/// Past this many entries, stale ones are dropped when a new one is added.
const PRUNE_ABOVE: usize = 1024;

type Key = (String, String);
type Slot<T> = Arc<tokio::sync::Mutex<Option<(Instant, Result<T, SourceError>)>>>;

/// A time-to-live cache of one kind of object, one slot per object.
struct TtlCache<T> {
    ttl: Duration,
    slots: Mutex<HashMap<Key, Slot<T>>>,
}

impl<T: Clone> TtlCache<T> {
    fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: Key) -> Slot<T> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() > PRUNE_ABOVE {
            let ttl = self.ttl;
            slots.retain(|_, slot| match slot.try_lock() {
                Ok(entry) => entry.as_ref().is_some_and(|(at, _)| at.elapsed() < ttl),
                Err(_) => true,
            });
        }
        Arc::clone(slots.entry(key).or_default())
    }

    async fn get<F, Fut>(&self, key: Key, read: F) -> Result<T, SourceError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        let slot = self.slot(key);
        let mut entry = slot.lock().await;
        if let Some((at, value)) = entry.as_ref() {
            if at.elapsed() < self.ttl {
                return value.clone();
            }
        }
        let value = read().await;
        *entry = Some((Instant::now(), value.clone()));
        value
    }
}

/// Reads ConfigMaps and Secrets through a cache of `ttl`, and requests tokens (never cached
/// here: the volume manager keeps each token until it is due for renewal).
pub struct ApiSources {
    client: Client,
    config_maps: TtlCache<ConfigMap>,
    secrets: TtlCache<Secret>,
}

impl ApiSources {
    /// Sources over `client` with the [`DEFAULT_TTL`].
    pub fn new(client: Client) -> Self {
        Self::with_ttl(client, DEFAULT_TTL)
    }

    pub fn with_ttl(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            config_maps: TtlCache::new(ttl),
            secrets: TtlCache::new(ttl),
        }
    }
}

fn source_error(kind: &'static str, name: &str, error: &keel_client::Error) -> SourceError {
    if error.is_not_found() {
        SourceError::NotFound {
            kind,
            name: name.to_owned(),
        }
    } else {
        SourceError::Failed(error.to_string())
    }
}

fn key(namespace: &str, name: &str) -> Key {
    (namespace.to_owned(), name.to_owned())
}

/// The token and expiry of a TokenRequest's answer.
pub(crate) fn token_from_reply(reply: &Value) -> Result<Token, SourceError> {
    let token = reply
        .pointer("/status/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| SourceError::Failed("the TokenRequest's answer has no token".into()))?;
    let expiration = reply
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            SourceError::Failed("the TokenRequest's answer has no expirationTimestamp".into())
        })?;
    Ok(Token {
        token: token.to_owned(),
        expiration,
    })
}

impl Sources for ApiSources {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, SourceError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        self.config_maps
            .get(key(namespace, name), || async {
                api.get(name)
                    .await
                    .map_err(|e| source_error("configmap", name, &e))
            })
            .await
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, SourceError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        self.secrets
            .get(key(namespace, name), || async {
                api.get(name)
                    .await
                    .map_err(|e| source_error("secret", name, &e))
            })
            .await
    }

    async fn token(&self, spec: &TokenSpec) -> Result<Token, SourceError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &spec.namespace);
        let audiences: Vec<&str> = if spec.audience.is_empty() {
            Vec::new()
        } else {
            vec![spec.audience.as_str()]
        };
        let request = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": audiences,
                "expirationSeconds": spec.expiration_seconds,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": spec.pod_name, "uid": spec.pod_uid},
            },
        });
        let reply = api
            .create_subresource(&spec.service_account, "token", &request)
            .await
            .map_err(|e| source_error("serviceaccount", &spec.service_account, &e))?;
        token_from_reply(&reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cached_object_is_read_once_within_its_ttl() {
        let cache: TtlCache<u32> = TtlCache::new(Duration::from_secs(3600));
        let reads = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..100 {
            let got = cache
                .get(key("ns", "x"), || async {
                    Ok(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                })
                .await;
            assert_eq!(got, Ok(0));
        }
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_missing_object_is_cached_as_missing_and_an_expired_entry_is_read_again() {
        let cache: TtlCache<u32> = TtlCache::new(Duration::ZERO);
        let missing = || async {
            Err(SourceError::NotFound {
                kind: "configmap",
                name: "x".into(),
            })
        };
        let first = cache.get(key("ns", "x"), missing).await;
        assert_eq!(
            first.map_err(|e| e.to_string()),
            Err("configmap \"x\" not found".to_owned())
        );
        let again = cache.get(key("ns", "x"), || async { Ok(7) }).await;
        assert_eq!(again, Ok(7), "a zero TTL never serves from the cache");
    }

    #[test]
    fn a_token_reply_gives_the_token_and_its_expiry() {
        let reply =
            json!({"status": {"token": "abc", "expirationTimestamp": "2030-01-02T03:04:05Z"}});
        let token = token_from_reply(&reply).expect("token");
        assert_eq!(token.token, "abc");
        assert_eq!(token.expiration.to_rfc3339(), "2030-01-02T03:04:05+00:00");
        assert!(token_from_reply(&json!({"status": {}})).is_err());
    }
}
