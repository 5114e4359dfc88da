//! Property: on random nodes and pods, each node-local filter of the default profile says
//! "fits" exactly when a plain, separately written check over the same data does (enough
//! resources, selector and affinity matched, taints tolerated, ports free, right node name,
//! not cordoned), and the resource filter names exactly the resources that are short.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::framework::{CycleState, Filter};
use crate::plugins::node_affinity::NodeAffinity;
use crate::plugins::node_name::NodeName;
use crate::plugins::node_ports::NodePorts;
use crate::plugins::node_resources_fit::NodeResourcesFit;
use crate::plugins::node_unschedulable::NodeUnschedulable;
use crate::plugins::taint_toleration::TaintToleration;
use crate::test_support::{labels_term, node, pod, req, PodBuilder};

/// A container's requests: cpu in milli, memory in Mi, gpus; `None` is "not requested".
#[derive(Debug, Clone, Default)]
struct Req {
    cpu: Option<i64>,
    mem: Option<i64>,
    gpu: Option<i64>,
}

impl Req {
    fn list(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(c) = self.cpu {
            out.push(("cpu".to_string(), format!("{c}m")));
        }
        if let Some(m) = self.mem {
            out.push(("memory".to_string(), format!("{m}Mi")));
        }
        if let Some(g) = self.gpu {
            out.push(("example.com/gpu".to_string(), g.to_string()));
        }
        out
    }

    /// cpu, memory, gpu with "not requested" as 0.
    fn amounts(&self) -> [i64; 3] {
        [
            self.cpu.unwrap_or(0),
            self.mem.unwrap_or(0),
            self.gpu.unwrap_or(0),
        ]
    }
}

fn with_container(p: PodBuilder, r: &Req) -> PodBuilder {
    let list = r.list();
    let refs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    p.container(&refs)
}

#[derive(Debug, Clone)]
struct Port {
    port: i32,
    protocol: &'static str,
    ip: &'static str,
}

#[derive(Debug, Clone)]
struct TaintM {
    key: &'static str,
    value: &'static str,
    effect: &'static str,
}

#[derive(Debug, Clone)]
struct TolM {
    key: &'static str,
    operator: &'static str,
    value: &'static str,
    effect: &'static str,
}

#[derive(Debug, Clone)]
struct Expr {
    key: &'static str,
    operator: &'static str,
    value: &'static str,
}

#[derive(Debug, Clone)]
struct ExistingPod {
    req: Req,
    ports: Vec<Port>,
}

#[derive(Debug, Clone)]
struct NodeModel {
    name: &'static str,
    cpu: i64,
    mem: i64,
    gpu: Option<i64>,
    pods: i64,
    labels: BTreeMap<&'static str, &'static str>,
    taints: Vec<TaintM>,
    unschedulable: bool,
    existing: Vec<ExistingPod>,
}

#[derive(Debug, Clone)]
struct PodModel {
    containers: Vec<Req>,
    /// Init containers; `true` marks a sidecar.
    inits: Vec<(Req, bool)>,
    selector: BTreeMap<&'static str, &'static str>,
    affinity: Option<Expr>,
    tolerations: Vec<TolM>,
    ports: Vec<Port>,
    node_name: Option<&'static str>,
}

const NAMES: [&str; 3] = ["n0", "n1", "n2"];
const TAINT_KEYS: [&str; 3] = ["k1", "k2", "node.kubernetes.io/unschedulable"];
const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn req_strategy() -> impl Strategy<Value = Req> {
    (
        prop::option::of(0..3000i64),
        prop::option::of(0..6000i64),
        prop::option::of(0..3i64),
    )
        .prop_map(|(cpu, mem, gpu)| Req { cpu, mem, gpu })
}

fn port_strategy() -> impl Strategy<Value = Port> {
    (
        prop::sample::select(vec![80, 443]),
        prop::sample::select(vec!["TCP", "UDP"]),
        prop::sample::select(vec!["", "0.0.0.0", "10.0.0.1", "10.0.0.2"]),
    )
        .prop_map(|(port, protocol, ip)| Port { port, protocol, ip })
}

fn labels_strategy() -> impl Strategy<Value = BTreeMap<&'static str, &'static str>> {
    (
        prop::option::of(prop::sample::select(vec!["a", "b"])),
        prop::option::of(prop::sample::select(vec!["4", "16", "x"])),
        prop::option::of(prop::sample::select(vec!["ssd", "hdd"])),
    )
        .prop_map(|(zone, cores, disk)| {
            let mut m = BTreeMap::new();
            for (k, v) in [("zone", zone), ("cores", cores), ("disk", disk)] {
                if let Some(v) = v {
                    m.insert(k, v);
                }
            }
            m
        })
}

