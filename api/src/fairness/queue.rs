//! One fair queue: a number of seats shared by the requests of one class, handed out in turn
//! to the users (flows) waiting for them, so one user's burst waits behind its own requests and
//! never ahead of another user's. A request that would wait past the queue's limit, or find its
//! flow's queue full, is refused: the caller answers 429 and the client retries later.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// Why a request got no seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its flow already has as many requests waiting as a flow may.
    QueueFull,
    /// It waited as long as a request may and no seat came free.
    TimedOut,
}

/// How a queue is sized.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Seats in use at once (a request takes one or more).
    pub seats: usize,
    /// Requests of one flow waiting at once.
    pub per_flow: usize,
    /// How long a request waits for its seats before it is refused.
    pub wait: Duration,
}

struct Waiter {
    id: u64,
    seats: usize,
    ready: oneshot::Sender<()>,
}

#[derive(Default)]
struct State {
    in_use: usize,
    waiting: usize,
    flows: HashMap<String, VecDeque<Waiter>>,
    /// Flows with someone waiting, in the order they are next served.
    turn: VecDeque<String>,
    next_id: u64,
    admitted: u64,
    refused: u64,
}

impl State {
    /// Hands free seats to waiters, one flow's head at a time in turn. Stops at a head that
    /// does not fit rather than letting smaller requests of other flows overtake it for ever.
    fn dispatch(&mut self, capacity: usize) {
        while let Some(flow) = self.turn.pop_front() {
            let Some(queue) = self.flows.get_mut(&flow) else {
                continue;
            };
            let Some(head) = queue.front() else {
                self.flows.remove(&flow);
                continue;
            };
            if self.in_use + head.seats > capacity {
                self.turn.push_front(flow);
                return;
            }
            let Some(waiter) = queue.pop_front() else {
                continue;
            };
            self.waiting -= 1;
            if queue.is_empty() {
                self.flows.remove(&flow);
            } else {
                self.turn.push_back(flow);
            }
            self.in_use += waiter.seats;
            self.admitted += 1;
            // The waiter's ticket removes it from the queue when dropped, under this lock, so
            // a waiter still queued is still listening.
            if waiter.ready.send(()).is_err() {
                self.in_use -= waiter.seats;
            }
        }
    }

    /// Takes waiter `id` of `flow` out of the queue; false if it is no longer there (it was
    /// given its seats).
    fn withdraw(&mut self, flow: &str, id: u64) -> bool {
        let Some(queue) = self.flows.get_mut(flow) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        queue.remove(at);
        self.waiting -= 1;
        if queue.is_empty() {
            self.flows.remove(flow);
            self.turn.retain(|f| f != flow);
        }
        true
    }
}

struct Inner {
    name: &'static str,
    limits: QueueLimits,
    state: Mutex<State>,
}

impl Inner {
    /// The state, recovered if a holder panicked: every update leaves it consistent between
    /// statements that cannot panic, so a poisoned lock holds nothing half-done.
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, seats: usize) {
        let mut st = self.state();
        st.in_use -= seats;
        st.dispatch(self.limits.seats);
    }
}

/// A queue of seats. Cloning shares it.
#[derive(Clone)]
pub struct FairQueue {
    inner: Arc<Inner>,
}

/// Seats held; given back when dropped.
pub struct Seat {
    inner: Arc<Inner>,
    seats: usize,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.inner.release(self.seats);
    }
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seat({} × {})", self.inner.name, self.seats)
    }
}

/// A place in the queue. Dropped while waiting (the client went away, or the wait timed out),
/// it leaves the queue; dropped after its seats were handed over but before they were taken,
/// it gives them back.
struct Ticket {
    inner: Arc<Inner>,
    flow: String,
    id: u64,
    seats: usize,
    taken: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.taken {
            return;
        }
        let mut st = self.inner.state();
        if !st.withdraw(&self.flow, self.id) {
            st.in_use -= self.seats;
        }
        st.dispatch(self.inner.limits.seats);
    }
}

/// What a queue has done, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub in_use: usize,
    pub waiting: usize,
    pub admitted: u64,
    pub refused: u64,
}

impl FairQueue {
    pub fn new(name: &'static str, limits: QueueLimits) -> Self {
        let limits = QueueLimits {
            seats: limits.seats.max(1),
            ..limits
        };
        Self {
            inner: Arc::new(Inner {
                name,
                limits,
                state: Mutex::default(),
            }),
        }
    }

