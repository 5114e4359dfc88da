//! The SDK on three masters while one is killed: writers create, update and delete thousands of
//! objects, and a watcher that resumes across the kill sees every acknowledged change exactly
//! once, in revision order, and ends up agreeing with the final list.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keel_client::watcher::{watcher, Event};
use keel_client::{Api, DeleteParams, Error, ListParams, WatchParams};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;

const WRITERS: usize = 4;
const NAMES_PER_WRITER: usize = 60;
/// Per name: create, three updates, delete, create again: six writes.
const ROUNDS: usize = 6;

fn cm(name: &str, data: &str, rv: Option<String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            resource_version: rv,
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), data.to_string())])),
        ..Default::default()
    }
}

fn rv(obj: &ConfigMap) -> i64 {
    obj.metadata
        .resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn data(obj: &ConfigMap) -> String {
    obj.data
        .as_ref()
        .and_then(|d| d.get("v").cloned())
        .unwrap_or_default()
}

/// One write, retried until its outcome is known. Returns the revision it was applied at
/// (None for deletes).
async fn write(api: &Api<ConfigMap>, name: &str, round: usize) -> anyhow::Result<Option<i64>> {
    let want = format!("{round}");
    loop {
        let result: Result<Option<i64>, Error> = match round {
            0 | 5 => match api.create(&cm(name, &want, None)).await {
                Ok(o) => Ok(Some(rv(&o))),
                // An earlier attempt was applied before its master died.
                Err(e) if e.code() == Some(409) => {
                    let o = api.get(name).await?;
                    anyhow::ensure!(data(&o) == want, "{name} holds {}", data(&o));
                    Ok(Some(rv(&o)))
                }
                Err(e) => Err(e),
            },
            4 => match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            },
            _ => {
                let current = api.get(name).await?;
                if data(&current) == want {
                    Ok(Some(rv(&current)))
                } else {
                    match api
                        .replace(
                            name,
                            &cm(name, &want, current.metadata.resource_version.clone()),
                        )
                        .await
                    {
                        Ok(o) => Ok(Some(rv(&o))),
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => Err(e),
                    }
                }
            }
        };
        match result {
            Ok(r) => return Ok(r),
            Err(Error::Transport(_)) => continue,
            Err(e) if matches!(e.code(), Some(500 | 503 | 504)) => continue,
            Err(e) => anyhow::bail!("{name} round {round}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_every_change_once_in_order_across_a_master_kill() -> anyhow::Result<()> {
    // Only this test writes ConfigMaps (the root CA publisher would add one per namespace).
    let mut cluster =
        Cluster::start_with(Flavor::Keel, 3, &["--controller-manager=false".into()]).await?;
    let client = cluster.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.get("default").await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "no default namespace");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let events: Arc<Mutex<Vec<Event<ConfigMap>>>> = Arc::default();
    let sink = events.clone();
    let watch_api = api.clone();
    let watch_task = tokio::spawn(async move {
        let mut stream = Box::pin(watcher(watch_api, WatchParams::default()));
        while let Some(item) = stream.next().await {
            if let Ok(ev) = item {
                sink.lock().map(|mut e| e.push(ev)).ok();
            }
        }
    });

    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let api = api.clone();
        let acked = acked.clone();
        let progress = progress.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..ROUNDS {
                for i in 0..NAMES_PER_WRITER {
                    let name = format!("w{w}-{i:03}");
                    if let Some(r) = write(&api, &name, round).await? {
                        acked.lock().map(|mut a| a.push((name, r))).ok();
                    }
                    progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    // A third of the way in, kill the master every call has gone to so far (the client starts
    // with the first): its API server, its store member and the watch stream on it.
    let total = WRITERS * NAMES_PER_WRITER * ROUNDS;
    while progress.load(std::sync::atomic::Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(0)?;
    for w in writers {
        w.await??;
    }

    let final_list = api.list(&ListParams::default()).await?;
    let final_rv: i64 = final_list.metadata.resource_version.parse()?;
    let want: BTreeMap<String, (i64, String)> = final_list
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                (rv(o), data(o)),
            )
        })
        .collect();
    assert_eq!(want.len(), WRITERS * NAMES_PER_WRITER);
    assert!(want.values().all(|(_, d)| d == "5"));

    // Let the watcher catch up to the final list.
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let snapshot = events.lock().map(|e| e.clone()).unwrap_or_default();
        let mut state: BTreeMap<String, (i64, String)> = BTreeMap::new();
        for ev in &snapshot {
            match ev {
                Event::Restarted(items) => {
                    state = items
                        .iter()
                        .map(|o| {
                            (
                                o.metadata.name.clone().unwrap_or_default(),
                                (rv(o), data(o)),
                            )
                        })
                        .collect();
                }
                Event::Applied(o) => {
                    state.insert(
                        o.metadata.name.clone().unwrap_or_default(),
                        (rv(o), data(o)),
                    );
                }
                Event::Deleted(o) => {
                    state.remove(&o.metadata.name.clone().unwrap_or_default());
                }
            }
        }
        if state == want {
            break snapshot;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "watcher state never matched the final list at {final_rv}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    watch_task.abort();

    let restarts = seen
        .iter()
        .filter(|e| matches!(e, Event::Restarted(_)))
        .count();
    assert_eq!(
        restarts, 1,
        "one initial list, no relist: nothing was compacted"
    );
    let mut last = 0;
    let mut delivered = HashSet::new();
    for ev in &seen {
        let (name, r) = match ev {
            Event::Applied(o) | Event::Deleted(o) => {
                (o.metadata.name.clone().unwrap_or_default(), rv(o))
            }
            Event::Restarted(_) => continue,
        };
        assert!(r > last, "events in revision order: {r} after {last}");
        last = r;
        assert!(delivered.insert((name, r)), "each change once");
    }
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let first_listed = match seen.first() {
        Some(Event::Restarted(items)) => items.iter().map(rv).max().unwrap_or(0),
        _ => 0,
    };
    let missing: Vec<_> = acked
        .iter()
        .filter(|(_, r)| *r > first_listed)
        .filter(|a| !delivered.contains(*a))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged changes never seen: {missing:?}"
    );
    assert!(
        seen.iter()
            .filter(|e| matches!(e, Event::Deleted(_)))
            .count()
            >= WRITERS * NAMES_PER_WRITER,
        "every delete seen"
    );
    Ok(())
}
