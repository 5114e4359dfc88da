//! The garbage collector's work queue: the uids to look at, each at most once at a time, in
//! the order they became dirty, with failed ones retried after a growing delay. Pure: the
//! shell passes the clock in.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use keel_client::runtime::Backoff;

use super::graph::Uid;

#[derive(Debug)]
pub struct WorkQueue {
    backoff: Backoff,
    ready: VecDeque<Uid>,
    queued: HashSet<Uid>,
    /// Being looked at now.
    in_flight: HashSet<Uid>,
    /// Made dirty while in flight: looked at again once done.
    again: HashSet<Uid>,
    /// Failed ones, by when to retry them.
    retries: BTreeMap<(Instant, Uid), ()>,
    retry_at: HashMap<Uid, Instant>,
    failures: HashMap<Uid, u32>,
}

impl WorkQueue {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            ready: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashSet::new(),
            again: HashSet::new(),
            retries: BTreeMap::new(),
            retry_at: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Marks `uid` to be looked at as soon as possible (a pending retry comes forward).
    pub fn add(&mut self, uid: Uid) {
        if self.in_flight.contains(&uid) {
            self.again.insert(uid);
            return;
        }
        if let Some(at) = self.retry_at.remove(&uid) {
            self.retries.remove(&(at, uid.clone()));
        }
        if self.queued.insert(uid.clone()) {
            self.ready.push_back(uid);
        }
    }

    /// The next uid to look at, if one is due at `now`; it is in flight until [`Self::done`].
    pub fn next(&mut self, now: Instant) -> Option<Uid> {
        self.promote(now);
        let uid = self.ready.pop_front()?;
        self.queued.remove(&uid);
        self.in_flight.insert(uid.clone());
        Some(uid)
    }

    /// `uid` was looked at: successfully, or not (then retried after its backoff).
    pub fn done(&mut self, uid: &str, ok: bool, now: Instant) {
        self.in_flight.remove(uid);
        if ok {
            self.failures.remove(uid);
        } else {
            let count = self.failures.entry(uid.to_string()).or_insert(0);
            *count = count.saturating_add(1);
            let at = now + self.backoff.delay(*count);
            self.retries.insert((at, uid.to_string()), ());
            self.retry_at.insert(uid.to_string(), at);
        }
        if self.again.remove(uid) {
            self.add(uid.to_string());
        }
    }

    /// When the earliest pending retry is due.
    pub fn next_retry(&self) -> Option<Instant> {
        self.retries.keys().next().map(|(at, _)| *at)
    }

    /// How many are waiting (ready, or for a retry) or in flight.
    pub fn len(&self) -> usize {
        self.ready.len() + self.retries.len() + self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn promote(&mut self, now: Instant) {
        while let Some((at, uid)) = self.retries.keys().next().cloned() {
            if at > now {
                break;
            }
            self.retries.remove(&(at, uid.clone()));
            self.retry_at.remove(&uid);
            if self.queued.insert(uid.clone()) {
                self.ready.push_back(uid);
            }
        }
    }
}

/// The backoff of failed uids: quick at first, at most a minute apart.
pub const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(60),
};

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut WorkQueue, now: Instant) -> Vec<Uid> {
        std::iter::from_fn(|| queue.next(now)).collect()
    }

    #[test]
    fn each_uid_is_queued_once_in_the_order_it_became_dirty() {
        let mut queue = WorkQueue::new(BACKOFF);
        let now = Instant::now();
        for uid in ["b", "a", "b", "c"] {
            queue.add(uid.into());
        }

        assert_eq!(drain(&mut queue, now), ["b", "a", "c"]);
    }

    #[test]
    fn a_uid_dirtied_while_in_flight_comes_back_once_done() {
        let mut queue = WorkQueue::new(BACKOFF);
        let now = Instant::now();
        queue.add("a".into());
        let first = queue.next(now);

        queue.add("a".into());
        let meanwhile = queue.next(now);
        queue.done("a", true, now);

        assert_eq!(first.as_deref(), Some("a"));
        assert_eq!(meanwhile, None);
        assert_eq!(drain(&mut queue, now), ["a"]);
    }

    #[test]
    fn a_failure_is_retried_after_a_delay_that_grows_until_a_success() {
        let mut queue = WorkQueue::new(BACKOFF);
        let t0 = Instant::now();
        queue.add("a".into());
        queue.next(t0);

        queue.done("a", false, t0);
        let early = queue.next(t0 + Duration::from_millis(100));
        let first_retry = queue.next_retry();
        let retried = queue.next(t0 + Duration::from_millis(200));
        queue.done("a", false, t0);
        let second_retry = queue.next_retry();

        assert_eq!(early, None);
        assert_eq!(first_retry, Some(t0 + Duration::from_millis(200)));
        assert_eq!(retried.as_deref(), Some("a"));
        assert_eq!(second_retry, Some(t0 + Duration::from_millis(400)));

        queue.add("a".into());
        assert_eq!(queue.next_retry(), None);
        assert_eq!(drain(&mut queue, t0), ["a"]);
        queue.done("a", true, t0);
        assert!(queue.is_empty());
    }
}
