//! Workloads: client processes pinned one per member (as Jepsen does, so a stale member is
//! noticed) issuing operations and recording each invocation and completion.

pub mod bank;
pub mod lock;
pub mod register;
pub mod set;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use tonic::Status;

use crate::client::{definitely_failed, describe, Client};
use crate::history::{Event, Kind, NEMESIS};

/// Which workload to run.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Register,
    Set,
    Bank,
    LeaseLock,
    Watch,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Bank => "bank",
            Workload::LeaseLock => "lease-lock",
            Workload::Watch => "watch",
        })
    }
}

/// The shared history being recorded. Times are nanoseconds since `start`.
pub struct Recorder {
    pub start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        })
    }

    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        process: i64,
        kind: Kind,
        f: &str,
        key: Option<&str>,
        value: Value,
        node: Option<usize>,
        error: Option<String>,
    ) -> u64 {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let index = events.len() as u64;
        events.push(Event {
            index,
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time: self.now(),
            node,
            error,
        });
        index
    }

    /// Records a nemesis action (invoke at its start, info when it took effect).
    pub fn nemesis(&self, kind: Kind, f: &str, value: Value) {
        self.push(NEMESIS, kind, f, None, value, None, None);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How an operation ended, as the client saw it.
pub enum Outcome {
    Ok(Value),
    /// Certainly did not happen (a failed compare, a refused connection).
    Fail(String),
    /// May or may not have happened.
    Info(String),
}

impl Outcome {
    /// A failed request: definite only when it never reached a server that could apply it.
    pub fn from_status(status: &Status) -> Outcome {
        if definitely_failed(status) {
            Outcome::Fail(describe(status))
        } else {
            Outcome::Info(describe(status))
        }
    }
}

/// One client process: pinned to a member, one operation at a time. After an operation of
/// unknown outcome it continues under a fresh process id, as Jepsen's do.
pub struct Process {
    pub id: i64,
    pub node: usize,
    pub client: Client,
    stride: i64,
    rec: Arc<Recorder>,
}

impl Process {
    pub fn new(
        worker: usize,
        workers: usize,
        node: usize,
        client: Client,
        rec: Arc<Recorder>,
    ) -> Process {
        Process {
            id: worker as i64,
            node,
            client,
            stride: workers as i64,
            rec,
        }
    }

    /// Records the invocation, runs the operation, records its completion; returns the outcome.
    pub async fn op<F>(&mut self, f: &str, key: Option<&str>, value: Value, run: F) -> Outcome
    where
        F: std::future::Future<Output = Outcome>,
    {
        self.rec.push(
            self.id,
            Kind::Invoke,
            f,
            key,
            value.clone(),
            Some(self.node),
            None,
        );
        let outcome = run.await;
        let (kind, v, err) = match &outcome {
            Outcome::Ok(v) => (Kind::Ok, v.clone(), None),
            Outcome::Fail(e) => (Kind::Fail, value, Some(e.clone())),
            Outcome::Info(e) => (Kind::Info, value, Some(e.clone())),
        };
        self.rec
            .push(self.id, kind, f, key, v, Some(self.node), err);
        if matches!(outcome, Outcome::Info(_)) {
            self.id += self.stride;
        }
        // A member that is down refuses at once; do not spin on it.
        if let Outcome::Fail(e) | Outcome::Info(e) = &outcome {
            if e.contains("connect") {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        outcome
    }
}

/// Everything a workload needs.
#[derive(Clone)]
pub struct Ctx {
    pub rec: Arc<Recorder>,
    /// One client per member.
    pub clients: Vec<Client>,
    /// Client processes in all.
    pub concurrency: usize,
    /// When clients stop issuing operations.
    pub deadline: Instant,
    /// Keys of this run start with this prefix.
    pub prefix: String,
    /// Pause between a process's operations.
    pub think: Duration,
    /// Unique values across the run.
    pub counter: Arc<AtomicU64>,
}

impl Ctx {
    pub fn next_value(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The processes, pinned round-robin to members.
    pub fn processes(&self) -> Vec<Process> {
        (0..self.concurrency)
            .map(|w| {
                let node = w % self.clients.len();
                Process::new(
                    w,
                    self.concurrency,
                    node,
                    self.clients[node].clone(),
                    self.rec.clone(),
                )
            })
            .collect()
    }

    pub async fn think(&self) {
        let ms = self.think.as_millis() as u64;
        if ms > 0 {
            let jitter = rand::rng().random_range(0..=ms);
            tokio::time::sleep(Duration::from_millis(ms / 2 + jitter)).await;
        }
    }

    pub fn running(&self) -> bool {
        Instant::now() < self.deadline
    }
}

/// What a workload leaves for its checker besides the history (the watch test's record).
pub type Extra = Option<Value>;

/// Runs workload `w` until the context's deadline, awaits `heal` (faults stopped, cluster
/// healed), then takes the workload's final reads.
pub async fn run(
    w: Workload,
    ctx: &Ctx,
    heal: impl std::future::Future<Output = ()>,
) -> Result<Extra, crate::Error> {
    match w {
        Workload::Register => register::run(ctx, heal).await,
        Workload::Set => set::run(ctx, heal).await,
        Workload::Bank => bank::run(ctx, heal).await,
        Workload::LeaseLock => lock::run(ctx, heal).await,
        Workload::Watch => watch::run(ctx, heal).await,
    }
}

/// Checks a history of workload `w`.
pub fn check(w: Workload, events: &[Event], extra: &Extra) -> crate::check::Verdict {
    use crate::check;
    match w {
        Workload::Register => check::register::check(events),
        Workload::Set => check::set::check(events),
        Workload::Bank => check::bank::check(events),
        Workload::LeaseLock => check::lock::check(events),
        Workload::Watch => match extra
            .clone()
            .map(serde_json::from_value::<check::watch::WatchRecord>)
        {
            Some(Ok(record)) => check::watch::check(events, record),
            _ => {
                let mut v = check::Verdict::new("watch");
                v.undecided("the watch record is missing".into());
                v
            }
        },
    }
}
