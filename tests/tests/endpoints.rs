//! The endpoint, EndpointSlice, ServiceAccount and root CA controllers end to end: three keel
//! masters running their controller manager, nodes simulated by `keel sim-nodes`, objects
//! created through the SDK. A Service's Endpoints and EndpointSlices list the pods it selects
//! with their addresses and resolved named ports, follow their readiness (a pod whose Ready
//! condition turns False moves to notReadyAddresses and ready=false) and their deletion, honour
//! publishNotReadyAddresses, and 150 pods fill two slices. Every new namespace gets a
//! `default` ServiceAccount (again after it is deleted) and the cluster's CA in
//! `kube-root-ca.crt`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Pod, PodCondition, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keel_client::{Api, DeleteParams, Kubeconfig, ListParams};
use keel_tests::sim::{ready, until, Sim};
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn pod(namespace: &str, name: &str, app: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"containers": [{
            "name": "app", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}],
        }]},
    }))?)
}

fn service(namespace: &str, name: &str, app: &str, publish_not_ready: bool) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "a"}},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": "web", "port": 80, "targetPort": "http"}],
            "publishNotReadyAddresses": publish_not_ready,
        },
    }))?)
}

fn pod_ip(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .pod_ip
        .clone()
        .filter(|ip| !ip.is_empty())
}

/// The Endpoints' addresses as (IP, ready) pairs, with every port they list.
fn endpoints_view(e: &Endpoints) -> (BTreeSet<(String, bool)>, BTreeSet<i32>) {
    let mut addresses = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for s in e.subsets.iter().flatten() {
        for a in s.addresses.iter().flatten() {
            addresses.insert((a.ip.clone(), true));
        }
        for a in s.not_ready_addresses.iter().flatten() {
            addresses.insert((a.ip.clone(), false));
        }
        ports.extend(s.ports.iter().flatten().map(|p| p.port));
    }
    (addresses, ports)
}

/// The slices' endpoints as (IP, ready) pairs, and how many endpoints each slice holds.
fn slices_view(slices: &[EndpointSlice]) -> (BTreeSet<(String, bool)>, Vec<usize>) {
    let mut addresses = BTreeSet::new();
    let mut sizes = Vec::new();
    for s in slices {
        sizes.push(s.endpoints.len());
        for e in &s.endpoints {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            for a in &e.addresses {
                addresses.insert((a.clone(), ready));
            }
        }
    }
    sizes.sort();
    (addresses, sizes)
}

async fn slices_of(api: &Api<EndpointSlice>, service: &str) -> Vec<EndpointSlice> {
    let params = ListParams {
        label_selector: format!("kubernetes.io/service-name={service}"),
        ..Default::default()
    };
    api.list(&params).await.map(|l| l.items).unwrap_or_default()
}

async fn pod_ips(pods: &Api<Pod>, names: &[String]) -> Option<BTreeSet<String>> {
    let mut ips = BTreeSet::new();
    for name in names {
        ips.insert(pod_ip(&pods.get(name).await.ok()?)?);
    }
    Some(ips)
}

