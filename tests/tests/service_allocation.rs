//! Cluster IPs and node ports on a 3-master keel, through the real kubectl and the SDK: the
//! `kubernetes` Service at the range's first address with every master in its endpoints (and
//! a stopped master dropped), Services given distinct addresses even when created at once
//! through different masters, chosen numbers checked with Kubernetes' errors, numbers kept
//! across `kubectl replace` and freed on delete.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use keel_client::{Api, DeleteParams};
use keel_tests::kubectl::Kubectl;
use keel_tests::sim::until;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::json;

fn service(name: &str, spec: serde_json::Value) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

/// The `host:port`s the `kubernetes` Endpoints list.
async fn master_endpoints(endpoints: &Api<Endpoints>) -> BTreeSet<String> {
    let Ok(e) = endpoints.get("kubernetes").await else {
        return BTreeSet::new();
    };
    let mut listed = BTreeSet::new();
    for subset in e.subsets.unwrap_or_default() {
        for address in subset.addresses.iter().flatten() {
            for port in subset.ports.iter().flatten() {
                listed.insert(format!("{}:{}", address.ip, port.port));
            }
        }
    }
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_get_unique_numbers_and_the_kubernetes_service_follows_the_masters() -> Result<()>
{
    let mut cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = cluster.client()?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");

    // The masters' own Service, at the first address of the default range, with each master.
    let masters: BTreeSet<String> = cluster
        .members
        .iter()
        .map(|m| format!("127.0.0.1:{}", m.rest_port))
        .collect();
    until(
        "the kubernetes Service lists every master",
        Duration::from_secs(60),
        || async { master_endpoints(&endpoints).await == masters },
    )
    .await?;
    let kubernetes = services.get("kubernetes").await?;
    let spec = kubernetes.spec.unwrap_or_default();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.1"));
    assert_eq!(spec.ports.unwrap_or_default()[0].port, 443);

    // 60 Services created at once, 20 through each master: 60 different addresses in range.
    let mut creates = Vec::new();
    for i in 0..60 {
        let api: Api<Service> = Api::namespaced(cluster.client_for(&[i % 3])?, "default");
        creates.push(tokio::spawn(async move {
            api.create(&service(
                &format!("s{i}"),
                json!({"ports": [{"port": 80}]}),
            )?)
            .await
            .map_err(anyhow::Error::from)
        }));
    }
    let mut addresses = BTreeSet::new();
    for create in creates {
        let created = create.await??;
        let ip = created.spec.and_then(|s| s.cluster_ip).unwrap_or_default();
        assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
        let octets: Vec<u8> = ip.split('.').filter_map(|o| o.parse().ok()).collect();
        assert!((96..112).contains(&octets[1]), "{ip} outside 10.96.0.0/12");
        addresses.insert(ip);
    }
    assert_eq!(addresses.len(), 60, "every Service has its own address");

    // Through kubectl: a NodePort Service gets a port in range; choosing a taken address or
    // port is refused with Kubernetes' message and nothing is stored.
    let k = Kubectl::for_cluster(&cluster).await?;
    let taken_ip = addresses.iter().next().cloned().unwrap_or_default();
    let files = k.dir.path();
    let web = files.join("web.yaml");
    std::fs::write(
        &web,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: NodePort\n  selector:\n    app: web\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    )?;
    k.ok(&["apply", "-f", &web.display().to_string()]);
    let applied = k.json(&["get", "service", "web"]);
    assert_eq!(applied["spec"]["ports"][0]["nodePort"], 30080);
    let web_ip = applied["spec"]["clusterIP"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let clash = files.join("clash.yaml");
    std::fs::write(
        &clash,
        format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  clusterIP: {taken_ip}\n  type: NodePort\n  ports:\n  - port: 80\n"),
    )?;
    let refused = k.fails(&["apply", "-f", &clash.display().to_string()]);
    assert!(
        refused.contains(&format!(
            "spec.clusterIPs: Invalid value: []string{{\"{taken_ip}\"}}: failed to allocate IP {taken_ip}: provided IP is already allocated"
        )),
        "{refused}"
    );
    let port_clash = files.join("port-clash.yaml");
    std::fs::write(
        &port_clash,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    )?;
    let refused = k.fails(&["apply", "-f", &port_clash.display().to_string()]);
    assert!(
        refused.contains(
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        ),
        "{refused}"
    );
    let out_of_range = files.join("out-of-range.yaml");
    std::fs::write(
        &out_of_range,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: clash\nspec:\n  clusterIP: 192.168.0.10\n  ports:\n  - port: 80\n",
    )?;
    let refused = k.fails(&["apply", "-f", &out_of_range.display().to_string()]);
    assert!(
        refused.contains("The range of valid IPs is 10.96.0.0/12"),
        "{refused}"
    );
    assert!(k
        .run(&["get", "service", "clash"])
        .stderr
        .contains("NotFound"));

    // Re-applying the manifest changes nothing; `kubectl replace` of it (no clusterIP in it)
    // keeps both numbers.
    let again = k.ok(&["apply", "-f", &web.display().to_string()]);
    assert!(again.contains("unchanged"), "{again}");
    k.ok(&["replace", "-f", &web.display().to_string()]);
    let replaced = k.json(&["get", "service", "web"]);
    assert_eq!(replaced["spec"]["clusterIP"], web_ip.as_str());
    assert_eq!(replaced["spec"]["ports"][0]["nodePort"], 30080);

    // Applying the manifest with only the type changed to ClusterIP succeeds (the live node
    // port the apply sends back is dropped with the type) and frees the port.
    let as_cluster_ip = files.join("web-cluster-ip.yaml");
    std::fs::write(
        &as_cluster_ip,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: ClusterIP\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
    )?;
    k.ok(&["apply", "-f", &as_cluster_ip.display().to_string()]);
    let changed = k.json(&["get", "service", "web"]);
    assert!(
        changed["spec"]["ports"][0].get("nodePort").is_none(),
        "{changed}"
    );
    assert_eq!(changed["spec"]["clusterIP"], web_ip.as_str());
    // Deleting frees the address; the port is free already: another Service may take it.
    k.ok(&["delete", "service", "web"]);
    let taker = files.join("taker.yaml");
    std::fs::write(
        &taker,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: taker\nspec:\n  type: NodePort\n  ports:\n  - port: 80\n    nodePort: 30080\n",
    )?;
    k.ok(&["apply", "-f", &taker.display().to_string()]);

    // A master that stops leaves the kubernetes endpoints once its lease runs out.
    let stopped = format!("127.0.0.1:{}", cluster.members[2].rest_port);
    cluster.kill(2)?;
    let endpoints: Api<Endpoints> = Api::namespaced(cluster.client_for(&[0, 1])?, "default");
    until(
        "the stopped master leaves the kubernetes endpoints",
        Duration::from_secs(60),
        || async {
            let now = master_endpoints(&endpoints).await;
            now.len() == 2 && !now.contains(&stopped)
        },
    )
    .await?;
    let services: Api<Service> = Api::namespaced(cluster.client_for(&[0, 1])?, "default");
    services.delete("s0", &DeleteParams::default()).await?;
    Ok(())
}