    pub fn name(&self) -> &'static str {
        self.inner.name
    }

    pub fn stats(&self) -> QueueStats {
        let st = self.inner.state();
        QueueStats {
            in_use: st.in_use,
            waiting: st.waiting,
            admitted: st.admitted,
            refused: st.refused,
        }
    }

    /// Waits for `seats` (at most the queue's whole capacity) on behalf of `flow`.
    pub async fn acquire(&self, flow: &str, seats: usize) -> Result<Seat, Refused> {
        let seats = seats.clamp(1, self.inner.limits.seats);
        let (ready, mut listen) = oneshot::channel();
        let ticket = {
            let mut st = self.inner.state();
            // Seats go to a newcomer at once only when nobody waits: otherwise it would
            // overtake the flows in the queue.
            if st.waiting == 0 && st.in_use + seats <= self.inner.limits.seats {
                st.in_use += seats;
                st.admitted += 1;
                return Ok(Seat {
                    inner: self.inner.clone(),
                    seats,
                });
            }
            let queued = st.flows.get(flow).map_or(0, VecDeque::len);
            if queued >= self.inner.limits.per_flow {
                st.refused += 1;
                return Err(Refused::QueueFull);
            }
            let id = st.next_id;
            st.next_id += 1;
            if queued == 0 {
                st.turn.push_back(flow.to_string());
            }
            st.flows
                .entry(flow.to_string())
                .or_default()
                .push_back(Waiter { id, seats, ready });
            st.waiting += 1;
            // A head that did not fit may fit now that the turn order changed.
            st.dispatch(self.inner.limits.seats);
            Ticket {
                inner: self.inner.clone(),
                flow: flow.to_string(),
                id,
                seats,
                taken: false,
            }
        };
        let mut ticket = ticket;
        match tokio::time::timeout(self.inner.limits.wait, &mut listen).await {
            Ok(Ok(())) => {
                ticket.taken = true;
                Ok(Seat {
                    inner: self.inner.clone(),
                    seats,
                })
            }
            // The sender lives in the queue until this ticket withdraws it, so it can only be
            // gone because the seats were sent: take them.
            Ok(Err(_)) | Err(_) => {
                let given = {
                    let mut st = self.inner.state();
                    let given = !st.withdraw(&ticket.flow, ticket.id);
                    if !given {
                        st.refused += 1;
                    }
                    given
                };
                ticket.taken = true;
                if given {
                    Ok(Seat {
                        inner: self.inner.clone(),
                        seats,
                    })
                } else {
                    Err(Refused::TimedOut)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(seats: usize, per_flow: usize, wait_ms: u64) -> FairQueue {
        FairQueue::new(
            "test",
            QueueLimits {
                seats,
                per_flow,
                wait: Duration::from_millis(wait_ms),
            },
        )
    }

    #[tokio::test]
    async fn seats_are_given_at_once_while_free_and_back_when_dropped() {
        let q = queue(2, 10, 1000);
        let a = q.acquire("alice", 1).await.expect("free seat");
        let b = q.acquire("alice", 1).await.expect("free seat");
        assert_eq!(q.stats().in_use, 2);
        drop(a);
        drop(b);
        assert_eq!(q.stats().in_use, 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_queue_takes_the_whole_queue() {
        let q = queue(3, 10, 1000);
        let big = q.acquire("alice", 100).await.expect("fits once clamped");
        assert_eq!(q.stats().in_use, 3);
        drop(big);
    }

    #[tokio::test]
    async fn a_full_flow_queue_is_refused_and_other_flows_still_queue() {
        let q = queue(1, 2, 10_000);
        let held = q.acquire("alice", 1).await.expect("free seat");
        let q1 = q.clone();
        let w1 = tokio::spawn(async move { q1.acquire("alice", 1).await.map(drop) });
        let q2 = q.clone();
        let w2 = tokio::spawn(async move { q2.acquire("alice", 1).await.map(drop) });
        while q.stats().waiting < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(q.acquire("alice", 1).await.err(), Some(Refused::QueueFull));
        let q3 = q.clone();
        let bob = tokio::spawn(async move { q3.acquire("bob", 1).await.map(drop) });
        while q.stats().waiting < 3 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for w in [w1, w2, bob] {
            assert_eq!(w.await.expect("task"), Ok(()));
        }
        assert_eq!(q.stats().refused, 1);
        assert_eq!(q.stats().in_use, 0);
    }

    #[tokio::test]
    async fn a_request_that_waits_too_long_is_refused_and_leaves_the_queue() {
        let q = queue(1, 10, 50);
        let held = q.acquire("alice", 1).await.expect("free seat");
        assert_eq!(q.acquire("bob", 1).await.err(), Some(Refused::TimedOut));
        assert_eq!(q.stats().waiting, 0);
        drop(held);
        assert!(q.acquire("bob", 1).await.is_ok());
    }

    #[tokio::test]
    async fn waiting_flows_are_served_in_turn_not_in_arrival_order() {
        let q = queue(1, 100, 10_000);
        let held = q.acquire("alice", 1).await.expect("free seat");
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Alice queues five requests before Bob queues one.
        for (i, flow) in ["alice", "alice", "alice", "alice", "alice", "bob"]
            .into_iter()
            .enumerate()
        {
            let queue = q.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let seat = queue.acquire(flow, 1).await;
                order
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(flow);
                // Hold the seat a moment so the next one is handed out after this returns.
                tokio::task::yield_now().await;
                drop(seat);
            }));
            while q.stats().waiting < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for t in tasks {
            t.await.expect("task");
        }
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(order[..2], ["alice", "bob"], "{order:?}");
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_leaves_no_seat_behind() {
        let q = queue(1, 10, 10_000);
        let held = q.acquire("alice", 1).await.expect("free seat");
        let q1 = q.clone();
        let gone = tokio::spawn(async move { q1.acquire("bob", 1).await.map(drop) });
        while q.stats().waiting < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        assert_eq!(q.stats().waiting, 0);
        drop(held);
        assert_eq!(q.stats().in_use, 0);
        assert!(q.acquire("carol", 1).await.is_ok());
    }
}
