//! The scheduler end to end: three keel masters, nodes simulated by `keel sim-nodes`, pods
//! created through the SDK. Placement honours resources, nodeSelector, node affinity, taints,
//! host ports, anti-affinity and topology spread; an unschedulable pod is told why in
//! Kubernetes' words and placed once a node fits; preemption evicts a lower-priority pod; a
//! scheduler paused past its lease is fenced out and no pod is ever bound twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use keel_client::api::WatchEvent;
use keel_client::{Api, Client, DeleteParams, ListParams, Patch, WatchParams};
use keel_tests::cluster::keel_bin;
use keel_tests::{Cluster, Flavor};
use keel_types::k8s_openapi;
use serde_json::{json, Value};

/// A `keel sim-nodes` process, stopped when dropped.
struct SimNodes(Child);

impl SimNodes {
    fn start(cluster: &Cluster, args: &[&str]) -> Result<SimNodes> {
        let child = Command::new(keel_bin()?)
            .arg("sim-nodes")
            .args(keel_tests::sim::sim_masters(cluster)?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting keel sim-nodes")?;
        Ok(SimNodes(child))
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(cluster: &Cluster) -> Result<Client> {
    cluster.client()
}

fn pod(name: &str, spec: Value) -> Result<Pod> {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "app", "image": "busybox"}]);
    }
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?)
}

