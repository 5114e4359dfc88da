//! Fairness under overload, in the spirit of Kubernetes' API Priority and Fairness: every
//! request that is not exempt takes seats from the queue of its class before it is served, and
//! within a class the users waiting are served in turn. Classes are separate shares, so a flood
//! of one kind (watches opening, large lists, writes) queues behind itself and never starves
//! another kind; a request that cannot be queued, or waits too long, is answered 429 with
//! `Retry-After`, as kube-apiserver answers.
//!
//! Large reads (lists and watch set-ups whose initial list is large) are the work that takes a
//! core for a long stretch, so their class has half as many seats as the machine has cores,
//! and a watch gives its seat back once its initial events are sent.

pub mod background;
pub mod queue;

use std::time::Duration;

pub use queue::{FairQueue, QueueLimits, QueueStats, Refused, Seat};

/// The classes a request falls into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Never queued: health and version probes, and long-running requests other than watches
    /// (exec, attach, port-forward, followed logs), as APF exempts them.
    Exempt,
    /// Creates, updates, patches and deletes.
    Mutating,
    /// Gets, small lists, discovery and everything else that only reads.
    ReadOnly,
    /// Watches, until their initial events are sent.
    Watch,
    /// Lists and watch set-ups whose estimated response is large.
    LargeRead,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Exempt => "exempt",
            Class::Mutating => "mutating",
            Class::ReadOnly => "read-only",
            Class::Watch => "watch",
            Class::LargeRead => "large-read",
        }
    }
}

/// A read whose response is estimated at this many bytes or more is a large read.
pub const LARGE_READ_BYTES: usize = 1 << 20;
/// Requests of one user waiting in one class at once (APF's default queue length).
pub const PER_FLOW_QUEUE: usize = 50;
/// How long a request waits for its seats (APF's: a quarter of the one-minute request timeout).
pub const QUEUE_WAIT: Duration = Duration::from_secs(15);
/// What a refused client is told to wait, in seconds (APF's).
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// kube-apiserver's answer to a request it would not queue, for either transport: 429 with
/// `details.retryAfterSeconds` (the REST response adds the `Retry-After` header).
pub fn refusal() -> crate::error::ApiError {
    crate::error::ApiError::TooManyRequests {
        message: "Too many requests, please try again later.".into(),
        causes: Vec::new(),
        retry_after_seconds: RETRY_AFTER_SECONDS,
    }
}

/// A metric family: name, type, help text, and its value in a queue's numbers.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QueueStats) -> u64,
);

/// The seats of each class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// kube-apiserver's `--max-requests-inflight`: the read-only class.
    pub read_only: usize,
    /// kube-apiserver's `--max-mutating-requests-inflight`: the mutating class.
    pub mutating: usize,
    /// Watches setting up at once.
    pub watch: usize,
    /// Large reads at once.
    pub large_read: usize,
    /// Requests of one user waiting in one class at once.
    pub queue_length: usize,
    /// How long a request waits for its seat before it is refused.
    pub queue_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            read_only: 400,
            mutating: 200,
            watch: 200,
            // Half the cores: the other half stays free for everything else, however many
            // large reads wait.
            large_read: (cores / 2).max(1),
            queue_length: PER_FLOW_QUEUE,
            queue_wait: QUEUE_WAIT,
        }
    }
}

/// The queues of every class but the exempt one, and the threads large reads run on.
pub struct Fairness {
    mutating: FairQueue,
    read_only: FairQueue,
    watch: FairQueue,
    large_read: FairQueue,
    background: background::Background,
}

impl Fairness {
    pub fn new(limits: Limits) -> std::io::Result<Self> {
        let queue = |name, seats| {
            FairQueue::new(
                name,
                QueueLimits {
                    seats,
                    per_flow: limits.queue_length,
                    wait: limits.queue_wait,
                },
            )
        };
        Ok(Self {
            mutating: queue(Class::Mutating.as_str(), limits.mutating),
            read_only: queue(Class::ReadOnly.as_str(), limits.read_only),
            watch: queue(Class::Watch.as_str(), limits.watch),
            large_read: queue(Class::LargeRead.as_str(), limits.large_read),
            background: background::Background::new(limits.large_read)?,
        })
    }

