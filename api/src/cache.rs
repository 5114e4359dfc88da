//! The watch cache: every API object in memory, kept current by one store watch, so lists and
//! watches are served without each reaching the store (as Kubernetes' watch cache does).
//!
//! The cache lists `/registry/` once, then applies the store's changes under it. It keeps the
//! last [`RING`] changes, so a watch from a recent resourceVersion replays from memory; older
//! ones go to the store. A consistent list first learns the store's current revision (a cheap
//! linearizable read), waits until the cache has applied it, then answers from memory. Writes
//! outside `/registry/` (fencing tokens, plain etcd clients) are not watched: when a list needs a
//! revision the cache has not reached, the cache asks its watch for a progress notification,
//! which names the store's revision once every change under `/registry/` up to it is delivered
//! (Kubernetes' consistent reads from cache do the same). keel's store sends a progress
//! notification only after the events it covers; etcd does so from 3.4.31 and 3.5.13 on.
//!
//! If the store watch breaks, the cache relists and every watch served from it ends; clients
//! resume from their last resourceVersion, as after any broken watch.

use std::collections::{BTreeMap, VecDeque};
use std::sync::PoisonError;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::storage::{prefix_end, ProgressRequests, Storage, StorageError, StoreEvent, Stored};

/// Changes kept for watches that start in the past.
const RING: usize = 10_000;
/// How long a wait for a revision lasts before it asks for progress again.
const PROGRESS_RETRY: Duration = Duration::from_millis(200);
/// Page size of the cache's own lists.
const LIST_PAGE: i64 = 1_000;
const ROOT: &[u8] = b"/registry/";
const RBAC_PREFIXES: [&[u8]; 4] = [
    b"/registry/roles/",
    b"/registry/clusterroles/",
    b"/registry/rolebindings/",
    b"/registry/clusterrolebindings/",
];
const CRD_PREFIXES: [&[u8]; 1] = [b"/registry/customresourcedefinitions/"];
const WEBHOOK_PREFIXES: [&[u8]; 2] = [
    b"/registry/mutatingwebhookconfigurations/",
    b"/registry/validatingwebhookconfigurations/",
];

/// What the server builds from a few kinds and rebuilds when one of them changes; the cache
/// counts changes to each so the builder knows when it is stale.
#[derive(Debug, Clone, Copy)]
pub enum Derived {
    /// Authorizers, from RBAC objects.
    Rbac,
    /// The served custom kinds, from CustomResourceDefinitions.
    CustomKinds,
    /// The admission webhooks, from their configurations.
    Webhooks,
}

impl Derived {
    const ALL: [Derived; 3] = [Derived::Rbac, Derived::CustomKinds, Derived::Webhooks];

    fn prefixes(self) -> &'static [&'static [u8]] {
        match self {
            Derived::Rbac => &RBAC_PREFIXES,
            Derived::CustomKinds => &CRD_PREFIXES,
            Derived::Webhooks => &WEBHOOK_PREFIXES,
        }
    }
}

/// One applied change, as watches from the cache see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Event(StoreEvent),
    /// The cache relisted: watches served from it must end (their clients resume).
    Reset,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Vec<u8>, Stored>,
    /// Every change up to this revision is applied.
    revision: i64,
    ring: VecDeque<StoreEvent>,
    /// The cache can replay every change after this revision.
    oldest: i64,
    ready: bool,
}

/// A snapshot of some objects at one revision.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub items: Vec<Stored>,
    pub revision: i64,
}

/// Where a watch from the cache starts: the changes after its revision still in memory, and a
/// live feed (which may repeat some of them: skip revisions already seen).
pub struct Replay {
    pub past: Vec<StoreEvent>,
    pub live: broadcast::Receiver<Arc<Change>>,
}

#[derive(Clone)]
pub struct WatchCache {
    state: Arc<RwLock<State>>,
    /// Bumped whenever an object of a [`Derived`]'s kinds changes (or the whole cache does),
    /// one counter for each.
    generations: Arc<[std::sync::atomic::AtomicU64; 3]>,
    changes: broadcast::Sender<Arc<Change>>,
    revision: watch::Sender<i64>,
    /// Asks the cache's store watch how far it has delivered.
    progress: ProgressRequests,
}

