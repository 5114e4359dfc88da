//! The garbage collector end to end: ReplicaSets deleted with each cascade policy through the
//! real kubectl (their pods go with them, before them, or stay behind as orphans), and
//! ConfigMaps owned by other objects, deleted when their owners go, never while their owners
//! exist, and kept with the dangling reference dropped while another owner remains.

use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::{Metadata, Resource};
use keel_client::{Api, DeleteParams, ListParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn replica_set(name: &str, replicas: i32) -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": "busybox"}]
                }
            }
        }
    }))?)
}

fn uid_of<K: Metadata<Ty = ObjectMeta>>(object: &K) -> String {
    object.metadata().uid.clone().unwrap_or_default()
}

/// Every pod (terminating ones too) naming `owner` as an owner.
async fn pods_of(pods: &Api<Pod>, owner: &str) -> Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|r| r.uid == owner)
        })
        .collect())
}

/// Creates ReplicaSet `name` and waits until its three pods run; returns it.
async fn three_running(sets: &Api<ReplicaSet>, pods: &Api<Pod>, name: &str) -> Result<ReplicaSet> {
    let rs = sets.create(&replica_set(name, 3)?).await?;
    let uid = uid_of(&rs);
    until(&format!("{name} runs three pods"), WAIT, || async {
        pods_of(pods, &uid).await.is_ok_and(|mine| {
            mine.len() == 3
                && mine
                    .iter()
                    .all(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        })
    })
    .await?;
    Ok(rs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_deleted_with_each_cascade_policy_takes_its_pods_or_leaves_them() -> Result<()>
{
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "3"])?;
    let k = Kubectl::for_cluster(&cluster).await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Background: the ReplicaSet goes at once, its pods after it.
    let rs = three_running(&sets, &pods, "web").await?;
    k.ok(&["delete", "rs", "web", "--cascade=background"]);
    assert!(sets.get("web").await.is_err_and(|e| e.is_not_found()));
    until(
        "the background-deleted ReplicaSet's pods are gone",
        WAIT,
        || async {
            pods_of(&pods, &uid_of(&rs))
                .await
                .is_ok_and(|p| p.is_empty())
        },
    )
    .await?;

    // Foreground: the ReplicaSet is marked and stays until its pods are gone, then goes.
    let rs = three_running(&sets, &pods, "web").await?;
    let uid = uid_of(&rs);
    k.ok(&[
        "delete",
        "rs",
        "web",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let marked = k.json(&["get", "rs", "web"]);
    assert!(
        marked["metadata"]["deletionTimestamp"].is_string(),
        "{marked}"
    );
    assert!(
        marked["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion")),
        "{marked}"
    );
    let mut finished = false;
    for _ in 0..1200 {
        // Read the owner first: once it is gone, none of its pods may remain.
        let owner = sets.get("web").await;
        let remaining = pods_of(&pods, &uid).await?;
        match owner {
            Err(e) if e.is_not_found() => {
                assert!(
                    remaining.is_empty(),
                    "the ReplicaSet went before its pods: {:?}",
                    remaining
                        .iter()
                        .map(|p| &p.metadata.name)
                        .collect::<Vec<_>>()
                );
                finished = true;
                break;
            }
            Err(e) => return Err(e.into()),
            Ok(owner) => {
                assert_eq!(uid_of(&owner), uid);
                assert!(owner.metadata.deletion_timestamp.is_some());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(finished, "the foreground deletion never finished");

    // Orphan: the ReplicaSet goes, its pods stay, no longer owned.
    let rs = three_running(&sets, &pods, "web").await?;
    let names: Vec<String> = pods_of(&pods, &uid_of(&rs))
        .await?
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    k.ok(&["delete", "rs", "web", "--cascade=orphan"]);
    until("the orphaning deletion finishes", WAIT, || async {
        sets.get("web").await.is_err_and(|e| e.is_not_found())
    })
    .await?;
    for name in &names {
        let pod = pods.get(name).await?;
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "{name} is being deleted"
        );
        assert!(
            pod.metadata
                .owner_references
                .iter()
                .flatten()
                .next()
                .is_none(),
            "{name} still names an owner: {:?}",
            pod.metadata.owner_references
        );
    }
    Ok(())
}

fn config_map(name: &str, owners: &[OwnerReference]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            owner_references: Some(owners.to_vec()).filter(|o| !o.is_empty()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn reference_to<K: Resource + Metadata<Ty = ObjectMeta>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::API_VERSION.into(),
        kind: K::KIND.into(),
        name: owner.metadata().name.clone().unwrap_or_default(),
        uid: uid_of(owner),
        ..Default::default()
    }
}

async fn gone(maps: &Api<ConfigMap>, name: &str) -> bool {
    maps.get(name).await.is_err_and(|e| e.is_not_found())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_go_with_their_owners_and_never_while_an_owner_exists() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 1).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    // Owned by uid: deleted when the owner is.
    let owner = maps.create(&config_map("owner", &[])).await?;
    maps.create(&config_map("dependent", &[reference_to(&owner)]))
        .await?;
    maps.delete("owner", &DeleteParams::default()).await?;
    until("the dependent goes with its owner", WAIT, || {
        gone(&maps, "dependent")
    })
    .await?;

    // References to owners that never existed, or to an earlier object of a name that exists
    // now under another uid, dangle: such objects are deleted.
    let ghost = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "ghost".into(),
        uid: "3f8d0a5e-0000-4000-8000-00000000dead".into(),
        ..Default::default()
    };
    maps.create(&config_map("haunted", std::slice::from_ref(&ghost)))
        .await?;
    let present = maps.create(&config_map("present", &[])).await?;
    let earlier = OwnerReference {
        uid: "3f8d0a5e-0000-4000-8000-00000000beef".into(),
        ..reference_to(&present)
    };
    maps.create(&config_map("stale", &[earlier])).await?;
    until("objects with dangling owners are deleted", WAIT, || async {
        gone(&maps, "haunted").await && gone(&maps, "stale").await
    })
    .await?;

    // Owners created just before their dependents, of another kind (another watch) as well
    // as the same: the collector may see a dependent first, and must not take its owner for
    // gone.
    let mut fresh = Vec::new();
    for i in 0..10 {
        let secret = secrets
            .create(&Secret {
                metadata: ObjectMeta {
                    name: Some(format!("owner-secret-{i}")),
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?;
        let name = format!("fresh-{i}");
        maps.create(&config_map(&name, &[reference_to(&secret)]))
            .await?;
        fresh.push(name);
        let map_owner = maps
            .create(&config_map(&format!("owner-map-{i}"), &[]))
            .await?;
        let name = format!("fresh-map-{i}");
        maps.create(&config_map(&name, &[reference_to(&map_owner)]))
            .await?;
        fresh.push(name);
    }
    // An owner of a kind keel does not serve cannot be looked up: the reference is left alone.
    let foreign = OwnerReference {
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        name: "w".into(),
        uid: "3f8d0a5e-0000-4000-8000-00000000f00d".into(),
        ..Default::default()
    };
    maps.create(&config_map("foreign", std::slice::from_ref(&foreign)))
        .await?;
    fresh.push("foreign".into());
    // A dangling one created after them: once it is collected, so have they been looked at.
    maps.create(&config_map("sentinel", &[ghost])).await?;
    until("the sentinel is collected", WAIT, || {
        gone(&maps, "sentinel")
    })
    .await?;
    for name in &fresh {
        assert!(
            maps.get(name).await.is_ok(),
            "{name} was deleted while its owner existed"
        );
        let owners = maps.get(name).await?.metadata.owner_references;
        assert_eq!(owners.map(|o| o.len()), Some(1), "{name} lost its owner");
    }

    // Two owners, one deleted: the object stays, naming only the one left.
    let first = maps.create(&config_map("first", &[])).await?;
    let second = maps.create(&config_map("second", &[])).await?;
    maps.create(&config_map(
        "shared",
        &[reference_to(&first), reference_to(&second)],
    ))
    .await?;
    maps.delete("first", &DeleteParams::default()).await?;
    until(
        "the shared object drops its reference to the deleted owner",
        WAIT,
        || async {
            maps.get("shared").await.is_ok_and(|cm| {
                let owners = cm.metadata.owner_references.unwrap_or_default();
                owners.len() == 1 && owners[0].uid == uid_of(&second)
            })
        },
    )
    .await?;
    Ok(())
}
