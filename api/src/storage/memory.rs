//! [`Storage`] in memory, with the store's MVCC semantics — a revision per write, past
//! revisions readable until compacted, all-or-nothing conditional writes, watches from a
//! revision — so the core and its transports can be tested without a store.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::{
    Change, EventStream, Expect, Guard, Page, ProgressRequests, Storage, StorageError, StoreEvent,
    Stored, WriteOp,
};

/// One version of a key; `value` is `None` where the key was deleted.
#[derive(Debug, Clone)]
struct Version {
    mod_revision: i64,
    create_revision: i64,
    value: Option<Vec<u8>>,
}

/// A key range as the trait takes it: `[start, end)`, where `end == [0]` means "to the end of
/// the keyspace" and an empty `end` means `start` alone (as etcd reads them).
#[derive(Debug, Clone)]
struct Range {
    start: Vec<u8>,
    end: Vec<u8>,
}

impl Range {
    fn new(start: &[u8], end: &[u8]) -> Self {
        Self {
            start: start.to_vec(),
            end: end.to_vec(),
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        match self.end.as_slice() {
            [] => key == self.start.as_slice(),
            [0] => key >= self.start.as_slice(),
            end => key >= self.start.as_slice() && key < end,
        }
    }

    fn bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let upper = match self.end.as_slice() {
            [] => Bound::Included(self.start.clone()),
            [0] => Bound::Unbounded,
            end if end <= self.start.as_slice() => Bound::Excluded(self.start.clone()),
            end => Bound::Excluded(end.to_vec()),
        };
        (Bound::Included(self.start.clone()), upper)
    }
}

struct Watcher {
    range: Range,
    tx: mpsc::UnboundedSender<Result<StoreEvent, StorageError>>,
}

#[derive(Default)]
struct State {
    revision: i64,
    /// Revisions below this one have been compacted away.
    compacted: i64,
    /// Every version of every key still readable, oldest first.
    keys: BTreeMap<Vec<u8>, Vec<Version>>,
    /// Every change after `compacted`, in revision order, for watches that start in the past.
    history: Vec<(i64, StoreEvent)>,
    watchers: Vec<Watcher>,
}

impl State {
    fn latest(&self, key: &[u8]) -> Option<&Version> {
        self.keys
            .get(key)
            .and_then(|versions| versions.last())
            .filter(|v| v.value.is_some())
    }

    fn at(versions: &[Version], revision: i64) -> Option<&Version> {
        versions
            .iter()
            .rev()
            .find(|v| v.mod_revision <= revision)
            .filter(|v| v.value.is_some())
    }

    fn check(&self, op: &WriteOp) -> Result<(), StorageError> {
        let current = self.latest(&op.key);
        match (op.expect, current) {
            (Expect::Absent, Some(_)) => Err(StorageError::AlreadyExists {
                key: op.key.clone(),
            }),
            (Expect::Revision(_), None) => Err(StorageError::NotFound {
                key: op.key.clone(),
            }),
            (Expect::Revision(expected), Some(v)) if v.mod_revision != expected => {
                Err(StorageError::Conflict {
                    key: op.key.clone(),
                    expected,
                    found: v.mod_revision,
                })
            }
            _ => Ok(()),
        }
    }

    /// Records `event` and sends it to every watcher of its key; watchers whose stream was
    /// dropped are forgotten.
    fn publish(&mut self, key: &[u8], revision: i64, event: StoreEvent) {
        self.watchers.retain(|w| !w.tx.is_closed());
        for w in self.watchers.iter().filter(|w| w.range.contains(key)) {
            // A send fails only when the receiver just went; the retain above catches it next.
            let _ = w.tx.send(Ok(event.clone()));
        }
        self.history.push((revision, event));
    }
}

