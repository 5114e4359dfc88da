//! Lists: one consistent snapshot of a kind (in a namespace or all), filtered by selectors, paged
//! with limit and continue tokens that pin later pages to the first page's revision.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::filter::Filter;
use crate::keys;
use crate::server::{decode_stored, storage_error, ApiServer};
use crate::storage::{prefix_end, Storage, StorageError};

/// The list parameters of a request.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
    pub resource_version_match: String,
}

/// What a continue token carries: the revision of the first page and the key to resume at,
/// relative to the collection's prefix (the shape Kubernetes uses).
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: i64,
    start: String,
}

const TOKEN_VERSION: &str = "meta.k8s.io/v1";
/// Selective lists read the store in pages of this many keys while filling a page.
const SCAN_PAGE: i64 = 500;

fn expired_continue() -> ApiError {
    ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into())
}

fn encode_continue(rv: i64, start: &[u8]) -> String {
    let token = Continue {
        v: TOKEN_VERSION.into(),
        rv,
        start: String::from_utf8_lossy(start).into_owned(),
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<Continue, ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token}"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.v != TOKEN_VERSION || c.rv <= 0 || c.start.contains("..") {
        return Err(bad());
    }
    Ok(c)
}

fn parse_rv(rv: &str) -> Result<i64, ApiError> {
    rv.parse::<i64>()
        .ok()
        .filter(|r| *r >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {rv}")))
}

impl<S: Storage> ApiServer<S> {
    /// A list of `info` in `namespace` (all namespaces if None) of at most `limit` objects (0:
    /// all), or a watch that lists first, as the fairness classes see it: its response's size
    /// estimated from the watch cache (nothing without a filled cache).
    pub fn list_kind(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        watch: bool,
        limit: i64,
    ) -> crate::fairness::Kind {
        let prefix = keys::collection(info, namespace);
        let (count, bytes) = self
            .cache
            .as_ref()
            .and_then(|c| c.size(&prefix, &prefix_end(&prefix)))
            .unwrap_or_default();
        crate::fairness::Kind::List {
            watch,
            estimate: crate::fairness::estimate(bytes, count, limit),
        }
    }

    pub async fn list(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        let filter = Filter::parse(info, &opts.label_selector, &opts.field_selector)?;
        let prefix = keys::collection(info, namespace);
        let end = prefix_end(&prefix);
        if let Some(list) = self
            .list_from_cache(info, &filter, &prefix, &end, opts)
            .await?
        {
            return Ok(list);
        }
        let (mut start, mut revision, from_token) = if opts.continue_token.is_empty() {
            let revision = match (
                opts.resource_version.as_str(),
                opts.resource_version_match.as_str(),
            ) {
                ("", _) | ("0", _) => 0,
                (rv, "Exact") => parse_rv(rv)?,
                (rv, "" | "NotOlderThan") => {
                    parse_rv(rv)?;
                    0
                }
                (_, other) => {
                    return Err(ApiError::BadRequest(format!(
                        "resourceVersionMatch: Unsupported value: \"{other}\""
                    )))
                }
            };
            (prefix.clone(), revision, false)
        } else {
            let c = decode_continue(&opts.continue_token)?;
            let mut start = prefix.clone();
            start.extend_from_slice(c.start.as_bytes());
            (start, c.rv, true)
        };

        let limit = opts.limit.max(0);
        let mut items: Vec<Value> = Vec::new();
        // Where the next page starts, if keys remain after this one.
        let mut next: Option<Vec<u8>> = None;
        let mut remaining = None;
        'pages: loop {
            let want = match (limit, filter.is_everything()) {
                (0, _) => 0,
                (l, true) => l,
                (_, false) => SCAN_PAGE,
            };
            let page = match self.storage.list(&start, &end, want, revision).await {
                Ok(p) => p,
                Err(StorageError::Compacted { compacted }) => {
                    return Err(if from_token {
                        expired_continue()
                    } else {
                        ApiError::Expired(format!(
                            "too old resource version: {revision} ({compacted})"
                        ))
                    })
                }
                Err(e) => return Err(storage_error(info, "", e)),
            };
            // Later pages read at the first page's revision: one consistent snapshot.
            revision = page.revision;
            let count = page.items.len();
            let mut last_key = Vec::new();
            for (i, stored) in page.items.into_iter().enumerate() {
                let obj = decode_stored(&stored)?;
                last_key = stored.key;
                if filter.matches(&obj) {
                    items.push(obj);
                    if limit > 0 && items.len() as i64 == limit {
                        if i + 1 < count || page.more {
                            next = Some(after(&last_key));
                            if filter.is_everything() {
                                remaining = Some(page.remaining);
                            }
                        }
                        break 'pages;
                    }
                }
            }
            if !page.more || count == 0 {
                break;
            }
            start = after(&last_key);
        }
        let mut metadata = json!({ "resourceVersion": revision.to_string() });
        if let Some(next) = next {
            let rel = &next[prefix.len().min(next.len())..];
            metadata["continue"] = json!(encode_continue(revision, rel));
            if let Some(r) = remaining.filter(|r| *r > 0) {
                metadata["remainingItemCount"] = json!(r);
            }
        }
        Ok(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version,
            "metadata": metadata,
            "items": items,
        }))
    }
}

impl<S: Storage> ApiServer<S> {
    /// Serves a list from the watch cache when its semantics allow: no paging, and either any
    /// recent state (resourceVersion "0" or not older than one the cache has) or the current
    /// state (no resourceVersion: the cache first catches up with the store's revision).
    async fn list_from_cache(
        &self,
        info: &'static ResourceInfo,
        filter: &Filter,
        prefix: &[u8],
        end: &[u8],
        opts: &ListOptions,
    ) -> Result<Option<Value>, ApiError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        if !opts.continue_token.is_empty() || opts.resource_version_match == "Exact" {
            return Ok(None);
        }
        let needed = match opts.resource_version.as_str() {
            // Kubernetes serves "0" from its cache whatever the limit.
            "0" => 0,
            "" if opts.limit > 0 => return Ok(None),
            "" => self
                .storage
                .revision()
                .await
                .map_err(|e| storage_error(info, "", e))?,
            rv if opts.limit > 0 => {
                parse_rv(rv)?;
                return Ok(None);
            }
            rv => parse_rv(rv)?,
        };
        if !cache.wait_for(needed, CACHE_WAIT).await {
            // A revision the store has not reached either is in the future: refuse it as
            // Kubernetes does rather than answer with older data.
            let current = self
                .storage
                .revision()
                .await
                .map_err(|e| storage_error(info, "", e))?;
            if needed > current {
                return Err(ApiError::Timeout(format!(
                    "Too large resource version: {needed}, current: {current}"
                )));
            }
            return Ok(None);
        }
        let Some(snapshot) = cache.list(prefix, end) else {
            return Ok(None);
        };
        let mut items = Vec::new();
        for stored in &snapshot.items {
            let obj = decode_stored(stored)?;
            if filter.matches(&obj) {
                items.push(obj);
            }
        }
        Ok(Some(json!({
            "kind": info.list_kind,
            "apiVersion": info.api_version,
            "metadata": { "resourceVersion": snapshot.revision.to_string() },
            "items": items,
        })))
    }
}

/// How long a consistent list waits for the watch cache to catch up before reading the store.
const CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The first key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}
