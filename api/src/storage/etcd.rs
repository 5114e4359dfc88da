//! [`Storage`] over the etcd v3 gRPC API: keel's own store (each master's API server talks to
//! its member on loopback, as a Kubernetes API server talks to etcd), or a real etcd.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keel_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use keel_proto::etcdserverpb::kv_client::KvClient;
use keel_proto::etcdserverpb::watch_client::WatchClient;
use keel_proto::etcdserverpb::watch_request::RequestUnion;
use keel_proto::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
};
use keel_proto::mvccpb::event::EventType;
use tonic::transport::Channel;

use crate::encryption::Transformer;

use super::{
    Change, EventStream, Expect, Guard, Page, ProgressRequests, Storage, StorageError, StoreEvent,
    Stored, WriteOp,
};

/// How often an idle watch asks the store how far it has delivered (bookmarks come from this).
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Storage on an etcd v3 endpoint.
#[derive(Clone)]
pub struct EtcdStorage {
    channel: Channel,
    /// Encryption at rest of configured resources; none stores values as they are.
    transformer: Option<Arc<Transformer>>,
}

impl EtcdStorage {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            transformer: None,
        }
    }

    /// The same storage with values transformed (encrypted at rest) by `transformer`.
    pub fn with_transformer(mut self, transformer: Transformer) -> Self {
        self.transformer = Some(Arc::new(transformer)).filter(|t| t.is_active());
        self
    }

    fn stored(&self, kv: keel_proto::mvccpb::KeyValue) -> Result<Stored, StorageError> {
        let value = self.read_value(&kv.key, kv.value)?;
        Ok(Stored {
            key: kv.key,
            value,
            mod_revision: kv.mod_revision,
            create_revision: kv.create_revision,
        })
    }

    fn read_value(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        read_value(self.transformer.as_deref(), key, value)
    }

    fn kv(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }
}

/// Asks a watch stream for a progress notification; false once the stream is gone.
async fn ask_progress(requests: &tokio::sync::mpsc::Sender<WatchRequest>) -> bool {
    let request = WatchRequest {
        request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
    };
    requests.send(request).await.is_ok()
}

/// etcd reports outcomes only as code and message text; this is the one place that reads them.
fn from_status(status: tonic::Status) -> StorageError {
    let msg = status.message();
    if msg.contains("required revision has been compacted") {
        StorageError::Compacted { compacted: 0 }
    } else if msg.contains("required revision is a future revision") {
        StorageError::FutureRevision
    } else if msg.contains("request is too large") {
        StorageError::TooLarge
    } else {
        match status.code() {
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown => StorageError::Unavailable(msg.to_string()),
            _ => StorageError::Internal(format!("{:?}: {msg}", status.code())),
        }
    }
}

/// What the API server holds for `value` stored at `key`.
fn read_value(
    transformer: Option<&Transformer>,
    key: &[u8],
    value: Vec<u8>,
) -> Result<Vec<u8>, StorageError> {
    match transformer {
        None => Ok(value),
        Some(t) => t.from_storage(key, value).map_err(|e| {
            StorageError::Internal(format!(
                "reading {} from storage: {e}",
                String::from_utf8_lossy(key)
            ))
        }),
    }
}