fn requests(cpu: &str) -> Value {
    json!([{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}])
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_nodes(nodes: &Api<Node>, n: usize) -> Result<()> {
    wait_for(&format!("{n} nodes"), Duration::from_secs(60), || async {
        Ok((nodes.list(&ListParams::default()).await?.items.len() >= n).then_some(()))
    })
    .await
}

async fn wait_bound(pods: &Api<Pod>, name: &str) -> Result<String> {
    wait_for(
        &format!("pod {name} to be bound"),
        Duration::from_secs(30),
        || async { Ok(node_of(&pods.get(name).await?)) },
    )
    .await
}

/// The message of the pod's PodScheduled=False condition, once the scheduler has set it.
async fn wait_unschedulable(pods: &Api<Pod>, name: &str) -> Result<String> {
    wait_for(
        &format!("pod {name} to be marked unschedulable"),
        Duration::from_secs(30),
        || async {
            let p = pods.get(name).await?;
            Ok(p.status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
                .and_then(|c| c.message))
        },
    )
    .await
}

async fn node_label(nodes: &Api<Node>, node: &str, key: &str) -> Result<String> {
    Ok(nodes
        .get(node)
        .await?
        .metadata
        .labels
        .unwrap_or_default()
        .get(key)
        .cloned()
        .unwrap_or_default())
}

async fn delete_all_pods(pods: &Api<Pod>) -> Result<()> {
    for p in pods.list(&ListParams::default()).await?.items {
        let name = p.metadata.name.unwrap_or_default();
        let _ = pods
            .delete(
                &name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await;
    }
    wait_for("pods to be gone", Duration::from_secs(30), || async {
        Ok(pods
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_are_placed_only_where_every_constraint_holds() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = client(&cluster)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _sim = SimNodes::start(
        &cluster,
        &[
            "--count=6",
            "--zones=3",
            "--cpu=4",
            "--memory=8Gi",
            "--pods=20",
        ],
    )?;
    wait_nodes(&nodes, 6).await?;
    let names: Vec<String> = {
        let mut v: Vec<String> = nodes
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        v.sort();
        v
    };

    // nodeSelector: only the labelled node.
    let ssd = &names[1];
    nodes
        .patch(
            ssd,
            &Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await?;
    pods.create(&pod("selector", json!({"nodeSelector": {"disk": "ssd"}}))?)
        .await?;
    assert_eq!(&wait_bound(&pods, "selector").await?, ssd);

    // Required node affinity: In on the zone label.
    pods.create(&pod(
        "affinity",
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["zone-2"]}
        ]}]}}}}),
    )?)
    .await?;
    let placed = wait_bound(&pods, "affinity").await?;
    assert_eq!(
        node_label(&nodes, &placed, "topology.kubernetes.io/zone").await?,
        "zone-2"
    );

    // Taints: a pod pinned to a tainted node without a toleration is told why, in Kubernetes'
    // words; with the toleration it goes there.
    let tainted = &names[5];
    nodes
        .patch(
            tainted,
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
            ]}})),
        )
        .await?;
    let pinned = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": [tainted]}
    ]}]}}}});
    pods.create(&pod("untolerated", pinned.clone())?).await?;
    let message = wait_unschedulable(&pods, "untolerated").await?;
    assert_eq!(
        message,
        "0/6 nodes are available: 1 node(s) had untolerated taint {dedicated: infra}, 5 node(s) didn't match Pod's node affinity/selector. preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling."
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = wait_for(
        "a FailedScheduling event",
        Duration::from_secs(10),
        || async {
            Ok(events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("FailedScheduling")
                        && e.involved_object.name.as_deref() == Some("untolerated")
                }))
        },
    )
    .await?;
    assert_eq!(failed.message.as_deref(), Some(message.as_str()));
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    let mut tolerating = pinned.clone();
    tolerating["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]);
    pods.create(&pod("tolerating", tolerating)?).await?;
    assert_eq!(&wait_bound(&pods, "tolerating").await?, tainted);
    delete_all_pods(&pods).await?;
    nodes
        .patch(tainted, &Patch::Merge(json!({"spec": {"taints": null}})))
        .await?;

    // Host ports: two pods asking for the same port on the same node cannot both go there.
    let on_first = |name: &str| {
        pod(
            name,
            json!({
                "nodeSelector": {"kubernetes.io/hostname": names[0]},
                "containers": [{"name": "app", "image": "busybox",
                                "ports": [{"containerPort": 80, "hostPort": 8080}]}],
            }),
        )
    };
    pods.create(&on_first("port-a")?).await?;
    assert_eq!(wait_bound(&pods, "port-a").await?, names[0]);
    pods.create(&on_first("port-b")?).await?;
    let message = wait_unschedulable(&pods, "port-b").await?;
    assert!(
        message.starts_with(
            "0/6 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 5 node(s) didn't match Pod's node affinity/selector. preemption: "
        ),
        "{message}"
    );
    delete_all_pods(&pods).await?;

    // Required anti-affinity on hostname: five pods of one group on five different nodes.
    for i in 0..5 {
        pods.create(&pod(
            &format!("anti-{i}"),
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": {"matchLabels": {"app": "anti"}},
                "topologyKey": "kubernetes.io/hostname"}]}}}),
        )
        .map(|mut p| {
            p.metadata.labels = Some(BTreeMap::from([("app".into(), "anti".into())]));
            p
        })?)
        .await?;
    }
    let mut hosts = HashSet::new();
    for i in 0..5 {
        hosts.insert(wait_bound(&pods, &format!("anti-{i}")).await?);
    }
    assert_eq!(hosts.len(), 5, "{hosts:?}");
    delete_all_pods(&pods).await?;

    // Topology spread, DoNotSchedule with maxSkew 1 over zones: six pods, two per zone.
    for i in 0..6 {
        let mut p = pod(
            &format!("spread-{i}"),
            json!({"topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": "spread"}}}]}),
        )?;
        p.metadata.labels = Some(BTreeMap::from([("app".into(), "spread".into())]));
        pods.create(&p).await?;
        // One at a time, so each decision sees the previous ones.
        wait_bound(&pods, &format!("spread-{i}")).await?;
    }
    let mut per_zone: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let node = wait_bound(&pods, &format!("spread-{i}")).await?;
        *per_zone
            .entry(node_label(&nodes, &node, "topology.kubernetes.io/zone").await?)
            .or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_zone:?}"
    );
    delete_all_pods(&pods).await?;

    // Resources: 3-CPU pods on 4-CPU nodes, one per node; the seventh waits, told why, and is
    // placed as soon as a node that fits appears.
    for i in 0..7 {
        pods.create(&pod(
            &format!("big-{i}"),
            json!({"containers": requests("3")}),
        )?)
        .await?;
    }
    let mut bound = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bound.len() < 6 && Instant::now() < deadline {
        for p in pods.list(&ListParams::default()).await?.items {
            if let Some(n) = node_of(&p) {
                bound.insert(p.metadata.name.unwrap_or_default(), n);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(bound.len(), 6, "{bound:?}");
    assert_eq!(
        bound.values().collect::<HashSet<_>>().len(),
        6,
        "one per node"
    );
    let waiting = (0..7)
        .map(|i| format!("big-{i}"))
        .find(|n| !bound.contains_key(n))
        .context("one pod waits")?;
    let message = wait_unschedulable(&pods, &waiting).await?;
    assert!(
        message.starts_with("0/6 nodes are available:") && message.contains("6 Insufficient cpu"),
        "{message}"
    );
    let _more = SimNodes::start(&cluster, &["--count=1", "--name-prefix=late-", "--cpu=4"])?;
    let late = wait_bound(&pods, &waiting).await?;
    assert!(late.starts_with("late-"), "{late}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_pod_preempts_a_lower_priority_one() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = client(&cluster)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    for (name, value) in [("low", 10), ("high", 1000)] {
        classes
            .create(&serde_json::from_value(json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value}))?)
            .await?;
    }
    let _sim = SimNodes::start(&cluster, &["--count=1", "--cpu=2"])?;
    wait_nodes(&nodes, 1).await?;
    pods.create(&pod(
        "victim",
        json!({"priorityClassName": "low", "terminationGracePeriodSeconds": 1,
               "containers": requests("2")}),
    )?)
    .await?;
    let node = wait_bound(&pods, "victim").await?;
    let victim_uid = pods.get("victim").await?.metadata.uid.unwrap_or_default();
    pods.create(&pod(
        "preemptor",
        json!({"priorityClassName": "high", "containers": requests("2")}),
    )?)
    .await?;
    let placed = wait_bound(&pods, "preemptor").await?;
    assert_eq!(placed, node);
    // The victim was deleted to make room (it may be recreated by nothing here).
    match pods.get("victim").await {
        Err(e) if e.is_not_found() => {}
        Ok(p) => assert_ne!(p.metadata.uid.as_deref(), Some(victim_uid.as_str())),
        Err(e) => return Err(e.into()),
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let preempted = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("Preempted")
                && e.involved_object.name.as_deref() == Some("victim")
        });
    assert!(preempted, "a Preempted event names the victim");
    Ok(())
}