/// The store, in memory. Revisions start at 1 for the empty store, as etcd's do.
pub struct MemoryStorage {
    state: Arc<Mutex<State>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                revision: 1,
                ..Default::default()
            })),
        }
    }

    fn state(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        self.state
            .lock()
            .map_err(|_| StorageError::Internal("memory storage lock poisoned".into()))
    }

    /// Forgets history before `revision`: reads before it and watches from before it fail
    /// with `Compacted`, as after an etcd compaction.
    pub fn compact(&self, revision: i64) -> Result<(), StorageError> {
        let mut state = self.state()?;
        if revision > state.revision {
            return Err(StorageError::FutureRevision);
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.compacted = revision;
        for versions in state.keys.values_mut() {
            // Keep the version in force at `revision` and everything after it.
            let keep_from = versions
                .iter()
                .rposition(|v| v.mod_revision <= revision)
                .unwrap_or(0);
            versions.drain(..keep_from);
        }
        state
            .keys
            .retain(|_, versions| versions.iter().any(|v| v.value.is_some()) || versions.len() > 1);
        state.history.retain(|(rev, _)| *rev > revision);
        Ok(())
    }

    /// Tells every watch how far the store has delivered, as etcd's progress notifications
    /// do (the API server turns these into bookmarks).
    pub fn notify_progress(&self) -> Result<(), StorageError> {
        let mut state = self.state()?;
        let revision = state.revision;
        state.watchers.retain(|w| !w.tx.is_closed());
        for w in &state.watchers {
            let _ = w.tx.send(Ok(StoreEvent::Progress { revision }));
        }
        Ok(())
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, key: &[u8]) -> Result<Option<Stored>, StorageError> {
        let state = self.state()?;
        Ok(state.latest(key).and_then(|v| {
            Some(Stored {
                key: key.to_vec(),
                value: v.value.clone()?,
                mod_revision: v.mod_revision,
                create_revision: v.create_revision,
            })
        }))
    }

    async fn list(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Page, StorageError> {
        let state = self.state()?;
        let at = match revision {
            r if r <= 0 => state.revision,
            r if r > state.revision => return Err(StorageError::FutureRevision),
            r if r < state.compacted => {
                return Err(StorageError::Compacted {
                    compacted: state.compacted,
                })
            }
            r => r,
        };
        let mut items = Vec::new();
        let mut count = 0i64;
        for (key, versions) in state.keys.range(Range::new(start, end).bounds()) {
            let Some(v) = State::at(versions, at) else {
                continue;
            };
            count += 1;
            if limit > 0 && items.len() as i64 >= limit {
                continue;
            }
            if let Some(value) = &v.value {
                items.push(Stored {
                    key: key.clone(),
                    value: value.clone(),
                    mod_revision: v.mod_revision,
                    create_revision: v.create_revision,
                });
            }
        }
        let remaining = count - items.len() as i64;
        Ok(Page {
            items,
            revision: at,
            more: remaining > 0,
            remaining,
        })
    }

    async fn write(&self, ops: Vec<WriteOp>, guards: Vec<Guard>) -> Result<i64, StorageError> {
        let mut state = self.state()?;
        for (i, op) in ops.iter().enumerate() {
            if ops[..i].iter().any(|o| o.key == op.key) {
                return Err(StorageError::Internal(
                    "duplicate key given in txn request".into(),
                ));
            }
        }
        for op in &ops {
            state.check(op)?;
        }
        for guard in &guards {
            let holds = state
                .latest(&guard.key)
                .and_then(|v| v.value.as_deref())
                .is_some_and(|v| v == guard.value.as_slice());
            if !holds {
                return Err(StorageError::GuardFailed {
                    key: guard.key.clone(),
                });
            }
        }
        // Deleting a key that does not exist changes nothing, and a write that changes
        // nothing does not take a revision (as in etcd).
        let changes = ops
            .iter()
            .any(|op| matches!(op.change, Change::Put(_)) || state.latest(&op.key).is_some());
        if !changes {
            return Ok(state.revision);
        }
        state.revision += 1;
        let revision = state.revision;
        for op in ops {
            let prev = state.latest(&op.key).cloned();
            let prev_value = prev.as_ref().and_then(|p| p.value.clone());
            match op.change {
                Change::Put(value) => {
                    let create_revision = prev.map_or(revision, |p| p.create_revision);
                    state.keys.entry(op.key.clone()).or_default().push(Version {
                        mod_revision: revision,
                        create_revision,
                        value: Some(value.clone()),
                    });
                    let event = StoreEvent::Put {
                        key: op.key.clone(),
                        value,
                        prev: prev_value,
                        mod_revision: revision,
                        create_revision,
                    };
                    state.publish(&op.key, revision, event);
                }
                Change::Delete => {
                    if prev.is_none() {
                        continue;
                    }
                    state.keys.entry(op.key.clone()).or_default().push(Version {
                        mod_revision: revision,
                        create_revision: 0,
                        value: None,
                    });
                    let event = StoreEvent::Delete {
                        key: op.key.clone(),
                        prev: prev_value,
                        mod_revision: revision,
                    };
                    state.publish(&op.key, revision, event);
                }
            }
        }
        Ok(revision)
    }

    async fn watch(
        &self,
        start: &[u8],
        end: &[u8],
        after: i64,
        progress: ProgressRequests,
    ) -> Result<EventStream, StorageError> {
        let mut state = self.state()?;
        if after < state.compacted {
            return Err(StorageError::Compacted {
                compacted: state.compacted,
            });
        }
        let range = Range::new(start, end);
        let (tx, rx) = mpsc::unbounded_channel();
        // Replay and registration happen under one lock, so no change falls between them.
        for (_, event) in state.history.iter().filter(|(rev, _)| *rev > after) {
            let key = match event {
                StoreEvent::Put { key, .. } | StoreEvent::Delete { key, .. } => key,
                StoreEvent::Progress { .. } => continue,
            };
            if range.contains(key) {
                let _ = tx.send(Ok(event.clone()));
            }
        }
        state.watchers.push(Watcher {
            range,
            tx: tx.clone(),
        });
        // Progress goes through the watcher's own channel under the lock writes publish under,
        // so it follows every change it covers.
        let shared = self.state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = progress.requested() => {}
                }
                let state = shared.lock().unwrap_or_else(PoisonError::into_inner);
                let revision = state.revision;
                if tx.send(Ok(StoreEvent::Progress { revision })).is_err() {
                    return;
                }
            }
        });
        Ok(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }

    async fn revision(&self) -> Result<i64, StorageError> {
        Ok(self.state()?.revision)
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