impl Default for WatchCache {
    fn default() -> Self {
        Self::new()
    }
}

fn event_revision(ev: &StoreEvent) -> i64 {
    match ev {
        StoreEvent::Put { mod_revision, .. } | StoreEvent::Delete { mod_revision, .. } => {
            *mod_revision
        }
        StoreEvent::Progress { revision } => *revision,
    }
}

impl WatchCache {
    pub fn new() -> Self {
        let (changes, _) = broadcast::channel(RING);
        let (revision, _) = watch::channel(0);
        Self {
            state: Arc::default(),
            generations: Arc::default(),
            changes,
            revision,
            progress: ProgressRequests::default(),
        }
    }

    /// Keeps the cache current until `shutdown`.
    pub async fn run<S: Storage>(&self, storage: &S, shutdown: CancellationToken) {
        let end = prefix_end(ROOT);
        loop {
            let revision = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.relist(storage, &end) => r,
            };
            let revision = match revision {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache list failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let watched = storage.watch(ROOT, &end, revision, self.progress.clone());
            let mut stream = match watched.await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache watch failed; relisting");
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(ev)) => self.apply(ev),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watch cache stream failed; relisting");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn relist<S: Storage>(&self, storage: &S, end: &[u8]) -> Result<i64, StorageError> {
        let mut objects = BTreeMap::new();
        let mut start = ROOT.to_vec();
        let mut revision = 0;
        loop {
            let page = storage.list(&start, end, LIST_PAGE, revision).await?;
            revision = page.revision;
            let more = page.more;
            let mut last = None;
            for item in page.items {
                last = Some(item.key.clone());
                objects.insert(item.key.clone(), item);
            }
            match (more, last) {
                (true, Some(mut k)) => {
                    k.push(0);
                    start = k;
                }
                _ => break,
            }
        }
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = State {
            objects,
            revision,
            ring: VecDeque::new(),
            oldest: revision,
            ready: true,
        };
        for g in self.generations.iter() {
            g.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        let _ = self.changes.send(Arc::new(Change::Reset));
        self.revision.send_replace(revision);
        Ok(revision)
    }

    fn apply(&self, ev: StoreEvent) {
        let rev = event_revision(&ev);
        if let StoreEvent::Put { key, .. } | StoreEvent::Delete { key, .. } = &ev {
            for d in Derived::ALL {
                if d.prefixes().iter().any(|p| key.starts_with(p)) {
                    self.generations[d as usize].fetch_add(1, std::sync::atomic::Ordering::Release);
                }
            }
        }
        let mut st = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match &ev {
            StoreEvent::Put {
                key,
                value,
                mod_revision,
                create_revision,
                ..
            } => {
                st.objects.insert(
                    key.clone(),
                    Stored {
                        key: key.clone(),
                        value: value.clone(),
                        mod_revision: *mod_revision,
                        create_revision: *create_revision,
                    },
                );
            }
            StoreEvent::Delete { key, .. } => {
                st.objects.remove(key);
            }
            StoreEvent::Progress { .. } => {}
        }
        st.revision = st.revision.max(rev);
        if !matches!(ev, StoreEvent::Progress { .. }) {
            st.ring.push_back(ev.clone());
            while st.ring.len() > RING {
                if let Some(dropped) = st.ring.pop_front() {
                    st.oldest = event_revision(&dropped);
                }
            }
        }
        let revision = st.revision;
        drop(st);
        let _ = self.changes.send(Arc::new(Change::Event(ev)));
        self.revision.send_replace(revision);
    }

    /// Changes whenever an object `what` is built from (or the whole cache) changes.
    pub fn generation(&self, what: Derived) -> u64 {
        self.generations[what as usize].load(std::sync::atomic::Ordering::Acquire)
    }

    /// The revision up to which the cache has applied every change (0 before the first list).
    pub fn revision(&self) -> i64 {
        *self.revision.borrow()
    }

    /// Waits until the cache has applied revision `at`; false if it did not within `timeout`.
    pub async fn wait_for(&self, at: i64, timeout: Duration) -> bool {
        let mut rx = self.revision.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *rx.borrow_and_update() >= at {
                return true;
            }
            // The revision may belong to a write outside /registry/, which the watch does not
            // carry: only a progress notification brings the cache there. Asked again now and
            // then, in case the answer came from a member that was behind.
            self.progress.request();
            let retry = (tokio::time::Instant::now() + PROGRESS_RETRY).min(deadline);
            match tokio::time::timeout_at(retry, rx.wait_for(|r| *r >= at)).await {
                Ok(reached) => return reached.is_ok(),
                Err(_) if retry >= deadline => return false,
                Err(_) => continue,
            }
        }
    }

