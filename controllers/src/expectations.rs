//! Expectations, as kube-controller-manager keeps them: a controller that has just asked for
//! children to be created or deleted must not act on its owner again until its cache has seen
//! those changes, or a cache that lags would make it create (or delete) them twice.
//!
//! Unlike Kubernetes' counters, expectations here are by child name: controllers name the
//! children they create, so "seen" means the cache holds that very object (or saw it go), and
//! a relist can settle expectations as well as single events can. An expectation older than
//! [`TTL`] is dropped, as Kubernetes does, so a lost event delays a controller but never stops
//! it.
//!
//! Pure over its inputs: the clock is an argument. The lock is recovered when poisoned (a
//! panicking reconcile cannot leave the map half-updated: every update is a single insert or
//! remove).

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::k8s_openapi::Metadata;
use keel_client::watcher::Event;
use keel_client::ObjectKey;

/// How long an unmet expectation holds an owner back (Kubernetes' ExpectationsTimeout).
pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    creations: HashSet<ObjectKey>,
    deletions: HashSet<ObjectKey>,
    since: Instant,
}

/// Outstanding creations and deletions, per owner.
#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<ObjectKey, Pending>>,
}

impl Expectations {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectKey, Pending>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending<'a>(
        owners: &'a mut HashMap<ObjectKey, Pending>,
        owner: &ObjectKey,
        now: Instant,
    ) -> &'a mut Pending {
        owners.entry(owner.clone()).or_insert_with(|| Pending {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: now,
        })
    }

    /// `owner` is about to create `children`: hold it back until they are seen.
    pub fn expect_creations(
        &self,
        owner: &ObjectKey,
        children: impl IntoIterator<Item = ObjectKey>,
        now: Instant,
    ) {
        let mut owners = self.lock();
        let pending = Self::pending(&mut owners, owner, now);
        pending.creations.extend(children);
        pending.since = now;
    }

    /// `owner` is about to delete `children`: hold it back until they are seen going.
    pub fn expect_deletions(
        &self,
        owner: &ObjectKey,
        children: impl IntoIterator<Item = ObjectKey>,
        now: Instant,
    ) {
        let mut owners = self.lock();
        let pending = Self::pending(&mut owners, owner, now);
        pending.deletions.extend(children);
        pending.since = now;
    }

    /// The write for `child` did not happen (the request failed): stop waiting for it.
    pub fn write_failed(&self, owner: &ObjectKey, child: &ObjectKey) {
        let mut owners = self.lock();
        if let Some(pending) = owners.get_mut(owner) {
            pending.creations.remove(child);
            pending.deletions.remove(child);
            if pending.creations.is_empty() && pending.deletions.is_empty() {
                owners.remove(owner);
            }
        }
    }

    /// Whether `owner` may act: nothing is outstanding, or what is has waited longer than
    /// [`TTL`].
    pub fn satisfied(&self, owner: &ObjectKey, now: Instant) -> bool {
        let mut owners = self.lock();
        match owners.get(owner) {
            None => true,
            Some(p) if p.creations.is_empty() && p.deletions.is_empty() => {
                owners.remove(owner);
                true
            }
            Some(p) if now.saturating_duration_since(p.since) >= TTL => {
                owners.remove(owner);
                true
            }
            Some(_) => false,
        }
    }

    /// Forgets `owner` (it was deleted).
    pub fn forget(&self, owner: &ObjectKey) {
        self.lock().remove(owner);
    }

    /// Settles the expectations an event about children shows met: a child applied is
    /// created; a child deleted, or marked for deletion, is created and deleted alike; a relist
    /// settles every creation it holds and every deletion it does not (or holds terminating).
    pub fn observe<K: Metadata<Ty = ObjectMeta>>(&self, event: &Event<K>) {
        let mut owners = self.lock();
        if owners.is_empty() {
            return;
        }
        let mut settle = |child: &ObjectKey, created: bool, deleted: bool| {
            for pending in owners.values_mut() {
                if created {
                    pending.creations.remove(child);
                }
                if deleted {
                    pending.deletions.remove(child);
                }
            }
        };
        match event {
            Event::Applied(object) => {
                let gone = object.metadata().deletion_timestamp.is_some();
                settle(&ObjectKey::of(object), true, gone);
            }
            Event::Deleted(object) => settle(&ObjectKey::of(object), true, true),
            Event::Restarted(objects) => {
                let present: HashMap<ObjectKey, bool> = objects
                    .iter()
                    .map(|o| (ObjectKey::of(o), o.metadata().deletion_timestamp.is_some()))
                    .collect();
                for pending in owners.values_mut() {
                    pending.creations.retain(|c| !present.contains_key(c));
                    pending
                        .deletions
                        .retain(|d| present.get(d).is_some_and(|terminating| !terminating));
                }
            }
        }
        owners.retain(|_, p| !p.creations.is_empty() || !p.deletions.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::core::v1::Pod;
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use keel_client::k8s_openapi::chrono::Utc;

    fn pod(name: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                deletion_timestamp: terminating.then(|| Time(Utc::now())),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced("ns", name)
    }

    #[test]
    fn an_owner_waits_until_every_child_it_created_is_seen() {
        let e = Expectations::new();
        let now = Instant::now();
        let rs = key("rs");
        e.expect_creations(&rs, [key("a"), key("b")], now);
        assert!(!e.satisfied(&rs, now));
        e.observe(&Event::Applied(pod("a", false)));
        assert!(!e.satisfied(&rs, now));
        e.observe(&Event::Applied(pod("b", false)));
        assert!(e.satisfied(&rs, now));
    }

    #[test]
    fn a_deletion_is_seen_when_the_child_goes_or_is_marked() {
        let e = Expectations::new();
        let now = Instant::now();
        let rs = key("rs");
        e.expect_deletions(&rs, [key("a"), key("b")], now);
        e.observe(&Event::Applied(pod("a", false)));
        assert!(
            !e.satisfied(&rs, now),
            "an update without deletion settles nothing"
        );
        e.observe(&Event::Applied(pod("a", true)));
        e.observe(&Event::Deleted(pod("b", false)));
        assert!(e.satisfied(&rs, now));
    }

    #[test]
    fn a_relist_settles_what_it_shows() {
        let e = Expectations::new();
        let now = Instant::now();
        let rs = key("rs");
        e.expect_creations(&rs, [key("new")], now);
        e.expect_deletions(&rs, [key("old"), key("kept")], now);
        e.observe(&Event::Restarted(vec![
            pod("new", false),
            pod("kept", false),
        ]));
        assert!(
            !e.satisfied(&rs, now),
            "kept is still there and not terminating"
        );
        e.observe(&Event::Restarted(vec![
            pod("new", false),
            pod("kept", true),
        ]));
        assert!(e.satisfied(&rs, now));
    }

    #[test]
    fn a_failed_write_is_not_waited_for() {
        let e = Expectations::new();
        let now = Instant::now();
        let rs = key("rs");
        e.expect_creations(&rs, [key("a")], now);
        e.write_failed(&rs, &key("a"));
        assert!(e.satisfied(&rs, now));
    }

    #[test]
    fn unmet_expectations_expire() {
        let e = Expectations::new();
        let now = Instant::now();
        let rs = key("rs");
        e.expect_creations(&rs, [key("lost")], now);
        assert!(!e.satisfied(&rs, now + TTL - Duration::from_secs(1)));
        assert!(e.satisfied(&rs, now + TTL));
        assert!(e.satisfied(&rs, now + TTL), "and stay forgotten");
    }

    #[test]
    fn owners_are_independent() {
        let e = Expectations::new();
        let now = Instant::now();
        e.expect_creations(&key("one"), [key("a")], now);
        assert!(e.satisfied(&key("two"), now));
        e.forget(&key("one"));
        assert!(e.satisfied(&key("one"), now));
    }
}