/// Sets the pod's Ready condition to False through `pods/status`, as a kubelet whose
/// readiness probe fails would.
async fn make_unready(pods: &Api<Pod>, name: &str) -> Result<()> {
    let mut p = pods.get(name).await?;
    if let Some(status) = p.status.as_mut() {
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "Ready" && c.type_ != "ContainersReady");
        for type_ in ["Ready", "ContainersReady"] {
            conditions.push(PodCondition {
                type_: type_.into(),
                status: "False".into(),
                reason: Some("ContainersNotReady".into()),
                ..Default::default()
            });
        }
    }
    pods.replace_status(name, &p).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_endpoint_slices_follow_the_pods_a_service_selects() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let _sim = Sim::start(&cluster, &["--count", "3"])?;
    let ns = "default";
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);

    let names: Vec<String> = (0..3).map(|i| format!("web-{i}")).collect();
    for name in &names {
        pods.create(&pod(ns, name, "web")?).await?;
    }
    services.create(&service(ns, "web", "web", false)?).await?;
    until("the pods run with addresses", WAIT, || async {
        pod_ips(&pods, &names).await.is_some()
    })
    .await?;
    let ips = pod_ips(&pods, &names).await.unwrap_or_default();
    let all_ready: BTreeSet<(String, bool)> = ips.iter().map(|ip| (ip.clone(), true)).collect();

    // Endpoints and slices list every pod, on the named port's number.
    until(
        "Endpoints list the three pods on port 8080",
        WAIT,
        || async {
            endpoints
                .get("web")
                .await
                .is_ok_and(|e| endpoints_view(&e) == (all_ready.clone(), [8080].into()))
        },
    )
    .await?;
    let e = endpoints.get("web").await?;
    let labels = e.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    let address = e
        .subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten())
        .next();
    let address = address.cloned().unwrap_or_default();
    assert!(address
        .node_name
        .is_some_and(|n| n.starts_with("sim-node-")));
    assert_eq!(
        address.target_ref.and_then(|r| r.kind).as_deref(),
        Some("Pod")
    );
    until("one EndpointSlice lists the three pods", WAIT, || async {
        slices_view(&slices_of(&slices, "web").await) == (all_ready.clone(), vec![3])
    })
    .await?;
    let slice = slices_of(&slices, "web").await.remove(0);
    assert!(slice
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("web-")));
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    let owner = slice.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owner.len(), 1);
    assert_eq!(
        (owner[0].kind.as_str(), owner[0].controller),
        ("Service", Some(true))
    );
    assert_eq!(slice.address_type, "IPv4");
    let ports = slice.ports.clone().unwrap_or_default();
    assert_eq!(ports[0].port, Some(8080));
    let endpoint = &slice.endpoints[0];
    assert!(endpoint
        .zone
        .as_deref()
        .is_some_and(|z| z.starts_with("zone-")));

    // A pod that stops being ready moves to notReadyAddresses and ready=false. Simulated nodes
    // post a pod's status only when they start or end it, so the change sticks.
    make_unready(&pods, "web-0").await?;
    let unready_ip = pod_ip(&pods.get("web-0").await?).unwrap_or_default();
    let mut expected = all_ready.clone();
    expected.remove(&(unready_ip.clone(), true));
    expected.insert((unready_ip.clone(), false));
    until("the unready pod is a not-ready address", WAIT, || async {
        endpoints
            .get("web")
            .await
            .is_ok_and(|e| endpoints_view(&e).0 == expected)
    })
    .await?;
    until("the unready pod's endpoint is not ready", WAIT, || async {
        slices_view(&slices_of(&slices, "web").await).0 == expected
    })
    .await?;
    let slice = slices_of(&slices, "web").await.remove(0);
    let unready = slice
        .endpoints
        .iter()
        .find(|e| e.addresses.contains(&unready_ip))
        .and_then(|e| e.conditions.clone())
        .unwrap_or_default();
    assert_eq!(
        (unready.ready, unready.serving, unready.terminating),
        (Some(false), Some(false), Some(false))
    );

    // publishNotReadyAddresses lists it as ready in both.
    services
        .create(&service(ns, "web-all", "web", true)?)
        .await?;
    until(
        "publishNotReadyAddresses lists every pod as ready",
        WAIT,
        || async {
            let e = endpoints.get("web-all").await;
            let s = slices_view(&slices_of(&slices, "web-all").await).0;
            e.is_ok_and(|e| endpoints_view(&e).0 == all_ready) && s == all_ready
        },
    )
    .await?;

    // A deleted pod leaves both.
    let gone_ip = pod_ip(&pods.get("web-1").await?).unwrap_or_default();
    pods.delete(
        "web-1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await?;
    expected.remove(&(gone_ip, true));
    let left = until(
        "the deleted pod leaves the Endpoints and slices",
        WAIT,
        || async {
            let in_endpoints = endpoints.get("web").await.map(|e| endpoints_view(&e).0);
            let in_slices = slices_view(&slices_of(&slices, "web").await).0;
            in_endpoints.is_ok_and(|e| e == expected) && in_slices == expected
        },
    )
    .await;
    if let Err(error) = left {
        let in_endpoints = endpoints.get("web").await.map(|e| endpoints_view(&e));
        let in_slices = slices_view(&slices_of(&slices, "web").await);
        let listed = pods.list(&ListParams::default()).await?.items;
        let state: Vec<_> = listed
            .iter()
            .map(|p| {
                (
                    p.metadata.name.clone(),
                    pod_ip(p),
                    p.metadata.deletion_timestamp.clone(),
                )
            })
            .collect();
        return Err(error.context(format!(
            "endpoints {in_endpoints:?}; slices {in_slices:?}; pods {state:?}; expected {expected:?}"
        )));
    }

    // 150 pods: two slices, 100 and 50.
    let many: Vec<String> = (0..150).map(|i| format!("many-{i}")).collect();
    for name in &many {
        pods.create(&pod(ns, name, "many")?).await?;
    }
    services
        .create(&service(ns, "many", "many", false)?)
        .await?;
    until(
        "150 endpoints in two slices",
        Duration::from_secs(180),
        || async { slices_view(&slices_of(&slices, "many").await).1 == vec![50, 100] },
    )
    .await?;
    let (listed, _) = slices_view(&slices_of(&slices, "many").await);
    assert_eq!(listed.len(), 150);

    // Deleting the Service deletes its Endpoints.
    services.delete("web-all", &DeleteParams::default()).await?;
    until("the deleted Service's Endpoints go", WAIT, || async {
        endpoints
            .get("web-all")
            .await
            .is_err_and(|e| e.is_not_found())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_new_namespace_gets_a_default_service_account_and_the_cluster_ca() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    ready(&client).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&serde_json::from_value(
            json!({"metadata": {"name": "team-a"}}),
        )?)
        .await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-a");
    until("team-a has a default ServiceAccount", WAIT, || async {
        accounts.get("default").await.is_ok()
    })
    .await?;
    accounts.delete("default", &DeleteParams::default()).await?;
    until(
        "the deleted default ServiceAccount is back",
        WAIT,
        || async { accounts.get("default").await.is_ok() },
    )
    .await?;

    // The masters serve TLS: their CA is published in every namespace.
    let kubeconfig = cluster.members[0].kubeconfig();
    until("the admin kubeconfig is written", WAIT, || async {
        kubeconfig.exists()
    })
    .await?;
    let ca = Kubeconfig::read(&kubeconfig)?
        .certificate_authority
        .map(|pem| String::from_utf8_lossy(&pem).into_owned())
        .unwrap_or_default();
    assert!(ca.contains("BEGIN CERTIFICATE"));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    until(
        "team-a holds kube-root-ca.crt with the CA",
        WAIT,
        || async {
            config_maps
                .get("kube-root-ca.crt")
                .await
                .is_ok_and(|cm| cm.data.unwrap_or_default().get("ca.crt") == Some(&ca))
        },
    )
    .await?;
    let cm = config_maps.get("kube-root-ca.crt").await?;
    let description = cm.metadata.annotations.unwrap_or_default();
    assert!(description
        .get("kubernetes.io/description")
        .is_some_and(|d| d.starts_with("Contains a CA bundle")));
    let system: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    until("kube-system holds it too", WAIT, || async {
        system.get("kube-root-ca.crt").await.is_ok()
    })
    .await?;
    Ok(())
}