    /// The cached object at `key`, if the cache is filled and holds one.
    pub fn get(&self, key: &[u8]) -> Option<Stored> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        st.objects.get(key).cloned()
    }

    /// Every cached object with a key in `[start, end)`, at the cache's revision.
    pub fn list(&self, start: &[u8], end: &[u8]) -> Option<Snapshot> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !st.ready {
            return None;
        }
        let items = st
            .objects
            .range(start.to_vec()..end.to_vec())
            .map(|(_, v)| v.clone())
            .collect();
        Some(Snapshot {
            items,
            revision: st.revision,
        })
    }

    /// `visit` of each of the first `limit` objects in `[start, end)`, in key order, without
    /// copying them, and whether that was all of them. None until the cache is filled. The
    /// cache is read-locked meanwhile: `visit` must be quick.
    pub fn scan_at_most<T>(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        visit: impl FnMut(&Stored) -> T,
    ) -> Option<(Vec<T>, bool)> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !st.ready {
            return None;
        }
        let mut range = st.objects.range(start.to_vec()..end.to_vec());
        let items: Vec<T> = range
            .by_ref()
            .take(limit)
            .map(|(_, v)| v)
            .map(visit)
            .collect();
        Some((items, range.next().is_none()))
    }

    /// How many cached objects have keys in `[start, end)`, and their stored bytes: what a
    /// list of them costs. None until the cache is filled.
    pub fn size(&self, start: &[u8], end: &[u8]) -> Option<(usize, usize)> {
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !st.ready {
            return None;
        }
        Some(
            st.objects
                .range(start.to_vec()..end.to_vec())
                .fold((0, 0), |(n, bytes), (_, v)| (n + 1, bytes + v.value.len())),
        )
    }

    /// The changes after `after` still in memory plus a live feed, or None if the cache no
    /// longer holds all of them (the caller watches the store instead).
    pub fn replay(&self, after: i64) -> Option<Replay> {
        // Subscribe before reading the ring, so nothing falls between the two.
        let live = self.changes.subscribe();
        let st = self.state.read().unwrap_or_else(PoisonError::into_inner);
        if !st.ready || after < st.oldest || after > st.revision {
            return None;
        }
        let past = st
            .ring
            .iter()
            .filter(|e| event_revision(e) > after)
            .cloned()
            .collect();
        Some(Replay { past, live })
    }
}