fn range_op(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

impl Storage for EtcdStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Stored>, StorageError> {
        let resp = self
            .kv()
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await
            .map_err(from_status)?
            .into_inner();
        resp.kvs
            .into_iter()
            .next()
            .map(|kv| self.stored(kv))
            .transpose()
    }

    async fn list(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Page, StorageError> {
        let resp = self
            .kv()
            .range(RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                limit,
                revision,
                ..Default::default()
            })
            .await
            .map_err(from_status)?
            .into_inner();
        let revision = resp.header.map_or(0, |h| h.revision);
        let remaining = resp.count - resp.kvs.len() as i64;
        Ok(Page {
            items: resp
                .kvs
                .into_iter()
                .map(|kv| self.stored(kv))
                .collect::<Result<_, _>>()?,
            revision,
            more: resp.more,
            remaining: remaining.max(0),
        })
    }

    async fn write(&self, ops: Vec<WriteOp>, guards: Vec<Guard>) -> Result<i64, StorageError> {
        let mut compare = Vec::new();
        let mut success = Vec::new();
        for op in &ops {
            compare.extend(match op.expect {
                Expect::Any => None,
                Expect::Absent => Some(Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Create as i32,
                    key: op.key.clone(),
                    target_union: Some(TargetUnion::CreateRevision(0)),
                    range_end: vec![],
                }),
                Expect::Revision(rev) => Some(Compare {
                    result: CompareResult::Equal as i32,
                    target: CompareTarget::Mod as i32,
                    key: op.key.clone(),
                    target_union: Some(TargetUnion::ModRevision(rev)),
                    range_end: vec![],
                }),
            });
            success.push(RequestOp {
                request: Some(match &op.change {
                    Change::Put(value) => request_op::Request::RequestPut(PutRequest {
                        key: op.key.clone(),
                        value: match &self.transformer {
                            None => value.clone(),
                            Some(t) => t.to_storage(&op.key, value.clone()).map_err(|e| {
                                StorageError::Internal(format!(
                                    "writing {} to storage: {e}",
                                    String::from_utf8_lossy(&op.key)
                                ))
                            })?,
                        },
                        ..Default::default()
                    }),
                    Change::Delete => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key: op.key.clone(),
                        ..Default::default()
                    }),
                }),
            });
        }
        for guard in &guards {
            compare.push(Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: guard.key.clone(),
                target_union: Some(TargetUnion::Value(guard.value.clone())),
                range_end: vec![],
            });
        }
        // On failure, read every key involved so the caller learns which expectation failed.
        let failure = ops
            .iter()
            .map(|op| range_op(&op.key))
            .chain(guards.iter().map(|g| range_op(&g.key)))
            .collect();
        let resp = self
            .kv()
            .txn(TxnRequest {
                compare,
                success,
                failure,
            })
            .await
            .map_err(from_status)?
            .into_inner();
        let revision = resp.header.map_or(0, |h| h.revision);
        if resp.succeeded {
            return Ok(revision);
        }
        let found = resp.responses.into_iter().map(|r| match r.response {
            Some(response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        });
        let mut found: Vec<_> = found.collect();
        let guard_found = found.split_off(ops.len());
        for (op, current) in ops.iter().zip(found) {
            match (op.expect, current) {
                (Expect::Absent, Some(_)) => {
                    return Err(StorageError::AlreadyExists {
                        key: op.key.clone(),
                    })
                }
                (Expect::Revision(_), None) => {
                    return Err(StorageError::NotFound {
                        key: op.key.clone(),
                    })
                }
                (Expect::Revision(expected), Some(kv)) if kv.mod_revision != expected => {
                    return Err(StorageError::Conflict {
                        key: op.key.clone(),
                        expected,
                        found: kv.mod_revision,
                    })
                }
                _ => {}
            }
        }
        for (guard, current) in guards.iter().zip(guard_found) {
            if current.map(|kv| kv.value).as_deref() != Some(guard.value.as_slice()) {
                return Err(StorageError::GuardFailed {
                    key: guard.key.clone(),
                });
            }
        }
        // Everything matches now: it changed back between the txn and the reads. Rare; the
        // caller retries as on any conflict.
        Err(StorageError::Conflict {
            key: ops.first().map(|o| o.key.clone()).unwrap_or_default(),
            expected: 0,
            found: 0,
        })
    }

    async fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        after: i64,
        progress: ProgressRequests,
    ) -> Result<EventStream, StorageError> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                // A resourceVersion at the top of the range names a revision that cannot exist.
                start_revision: after.checked_add(1).ok_or(StorageError::FutureRevision)?,
                prev_kv: true,
                ..Default::default()
            })),
        };
        tx.send(create)
            .await
            .map_err(|_| StorageError::Internal("watch request channel closed".into()))?;
        let mut responses = WatchClient::new(self.channel.clone())
            .max_decoding_message_size(usize::MAX)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map_err(from_status)?
            .into_inner();
        let transformer = self.transformer.clone();
        let stream = async_stream(move |yield_tx| async move {
            let mut ticker = tokio::time::interval(PROGRESS_EVERY);
            ticker.tick().await;
            loop {
                let resp = tokio::select! {
                    r = responses.next() => r,
                    _ = ticker.tick() => {
                        if !ask_progress(&tx).await {
                            return;
                        }
                        continue;
                    }
                    _ = progress.requested() => {
                        if !ask_progress(&tx).await {
                            return;
                        }
                        continue;
                    }
                };
                let resp = match resp {
                    None => {
                        let _ = yield_tx
                            .send(Err(StorageError::Unavailable("watch stream ended".into())))
                            .await;
                        return;
                    }
                    Some(Err(status)) => {
                        let _ = yield_tx.send(Err(from_status(status))).await;
                        return;
                    }
                    Some(Ok(resp)) => resp,
                };
                if resp.compact_revision != 0 {
                    let _ = yield_tx
                        .send(Err(StorageError::Compacted {
                            compacted: resp.compact_revision,
                        }))
                        .await;
                    return;
                }
                if resp.canceled {
                    let _ = yield_tx
                        .send(Err(StorageError::Unavailable(format!(
                            "watch canceled: {}",
                            resp.cancel_reason
                        ))))
                        .await;
                    return;
                }
                if resp.created {
                    continue;
                }
                let revision = resp.header.as_ref().map_or(0, |h| h.revision);
                if resp.events.is_empty() {
                    if yield_tx
                        .send(Ok(StoreEvent::Progress { revision }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
                for ev in resp.events {
                    let Some(mut kv) = ev.kv else { continue };
                    let t = transformer.as_deref();
                    let decoded = ev
                        .prev_kv
                        .map(|p| read_value(t, &kv.key, p.value))
                        .transpose()
                        .and_then(|prev| {
                            if ev.r#type == EventType::Delete as i32 {
                                return Ok(prev);
                            }
                            kv.value = read_value(t, &kv.key, std::mem::take(&mut kv.value))?;
                            Ok(prev)
                        });
                    let prev = match decoded {
                        Ok(prev) => prev,
                        Err(error) => {
                            let _ = yield_tx.send(Err(error)).await;
                            return;
                        }
                    };
                    let event = if ev.r#type == EventType::Delete as i32 {
                        StoreEvent::Delete {
                            key: kv.key,
                            prev,
                            mod_revision: kv.mod_revision,
                        }
                    } else {
                        StoreEvent::Put {
                            key: kv.key,
                            value: kv.value,
                            prev,
                            mod_revision: kv.mod_revision,
                            create_revision: kv.create_revision,
                        }
                    };
                    if yield_tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }

    async fn needs_rewrite(&self, key: &[u8]) -> bool {
        let Some(transformer) = &self.transformer else {
            return false;
        };
        let raw = self
            .kv()
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await;
        match raw {
            Ok(resp) => resp
                .into_inner()
                .kvs
                .first()
                .is_some_and(|kv| transformer.is_stale(key, &kv.value)),
            // Unknown: writing again is the safe side.
            Err(_) => true,
        }
    }

    async fn revision(&self) -> Result<i64, StorageError> {
        // A linearizable count of an empty range: cheap, and its header carries the revision.
        let resp = self
            .kv()
            .range(RangeRequest {
                key: vec![0],
                count_only: true,
                ..Default::default()
            })
            .await
            .map_err(from_status)?
            .into_inner();
        Ok(resp.header.map_or(0, |h| h.revision))
    }
}

/// Runs `body` as a task feeding a stream; dropping the stream ends the task at its next send.
fn async_stream<F, Fut>(body: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<StoreEvent, StorageError>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let task = body(tx);
    let handle = tokio::spawn(task);
    Box::pin(AbortOnDrop {
        inner: tokio_stream::wrappers::ReceiverStream::new(rx),
        handle,
    })
}

/// A stream that owns the task producing it: dropping the stream aborts the task, so a watch
/// the client abandoned does not outlive it.
struct AbortOnDrop<S> {
    inner: S,
    handle: tokio::task::JoinHandle<()>,
}

impl<S> Drop for AbortOnDrop<S> {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl<S: futures::Stream + Unpin> futures::Stream for AbortOnDrop<S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner).poll_next(cx)
    }
}
