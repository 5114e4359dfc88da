//! The controller's async shell: takes keys from trigger streams into the [`Queue`], runs due
//! keys' reconciles as owned tasks, and feeds their outcomes back to the queue, the backoff
//! and the caller.
//!
//! Every decision (which key, when, how long to back off) is made by the pure queue and
//! backoff; this file only waits on the clock, the triggers, the running tasks and shutdown.
//!
//! Tasks: each reconcile runs as a task on one [`TaskTracker`], and its join handle is held
//! here until the outcome is read. Shutdown order: once `shutdown` is cancelled no key is
//! started and no trigger read; every running reconcile is awaited and its outcome yielded;
//! then the tracker is closed and waited on, and the stream ends. If the stream is dropped
//! instead, running reconciles are cancelled at their next await.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesUnordered, SelectAll};
use futures::{Stream, StreamExt};
use tokio::task::JoinError;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::action::Action;
use super::backoff::Failures;
use super::config::Config;
use super::error::ReconcileError;
use super::queue::Queue;
use crate::error::Error;
use crate::object_key::ObjectKey;
use crate::store::Store;

/// One controller output: a reconcile's success and what it asked for, or why it failed.
pub type Outcome<E> = Result<(ObjectKey, Action), ReconcileError<E>>;

/// A stream of keys worth reconciling (or of watch errors to report).
pub(crate) type Triggers = BoxStream<'static, Result<ObjectKey, Error>>;

/// What a reconcile task hands back.
struct Finished<K, E> {
    key: ObjectKey,
    object: Arc<K>,
    /// `None` if the task was cancelled before the reconcile finished.
    result: Result<Option<Result<Action, E>>, JoinError>,
}

/// How the applier runs: its config, and where to publish its queue depth.
pub(crate) struct Settings {
    pub(crate) config: Config,
    pub(crate) depth: Option<Arc<AtomicUsize>>,
}

