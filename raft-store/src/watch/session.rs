//! One watch stream: the task that serves a client's bidirectional Watch call.
//!
//! The session subscribes to applied events before it registers any watcher, so nothing applied
//! after a watcher's starting point can slip past it: older revisions come from disk, newer ones
//! from the subscription, and each watcher's `next_rev` says which is which.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use keel_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use keel_proto::mvccpb::event::EventType;
use keel_proto::mvccpb::Event;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::matcher::Watcher;
use super::EventBatch;
use crate::mvcc::{MvccError, ValueReader};
use crate::node::Node;

/// Events per response when replaying history.
const HISTORY_CHUNK: usize = 1000;
/// How often watchers that asked for progress notifications get one (etcd's default).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

pub type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// Runs one watch stream until the client closes it, the output is dropped, or shutdown.
pub async fn run<S>(
    node: Arc<Node>,
    caller: Option<String>,
    mut inbound: S,
    out: Outbound,
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<WatchRequest, Status>> + Unpin,
{
    let mut session = Session {
        node: node.clone(),
        caller,
        events: node.state().subscribe(),
        watchers: BTreeMap::new(),
        next_id: 0,
        out,
    };
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    progress.tick().await;
    let gauge = &crate::metrics::METRICS.watchers;
    let mut counted = 0i64;
    loop {
        let step = tokio::select! {
            _ = shutdown.cancelled() => break,
            req = inbound.next() => match req {
                Some(Ok(req)) => session.handle_request(req).await,
                Some(Err(_)) | None => break,
            },
            batch = session.events.recv() => match batch {
                Ok(batch) => session.deliver(&batch).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "watch session lagged; catching up from disk");
                    session.catch_up_all().await
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = progress.tick() => session.notify_progress(true).await,
        };
        let now = session.watchers.len() as i64;
        gauge.fetch_add(now - counted, std::sync::atomic::Ordering::Relaxed);
        counted = now;
        if step.is_err() {
            break;
        }
    }
    gauge.fetch_sub(counted, std::sync::atomic::Ordering::Relaxed);
}

/// The output channel is gone: the client left.
struct Closed;

struct Session {
    node: Arc<Node>,
    /// Who opened the stream, when auth is on: each watch needs read access to its range.
    caller: Option<String>,
    events: broadcast::Receiver<Arc<EventBatch>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    out: Outbound,
}

impl Session {
    async fn send(&self, resp: WatchResponse) -> Result<(), Closed> {
        self.out.send(Ok(resp)).await.map_err(|_| Closed)
    }

    fn header(&self) -> Option<keel_proto::etcdserverpb::ResponseHeader> {
        Some(self.node.header(self.node.state().current_revision()))
    }

    async fn handle_request(&mut self, req: WatchRequest) -> Result<(), Closed> {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(watch_request::RequestUnion::CancelRequest(cancel)) => {
                if self.watchers.remove(&cancel.watch_id).is_some() {
                    self.send(WatchResponse {
                        header: self.header(),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    })
                    .await?;
                }
                Ok(())
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                self.notify_progress(false).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, req: WatchCreateRequest) -> Result<(), Closed> {
        let id = if req.watch_id != 0 {
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        if self.watchers.contains_key(&id) {
            return self
                .refuse_create(id, "etcdserver: duplicate watch ID")
                .await;
        }
        if req.watch_id == 0 {
            self.next_id += 1;
        }
        let permitted = self
            .node
            .state()
            .with_auth(|a| a.permits(self.caller.as_deref(), &req.key, &req.range_end, false));
        if let Err(denied) = permitted {
            return self.refuse_create(id, &denied.to_string()).await;
        }
        let (current, compacted) = match self.node.state().mvcc() {
            Ok(m) => (m.current_revision(), m.compacted_revision()),
            Err(_) => return Ok(()),
        };
        self.send(WatchResponse {
            header: Some(self.node.header(current)),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        let start = if req.start_revision > 0 {
            req.start_revision
        } else {
            current + 1
        };
        if start < compacted {
            return self
                .send(WatchResponse {
                    // etcd leaves the revision out of a compaction cancel.
                    header: Some(self.node.header(0)),
                    watch_id: id,
                    compact_revision: compacted,
                    canceled: true,
                    cancel_reason: MvccError::Compacted.to_string(),
                    ..Default::default()
                })
                .await;
        }
        let mut watcher = Watcher::new(id, &req, start);
        if self.catch_up(&mut watcher, current).await? {
            self.watchers.insert(id, watcher);
        }
        Ok(())
    }

    /// Replays stored events for `watcher` up to revision `to`. Returns whether the watcher is
    /// still alive: one that fell behind a compaction is canceled with the compacted revision,
    /// as etcd does, since the events it needs are gone.
    async fn catch_up(&self, watcher: &mut Watcher, to: i64) -> Result<bool, Closed> {
        if watcher.next_rev > to {
            return Ok(true);
        }
        let state = self.node.state();
        let history = match state.history(watcher.next_rev, to) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "reading watch history failed");
                self.cancel_broken(watcher.id, &e.to_string()).await?;
                return Ok(false);
            }
        };
        // Compaction only moves forward, so checking after the read covers one that raced it.
        let compacted = state.mvcc().map(|m| m.compacted_revision()).unwrap_or(0);
        if watcher.next_rev < compacted {
            self.send(WatchResponse {
                header: Some(self.node.header(0)),
                watch_id: watcher.id,
                compact_revision: compacted,
                canceled: true,
                cancel_reason: MvccError::Compacted.to_string(),
                ..Default::default()
            })
            .await?;
            return Ok(false);
        }
        let events: Vec<Event> = history
            .into_iter()
            .map(|(_, kv, tomb)| Event {
                r#type: if tomb {
                    EventType::Delete
                } else {
                    EventType::Put
                } as i32,
                kv: Some(kv),
                prev_kv: None,
            })
            .filter(|e| watcher.wants(e))
            .collect();
        watcher.next_rev = to + 1;
        for chunk in events.chunks(HISTORY_CHUNK) {
            let chunk = self.with_prev(watcher, chunk.to_vec());
            self.send(WatchResponse {
                header: self.header(),
                watch_id: watcher.id,
                events: chunk,
                ..Default::default()
            })
            .await?;
        }
        Ok(true)
    }

    /// Answers a create request that makes no watch: created and canceled at once, as etcd.
    async fn refuse_create(&self, id: i64, reason: &str) -> Result<(), Closed> {
        self.send(WatchResponse {
            header: self.header(),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        })
        .await
    }

    async fn cancel_broken(&self, id: i64, reason: &str) -> Result<(), Closed> {
        self.send(WatchResponse {
            header: self.header(),
            watch_id: id,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        })
        .await
    }

    /// Fills in each event's previous value if the watcher asked for it.
    fn with_prev(&self, watcher: &Watcher, mut events: Vec<Event>) -> Vec<Event> {
        if !watcher.prev_kv {
            return events;
        }
        let state = self.node.state();
        let Ok(mvcc) = state.mvcc() else {
            return events;
        };
        let reader = state.reader();
        for ev in &mut events {
            let Some(kv) = &ev.kv else { continue };
            ev.prev_kv = mvcc
                .key_at(&kv.key, kv.mod_revision - 1)
                .and_then(|rev| reader.value(rev).ok().flatten());
        }
        events
    }

    async fn deliver(&mut self, batch: &EventBatch) -> Result<(), Closed> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(mut watcher) = self.watchers.remove(&id) else {
                continue;
            };
            if self.deliver_to(&mut watcher, batch).await? {
                self.watchers.insert(id, watcher);
            }
        }
        Ok(())
    }

    /// Returns whether the watcher is still alive.
    async fn deliver_to(&self, watcher: &mut Watcher, batch: &EventBatch) -> Result<bool, Closed> {
        if batch.revision < watcher.next_rev {
            return Ok(true);
        }
        if batch.revision > watcher.next_rev {
            // Revisions in between were missed (lag or a revision that changed nothing we hold):
            // read them from disk first, so order and completeness hold.
            if !self.catch_up(watcher, batch.revision - 1).await? {
                return Ok(false);
            }
        }
        watcher.next_rev = batch.revision + 1;
        let events: Vec<Event> = batch
            .events
            .iter()
            .filter(|e| watcher.wants(e))
            .cloned()
            .collect();
        if events.is_empty() {
            return Ok(true);
        }
        let events = self.with_prev(watcher, events);
        self.send(WatchResponse {
            header: self.header(),
            watch_id: watcher.id,
            events,
            ..Default::default()
        })
        .await?;
        Ok(true)
    }

    async fn catch_up_all(&mut self) -> Result<(), Closed> {
        let current = self.node.state().current_revision();
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(mut watcher) = self.watchers.remove(&id) else {
                continue;
            };
            if self.catch_up(&mut watcher, current).await? {
                self.watchers.insert(id, watcher);
            }
        }
        Ok(())
    }

    /// A progress notification: a revision up to which this stream has delivered every event.
    async fn notify_progress(&mut self, periodic: bool) -> Result<(), Closed> {
        // Deliver what is already applied first, so the revision named is really complete.
        loop {
            match self.events.try_recv() {
                Ok(batch) => self.deliver(&batch).await?,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.catch_up_all().await?,
                Err(_) => break,
            }
        }
        let current = self.node.state().current_revision();
        let synced = self
            .watchers
            .values()
            .map(|w| w.next_rev - 1)
            .min()
            .unwrap_or(current)
            .min(current);
        let header = Some(self.node.header(synced));
        if periodic {
            for w in self.watchers.values().filter(|w| w.progress_notify) {
                self.send(WatchResponse {
                    header,
                    watch_id: w.id,
                    ..Default::default()
                })
                .await?;
            }
            return Ok(());
        }
        // etcd answers a progress request with watch ID -1, for the stream as a whole.
        self.send(WatchResponse {
            header,
            watch_id: -1,
            ..Default::default()
        })
        .await
    }
}
