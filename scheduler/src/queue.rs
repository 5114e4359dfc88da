//! The scheduling queue, as kube-scheduler's: an active set ordered by priority then arrival,
//! a backoff set (1 s doubling per failed attempt up to 10 s), and an unschedulable set whose
//! pods go back to work only when a cluster event could make them fit — an event one of the
//! plugins that rejected the pod registered for (its queueing hints). Pure: the caller passes
//! the time.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_types::k8s_openapi::api::core::v1::Pod;

use crate::framework::{ClusterEvent, PodInfo};

/// kube-scheduler's defaults.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A pod left unschedulable this long is retried even without an event (a missed event must
/// not strand it for ever).
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// A pod in the queue with its scheduling history.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    /// Scheduling attempts so far.
    pub attempts: u32,
    /// When it was last put in the active set (orders pods of equal priority).
    pub timestamp: Instant,
    /// When it first entered the queue (create → bound latency starts here).
    pub first_queued: Instant,
    /// The plugins that rejected it in its last attempt; empty means "any event may help".
    pub rejected_by: HashSet<&'static str>,
    /// The scheduling cycle in which it was last popped.
    pub cycle: u64,
}

impl QueuedPod {
    fn new(info: Arc<PodInfo>, now: Instant) -> QueuedPod {
        QueuedPod {
            info,
            attempts: 0,
            timestamp: now,
            first_queued: now,
            rejected_by: HashSet::new(),
            cycle: 0,
        }
    }

    /// When this pod's backoff ends, given its attempts so far.
    pub fn backoff_until(&self, initial: Duration, max: Duration) -> Instant {
        let mut d = initial;
        for _ in 1..self.attempts {
            d = d.saturating_mul(2);
            if d >= max {
                d = max;
                break;
            }
        }
        self.timestamp + d.min(max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff,
    Unschedulable,
    /// Popped and being scheduled; not in any set.
    InFlight,
}

type ActiveKey = (Reverse<i32>, Instant, u64);
type BackoffKey = (Instant, u64);

struct Entry {
    pod: QueuedPod,
    place: Place,
    /// Sequence number, unique per insertion, breaking ties in the ordered sets.
    seq: u64,
    /// Since when it has been unschedulable.
    unschedulable_since: Option<Instant>,
}

/// The queue of pods waiting for a node, keyed by `namespace/name`.
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BTreeSet<(ActiveKey, String)>,
    backoff: BTreeSet<(BackoffKey, String)>,
    unschedulable: HashSet<String>,
    /// Which events each plugin's rejections wait for.
    hints: HashMap<&'static str, HashSet<ClusterEvent>>,
    initial_backoff: Duration,
    max_backoff: Duration,
    next_seq: u64,
    /// Incremented on every pop.
    cycle: u64,
    /// The cycle in which the last cluster event moved pods; a pod rejected in a cycle that
    /// started before it may have missed that event, so it goes to backoff, not unschedulable.
    move_request_cycle: u64,
}

impl SchedulingQueue {
    /// A queue whose unschedulable pods wake on the events `hints` lists for the plugins that
    /// rejected them.
    pub fn new(hints: HashMap<&'static str, HashSet<ClusterEvent>>) -> SchedulingQueue {
        SchedulingQueue::with_backoff(hints, INITIAL_BACKOFF, MAX_BACKOFF)
    }

    pub fn with_backoff(
        hints: HashMap<&'static str, HashSet<ClusterEvent>>,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> SchedulingQueue {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BTreeSet::new(),
            backoff: BTreeSet::new(),
            unschedulable: HashSet::new(),
            hints,
            initial_backoff,
            max_backoff,
            next_seq: 0,
            cycle: 0,
            move_request_cycle: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many pods wait in each set: (active, backoff, unschedulable).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.active.len(),
            self.backoff.len(),
            self.unschedulable.len(),
        )
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn detach(&mut self, key: &str) {
        let Some(e) = self.entries.get(key) else {
            return;
        };
        match e.place {
            Place::Active => {
                let k = (
                    (Reverse(e.pod.info.priority), e.pod.timestamp, e.seq),
                    key.to_string(),
                );
                self.active.remove(&k);
            }
            Place::Backoff => {
                let until = e.pod.backoff_until(self.initial_backoff, self.max_backoff);
                self.backoff.remove(&((until, e.seq), key.to_string()));
            }
            Place::Unschedulable => {
                self.unschedulable.remove(key);
            }
            Place::InFlight => {}
        }
    }