fn node_strategy() -> impl Strategy<Value = NodeModel> {
    (
        prop::sample::select(NAMES.to_vec()),
        (0..8000i64, 0..16000i64, prop::option::of(0..4i64), 0..5i64),
        labels_strategy(),
        prop::collection::vec(
            (
                prop::sample::select(TAINT_KEYS.to_vec()),
                prop::sample::select(vec!["", "v1", "v2"]),
                prop::sample::select(EFFECTS.to_vec()),
            )
                .prop_map(|(key, value, effect)| TaintM { key, value, effect }),
            0..3,
        ),
        any::<bool>(),
        prop::collection::vec(
            (req_strategy(), prop::collection::vec(port_strategy(), 0..2))
                .prop_map(|(req, ports)| ExistingPod { req, ports }),
            0..4,
        ),
    )
        .prop_map(
            |(name, (cpu, mem, gpu, pods), labels, taints, unschedulable, existing)| NodeModel {
                name,
                cpu,
                mem,
                gpu,
                pods,
                labels,
                taints,
                unschedulable,
                existing,
            },
        )
}

fn pod_strategy() -> impl Strategy<Value = PodModel> {
    let expr = prop_oneof![
        (
            prop::sample::select(vec!["zone", "disk"]),
            prop::sample::select(vec!["In", "NotIn"]),
            prop::sample::select(vec!["a", "ssd"]),
        ),
        (
            prop::sample::select(vec!["zone", "cores"]),
            prop::sample::select(vec!["Exists", "DoesNotExist"]),
            Just(""),
        ),
        (
            Just("cores"),
            prop::sample::select(vec!["Gt", "Lt"]),
            Just("8")
        ),
    ]
    .prop_map(|(key, operator, value)| Expr {
        key,
        operator,
        value,
    });
    let toleration = (
        prop::sample::select(vec!["", "k1", "k2", "node.kubernetes.io/unschedulable"]),
        prop::sample::select(vec!["", "Equal", "Exists"]),
        prop::sample::select(vec!["", "v1", "v2"]),
        prop::sample::select(vec!["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
    )
        .prop_map(|(key, operator, value, effect)| TolM {
            key,
            operator,
            value,
            effect,
        });
    (
        prop::collection::vec(req_strategy(), 1..3),
        prop::collection::vec((req_strategy(), any::<bool>()), 0..4),
        labels_strategy().prop_map(|mut m| {
            // "cores=x" as a selector is fine; keep selectors small so some pods match.
            m.retain(|k, _| *k != "cores");
            m
        }),
        prop::option::of(expr),
        prop::collection::vec(toleration, 0..3),
        prop::collection::vec(port_strategy(), 0..2),
        prop::option::of(prop::sample::select(NAMES.to_vec())),
    )
        .prop_map(
            |(containers, inits, selector, affinity, tolerations, ports, node_name)| PodModel {
                containers,
                inits,
                selector,
                affinity,
                tolerations,
                ports,
                node_name,
            },
        )
}

fn build_pod(name: &str, m: &PodModel) -> PodBuilder {
    let mut p = pod(name);
    for c in &m.containers {
        p = with_container(p, c);
    }
    for (c, sidecar) in &m.inits {
        let list = c.list();
        let refs: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        p = if *sidecar {
            p.sidecar(&refs)
        } else {
            p.init_container(&refs)
        };
    }
    for (k, v) in &m.selector {
        p = p.node_selector(k, v);
    }
    if let Some(e) = &m.affinity {
        let values: &[&str] = if e.value.is_empty() { &[] } else { &[e.value] };
        p = p.required_term(labels_term(vec![req(e.key, e.operator, values)]));
    }
    for t in &m.tolerations {
        p = p.toleration(t.key, t.operator, t.value, t.effect);
    }
    for port in &m.ports {
        p = p.host_port(port.port, port.protocol, port.ip);
    }
    if let Some(n) = m.node_name {
        p = p.node_name(n);
    }
    p
}

fn build_node(m: &NodeModel) -> crate::framework::NodeInfo {
    let cpu = format!("{}m", m.cpu);
    let mem = format!("{}Mi", m.mem);
    let pods = m.pods.to_string();
    let mut n = node(m.name).allocatable(&[("cpu", &cpu), ("memory", &mem), ("pods", &pods)]);
    if let Some(g) = m.gpu {
        n = n.allocatable(&[("example.com/gpu", &g.to_string())]);
    }
    for (k, v) in &m.labels {
        n = n.label(k, v);
    }
    for t in &m.taints {
        n = n.taint(t.key, t.value, t.effect);
    }
    if m.unschedulable {
        n = n.unschedulable();
    }
    let existing = m
        .existing
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut p = with_container(pod(&format!("e{i}")), &e.req);
            for port in &e.ports {
                p = p.host_port(port.port, port.protocol, port.ip);
            }
            p
        })
        .collect();
    n.with_pods(existing)
}

// The reference checks, written from the Kubernetes rules directly over the models.