    /// Runs a large read's `work` on threads of their own at a lower priority (see
    /// [`background`]); None if it panicked.
    pub async fn run_large<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        self.background.run(work).await
    }

    /// The queue of `class`; None for the exempt class.
    pub fn queue(&self, class: Class) -> Option<&FairQueue> {
        match class {
            Class::Exempt => None,
            Class::Mutating => Some(&self.mutating),
            Class::ReadOnly => Some(&self.read_only),
            Class::Watch => Some(&self.watch),
            Class::LargeRead => Some(&self.large_read),
        }
    }

    /// Waits for a seat of `class` for `user`; `Ok(None)` for the exempt class.
    pub async fn admit(&self, class: Class, user: &str) -> Result<Option<Seat>, Refused> {
        match self.queue(class) {
            None => Ok(None),
            Some(q) => q.acquire(user, 1).await.map(Some),
        }
    }

    /// Every queue's numbers in Prometheus' text format, under the names API Priority and
    /// Fairness gives them (a class is a `priority_level`).
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let stats = self.stats();
        let families: [Family; 4] = [
            (
                "apiserver_flowcontrol_current_executing_seats",
                "gauge",
                "Seats in use",
                |s| s.in_use as u64,
            ),
            (
                "apiserver_flowcontrol_current_inqueue_requests",
                "gauge",
                "Requests waiting for seats",
                |s| s.waiting as u64,
            ),
            (
                "apiserver_flowcontrol_dispatched_requests_total",
                "counter",
                "Requests given seats",
                |s| s.admitted,
            ),
            (
                "apiserver_flowcontrol_rejected_requests_total",
                "counter",
                "Requests refused with 429",
                |s| s.refused,
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (class, s) in &stats {
                let _ = writeln!(out, "{name}{{priority_level=\"{class}\"}} {}", value(s));
            }
        }
    }

    /// Every queue's numbers, by class name.
    pub fn stats(&self) -> Vec<(&'static str, QueueStats)> {
        [
            &self.mutating,
            &self.read_only,
            &self.watch,
            &self.large_read,
        ]
        .into_iter()
        .map(|q| (q.name(), q.stats()))
        .collect()
    }
}

/// `stream` holding `seat` until it first has nothing ready (a watch that has sent its initial
/// events and waits for changes) or ends.
pub fn hold_until_idle<St: futures::Stream + Unpin>(
    stream: St,
    seat: Option<Seat>,
) -> impl futures::Stream<Item = St::Item> {
    let mut stream = stream;
    let mut seat = seat;
    futures::stream::poll_fn(move |cx| {
        let polled = std::pin::Pin::new(&mut stream).poll_next(cx);
        if matches!(
            polled,
            std::task::Poll::Pending | std::task::Poll::Ready(None)
        ) {
            drop(seat.take());
        }
        polled
    })
}

/// What is known of a request when it is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request that needs no seat (see [`Class::Exempt`]).
    Exempt,
    Write,
    Read,
    /// A list, or a watch that first lists, with its response's estimated size.
    List {
        watch: bool,
        estimate: usize,
    },
    /// A watch from a resourceVersion: it sends only changes.
    Watch,
}

/// The class of a request of `kind`.
pub fn classify(kind: Kind) -> Class {
    match kind {
        Kind::Exempt => Class::Exempt,
        Kind::Write => Class::Mutating,
        Kind::Read => Class::ReadOnly,
        Kind::List { estimate, .. } if estimate >= LARGE_READ_BYTES => Class::LargeRead,
        Kind::List { watch: true, .. } | Kind::Watch => Class::Watch,
        Kind::List { watch: false, .. } => Class::ReadOnly,
    }
}

