//! Watches: the changes to a kind (in a namespace or all) after a resourceVersion, as Kubernetes
//! watch events, filtered by selectors — an object that stops matching leaves as DELETED, one
//! that starts matching arrives as ADDED — with bookmarks and Gone for compacted history.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::filter::Filter;
use crate::keys;
use crate::list::ListOptions;
use crate::server::{decode_at, storage_error, ApiServer};
use crate::storage::{prefix_end, ProgressRequests, Storage, StorageError, StoreEvent};
use crate::stored::json_at;

#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub label_selector: String,
    pub field_selector: String,
    pub resource_version: String,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
}

/// One Kubernetes watch event.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: &'static str,
    pub object: WatchObject,
}

/// A watch event's object: decoded, or (for a watch without selectors) the stored JSON with
/// its resourceVersion written in, which goes on the wire without being decoded and encoded
/// again for every watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchObject {
    Value(Value),
    Json(Vec<u8>),
}

impl WatchObject {
    /// The object decoded.
    pub fn into_value(self) -> Value {
        match self {
            WatchObject::Value(v) => v,
            // Checked to be JSON when it was made.
            WatchObject::Json(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// The object as JSON.
    pub fn into_json(self) -> Vec<u8> {
        match self {
            WatchObject::Value(v) => serde_json::to_vec(&v).unwrap_or_default(),
            WatchObject::Json(bytes) => bytes,
        }
    }
}

pub type WatchStream = Pin<Box<dyn Stream<Item = WatchEvent> + Send>>;

fn event(kind: &'static str, object: Value) -> WatchEvent {
    WatchEvent {
        kind,
        object: WatchObject::Value(object),
    }
}

/// The stored object at `revision` as a watch event's JSON, when it is made that way.
fn raw_event(kind: &'static str, stored: &[u8], revision: i64) -> Option<WatchEvent> {
    Some(WatchEvent {
        kind,
        object: WatchObject::Json(json_at(stored, revision)?),
    })
}

fn error_event(e: &ApiError) -> WatchEvent {
    event("ERROR", e.status())
}

/// Turns one store event into the watch event this filter's client sees, if any.
fn convert(
    info: &ResourceInfo,
    filter: &Filter,
    allow_bookmarks: bool,
    ev: StoreEvent,
) -> Option<WatchEvent> {
    // Without selectors every object matches, so none need be decoded to be sent.
    if filter.is_everything() {
        let raw = match &ev {
            StoreEvent::Put {
                value,
                prev,
                mod_revision,
                ..
            } => raw_event(
                if prev.is_some() { "MODIFIED" } else { "ADDED" },
                value,
                *mod_revision,
            ),
            StoreEvent::Delete {
                prev: Some(prev),
                mod_revision,
                ..
            } => raw_event("DELETED", prev, *mod_revision),
            StoreEvent::Delete { prev: None, .. } | StoreEvent::Progress { .. } => None,
        };
        if raw.is_some() {
            return raw;
        }
    }
    match ev {
        StoreEvent::Put {
            value,
            prev,
            mod_revision,
            ..
        } => {
            let obj = decode_at(&value, mod_revision).ok()?;
            let now = filter.matches(&obj);
            // Without selectors whatever was there matched: the previous value need not be
            // decoded.
            let before = match prev {
                None => None,
                Some(_) if filter.is_everything() => Some(true),
                Some(p) => decode_at(&p, mod_revision).ok().map(|p| filter.matches(&p)),
            };
            match (before, now) {
                (None, true) | (Some(false), true) => Some(event("ADDED", obj)),
                (Some(true), true) => Some(event("MODIFIED", obj)),
                (Some(true), false) => Some(event("DELETED", obj)),
                (_, false) => None,
            }
        }
        StoreEvent::Delete {
            prev, mod_revision, ..
        } => {
            let obj = decode_at(&prev?, mod_revision).ok()?;
            filter.matches(&obj).then(|| event("DELETED", obj))
        }
        StoreEvent::Progress { revision } => allow_bookmarks.then(|| bookmark(info, revision)),
    }
}

fn bookmark(info: &ResourceInfo, revision: i64) -> WatchEvent {
    event("BOOKMARK", bookmark_object(info, revision))
}

fn bookmark_object(info: &ResourceInfo, revision: i64) -> Value {
    json!({
        "kind": info.kind,
        "apiVersion": info.api_version,
        "metadata": {"resourceVersion": revision.to_string()},
    })
}

impl<S: Storage> ApiServer<S> {
    /// Starts a watch. With no resourceVersion (or "0") the watch first sends every current
    /// object as ADDED, then changes after that snapshot; with a resourceVersion it sends the
    /// changes after it, or a 410 ERROR event if that history was compacted.
    pub async fn watch(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        opts: &WatchOptions,
    ) -> Result<WatchStream, ApiError> {
        let filter = Filter::parse(info, &opts.label_selector, &opts.field_selector)?;
        let prefix = keys::collection(info, namespace);
        let end = prefix_end(&prefix);
        let mut initial = Vec::new();
        let after =
            match opts.resource_version.as_str() {
                "" | "0" => {
                    let list = self
                        .list(
                            info,
                            namespace,
                            &ListOptions {
                                label_selector: opts.label_selector.clone(),
                                field_selector: opts.field_selector.clone(),
                                ..Default::default()
                            },
                        )
                        .await?;
                    let revision: i64 = list["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    if let Value::Array(items) = list["items"].clone() {
                        initial.extend(items.into_iter().map(|o| event("ADDED", o)));
                    }
                    if opts.send_initial_events && opts.allow_bookmarks {
                        let mut b = bookmark_object(info, revision);
                        b["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                        initial.push(event("BOOKMARK", b));
                    }
                    revision
                }
                rv => rv.parse::<i64>().ok().filter(|r| *r >= 0).ok_or_else(|| {
                    ApiError::BadRequest(format!("invalid resource version: {rv}"))
                })?,
            };
        let from_cache = self
            .cache
            .as_ref()
            .and_then(|c| c.replay(after))
            .map(|replay| crate::cache::stream_from(replay, prefix.clone(), end.clone(), after));
        let from_store = match from_cache {
            Some(stream) => Ok(stream),
            None => {
                self.storage
                    .watch(&prefix, &end, after, ProgressRequests::default())
                    .await
            }
        };
        let changes = match from_store {
            Ok(s) => s,
            Err(StorageError::Compacted { compacted }) => {
                let e =
                    ApiError::Expired(format!("too old resource version: {after} ({compacted})"));
                return Ok(Box::pin(futures::stream::iter([error_event(&e)])));
            }
            Err(e) => return Err(storage_error(info, "", e)),
        };
        let allow_bookmarks = opts.allow_bookmarks;
        // After the first error the stream ends: the client re-watches or relists.
        let changes = changes
            .scan(false, move |ended, item| {
                if *ended {
                    return futures::future::ready(None);
                }
                let out = match item {
                    Ok(ev) => convert(info, &filter, allow_bookmarks, ev),
                    Err(StorageError::Compacted { compacted }) => {
                        *ended = true;
                        Some(error_event(&ApiError::Expired(format!(
                            "too old resource version: {after} ({compacted})"
                        ))))
                    }
                    Err(e) => {
                        *ended = true;
                        Some(error_event(&storage_error(info, "", e)))
                    }
                };
                futures::future::ready(Some(out))
            })
            .filter_map(futures::future::ready);
        Ok(Box::pin(futures::stream::iter(initial).chain(changes)))
    }
}