    fn place(&mut self, key: String, mut pod: QueuedPod, place: Place, now: Instant) {
        self.detach(&key);
        let seq = self.seq();
        match place {
            Place::Active => {
                pod.timestamp = now;
                self.active
                    .insert(((Reverse(pod.info.priority), now, seq), key.clone()));
            }
            Place::Backoff => {
                let until = pod.backoff_until(self.initial_backoff, self.max_backoff);
                self.backoff.insert(((until, seq), key.clone()));
            }
            Place::Unschedulable => {
                self.unschedulable.insert(key.clone());
            }
            Place::InFlight => {}
        }
        let unschedulable_since = (place == Place::Unschedulable).then_some(now);
        self.entries.insert(
            key,
            Entry {
                pod,
                place,
                seq,
                unschedulable_since,
            },
        );
    }

    /// A new pending pod: straight to the active set.
    pub fn add(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key();
        if let Some(e) = self.entries.get_mut(&key) {
            e.pod.info = info;
            return;
        }
        self.place(key, QueuedPod::new(info, now), Place::Active, now);
    }

    /// The pending pod changed. A pod waiting as unschedulable is tried again if the change
    /// may make it fit (anything but its status and bookkeeping metadata, as kube-scheduler's
    /// `isPodUpdated`); elsewhere only its data is replaced.
    pub fn update(&mut self, info: Arc<PodInfo>, now: Instant) {
        let key = info.key();
        let Some(e) = self.entries.get_mut(&key) else {
            self.add(info, now);
            return;
        };
        let place = e.place;
        match place {
            Place::Unschedulable => {
                let changed = scheduling_relevant_change(&e.pod.info.pod, &info.pod);
                let mut pod = e.pod.clone();
                pod.info = info;
                if !changed {
                    e.pod = pod;
                    return;
                }
                let to = self.after_wake(&pod, now);
                self.place(key, pod, to, now);
            }
            Place::Active => {
                // Its ordering key may change with the priority: re-insert.
                let mut pod = e.pod.clone();
                pod.info = info;
                let timestamp = pod.timestamp;
                self.place(key, pod, Place::Active, timestamp);
            }
            Place::Backoff => {
                let mut pod = e.pod.clone();
                pod.info = info;
                self.place(key, pod, Place::Backoff, now);
            }
            Place::InFlight => e.pod.info = info,
        }
    }

    /// The pod is gone, or no longer pending (bound by someone).
    pub fn delete(&mut self, key: &str) {
        self.detach(key);
        self.entries.remove(key);
    }

