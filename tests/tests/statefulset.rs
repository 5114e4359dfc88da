//! The StatefulSet controller end to end on three masters and simulated nodes: pods `web-0`,
//! `web-1`, `web-2` created in order, each only once the one before is ready, with stable
//! hostnames in the headless Service's subdomain and a claim each; scaled down from the highest
//! ordinal; and a partitioned rolling update that leaves the pods below the partition alone.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{bail, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use keel_client::api::WatchEvent;
use keel_client::{Api, ListParams, Patch, WatchParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

async fn live(pods: &Api<Pod>) -> Result<Vec<Pod>> {
    Ok(pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect())
}

fn names(pods: &[Pod]) -> Vec<String> {
    let mut n: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateful_set_creates_in_order_keeps_identities_and_rolls_with_a_partition() -> Result<()>
{
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "3"])?;
    let kubectl = Kubectl::for_cluster(&cluster).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");

    // Every pod event, in order: a pod may appear only once the one before it is ready.
    let mut stream = pods.watch(&WatchParams::default(), "0").await?;
    let order = tokio::spawn(async move {
        let mut ready_seen: HashSet<String> = HashSet::new();
        let mut created = Vec::new();
        let mut violations = Vec::new();
        while let Some(Ok(event)) = stream.next().await {
            let (WatchEvent::Added(p) | WatchEvent::Modified(p)) = event else {
                continue;
            };
            let name = p.metadata.name.clone().unwrap_or_default();
            if !created.contains(&name) {
                if let Some(n) = name
                    .strip_prefix("web-")
                    .and_then(|n| n.parse::<i32>().ok())
                {
                    if n > 0 && !ready_seen.contains(&format!("web-{}", n - 1)) {
                        violations.push(format!("{name} before web-{} was ready", n - 1));
                    }
                }
                created.push(name.clone());
            }
            if is_ready(&p) {
                ready_seen.insert(name);
            }
            if created.len() == 3 {
                break;
            }
        }
        (created, violations)
    });

    kubectl.ok(&[
        "apply",
        "-f",
        &kubectl.manifest(
            "web.yaml",
            r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: nginx
        image: nginx:1
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#,
        ),
    ]);
    let (created, violations) = tokio::time::timeout(WAIT, order).await??;
    assert_eq!(created, vec!["web-0", "web-1", "web-2"]);
    assert!(violations.is_empty(), "{violations:?}");
    until("three ready pods and a ready status", WAIT, || async {
        let Ok(ds) = sets.get("web").await else {
            return false;
        };
        ds.status.is_some_and(|s| s.ready_replicas == Some(3))
    })
    .await?;
    for p in live(&pods).await? {
        let name = p.metadata.name.clone().unwrap_or_default();
        let spec = p.spec.clone().unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let claim = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim)
            .map(|c| c.claim_name);
        assert_eq!(claim, Some(format!("data-{name}")));
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    for n in ["data-web-0", "data-web-1", "data-web-2"] {
        assert!(claim_names.contains(&n.to_string()), "{claim_names:?}");
    }

    // Scaled down to one: web-2 goes before web-1 is touched.
    sets.patch("web", &Patch::Merge(json!({"spec": {"replicas": 1}})))
        .await?;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let all = pods.list(&ListParams::default()).await?.items;
        let terminating: Vec<String> = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some())
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        let present = names(&all);
        if terminating.contains(&"web-1".to_string()) && present.contains(&"web-2".to_string()) {
            bail!("web-1 was deleted while web-2 still existed");
        }
        if present == vec!["web-0"] {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "never scaled down: {present:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        claims.list(&ListParams::default()).await?.items.len(),
        3,
        "claims are kept"
    );

    // Back to three, then a rolling update above partition 1.
    sets.patch("web", &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await?;
    until("three ready pods again", WAIT, || async {
        sets.get("web").await.is_ok_and(|s| {
            s.status
                .is_some_and(|st| st.ready_replicas == Some(3) && st.replicas == 3)
        })
    })
    .await?;
    sets.patch(
        "web",
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:2"}]}}
        }})),
    )
    .await?;
    until(
        "web-1 and web-2 run nginx:2, web-0 nginx:1",
        WAIT,
        || async {
            let Ok(pods) = live(&pods).await else {
                return false;
            };
            let images: Vec<(String, String, bool)> = pods
                .iter()
                .map(|p| {
                    (
                        p.metadata.name.clone().unwrap_or_default(),
                        image(p),
                        is_ready(p),
                    )
                })
                .collect();
            let expect =
                |n: &str, i: &str| images.iter().any(|(pn, pi, r)| pn == n && pi == i && *r);
            images.len() == 3
                && expect("web-0", "nginx:1")
                && expect("web-1", "nginx:2")
                && expect("web-2", "nginx:2")
        },
    )
    .await?;
    until("the status shows the partitioned rollout", WAIT, || async {
        sets.get("web").await.is_ok_and(|s| {
            s.status.is_some_and(|st| {
                st.updated_replicas == Some(2)
                    && st.current_replicas == Some(1)
                    && st.current_revision != st.update_revision
            })
        })
    })
    .await?;
    let status = kubectl.ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(status.contains("partitioned roll out complete"), "{status}");
    let history = kubectl.ok(&["rollout", "history", "sts/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");
    Ok(())
}