/// The bytes a list of `total` bytes in `count` objects returns when `limit` objects at most
/// are asked for (0: all).
pub fn estimate(total: usize, count: usize, limit: i64) -> usize {
    match usize::try_from(limit) {
        Ok(limit) if limit > 0 && limit < count => total / count.max(1) * limit,
        _ => total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fall_into_their_class_by_kind_and_size() {
        assert_eq!(classify(Kind::Exempt), Class::Exempt);
        assert_eq!(classify(Kind::Write), Class::Mutating);
        assert_eq!(classify(Kind::Read), Class::ReadOnly);
        assert_eq!(classify(Kind::Watch), Class::Watch);
        let small = LARGE_READ_BYTES - 1;
        assert_eq!(
            classify(Kind::List {
                watch: false,
                estimate: small
            }),
            Class::ReadOnly
        );
        assert_eq!(
            classify(Kind::List {
                watch: true,
                estimate: small
            }),
            Class::Watch
        );
        for watch in [false, true] {
            assert_eq!(
                classify(Kind::List {
                    watch,
                    estimate: LARGE_READ_BYTES
                }),
                Class::LargeRead
            );
        }
    }

    #[test]
    fn a_limited_list_is_estimated_at_its_share_of_the_collection() {
        assert_eq!(estimate(3_000_000, 300, 0), 3_000_000);
        assert_eq!(estimate(3_000_000, 300, 30), 300_000);
        assert_eq!(estimate(3_000_000, 300, 500), 3_000_000);
        assert_eq!(estimate(3_000_000, 300, -1), 3_000_000);
        assert_eq!(estimate(0, 0, 10), 0);
    }

    #[tokio::test]
    async fn a_stream_gives_its_seat_back_once_it_has_nothing_ready() {
        use futures::StreamExt;
        let f = Fairness::new(Limits {
            watch: 1,
            ..Limits::default()
        })
        .expect("runtime");
        let seat = f.admit(Class::Watch, "alice").await.expect("free");
        let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
        for i in 0..3 {
            tx.unbounded_send(i).expect("open");
        }
        let mut stream = Box::pin(hold_until_idle(rx, seat));
        let in_use = |f: &Fairness| f.queue(Class::Watch).map(|q| q.stats().in_use);
        assert_eq!(stream.next().await, Some(0));
        assert_eq!(in_use(&f), Some(1), "still sending what was ready");
        assert_eq!(stream.next().await, Some(1));
        assert_eq!(stream.next().await, Some(2));
        let idle = futures::poll!(stream.next());
        assert!(idle.is_pending());
        assert_eq!(in_use(&f), Some(0), "waiting for changes holds no seat");
        tx.unbounded_send(3).expect("open");
        assert_eq!(stream.next().await, Some(3));
    }

    #[tokio::test]
    async fn the_queues_numbers_render_as_apf_metrics() {
        let f = Fairness::new(Limits::default()).expect("runtime");
        let _seat = f.admit(Class::Mutating, "alice").await.expect("free");
        let mut out = String::new();
        f.render(&mut out);
        assert!(out.contains(
            "apiserver_flowcontrol_current_executing_seats{priority_level=\"mutating\"} 1\n"
        ));
        assert!(out.contains(
            "apiserver_flowcontrol_dispatched_requests_total{priority_level=\"mutating\"} 1\n"
        ));
        assert!(out.contains(
            "apiserver_flowcontrol_rejected_requests_total{priority_level=\"large-read\"} 0\n"
        ));
    }

    #[tokio::test]
    async fn exempt_requests_take_no_seat() {
        let f = Fairness::new(Limits::default()).expect("runtime");
        assert!(f
            .admit(Class::Exempt, "alice")
            .await
            .expect("exempt")
            .is_none());
        let seat = f.admit(Class::ReadOnly, "alice").await.expect("free");
        assert!(seat.is_some());
        let stats = f.stats();
        let read_only = stats.iter().find(|(n, _)| *n == "read-only").map(|s| s.1);
        assert_eq!(read_only.map(|s| s.in_use), Some(1));
    }
}
