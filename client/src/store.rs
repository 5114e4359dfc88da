//! A cache of one kind's objects as a watch last reported them: one [`Writer`] applies watch
//! events, any number of cheap [`Store`] clones read it concurrently.
//!
//! Readers never see half an update: every event, including a `Restarted` that replaces the
//! whole cache, is applied under one write lock, and what a reader gets back (an `Arc` of an
//! object, or a `Vec` of them) is a snapshot that later events do not change.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::Metadata;
use keel_types::k8s_openapi;
use tokio::sync::watch;

use crate::error::Error;
use crate::object_key::ObjectKey;
use crate::watcher::Event;

type Objects<K> = HashMap<ObjectKey, Arc<K>>;

/// A new, empty cache: the writer that fills it and a reader of it.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let objects = Arc::new(RwLock::new(HashMap::new()));
    let (ready_tx, ready_rx) = watch::channel(false);
    (
        Store {
            objects: objects.clone(),
            ready: ready_rx,
        },
        Writer {
            objects,
            ready: ready_tx,
        },
    )
}

/// A read handle on the cache. Cloning is cheap; every clone sees the same cache.
pub struct Store<K> {
    objects: Arc<RwLock<Objects<K>>>,
    ready: watch::Receiver<bool>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Self {
            objects: self.objects.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K> Store<K> {
    /// The object at `key` as last seen, if the cache holds it.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// Every cached object, as of one instant, in no particular order.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Whether the cache has been filled by a first full list.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Waits until the cache has been filled by a first full list (a `Restarted` event).
    /// Before that, an empty or partial cache says nothing about what exists.
    ///
    /// Fails with [`Error::StoreClosed`] if the writer is dropped before that happens.
    pub async fn wait_until_ready(&self) -> Result<(), Error> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| Error::StoreClosed)
    }

    fn read(&self) -> RwLockReadGuard<'_, Objects<K>> {
        // Every critical section is a single map operation or a swap: a writer that panicked
        // mid-way cannot have left the map half-updated, so a poisoned lock is still sound.
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one handle that changes the cache. Not `Clone`: events must be applied in watch order
/// by a single owner.
pub struct Writer<K> {
    objects: Arc<RwLock<Objects<K>>>,
    ready: watch::Sender<bool>,
}

impl<K> Writer<K>
where
    K: Metadata<Ty = ObjectMeta> + Clone,
{
    /// Applies one watch event: `Applied` inserts or replaces, `Deleted` removes, and
    /// `Restarted` replaces the whole cache (objects absent from it are gone) and marks the
    /// cache ready.
    pub fn apply(&mut self, event: &Event<K>) {
        match event {
            Event::Applied(object) => {
                let fresh = Arc::new(object.clone());
                self.write().insert(ObjectKey::of(object), fresh);
            }
            Event::Deleted(object) => {
                self.write().remove(&ObjectKey::of(object));
            }
            Event::Restarted(objects) => {
                // Built outside the lock so readers wait only for the swap.
                let fresh: Objects<K> = objects
                    .iter()
                    .map(|object| (ObjectKey::of(object), Arc::new(object.clone())))
                    .collect();
                *self.write() = fresh;
                self.ready
                    .send_if_modified(|ready| !std::mem::replace(ready, true));
            }
        }
    }
}

impl<K> Writer<K> {
    /// A read handle on the cache this writer fills.
    pub fn store(&self) -> Store<K> {
        Store {
            objects: self.objects.clone(),
            ready: self.ready.subscribe(),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, Objects<K>> {
        self.objects.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use std::collections::BTreeMap;

    fn cm(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("v".to_string(), value.to_string())])),
            ..Default::default()
        }
    }

    fn value(object: &ConfigMap) -> &str {
        object
            .data
            .as_ref()
            .and_then(|d| d.get("v"))
            .map_or("", String::as_str)
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced("default", name)
    }

