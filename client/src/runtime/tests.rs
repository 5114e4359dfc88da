//! Specifications of the controller as a whole, driven by scripted event streams on a paused
//! clock: what gets reconciled, how often, when, and how it stops.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keel_types::k8s_openapi;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::error::Error;
use crate::object_key::ObjectKey;
use crate::watcher::Event;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("scripted failure")]
struct Scripted;

/// What the n-th (from 0) reconcile of a key named `name` returns.
type Script = Box<dyn Fn(&str, usize) -> Result<Action, Scripted> + Send + Sync>;

/// The reconciler's context in these tests: it records every reconcile.
struct Recorder {
    t0: Instant,
    /// How long each reconcile takes.
    work: Duration,
    script: Script,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// In start order.
    calls: Vec<Call>,
    running_per_key: HashMap<String, usize>,
    running: usize,
    max_running: usize,
    max_running_per_key: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Call {
    name: String,
    /// The `v` the reconciled object carried.
    seen: String,
    started_ms: u64,
    finished: bool,
}

impl Recorder {
    fn new(
        work: Duration,
        script: impl Fn(&str, usize) -> Result<Action, Scripted> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            t0: Instant::now(),
            work,
            script: Box::new(script),
            record: Mutex::new(Record::default()),
        })
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().expect("record lock")
    }

    fn calls(&self) -> Vec<Call> {
        self.record().calls.clone()
    }

    fn calls_of(&self, name: &str) -> Vec<(String, u64)> {
        self.calls()
            .into_iter()
            .filter(|c| c.name == name)
            .map(|c| (c.seen, c.started_ms))
            .collect()
    }

    fn starts_ms(&self, name: &str) -> Vec<u64> {
        self.calls_of(name).into_iter().map(|(_, at)| at).collect()
    }
}

fn elapsed_ms(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn reconcile(object: Arc<ConfigMap>, rec: Arc<Recorder>) -> Result<Action, Scripted> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let (index, nth) = {
        let mut record = rec.record();
        let nth = record.calls.iter().filter(|c| c.name == name).count();
        record.calls.push(Call {
            name: name.clone(),
            seen: value(&object),
            started_ms: elapsed_ms(rec.t0),
            finished: false,
        });
        let per_key = record.running_per_key.entry(name.clone()).or_insert(0);
        *per_key += 1;
        let per_key = *per_key;
        record.max_running_per_key = record.max_running_per_key.max(per_key);
        record.running += 1;
        record.max_running = record.max_running.max(record.running);
        (record.calls.len() - 1, nth)
    };
    sleep(rec.work).await;
    {
        let mut record = rec.record();
        record.calls[index].finished = true;
        record.running -= 1;
        if let Some(per_key) = record.running_per_key.get_mut(&name) {
            *per_key -= 1;
        }
    }
    (rec.script)(&name, nth)
}

fn retry_at_backoff(_: &Arc<ConfigMap>, _: &Scripted, _: &Recorder) -> Action {
    Action::requeue(Duration::ZERO)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn cm(name: &str, v: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

fn owned_by(owner: &str, name: &str) -> ConfigMap {
    let mut child = cm(name, "child");
    child.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.into(),
        uid: format!("uid-{owner}"),
        ..Default::default()
    }]);
    child
}

fn value(object: &ConfigMap) -> String {
    object
        .data
        .as_ref()
        .and_then(|d| d.get("v"))
        .cloned()
        .unwrap_or_default()
}

type Item = Result<Event<ConfigMap>, Error>;

fn restarted(objects: Vec<ConfigMap>) -> Item {
    Ok(Event::Restarted(objects))
}

fn applied(object: ConfigMap) -> Item {
    Ok(Event::Applied(object))
}

fn deleted(object: ConfigMap) -> Item {
    Ok(Event::Deleted(object))
}

/// Events released at the given times (milliseconds after the stream is made).
fn timed(events: Vec<(u64, Item)>) -> impl Stream<Item = Item> + Send + 'static {
    let t0 = Instant::now();
    stream::iter(events).then(move |(at, event)| async move {
        sleep_until(t0 + ms(at)).await;
        event
    })
}

