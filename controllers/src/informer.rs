//! Shared informers: one watch per kind for the whole controller manager, cached once and
//! fanned out to every controller that reads that kind, as client-go's shared informer
//! factory does. A controller reads the cache ([`SharedInformer::store`]) and turns the
//! events it [subscribes](SharedInformer::subscribe) to into keys of its own kind.
//!
//! A subscriber that falls too far behind (more than [`CAPACITY`] events) is not allowed to
//! slow the others: it gets the whole cache as a restart instead of the events it missed.
//! Informers start on first use (or when a candidate warms the ones its controllers read), so
//! a kind no selected controller reads is never watched; all stop with the manager.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{Stream, StreamExt};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::{ListableResource, Metadata, Resource};
use keel_client::store::{store, Store};
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, Client, Error, WatchParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events buffered per subscriber before it is resynchronised with a restart.
pub const CAPACITY: usize = 16 * 1024;

/// What a kind must be to be watched and cached.
pub trait Kind:
    Resource
    + ListableResource
    + Metadata<Ty = ObjectMeta>
    + Serialize
    + DeserializeOwned
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<K> Kind for K where
    K: Resource
        + ListableResource
        + Metadata<Ty = ObjectMeta>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// One kind's watch, cache and fan-out.
pub struct SharedInformer<K> {
    store: Store<K>,
    events: broadcast::Sender<Event<K>>,
}

impl<K: Kind> SharedInformer<K> {
    /// Starts watching every object of `K` (all namespaces) on `tasks`, until `shutdown`.
    fn start(client: Client, tasks: &TaskTracker, shutdown: CancellationToken) -> Arc<Self> {
        let (store, mut writer) = store();
        let (events, _) = broadcast::channel(CAPACITY);
        let informer = Arc::new(Self {
            store,
            events: events.clone(),
        });
        let stream = watcher(Api::<K>::all(client), WatchParams::default());
        tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    next = stream.next() => next,
                };
                match next {
                    Some(Ok(event)) => {
                        writer.apply(&event);
                        // No subscriber yet is fine: they start from the cache.
                        let _ = events.send(event);
                    }
                    Some(Err(error)) => {
                        tracing::debug!(kind = K::KIND, %error, "informer watch; retrying")
                    }
                    None => return,
                }
            }
        });
        informer
    }

    /// The cache: complete once [`Store::wait_until_ready`] returns.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The events from now on, starting with a restart holding the whole cache if it is
    /// already filled (otherwise the informer's own first list arrives as that restart). An
    /// event may be seen both in that first restart and after it; keys are idempotent.
    pub fn subscribe(&self) -> impl Stream<Item = Result<Event<K>, Error>> + Send + 'static {
        let receiver = self.events.subscribe();
        let first = self
            .store
            .is_ready()
            .then(|| Ok(Event::Restarted(snapshot(&self.store))));
        let store = self.store.clone();
        let rest = futures::stream::unfold((receiver, store), |(mut receiver, store)| async move {
            match receiver.recv().await {
                Ok(event) => Some((Ok(event), (receiver, store))),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(kind = K::KIND, missed, "subscriber lagged; resyncing");
                    let restart = Event::Restarted(snapshot(&store));
                    Some((Ok(restart), (receiver, store)))
                }
                Err(broadcast::error::RecvError::Closed) => None,
            }
        });
        futures::stream::iter(first).chain(rest)
    }
}

fn snapshot<K: Clone>(store: &Store<K>) -> Vec<K> {
    store.state().iter().map(|o| K::clone(o)).collect()
}

/// The controller manager's informers, started on first use and kept across terms.
pub struct Informers {
    client: Client,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    started: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Informers {
    pub fn new(client: Client, tasks: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            client,
            tasks,
            shutdown,
            started: Mutex::new(HashMap::new()),
        }
    }

    /// The informer of kind `K`, started now if no one asked for it before.
    pub fn of<K: Kind>(&self) -> Arc<SharedInformer<K>> {
        let mut started = self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = started.entry(TypeId::of::<K>()).or_insert_with(|| {
            SharedInformer::<K>::start(self.client.clone(), &self.tasks, self.shutdown.clone())
        });
        match Arc::clone(entry).downcast::<SharedInformer<K>>() {
            Ok(informer) => informer,
            // Unreachable: entries are keyed by their own type. Should it ever happen, a
            // private informer is correct, only costlier.
            Err(_) => {
                SharedInformer::<K>::start(self.client.clone(), &self.tasks, self.shutdown.clone())
            }
        }
    }
}