    /// Moves backoff pods whose time has come to the active set, and pods unschedulable for
    /// longer than [`MAX_UNSCHEDULABLE`] back to work.
    pub fn flush(&mut self, now: Instant) {
        while let Some(((until, _), key)) = self.backoff.first().cloned() {
            if until > now {
                break;
            }
            if let Some(e) = self.entries.get(&key) {
                let pod = e.pod.clone();
                self.place(key, pod, Place::Active, now);
            } else {
                self.backoff.pop_first();
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .and_then(|e| e.unschedulable_since)
                    .is_some_and(|since| now.saturating_duration_since(since) >= MAX_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for key in stale {
            if let Some(e) = self.entries.get(&key) {
                let pod = e.pod.clone();
                let to = self.after_wake(&pod, now);
                self.place(key, pod, to, now);
            }
        }
    }

    /// The next pod to schedule (highest priority, then longest waiting), after moving
    /// expired backoffs in. The pod stays known to the queue (in flight) until it is bound,
    /// deleted, or handed back with [`Self::unschedulable`] or [`Self::retry`].
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPod> {
        self.flush(now);
        let (_, key) = self.active.pop_first()?;
        self.cycle += 1;
        let cycle = self.cycle;
        let e = self.entries.get_mut(&key)?;
        e.place = Place::InFlight;
        e.pod.attempts += 1;
        e.pod.cycle = cycle;
        Some(e.pod.clone())
    }

    /// When the earliest backoff ends, if any pod is backing off.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|((until, _), _)| *until)
    }

    /// A popped pod no node fits, rejected by `plugins`. It waits for an event one of them
    /// registered; if such an event came while it was being scheduled, it backs off instead.
    pub fn unschedulable(
        &mut self,
        mut pod: QueuedPod,
        plugins: HashSet<&'static str>,
        now: Instant,
    ) {
        let key = pod.info.key();
        if !self.entries.contains_key(&key) {
            // Deleted, or bound by someone else, while it was in flight.
            return;
        }
        pod.rejected_by = plugins;
        pod.timestamp = now;
        let to = if self.move_request_cycle >= pod.cycle {
            Place::Backoff
        } else {
            Place::Unschedulable
        };
        self.place(key, pod, to, now);
    }

    /// A popped pod whose attempt failed for another reason (the bind failed, the API was
    /// unreachable): it backs off and tries again.
    pub fn retry(&mut self, mut pod: QueuedPod, now: Instant) {
        let key = pod.info.key();
        if !self.entries.contains_key(&key) {
            return;
        }
        pod.timestamp = now;
        self.place(key, pod, Place::Backoff, now);
    }

    /// A popped pod was bound: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.delete(key);
    }

    /// Where a woken pod goes: back to backoff if its backoff has not ended, else active.
    fn after_wake(&self, pod: &QueuedPod, now: Instant) -> Place {
        if pod.backoff_until(self.initial_backoff, self.max_backoff) > now {
            Place::Backoff
        } else {
            Place::Active
        }
    }

    /// Whether `event` could make a pod rejected by `rejected_by` fit.
    fn wakes(&self, rejected_by: &HashSet<&'static str>, event: ClusterEvent) -> bool {
        rejected_by.is_empty()
            || rejected_by.iter().any(|p| {
                self.hints
                    .get(p)
                    // A plugin that registered no hints is trusted to be woken by anything.
                    .is_none_or(|events| events.contains(&event))
            })
    }

    /// A cluster event: wakes every unschedulable pod it could help.
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) {
        self.move_request_cycle = self.cycle;
        let woken: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_some_and(|e| self.wakes(&e.pod.rejected_by, event))
            })
            .cloned()
            .collect();
        for key in woken {
            if let Some(e) = self.entries.get(&key) {
                let pod = e.pod.clone();
                let to = self.after_wake(&pod, now);
                self.place(key, pod, to, now);
            }
        }
    }

    /// The pods currently waiting as unschedulable (for status and metrics).
    pub fn unschedulable_keys(&self) -> impl Iterator<Item = &String> {
        self.unschedulable.iter()
    }

    /// Every pod the queue holds (in any set, or in flight).
    pub fn pods(&self) -> impl Iterator<Item = &QueuedPod> {
        self.entries.values().map(|e| &e.pod)
    }
}

/// Whether `after` differs from `before` in anything but status, resourceVersion,
/// generation and managedFields: the scheduler's own status writes must not wake the pod.
pub fn scheduling_relevant_change(before: &Pod, after: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut p = p.clone();
        p.status = None;
        p.metadata.resource_version = None;
        p.metadata.generation = None;
        p.metadata.managed_fields = None;
        p
    };
    strip(before) != strip(after)
}

#[cfg(test)]
mod tests;