/// The member whose scheduler holds the Lease.
async fn scheduler_leader(client: &Client) -> Result<usize> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    wait_for("a scheduler leader", Duration::from_secs(30), || async {
        let holder = match leases.get("kube-scheduler").await {
            Ok(l) => l.spec.and_then(|s| s.holder_identity).unwrap_or_default(),
            Err(e) if e.is_not_found() => String::new(),
            Err(e) => return Err(e.into()),
        };
        // Identities are `<host>_<member>_<suffix>`; members are m0, m1, m2.
        Ok(holder
            .split('_')
            .nth(1)
            .and_then(|m| m.strip_prefix('m'))
            .and_then(|i| i.parse().ok()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_paused_past_its_lease_is_fenced_and_no_pod_is_bound_twice() -> Result<()> {
    let cluster = Cluster::start(Flavor::Keel, 3).await?;
    let client = client(&cluster)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _sim = SimNodes::start(&cluster, &["--count=20", "--pods=200"])?;
    wait_nodes(&nodes, 20).await?;
    let leader = scheduler_leader(&client).await?;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let client = cluster.client_for(&others)?;
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Every binding the API ever reports: a pod's node may be set once and never changed.
    let mut stream = pods_api.watch(&WatchParams::default(), "0").await?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut violations = Vec::new();
        loop {
            let ev = tokio::select! {
                _ = &mut stop_rx => break,
                ev = stream.next() => ev,
            };
            let Some(Ok(ev)) = ev else { break };
            if let WatchEvent::Added(p) | WatchEvent::Modified(p) = ev {
                let name = p.metadata.name.clone().unwrap_or_default();
                if let Some(node) = node_of(&p) {
                    if let Some(before) = seen.insert(name.clone(), node.clone()) {
                        if before != node {
                            violations.push(format!("{name}: {before} then {node}"));
                        }
                    }
                }
            }
        }
        violations
    });

    let creator = {
        let pods_api = pods_api.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                let p = pod(&format!("p-{i:03}"), json!({"containers": requests("10m")}))?;
                match pods_api.create(&p).await {
                    Ok(_) => {}
                    // A create whose answer was lost to the paused master and that the client
                    // sent again to another: the first attempt landed. Only this task makes
                    // these names.
                    Err(e) if e.code() == Some(409) => {}
                    Err(e) => return Err(e.into()),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(())
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.signal(leader, true)?;
    let paused = Instant::now();
    // Past the 2 s lease: another master's scheduler takes over.
    let next = loop {
        let next = scheduler_leader(&client).await?;
        if next != leader {
            break next;
        }
        if paused.elapsed() > Duration::from_secs(20) {
            for i in 0..3 {
                let log = cluster.log_of(i);
                let lines: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("scheduler") || l.contains("ERROR"))
                    .collect();
                eprintln!("--- m{i}:\n{}", lines.join("\n"));
            }
            bail!("no other scheduler took over within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "m{next}'s scheduler took over {:.1} s after m{leader} was paused",
        paused.elapsed().as_secs_f64()
    );
    // Keep it paused past the new leader's first binds, then let it go on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.signal(leader, false)?;
    creator.await??;
    wait_for("every pod bound", Duration::from_secs(60), || async {
        let items = pods.list(&ListParams::default()).await?.items;
        Ok((items.len() == 300 && items.iter().all(|p| node_of(p).is_some())).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_tx.send(());
    let violations = watcher.await?;
    assert!(violations.is_empty(), "pods bound twice: {violations:?}");

    // Fencing: once the next scheduler held the Lease, nothing the paused one did took effect.
    // A bind that succeeded is followed by its Scheduled event, written under the same fence.
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-scheduler")
        .await?;
    let spec = lease.spec.unwrap_or_default();
    let taken_over = spec.acquire_time.context("acquire time")?.0;
    let old = format!("_m{leader}_");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let late: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("Scheduled")
                && e.reporting_instance
                    .as_deref()
                    .is_some_and(|i| i.contains(&old))
                && e.first_timestamp.as_ref().is_some_and(|t| t.0 > taken_over)
        })
        .filter_map(|e| e.message)
        .collect();
    assert!(
        late.is_empty(),
        "the deposed scheduler bound after losing its lease: {late:?}"
    );
    let refused = cluster
        .log_of(leader)
        .matches("bind refused, leadership lost")
        .count();
    eprintln!("binds the paused scheduler attempted after resuming, all refused: {refused}");
    let log = cluster.log_of(leader);
    assert!(
        !log.contains("panicked"),
        "the paused scheduler's master did not crash"
    );
    Ok(())
}