/// The changes to keys in `[start, end)` after `after`, from the cache: what it still holds,
/// then live changes. Ends when the cache relists or this watch falls too far behind; the
/// client resumes from the last revision it got.
pub fn stream_from(
    replay: Replay,
    start: Vec<u8>,
    end: Vec<u8>,
    after: i64,
) -> crate::storage::EventStream {
    let in_range = move |ev: &StoreEvent| match ev {
        StoreEvent::Put { key, .. } | StoreEvent::Delete { key, .. } => {
            key.as_slice() >= start.as_slice() && key.as_slice() < end.as_slice()
        }
        StoreEvent::Progress { .. } => true,
    };
    let past: Vec<StoreEvent> = replay.past.into_iter().filter(|e| in_range(e)).collect();
    let last_past = past.last().map(event_revision).unwrap_or(after);
    let keep = move |e: &StoreEvent| match e {
        StoreEvent::Progress { revision } => *revision > last_past,
        other => event_revision(other) > last_past && in_range(other),
    };
    // Every watch of every kind receives every change: only those it keeps are copied.
    let live = tokio_stream::wrappers::BroadcastStream::new(replay.live)
        .map(move |item| match item {
            Ok(change) => match change.as_ref() {
                Change::Event(ev) => Some(keep(ev).then(|| ev.clone())),
                Change::Reset => None,
            },
            // Lagged: events were lost for this watcher; end it so its client resumes.
            Err(_) => None,
        })
        .take_while(|ev| futures::future::ready(ev.is_some()))
        .filter_map(|ev| futures::future::ready(ev.flatten().map(Ok)));
    Box::pin(futures::stream::iter(past.into_iter().map(Ok)).chain(live))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str, rev: i64) -> StoreEvent {
        StoreEvent::Put {
            key: key.as_bytes().to_vec(),
            value: format!("v{rev}").into_bytes(),
            prev: None,
            mod_revision: rev,
            create_revision: rev,
        }
    }

    fn ready_cache(revision: i64) -> WatchCache {
        let cache = WatchCache::new();
        {
            let mut st = cache.state.write().unwrap_or_else(PoisonError::into_inner);
            st.ready = true;
            st.revision = revision;
            st.oldest = revision;
        }
        cache
    }

    #[test]
    fn applied_changes_are_listed_and_replayed_after_a_revision() {
        let cache = ready_cache(10);
        cache.apply(put("/registry/a", 11));
        cache.apply(put("/registry/b", 12));
        cache.apply(StoreEvent::Delete {
            key: b"/registry/a".to_vec(),
            prev: None,
            mod_revision: 13,
        });
        let snap = cache.list(b"/registry/", b"/registry0").expect("ready");
        assert_eq!(snap.revision, 13);
        assert_eq!(snap.items.len(), 1);
        assert_eq!(snap.items[0].key, b"/registry/b");
        let replay = cache.replay(11).expect("in the ring");
        let revs: Vec<i64> = replay.past.iter().map(event_revision).collect();
        assert_eq!(revs, [12, 13]);
        assert!(cache.replay(9).is_none(), "before the cache's history");
        assert!(cache.replay(14).is_none(), "in the future");
    }

    #[tokio::test]
    async fn a_write_outside_the_registry_is_reached_through_progress() {
        use crate::storage::memory::MemoryStorage;
        use crate::storage::{Change, Expect, WriteOp};

        let put_op = |key: &str| WriteOp {
            key: key.as_bytes().to_vec(),
            change: Change::Put(b"v".to_vec()),
            expect: Expect::Any,
        };
        let storage = Arc::new(MemoryStorage::new());
        let cache = WatchCache::new();
        let shutdown = CancellationToken::new();
        let runner = {
            let (cache, storage, shutdown) = (cache.clone(), storage.clone(), shutdown.clone());
            tokio::spawn(async move { cache.run(storage.as_ref(), shutdown).await })
        };
        let inside = storage
            .write(vec![put_op("/registry/pods/a")], vec![])
            .await
            .expect("write");
        assert!(cache.wait_for(inside, Duration::from_secs(5)).await);
        let outside = storage
            .write(vec![put_op("/fencing/token")], vec![])
            .await
            .expect("write");
        assert!(
            cache.revision() < outside,
            "not watched, so not reached yet"
        );
        assert!(cache.wait_for(outside, Duration::from_secs(5)).await);
        let listed = cache.list(b"/", b"0").expect("ready");
        assert_eq!(listed.revision, outside);
        assert_eq!(listed.items.len(), 1, "only API objects are cached");
        shutdown.cancel();
        runner.await.expect("cache task");
    }

    #[test]
    fn the_ring_forgets_the_oldest_changes() {
        let cache = ready_cache(0);
        for rev in 1..=(RING as i64 + 5) {
            cache.apply(put("/registry/k", rev));
        }
        assert!(cache.replay(4).is_none());
        assert!(cache.replay(5).is_some());
        assert_eq!(cache.revision(), RING as i64 + 5);
    }
}
