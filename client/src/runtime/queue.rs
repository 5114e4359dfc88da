//! The controller's work queue, as pure decisions over data: which key runs next, and when.
//!
//! Guarantees, each tested below:
//! - a key is queued at most once: scheduling it again keeps the earlier of the two times;
//! - a key never runs concurrently with itself: while it runs it may be queued again, and it
//!   becomes runnable once its run is done;
//! - at most `capacity` keys run at once.
//!
//! Time is passed in, never read, so the async shell owns the clock.

use std::collections::{BTreeSet, HashMap, HashSet};

use tokio::time::Instant;

use crate::object_key::ObjectKey;

#[derive(Debug)]
pub(crate) struct Queue {
    capacity: usize,
    /// When each queued key becomes due.
    due: HashMap<ObjectKey, Instant>,
    /// The same entries as `due`, ordered by time.
    order: BTreeSet<(Instant, ObjectKey)>,
    running: HashSet<ObjectKey>,
}

impl Queue {
    /// A queue that lets `capacity` keys run at once (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            due: HashMap::new(),
            order: BTreeSet::new(),
            running: HashSet::new(),
        }
    }

    /// Queues `key` to run at `at`, or at its already queued time if that is earlier.
    pub(crate) fn schedule(&mut self, key: ObjectKey, at: Instant) {
        if let Some(&queued) = self.due.get(&key) {
            if queued <= at {
                return;
            }
            self.order.remove(&(queued, key.clone()));
        }
        self.order.insert((at, key.clone()));
        self.due.insert(key, at);
    }

    /// How many keys are due at `now` and waiting (running ones and those queued for later
    /// excluded): the work queue's depth, as Kubernetes' `workqueue_depth` counts it.
    pub(crate) fn waiting(&self, now: Instant) -> usize {
        self.order
            .iter()
            .take_while(|(at, _)| *at <= now)
            .filter(|(_, key)| !self.running.contains(key))
            .count()
    }

    /// Takes the earliest key that is due at `now` and not running, and marks it running;
    /// `None` if there is none or every run slot is taken.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<ObjectKey> {
        if self.running.len() >= self.capacity {
            return None;
        }
        let entry = self
            .order
            .iter()
            .take_while(|(at, _)| *at <= now)
            .find(|(_, key)| !self.running.contains(key))
            .cloned()?;
        self.order.remove(&entry);
        self.due.remove(&entry.1);
        self.running.insert(entry.1.clone());
        Some(entry.1)
    }

    /// Marks `key`'s run as finished, freeing its slot; if it was queued meanwhile it is now
    /// runnable.
    pub(crate) fn done(&mut self, key: &ObjectKey) {
        self.running.remove(key);
    }

    /// When the next key could be popped, if a slot is free: the earliest time among queued
    /// keys that are not running. `None` means only a finished run or a new key can change
    /// what `pop` returns.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.running.len() >= self.capacity {
            return None;
        }
        self.order
            .iter()
            .find(|(_, key)| !self.running.contains(key))
            .map(|(at, _)| *at)
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::namespaced("default", name)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn drain(queue: &mut Queue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| queue.pop(now))
            .map(|k| k.name)
            .collect()
    }

    #[test]
    fn a_key_queued_many_times_is_popped_once() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);

        for _ in 0..100 {
            queue.schedule(key("a"), t0);
        }

        assert_eq!(queue.queued(), 1);
        assert_eq!(drain(&mut queue, t0), ["a"]);
    }

    #[test]
    fn the_earlier_of_two_times_wins() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);

        queue.schedule(key("late-then-early"), t0 + secs(60));
        queue.schedule(key("late-then-early"), t0 + secs(1));
        queue.schedule(key("early-then-late"), t0 + secs(2));
        queue.schedule(key("early-then-late"), t0 + secs(60));

        assert_eq!(queue.next_due(), Some(t0 + secs(1)));
        assert_eq!(drain(&mut queue, t0 + secs(1)), ["late-then-early"]);
        assert_eq!(drain(&mut queue, t0 + secs(2)), ["early-then-late"]);
        assert_eq!(queue.next_due(), None);
    }

    #[test]
    fn keys_are_not_popped_before_they_are_due() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);
        queue.schedule(key("a"), t0 + secs(10));

        assert_eq!(drain(&mut queue, t0 + secs(9)), Vec::<String>::new());
        assert_eq!(drain(&mut queue, t0 + secs(10)), ["a"]);
    }

    #[test]
    fn due_keys_pop_in_time_order() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);
        queue.schedule(key("c"), t0 + secs(3));
        queue.schedule(key("a"), t0 + secs(1));
        queue.schedule(key("b"), t0 + secs(2));

        assert_eq!(drain(&mut queue, t0 + secs(5)), ["a", "b", "c"]);
    }

    #[test]
    fn a_running_key_queued_again_waits_until_its_run_is_done() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);
        queue.schedule(key("a"), t0);
        assert_eq!(drain(&mut queue, t0), ["a"]);

        queue.schedule(key("a"), t0);
        queue.schedule(key("a"), t0);

        assert_eq!(drain(&mut queue, t0), Vec::<String>::new());
        assert_eq!(queue.next_due(), None, "nothing can run until a is done");
        queue.done(&key("a"));
        assert_eq!(queue.next_due(), Some(t0));
        assert_eq!(drain(&mut queue, t0), ["a"]);
    }

    #[test]
    fn a_running_key_does_not_block_other_due_keys() {
        let t0 = Instant::now();
        let mut queue = Queue::new(4);
        queue.schedule(key("a"), t0);
        assert_eq!(drain(&mut queue, t0), ["a"]);

        queue.schedule(key("a"), t0);
        queue.schedule(key("b"), t0 + secs(1));

        assert_eq!(queue.next_due(), Some(t0 + secs(1)));
        assert_eq!(drain(&mut queue, t0 + secs(1)), ["b"]);
    }

    #[test]
    fn no_more_than_capacity_keys_run_at_once() {
        let t0 = Instant::now();
        let mut queue = Queue::new(2);
        for name in ["a", "b", "c", "d"] {
            queue.schedule(key(name), t0);
        }

        assert_eq!(drain(&mut queue, t0), ["a", "b"]);
        assert_eq!(queue.next_due(), None, "every slot is taken");

        queue.done(&key("a"));

        assert_eq!(drain(&mut queue, t0), ["c"]);
    }

    #[test]
    fn zero_capacity_still_runs_one_key() {
        let t0 = Instant::now();
        let mut queue = Queue::new(0);
        queue.schedule(key("a"), t0);
        queue.schedule(key("b"), t0);

        assert_eq!(drain(&mut queue, t0), ["a"]);
    }
}