    fn names(store: &Store<ConfigMap>) -> Vec<String> {
        let mut names: Vec<String> = store
            .state()
            .iter()
            .map(|o| ObjectKey::of(o.as_ref()).name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn applied_inserts_then_replaces_and_deleted_removes() {
        let (store, mut writer) = store::<ConfigMap>();

        writer.apply(&Event::Applied(cm("a", "1")));
        writer.apply(&Event::Applied(cm("b", "1")));
        writer.apply(&Event::Applied(cm("a", "2")));
        writer.apply(&Event::Deleted(cm("b", "1")));

        assert_eq!(names(&store), ["a"]);
        assert_eq!(store.get(&key("a")).as_deref().map(value), Some("2"));
        assert!(store.get(&key("b")).is_none());
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn restarted_replaces_everything_and_drops_objects_that_disappeared() {
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Restarted(vec![cm("a", "1"), cm("b", "1")]));
        writer.apply(&Event::Applied(cm("c", "1")));

        writer.apply(&Event::Restarted(vec![cm("b", "2"), cm("d", "1")]));

        assert_eq!(names(&store), ["b", "d"]);
        assert_eq!(store.get(&key("b")).as_deref().map(value), Some("2"));
    }

    #[test]
    fn deleting_an_unknown_object_changes_nothing() {
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Applied(cm("a", "1")));

        writer.apply(&Event::Deleted(cm("zzz", "1")));

        assert_eq!(names(&store), ["a"]);
    }

    #[test]
    fn a_snapshot_does_not_change_when_the_cache_does() {
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Restarted(vec![cm("a", "1"), cm("b", "1")]));
        let before = store.state();
        let a_before = store.get(&key("a"));

        writer.apply(&Event::Applied(cm("a", "2")));
        writer.apply(&Event::Restarted(vec![]));

        assert_eq!(before.len(), 2);
        assert_eq!(a_before.as_deref().map(value), Some("1"));
        assert!(store.is_empty());
    }

    #[test]
    fn concurrent_readers_never_see_a_restart_half_applied() {
        const OBJECTS: usize = 50;
        let generation = |g: &str| -> Vec<ConfigMap> {
            (0..OBJECTS)
                .map(|i| cm(&format!("{g}-{i}"), g))
                .collect::<Vec<_>>()
        };
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Restarted(generation("x")));

        let torn = std::thread::scope(|scope| {
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let store = store.clone();
                    scope.spawn(move || {
                        (0..500)
                            .filter(|_| {
                                let state = store.state();
                                let first = state.first().map(|o| value(o).to_string());
                                state.len() != OBJECTS
                                    || state.iter().any(|o| Some(value(o)) != first.as_deref())
                            })
                            .count()
                    })
                })
                .collect();
            for round in 0..500 {
                let g = if round % 2 == 0 { "y" } else { "x" };
                writer.apply(&Event::Restarted(generation(g)));
            }
            readers
                .into_iter()
                .map(|r| r.join().unwrap_or(usize::MAX))
                .sum::<usize>()
        });

        assert_eq!(torn, 0, "some reads mixed two generations");
    }

    #[tokio::test]
    async fn ready_only_after_the_first_restart() {
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Applied(cm("a", "1")));
        assert!(!store.is_ready());

        writer.apply(&Event::Restarted(vec![cm("a", "1")]));

        assert!(store.is_ready());
        assert!(store.wait_until_ready().await.is_ok());
    }

    #[tokio::test]
    async fn waiting_for_a_cache_whose_writer_is_gone_fails() {
        let (store, writer) = store::<ConfigMap>();

        drop(writer);

        assert!(matches!(
            store.wait_until_ready().await,
            Err(Error::StoreClosed)
        ));
    }

    #[tokio::test]
    async fn a_filled_cache_stays_ready_after_its_writer_is_gone() {
        let (store, mut writer) = store::<ConfigMap>();
        writer.apply(&Event::Restarted(vec![]));

        drop(writer);

        assert!(store.wait_until_ready().await.is_ok());
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_when_the_cache_is_filled() {
        let (store, mut writer) = store::<ConfigMap>();
        let reader = store.clone();

        let (waited, ()) = tokio::join!(reader.wait_until_ready(), async move {
            tokio::task::yield_now().await;
            writer.apply(&Event::Restarted(vec![cm("a", "1")]));
        });

        assert!(waited.is_ok());
        assert_eq!(store.len(), 1);
    }
}
