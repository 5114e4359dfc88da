//! A watch that does not lose events: it lists, then watches from the list's resourceVersion,
//! resumes from the last resourceVersion it delivered whenever the connection breaks (on any
//! master), and relists — announcing a restart — only when that history was compacted.
//!
//! The state machine (as kube-runtime's watcher): `Empty` → list → `Watching(rv)`; a broken
//! stream goes back to `Watching(rv)`; 410 Gone goes back to `Empty`.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ListableResource, Metadata, Resource};
use keel_types::k8s_openapi;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{Api, ListParams, WatchEvent, WatchParams, WatchStream};
use crate::error::Error;

/// What a watcher reports.
#[derive(Debug, Clone)]
pub enum Event<K> {
    /// The object was created or changed.
    Applied(K),
    Deleted(K),
    /// The full current state: after the first list, and after a relist (events may have been
    /// missed: the receiver should replace what it holds).
    Restarted(Vec<K>),
}

enum State<K> {
    Empty,
    Watching { rv: String },
    Streaming { rv: String, stream: WatchStream<K> },
}

/// Pause before re-watching after a broken stream.
const RETRY: Duration = Duration::from_millis(200);

/// Watches `api` for ever. Errors are reported and the watcher carries on.
pub fn watcher<K>(api: Api<K>, params: WatchParams) -> impl Stream<Item = Result<Event<K>, Error>>
where
    K: Resource
        + ListableResource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static,
{
    futures::stream::unfold(State::Empty, move |state| {
        let api = api.clone();
        let params = params.clone();
        async move {
            let mut state = state;
            loop {
                let (out, next) = step(&api, &params, state).await;
                match out {
                    Some(item) => return Some((item, next)),
                    None => state = next,
                }
            }
        }
    })
}

fn rv_of<K: Metadata<Ty = ObjectMeta>>(obj: &K) -> Option<String> {
    obj.metadata().resource_version.clone()
}

async fn step<K>(
    api: &Api<K>,
    params: &WatchParams,
    state: State<K>,
) -> (Option<Result<Event<K>, Error>>, State<K>)
where
    K: Resource
        + ListableResource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + 'static,
{
    match state {
        State::Empty => match list_all(api, params).await {
            Ok((items, rv)) => (Some(Ok(Event::Restarted(items))), State::Watching { rv }),
            Err(e) => {
                tokio::time::sleep(RETRY).await;
                (Some(Err(e)), State::Empty)
            }
        },
        State::Watching { rv } => {
            let params = WatchParams {
                allow_bookmarks: true,
                ..params.clone()
            };
            match api.watch(&params, &rv).await {
                Ok(stream) => (None, State::Streaming { rv, stream }),
                Err(e) if e.is_gone() => (Some(Err(e)), State::Empty),
                Err(e) => {
                    tokio::time::sleep(RETRY).await;
                    (Some(Err(e)), State::Watching { rv })
                }
            }
        }
        State::Streaming { rv, mut stream } => match stream.next().await {
            Some(Ok(WatchEvent::Added(obj))) | Some(Ok(WatchEvent::Modified(obj))) => {
                let rv = rv_of(&obj).unwrap_or(rv);
                (
                    Some(Ok(Event::Applied(obj))),
                    State::Streaming { rv, stream },
                )
            }
            Some(Ok(WatchEvent::Deleted(obj))) => {
                let rv = rv_of(&obj).unwrap_or(rv);
                (
                    Some(Ok(Event::Deleted(obj))),
                    State::Streaming { rv, stream },
                )
            }
            Some(Ok(WatchEvent::Bookmark(bookmark))) => {
                let rv = if bookmark.is_empty() { rv } else { bookmark };
                (None, State::Streaming { rv, stream })
            }
            Some(Ok(WatchEvent::Error(status))) => {
                if status.code == 410 {
                    (Some(Err(Error::Api(status))), State::Empty)
                } else {
                    tokio::time::sleep(RETRY).await;
                    (Some(Err(Error::Api(status))), State::Watching { rv })
                }
            }
            Some(Err(e)) => {
                tokio::time::sleep(RETRY).await;
                (Some(Err(e)), State::Watching { rv })
            }
            // The master went away or closed the stream: resume where we were.
            None => (None, State::Watching { rv }),
        },
    }
}

/// Every object, paged, at one resourceVersion.
async fn list_all<K>(api: &Api<K>, params: &WatchParams) -> Result<(Vec<K>, String), Error>
where
    K: Resource + ListableResource + Serialize + DeserializeOwned + Send + 'static,
{
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let page = api
            .list(&ListParams {
                label_selector: params.label_selector.clone(),
                field_selector: params.field_selector.clone(),
                limit: 500,
                continue_token: token,
                resource_version: String::new(),
            })
            .await?;
        items.extend(page.items);
        if page.metadata.continue_token.is_empty() {
            return Ok((items, page.metadata.resource_version));
        }
        token = page.metadata.continue_token;
    }
}
