//! The SDK's controller runtime against a real keel: a controller that keeps, for every
//! ConfigMap labelled `mirror=yes`, an owned Secret with the same data. It converges on
//! creates and updates, repairs a child deleted behind its back (via `owns`), and shuts down
//! when told. Its event recorder writes an Event's create and its count bumps in the order
//! they were recorded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use keel_client::events::correlator::COMBINED_PREFIX;
use keel_client::events::{reference, Recorder, NORMAL};
use keel_client::runtime::{Action, Controller};
use keel_client::{Api, Client, DeleteParams, Error, ListParams, WatchParams};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Ctx {
    secrets: Api<Secret>,
}

fn data_of(cm: &ConfigMap) -> BTreeMap<String, ByteString> {
    cm.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, ByteString(v.into_bytes())))
        .collect()
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let mirrored = cm
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.get("mirror").map(String::as_str) == Some("yes"));
    if !mirrored {
        return Ok(Action::await_change());
    }
    let want = data_of(&cm);
    match ctx.secrets.get(&name).await {
        Ok(mut secret) => {
            if secret.data.as_ref() != Some(&want) {
                secret.data = Some(want);
                ctx.secrets.replace(&name, &secret).await?;
            }
        }
        Err(e) if e.is_not_found() => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "ConfigMap".into(),
                        name: name.clone(),
                        uid: cm.metadata.uid.clone().unwrap_or_default(),
                        controller: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                data: Some(want),
                ..Default::default()
            };
            ctx.secrets.create(&secret).await?;
        }
        Err(e) => return Err(e),
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn cm(name: &str, mirror: bool, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "mirror".to_string(),
                if mirror { "yes" } else { "no" }.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), value.to_string())])),
        ..Default::default()
    }
}

async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        anyhow::ensure!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn secret_value(secrets: &Api<Secret>, name: &str) -> Option<String> {
    let s = secrets.get(name).await.ok()?;
    let v = s.data?.get("v")?.0.clone();
    String::from_utf8(v).ok()
}

/// One keel master, once its `default` namespace exists.
async fn cluster_with_default_namespace() -> anyhow::Result<(Cluster, Client)> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    until("default namespace", || async {
        namespaces.get("default").await.is_ok()
    })
    .await?;
    Ok((cluster, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_converges_repairs_and_stops() -> anyhow::Result<()> {
    let (_cluster, client) = cluster_with_default_namespace().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    cms.create(&cm("before", true, "1")).await?;
    let shutdown = CancellationToken::new();
    let controller = Controller::new(cms.clone(), WatchParams::default())
        .owns(secrets.clone(), WatchParams::default());
    let outcomes = controller.run(
        reconcile,
        |_cm: &Arc<ConfigMap>, _e: &Error, _ctx: &Ctx| Action::requeue(Duration::from_millis(200)),
        Arc::new(Ctx {
            secrets: secrets.clone(),
        }),
        shutdown.clone(),
    );
    let runner = tokio::spawn(async move { outcomes.count().await });

    // Objects that existed before it started, new ones, and updates all converge.
    cms.create(&cm("after", true, "2")).await?;
    cms.create(&cm("ignored", false, "3")).await?;
    until("before mirrored", || async {
        secret_value(&secrets, "before").await.as_deref() == Some("1")
    })
    .await?;
    until("after mirrored", || async {
        secret_value(&secrets, "after").await.as_deref() == Some("2")
    })
    .await?;
    let mut after = cms.get("after").await?;
    after.data = Some(BTreeMap::from([("v".to_string(), "2b".to_string())]));
    cms.replace("after", &after).await?;
    until("update mirrored", || async {
        secret_value(&secrets, "after").await.as_deref() == Some("2b")
    })
    .await?;

    // A child deleted behind the controller's back comes back (the owned Secret's deletion
    // triggers its owner).
    secrets.delete("before", &DeleteParams::default()).await?;
    until("child repaired", || async {
        secret_value(&secrets, "before").await.as_deref() == Some("1")
    })
    .await?;
    assert!(secrets
        .get("ignored")
        .await
        .is_err_and(|e| e.is_not_found()));

    shutdown.cancel();
    let reconciles = tokio::time::timeout(Duration::from_secs(10), runner).await??;
    assert!(reconciles >= 4, "{reconciles} reconciles");
    Ok(())
}

/// The Events about the ConfigMap `name` in `default`, as (message, count), sorted.
async fn events_about(events: &Api<Event>, name: &str) -> anyhow::Result<Vec<(String, i32)>> {
    let mut about: Vec<(String, i32)> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| (e.message.unwrap_or_default(), e.count.unwrap_or_default()))
        .collect();
    about.sort();
    Ok(about)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_count_bumps_and_combined_messages_land_in_the_order_recorded(
) -> anyhow::Result<()> {
    let (_cluster, client) = cluster_with_default_namespace().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let repeated = cms.create(&cm("repeated", false, "1")).await?;
    let varied = cms.create(&cm("varied", false, "1")).await?;
    let tasks = TaskTracker::new();
    let recorder = Recorder::new(client.clone(), "events-e2e".into(), tasks.clone());

    // Recorded back to back, so the writes are in flight together: one Event about
    // `repeated`, counted to 20; nine about `varied` with their own messages, then one that
    // combines the 10th to the 16th and shows the last of them.
    for _ in 0..20 {
        recorder.event(
            "e2e",
            reference(&repeated),
            NORMAL,
            "Same",
            "the same thing again".into(),
        );
    }
    for i in 1..=16 {
        recorder.event(
            "e2e",
            reference(&varied),
            NORMAL,
            "Step",
            format!("step {i:02}"),
        );
    }
    tasks.close();
    tokio::time::timeout(Duration::from_secs(30), tasks.wait()).await?;

    assert_eq!(
        events_about(&events, "repeated").await?,
        vec![("the same thing again".to_string(), 20)]
    );
    let mut expected: Vec<(String, i32)> = (1..=9).map(|i| (format!("step {i:02}"), 1)).collect();
    expected.insert(0, (format!("{COMBINED_PREFIX}step 16"), 7));
    assert_eq!(events_about(&events, "varied").await?, expected);
    Ok(())
}