/// Runs `controller` until `stop_after`, then shuts it down and returns every outcome.
async fn run_for(
    controller: Controller<ConfigMap>,
    rec: &Arc<Recorder>,
    stop_after: Duration,
) -> Vec<Outcome<Scripted>> {
    run_with_policy(controller, rec, stop_after, retry_at_backoff).await
}

async fn run_with_policy(
    controller: Controller<ConfigMap>,
    rec: &Arc<Recorder>,
    stop_after: Duration,
    policy: fn(&Arc<ConfigMap>, &Scripted, &Recorder) -> Action,
) -> Vec<Outcome<Scripted>> {
    let shutdown = CancellationToken::new();
    let outcomes = controller
        .run(reconcile, policy, rec.clone(), shutdown.clone())
        .collect::<Vec<_>>();
    let stop = async {
        sleep(stop_after).await;
        shutdown.cancel();
    };
    let (outcomes, ()) = tokio::join!(outcomes, stop);
    outcomes
}

fn succeeded(outcomes: &[Outcome<Scripted>]) -> Vec<(String, Action)> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|(key, action)| (key.name.clone(), *action))
        .collect()
}

fn done(_: &str, _: usize) -> Result<Action, Scripted> {
    Ok(Action::await_change())
}

#[tokio::test(start_paused = true)]
async fn events_for_a_key_during_its_slow_reconcile_fold_into_one_more_reconcile() {
    let rec = Recorder::new(secs(5), done);
    let mut events = vec![(0, restarted(vec![cm("a", "0")]))];
    events.extend((1..=100).map(|i| (i * 10, applied(cm("a", &i.to_string())))));

    run_for(Controller::for_events(timed(events)), &rec, secs(60)).await;

    assert_eq!(
        rec.calls_of("a"),
        [("0".to_string(), 0), ("100".to_string(), 5_000)],
        "one reconcile, then one more that reads the newest object from the cache"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_is_never_reconciled_concurrently_with_itself() {
    let rec = Recorder::new(ms(700), |_, n| {
        Ok(if n % 2 == 0 {
            Action::requeue(ms(50))
        } else {
            Action::await_change()
        })
    });
    let names = ["a", "b", "c"];
    let events = (0..60u64)
        .map(|i| (i * 97, applied(cm(names[(i % 3) as usize], &i.to_string()))))
        .collect();

    run_for(
        Controller::for_events(timed(events)).with_config(Config {
            concurrency: 8,
            ..Config::default()
        }),
        &rec,
        secs(30),
    )
    .await;

    let record = rec.record();
    assert_eq!(record.max_running_per_key, 1);
    assert!(
        record.max_running > 1,
        "keys did run concurrently with each other"
    );
    assert!(
        record.calls.len() >= 10,
        "only {} reconciles",
        record.calls.len()
    );
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_configured_number_of_reconciles_run_at_once() {
    let rec = Recorder::new(secs(1), done);
    let objects = (0..10).map(|i| cm(&format!("k{i}"), "0")).collect();
    let events = vec![(0, restarted(objects))];

    let outcomes = run_for(
        Controller::for_events(timed(events)).with_config(Config {
            concurrency: 3,
            ..Config::default()
        }),
        &rec,
        secs(60),
    )
    .await;

    assert_eq!(rec.record().max_running, 3);
    assert_eq!(succeeded(&outcomes).len(), 10, "every key reconciled once");
    let mut starts: Vec<u64> = rec.calls().iter().map(|c| c.started_ms).collect();
    starts.sort();
    assert_eq!(
        starts,
        [0, 0, 0, 1_000, 1_000, 1_000, 2_000, 2_000, 2_000, 3_000],
        "each freed slot is taken at once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_requeue_reconciles_again_after_the_delay_from_when_the_reconcile_ended() {
    let rec = Recorder::new(secs(1), |_, n| {
        Ok(if n == 0 {
            Action::requeue(secs(30))
        } else {
            Action::await_change()
        })
    });
    let events = vec![(0, restarted(vec![cm("a", "0")]))];

    let outcomes = run_for(Controller::for_events(timed(events)), &rec, secs(300)).await;

    assert_eq!(rec.starts_ms("a"), [0, 31_000]);
    assert_eq!(
        succeeded(&outcomes),
        [
            ("a".to_string(), Action::requeue(secs(30))),
            ("a".to_string(), Action::await_change())
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_event_before_a_requeue_is_due_reconciles_at_once_and_only_once() {
    let rec = Recorder::new(Duration::ZERO, |_, n| {
        Ok(if n == 0 {
            Action::requeue(secs(30))
        } else {
            Action::await_change()
        })
    });
    let events = vec![
        (0, restarted(vec![cm("a", "0")])),
        (10_000, applied(cm("a", "1"))),
    ];

    run_for(Controller::for_events(timed(events)), &rec, secs(300)).await;

    assert_eq!(rec.starts_ms("a"), [0, 10_000]);
}

#[tokio::test(start_paused = true)]
async fn await_change_reconciles_again_only_on_the_next_event() {
    let rec = Recorder::new(Duration::ZERO, done);
    let events = vec![
        (0, restarted(vec![cm("a", "0")])),
        (100_000, applied(cm("a", "1"))),
    ];

    run_for(Controller::for_events(timed(events)), &rec, secs(300)).await;

    assert_eq!(
        rec.calls_of("a"),
        [("0".to_string(), 0), ("1".to_string(), 100_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn error_backoff_doubles_per_consecutive_failure_and_resets_on_success() {
    // Fails three times, succeeds asking for a requeue in 10s, then fails twice more.
    let rec = Recorder::new(Duration::ZERO, |_, n| match n {
        0..=2 | 4 | 5 => Err(Scripted),
        3 => Ok(Action::requeue(secs(10))),
        _ => Ok(Action::await_change()),
    });
    let events = vec![(0, restarted(vec![cm("a", "0")]))];
    let config = Config {
        backoff: Backoff {
            initial: secs(1),
            max: secs(60),
        },
        ..Config::default()
    };

    let outcomes = run_for(
        Controller::for_events(timed(events)).with_config(config),
        &rec,
        secs(300),
    )
    .await;

    let starts = rec.starts_ms("a");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(gaps, [1_000, 2_000, 4_000, 10_000, 1_000, 2_000]);
    let failures = outcomes
        .iter()
        .filter(|o| matches!(o, Err(ReconcileError::Failed { key, error: Scripted }) if key.name == "a"))
        .count();
    assert_eq!(failures, 5);
}

#[tokio::test(start_paused = true)]
async fn backoff_is_capped() {
    let rec = Recorder::new(Duration::ZERO, |_, _| Err(Scripted));
    let events = vec![(0, restarted(vec![cm("a", "0")]))];
    let config = Config {
        backoff: Backoff {
            initial: secs(1),
            max: secs(5),
        },
        ..Config::default()
    };

    run_for(
        Controller::for_events(timed(events)).with_config(config),
        &rec,
        ms(30_500),
    )
    .await;

    let starts = rec.starts_ms("a");
    assert_eq!(
        starts,
        [0, 1_000, 3_000, 7_000, 12_000, 17_000, 22_000, 27_000]
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_policy_delay_longer_than_the_backoff_wins() {
    fn in_five_seconds(_: &Arc<ConfigMap>, _: &Scripted, _: &Recorder) -> Action {
        Action::requeue(secs(5))
    }
    let rec = Recorder::new(Duration::ZERO, |_, n| {
        if n < 4 {
            Err(Scripted)
        } else {
            Ok(Action::await_change())
        }
    });
    let events = vec![(0, restarted(vec![cm("a", "0")]))];
    let config = Config {
        backoff: Backoff {
            initial: secs(1),
            max: secs(60),
        },
        ..Config::default()
    };

    run_with_policy(
        Controller::for_events(timed(events)).with_config(config),
        &rec,
        secs(300),
        in_five_seconds,
    )
    .await;

    // Backoff 1s, 2s, 4s are shorter than the policy's 5s; the fourth failure's 8s is longer.
    assert_eq!(rec.starts_ms("a"), [0, 5_000, 10_000, 15_000, 23_000]);
}

#[tokio::test(start_paused = true)]
async fn an_error_policy_that_awaits_change_stops_retries() {
    fn give_up(_: &Arc<ConfigMap>, _: &Scripted, _: &Recorder) -> Action {
        Action::await_change()
    }
    let rec = Recorder::new(Duration::ZERO, |_, _| Err(Scripted));
    let events = vec![
        (0, restarted(vec![cm("a", "0")])),
        (50_000, applied(cm("a", "1"))),
    ];

    run_with_policy(
        Controller::for_events(timed(events)),
        &rec,
        secs(300),
        give_up,
    )
    .await;

    assert_eq!(rec.starts_ms("a"), [0, 50_000]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_reconcile_is_reported_and_retried_after_backoff() {
    let rec = Recorder::new(Duration::ZERO, |_, n| {
        if n == 0 {
            panic!("scripted panic");
        }
        Ok(Action::await_change())
    });
    let events = vec![(0, restarted(vec![cm("a", "0")]))];
    let config = Config {
        backoff: Backoff {
            initial: secs(2),
            max: secs(60),
        },
        ..Config::default()
    };

    let outcomes = run_for(
        Controller::for_events(timed(events)).with_config(config),
        &rec,
        secs(60),
    )
    .await;

    assert!(matches!(
        &outcomes[..],
        [Err(ReconcileError::Panicked { key, message }), Ok(_)]
            if key.name == "a" && message == "scripted panic"
    ));
    assert_eq!(rec.starts_ms("a"), [0, 2_000]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_takes_no_new_keys_and_waits_for_running_reconciles() {
    let rec = Recorder::new(secs(10), done);
    let events = vec![
        (0, restarted(vec![cm("a", "0"), cm("b", "0")])),
        (2_000, applied(cm("c", "0"))),
    ];
    let t0 = Instant::now();

    let outcomes = run_for(Controller::for_events(timed(events)), &rec, secs(1)).await;

    assert_eq!(
        elapsed_ms(t0),
        10_000,
        "returned when the running reconciles ended"
    );
    assert_eq!(
        succeeded(&outcomes),
        [
            ("a".to_string(), Action::await_change()),
            ("b".to_string(), Action::await_change())
        ]
    );
    let calls = rec.calls();
    assert!(calls.iter().all(|c| c.finished));
    assert!(
        calls.iter().all(|c| c.name != "c"),
        "no key taken after shutdown"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_of_an_idle_controller_returns_at_once() {
    let rec = Recorder::new(Duration::ZERO, done);
    let t0 = Instant::now();

    let outcomes = run_for(Controller::for_events(stream::pending()), &rec, secs(3)).await;

    assert!(outcomes.is_empty());
    assert_eq!(elapsed_ms(t0), 3_000);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_stream_cancels_running_reconciles() {
    let rec = Recorder::new(secs(10), done);
    let events = vec![(0, restarted(vec![cm("a", "0")]))];
    let outcomes = Controller::for_events(timed(events)).run(
        reconcile,
        retry_at_backoff,
        rec.clone(),
        CancellationToken::new(),
    );
    let mut outcomes = Box::pin(outcomes);

    let polled = tokio::time::timeout(secs(1), outcomes.next()).await;
    drop(outcomes);
    sleep(secs(60)).await;

    assert!(polled.is_err(), "nothing finished within a second");
    let calls = rec.calls();
    assert_eq!(calls.len(), 1);
    assert!(
        !calls[0].finished,
        "the reconcile was stopped, not run to its end"
    );
    assert_eq!(rec.record().running, 1, "its future was dropped mid-way");
}

#[tokio::test(start_paused = true)]
async fn an_object_deleted_before_its_turn_is_not_reconciled() {
    let rec = Recorder::new(secs(5), done);
    let events = vec![
        (0, restarted(vec![cm("a", "0"), cm("b", "0")])),
        (1_000, deleted(cm("b", "0"))),
    ];

    let outcomes = run_for(
        Controller::for_events(timed(events)).with_config(Config {
            concurrency: 1,
            ..Config::default()
        }),
        &rec,
        secs(60),
    )
    .await;

    assert_eq!(rec.starts_ms("a"), [0]);
    assert!(rec.starts_ms("b").is_empty());
    assert_eq!(outcomes.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn changes_to_owned_objects_reconcile_their_owner() {
    let rec = Recorder::new(Duration::ZERO, done);
    let parents = vec![(0, restarted(vec![cm("web", "0")]))];
    let children = vec![
        (10_000, applied(owned_by("web", "web-child"))),
        (20_000, deleted(owned_by("web", "web-child"))),
        (30_000, applied(owned_by("ghost", "orphan"))),
        (40_000, applied(cm("unowned", "0"))),
    ];

    run_for(
        Controller::for_events(timed(parents)).owns_events(timed(children)),
        &rec,
        secs(60),
    )
    .await;

    assert_eq!(rec.starts_ms("web"), [0, 10_000, 20_000]);
    assert_eq!(
        rec.calls().len(),
        3,
        "no owner outside the cache is reconciled"
    );
}

#[tokio::test(start_paused = true)]
async fn watched_objects_reconcile_whatever_the_mapper_names() {
    let rec = Recorder::new(Duration::ZERO, done);
    let primaries = vec![(0, restarted(vec![cm("web", "0"), cm("api", "0")]))];
    let related = vec![(5_000, applied(cm("api-settings", "0")))];
    let by_prefix = |c: &ConfigMap| {
        c.metadata
            .name
            .as_deref()
            .and_then(|n| n.strip_suffix("-settings"))
            .map(|owner| ObjectKey::namespaced("default", owner))
    };

    run_for(
        Controller::for_events(timed(primaries)).watches_events(timed(related), by_prefix),
        &rec,
        secs(60),
    )
    .await;

    assert_eq!(rec.starts_ms("api"), [0, 5_000]);
    assert_eq!(rec.starts_ms("web"), [0]);
}

#[tokio::test(start_paused = true)]
async fn watch_errors_are_reported_and_the_controller_carries_on() {
    let rec = Recorder::new(Duration::ZERO, done);
    let events = vec![
        (0, restarted(vec![cm("a", "0")])),
        (1_000, Err(Error::Transport("connection reset".into()))),
        (2_000, applied(cm("a", "1"))),
    ];

    let outcomes = run_for(Controller::for_events(timed(events)), &rec, secs(60)).await;

    assert_eq!(outcomes.len(), 3);
    assert!(matches!(
        &outcomes[1],
        Err(ReconcileError::Watch(Error::Transport(m))) if m == "connection reset"
    ));
    assert_eq!(rec.starts_ms("a"), [0, 2_000]);
}

#[tokio::test(start_paused = true)]
async fn the_controllers_store_holds_what_the_watch_reported() {
    let rec = Recorder::new(Duration::ZERO, done);
    let events = vec![
        (0, restarted(vec![cm("a", "0"), cm("b", "0")])),
        (1_000, deleted(cm("a", "0"))),
        (2_000, applied(cm("b", "1"))),
    ];
    let controller = Controller::for_events(timed(events));
    let store = controller.store();

    run_for(controller, &rec, secs(10)).await;

    assert!(store.is_ready());
    assert!(store.get(&ObjectKey::namespaced("default", "a")).is_none());
    assert_eq!(
        store
            .get(&ObjectKey::namespaced("default", "b"))
            .map(|b| value(&b)),
        Some("1".to_string())
    );
}