/// Runs `reconcile` for keys from `triggers`, reading each object from `store` when its turn
/// comes. See [`super::Controller::run`] for the contract.
pub(crate) fn applier<K, Ctx, E, R, Fut, P>(
    store: Store<K>,
    triggers: Vec<Triggers>,
    settings: Settings,
    reconcile: R,
    error_policy: P,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Outcome<E>> + Send
where
    K: Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    E: Send + 'static,
    R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    P: Fn(&Arc<K>, &E, &Ctx) -> Action + Send + 'static,
{
    let abandon = CancellationToken::new();
    let driver = Driver {
        store,
        triggers: futures::stream::select_all(triggers),
        queue: Queue::new(settings.config.concurrency),
        failures: Failures::new(settings.config.backoff),
        running: FuturesUnordered::new(),
        tracker: TaskTracker::new(),
        _abandon_on_drop: abandon.clone().drop_guard(),
        abandon,
        shutdown,
        stopping: false,
        ended: false,
        depth: settings.depth,
        reconcile: Arc::new(reconcile),
        error_policy,
        ctx,
    };
    futures::stream::unfold(driver, |mut driver| async move {
        let outcome = driver.next().await?;
        Some((outcome, driver))
    })
}

struct Driver<K, Ctx, E, R, P> {
    store: Store<K>,
    triggers: SelectAll<Triggers>,
    queue: Queue,
    failures: Failures,
    running: FuturesUnordered<BoxFuture<'static, Finished<K, E>>>,
    tracker: TaskTracker,
    /// Cancelled only when the driver is dropped: stops reconciles nobody will read.
    abandon: CancellationToken,
    _abandon_on_drop: DropGuard,
    shutdown: CancellationToken,
    /// Shutdown was requested: take no new keys.
    stopping: bool,
    /// Every trigger stream has ended. Watches never do; scripted streams may, and the
    /// controller then carries on with what is queued until shut down.
    ended: bool,
    /// Where to publish the queue's depth, if anyone reads it.
    depth: Option<Arc<AtomicUsize>>,
    reconcile: Arc<R>,
    error_policy: P,
    ctx: Arc<Ctx>,
}

impl<K, Ctx, E, R, Fut, P> Driver<K, Ctx, E, R, P>
where
    K: Send + Sync + 'static,
    Ctx: Send + Sync + 'static,
    E: Send + 'static,
    R: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, E>> + Send + 'static,
    P: Fn(&Arc<K>, &E, &Ctx) -> Action + Send + 'static,
{
    /// The next outcome, or `None` once shut down and drained.
    async fn next(&mut self) -> Option<Outcome<E>> {
        loop {
            if !self.stopping {
                let now = Instant::now();
                self.start_due(now);
                if let Some(depth) = &self.depth {
                    depth.store(self.queue.waiting(now), Ordering::Relaxed);
                }
            } else if self.running.is_empty() {
                // Every handle has been awaited; wait for the tasks themselves to be gone too.
                self.tracker.close();
                self.tracker.wait().await;
                return None;
            }
            let next_due = if self.stopping {
                None
            } else {
                self.queue.next_due()
            };
            let read_triggers = !self.stopping && !self.ended;
            // Biased: outcomes first (they free slots), then shutdown (so it is not starved by
            // a busy watch), then new keys, then timers.
            tokio::select! {
                biased;
                finished = self.running.next(), if !self.running.is_empty() => {
                    if let Some(finished) = finished {
                        return Some(self.finish(finished));
                    }
                }
                () = self.shutdown.cancelled(), if !self.stopping => {
                    tracing::debug!(running = self.running.len(), "controller shutting down");
                    self.stopping = true;
                }
                trigger = self.triggers.next(), if read_triggers => match trigger {
                    Some(Ok(key)) => self.queue.schedule(key, Instant::now()),
                    Some(Err(error)) => return Some(Err(ReconcileError::Watch(error))),
                    None => self.ended = true,
                },
                () = sleep_until(next_due), if next_due.is_some() => {}
            }
        }
    }

    /// Starts every due key the queue lets run. A key whose object is no longer cached is
    /// dropped: there is nothing to reconcile, and its backoff is forgotten.
    fn start_due(&mut self, now: Instant) {
        while let Some(key) = self.queue.pop(now) {
            match self.store.get(&key) {
                Some(object) => self.start(key, object),
                None => {
                    tracing::debug!(%key, "object is gone; not reconciling it");
                    self.queue.done(&key);
                    self.failures.reset(&key);
                }
            }
        }
    }

    fn start(&mut self, key: ObjectKey, object: Arc<K>) {
        let reconcile = self.reconcile.clone();
        let ctx = self.ctx.clone();
        let abandon = self.abandon.clone();
        let input = object.clone();
        let task = self.tracker.spawn(
            async move { abandon.run_until_cancelled(reconcile(input, ctx)).await }
                .instrument(tracing::info_span!("reconcile", key = %key)),
        );
        self.running.push(Box::pin(async move {
            Finished {
                key,
                object,
                result: task.await,
            }
        }));
    }

    /// Frees the key's slot, requeues it as its outcome asks, and reports the outcome.
    fn finish(&mut self, finished: Finished<K, E>) -> Outcome<E> {
        let Finished {
            key,
            object,
            result,
        } = finished;
        self.queue.done(&key);
        let now = Instant::now();
        match result {
            Ok(Some(Ok(action))) => {
                self.failures.reset(&key);
                if let Some(after) = action.requeue_after() {
                    self.schedule_after(&key, now, after);
                }
                Ok((key, action))
            }
            Ok(Some(Err(error))) => {
                let action = (self.error_policy)(&object, &error, &self.ctx);
                self.retry(&key, now, action.requeue_after());
                Err(ReconcileError::Failed { key, error })
            }
            Ok(None) => {
                self.retry(&key, now, Some(Duration::ZERO));
                Err(ReconcileError::Cancelled { key })
            }
            Err(join) if join.is_panic() => {
                let message = panic_message(join);
                self.retry(&key, now, Some(Duration::ZERO));
                Err(ReconcileError::Panicked { key, message })
            }
            Err(_) => {
                self.retry(&key, now, Some(Duration::ZERO));
                Err(ReconcileError::Cancelled { key })
            }
        }
    }

    /// Counts a failure of `key` and, if a retry is wanted at all, requeues it after the
    /// longer of the requested delay and its backoff.
    fn retry(&mut self, key: &ObjectKey, now: Instant, requested: Option<Duration>) {
        let backoff = self.failures.failed(key);
        if let Some(requested) = requested {
            self.schedule_after(key, now, requested.max(backoff));
        }
    }

    fn schedule_after(&mut self, key: &ObjectKey, now: Instant, after: Duration) {
        // A delay too long to represent is a delay that never comes.
        if let Some(at) = now.checked_add(after) {
            self.queue.schedule(key.clone(), at);
        }
    }
}

/// Sleeps until `at`; never completes without one (its branch is disabled then anyway).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn panic_message(join: JoinError) -> String {
    let payload = join.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}
