//! The one bound on writes in flight: every write the sim sends (registrations, Lease
//! renewals, node and pod statuses, deletions) waits for a slot, so `--concurrency` caps the
//! load on the masters however many nodes and pods there are.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct WriteLimit {
    slots: Arc<Semaphore>,
}

impl WriteLimit {
    pub fn new(in_flight: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(in_flight.max(1))),
        }
    }

    /// Runs `write` once a slot is free; the slot is held until it finishes. Waiters are
    /// served in order, so a burst of pod writes delays Lease renewals but cannot starve them.
    pub async fn run<T>(&self, write: impl Future<Output = T>) -> T {
        // The semaphore is never closed, so acquiring cannot fail; were it closed, writing
        // unbounded beats not writing at all.
        let _slot = self.slots.acquire().await.ok();
        write.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn no_more_writes_than_slots_run_at_once() {
        let limit = WriteLimit::new(3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));

        let writes = (0..10).map(|_| {
            let (running, peak) = (running.clone(), peak.clone());
            limit.run(async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            })
        });
        futures::future::join_all(writes).await;

        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