/// What a pod needs of cpu, memory and gpus: app containers and sidecars together, or the
/// largest init-time moment (a regular init container with the sidecars started before it, or
/// a sidecar starting with those before it), whichever is more.
fn reference_request(m: &PodModel) -> [i64; 3] {
    std::array::from_fn(|r| {
        let app: i64 = m.containers.iter().map(|c| c.amounts()[r]).sum();
        let mut sidecars = 0;
        let mut peak = 0;
        for (c, sidecar) in &m.inits {
            let a = c.amounts()[r];
            if *sidecar {
                sidecars += a;
                peak = peak.max(sidecars);
            } else {
                peak = peak.max(a + sidecars);
            }
        }
        (app + sidecars).max(peak)
    })
}

fn reference_shortfalls(p: &PodModel, n: &NodeModel) -> Vec<String> {
    let mut out = Vec::new();
    if n.existing.len() as i64 + 1 > n.pods {
        out.push("Too many pods".to_string());
    }
    let want = reference_request(p);
    let used = n.existing.iter().fold([0; 3], |mut acc, e| {
        for (a, x) in acc.iter_mut().zip(e.req.amounts()) {
            *a += x;
        }
        acc
    });
    let alloc = [n.cpu, n.mem, n.gpu.unwrap_or(0)];
    for (r, name) in ["cpu", "memory", "example.com/gpu"].iter().enumerate() {
        if want[r] > 0 && want[r] > alloc[r] - used[r] {
            out.push(format!("Insufficient {name}"));
        }
    }
    out
}

fn reference_selector(p: &PodModel, n: &NodeModel) -> bool {
    let selector_ok = p.selector.iter().all(|(k, v)| n.labels.get(k) == Some(v));
    let affinity_ok = match &p.affinity {
        None => true,
        Some(e) => {
            let have = n.labels.get(e.key).copied();
            let int = |s: &str| s.parse::<i64>().ok();
            match e.operator {
                "In" => have == Some(e.value),
                "NotIn" => have != Some(e.value),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                "Gt" => have
                    .and_then(int)
                    .zip(int(e.value))
                    .is_some_and(|(h, v)| h > v),
                "Lt" => have
                    .and_then(int)
                    .zip(int(e.value))
                    .is_some_and(|(h, v)| h < v),
                _ => false,
            }
        }
    };
    selector_ok && affinity_ok
}

fn reference_tolerates(tols: &[TolM], key: &str, value: &str, effect: &str) -> bool {
    tols.iter().any(|t| {
        (t.effect.is_empty() || t.effect == effect)
            && (t.key.is_empty() || t.key == key)
            && match t.operator {
                "Exists" => true,
                _ => t.value == value,
            }
    })
}

/// The first NoSchedule/NoExecute taint the pod does not tolerate.
fn reference_untolerated(p: &PodModel, n: &NodeModel) -> Option<String> {
    n.taints
        .iter()
        .filter(|t| t.effect != "PreferNoSchedule")
        .find(|t| !reference_tolerates(&p.tolerations, t.key, t.value, t.effect))
        .map(|t| format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value))
}

fn reference_ports_free(p: &PodModel, n: &NodeModel) -> bool {
    let all = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
    p.ports.iter().all(|want| {
        !n.existing.iter().flat_map(|e| &e.ports).any(|used| {
            used.port == want.port
                && used.protocol == want.protocol
                && (used.ip == want.ip || all(used.ip) || all(want.ip))
        })
    })
}

fn reasons(r: Result<(), crate::framework::Rejection>) -> Vec<String> {
    r.err().map(|e| e.reasons).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn node_local_filters_agree_with_reference_checks(p in pod_strategy(), n in node_strategy()) {
        let pod_info = build_pod("incoming", &p).info();
        let node_info = build_node(&n);
        let state = CycleState::default();

        prop_assert_eq!(
            reasons(NodeResourcesFit.filter(&state, &pod_info, &node_info)),
            reference_shortfalls(&p, &n)
        );
        prop_assert_eq!(
            NodeAffinity.filter(&state, &pod_info, &node_info).is_ok(),
            reference_selector(&p, &n)
        );
        prop_assert_eq!(
            reasons(TaintToleration.filter(&state, &pod_info, &node_info)),
            reference_untolerated(&p, &n).into_iter().collect::<Vec<_>>()
        );
        prop_assert_eq!(
            NodePorts.filter(&state, &pod_info, &node_info).is_ok(),
            reference_ports_free(&p, &n)
        );
        prop_assert_eq!(
            NodeName.filter(&state, &pod_info, &node_info).is_ok(),
            p.node_name.is_none_or(|want| want == n.name)
        );
        prop_assert_eq!(
            NodeUnschedulable.filter(&state, &pod_info, &node_info).is_ok(),
            !n.unschedulable
                || reference_tolerates(&p.tolerations, "node.kubernetes.io/unschedulable", "", "NoSchedule")
        );
    }
}
