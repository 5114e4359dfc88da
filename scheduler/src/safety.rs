//! The scheduler's safety property. The real [`Cache`] and [`Algorithm::schedule`] with the
//! default profile are driven as the shell drives them (update the snapshot, decide, assume,
//! bind later) through a random interleaving of decisions, bind completions and failures, pod
//! deletions, node additions and cordons, with several decisions assumed but not yet bound at
//! once. After every step a reference computed from scratch from the list of placements
//! (bound and assumed) must agree that no pod sits where a filter forbids it and no node is
//! overcommitted.
//!
//! What the reference decides exactly, and so what is checked:
//! - after every step, on every node: summed cpu, memory and pod count within allocatable; no
//!   two pods holding the same host port and protocol; at most one pod of the anti-affinity
//!   group (required anti-affinity on the hostname); every pod's nodeSelector matched and
//!   every NoSchedule/NoExecute taint tolerated;
//! - at each decision: the node was not cordoned (unless the pod tolerates every taint), and
//!   for a pod of the spread group its zone held at most one more of the group than the
//!   emptiest eligible zone, counting the pod. Only at decisions: deletions and failed binds
//!   may unbalance zones afterwards, and cordoning moves no pod;
//! - the cache's own books: each pod placed at most once, where the reference has it, bound
//!   or assumed as the reference has it, and every node's counted requests (in the cache and
//!   in the snapshot a decision sees) equal to the reference's sums;
//! - a placed pod, assumed or bound, is never assumed again, on any node.
//!
//! Not checked: scores (which feasible node wins is free), and which pods stay pending (the
//! reference does not decide feasibility, only that what was placed was allowed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;

use crate::cache::{Cache, CacheError};
use crate::cycle::{Algorithm, Nominated};
use crate::framework::{PodInfo, Snapshot};
use crate::plugins::default_profile;
use crate::resources::Resources;
use crate::test_support::{node, pod, spread, term, NodeBuilder, PodBuilder, HOSTNAME, ZONE};

/// The node labels a pod may select on.
const DISK: &str = "disk";

/// The one taint a generated node may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeTaint {
    None,
    /// `dedicated=gpu:NoSchedule`
    Dedicated,
    /// `maintenance:NoExecute`
    Maintenance,
    /// `soft:PreferNoSchedule`, which keeps no pod off.
    Soft,
}

/// The one toleration a generated pod may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tolerates {
    Nothing,
    /// `dedicated Equal gpu, NoSchedule`
    Dedicated,
    /// `maintenance Exists`, any effect.
    Maintenance,
    /// `Exists` without a key: every taint, the cordon's among them.
    Everything,
}

/// Which group a pod belongs to; groups are told apart by the `group` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    None,
    /// Required anti-affinity on the hostname against its own group: one per node.
    Apart,
    /// A DoNotSchedule spread over zones with maxSkew 1 against its own group.
    Spread,
}

impl Group {
    fn label(self) -> Option<&'static str> {
        match self {
            Group::None => None,
            Group::Apart => Some("apart"),
            Group::Spread => Some("spread"),
        }
    }
}

#[derive(Debug, Clone)]
struct GenNode {
    milli_cpu: i64,
    memory_mi: i64,
    pods: i64,
    zone: Option<u8>,
    disk: Option<&'static str>,
    taint: NodeTaint,
    cordoned: bool,
}

impl GenNode {
    fn builder(&self, name: &str) -> NodeBuilder {
        let cpu = format!("{}m", self.milli_cpu);
        let memory = format!("{}Mi", self.memory_mi);
        let pods = self.pods.to_string();
        let mut b = node(name).allocatable(&[("cpu", &cpu), ("memory", &memory), ("pods", &pods)]);
        if let Some(zone) = self.zone {
            b = b.label(ZONE, &format!("z{zone}"));
        }
        if let Some(disk) = self.disk {
            b = b.label(DISK, disk);
        }
        b = match self.taint {
            NodeTaint::None => b,
            NodeTaint::Dedicated => b.taint("dedicated", "gpu", "NoSchedule"),
            NodeTaint::Maintenance => b.taint("maintenance", "", "NoExecute"),
            NodeTaint::Soft => b.taint("soft", "", "PreferNoSchedule"),
        };
        if self.cordoned {
            b = b.unschedulable();
        }
        b
    }
}

/// A pod: app and regular init containers as (milli-cpu, MiB) requests, a `disk` nodeSelector,
/// a toleration, a host port, a group.
#[derive(Debug, Clone)]
struct GenPod {
    containers: Vec<(i64, i64)>,
    inits: Vec<(i64, i64)>,
    disk: Option<&'static str>,
    tolerates: Tolerates,
    port: Option<(i32, &'static str)>,
    group: Group,
}

fn with_requests(
    b: PodBuilder,
    (milli_cpu, memory_mi): (i64, i64),
    add: fn(PodBuilder, &[(&str, &str)]) -> PodBuilder,
) -> PodBuilder {
    let cpu = format!("{milli_cpu}m");
    let memory = format!("{memory_mi}Mi");
    let mut requests = Vec::new();
    if milli_cpu > 0 {
        requests.push(("cpu", cpu.as_str()));
    }
    if memory_mi > 0 {
        requests.push(("memory", memory.as_str()));
    }
    add(b, &requests)
}

impl GenPod {
    fn builder(&self, name: &str) -> PodBuilder {
        let mut b = pod(name);
        for &r in &self.containers {
            b = with_requests(b, r, PodBuilder::container);
        }
        for &r in &self.inits {
            b = with_requests(b, r, PodBuilder::init_container);
        }
        if let Some(disk) = self.disk {
            b = b.node_selector(DISK, disk);
        }
        b = match self.tolerates {
            Tolerates::Nothing => b,
            Tolerates::Dedicated => b.toleration("dedicated", "Equal", "gpu", "NoSchedule"),
            Tolerates::Maintenance => b.toleration("maintenance", "Exists", "", ""),
            Tolerates::Everything => b.toleration("", "Exists", "", ""),
        };
        if let Some((port, protocol)) = self.port {
            b = b.host_port(port, protocol, "");
        }
        if let Some(group) = self.group.label() {
            b = b.labels(&[("group", group)]);
            b = match self.group {
                Group::Apart => b.required_anti_affinity(term(&[("group", group)], HOSTNAME)),
                _ => b.spread(spread(1, ZONE, "DoNotSchedule", &[("group", group)])),
            };
        }
        b
    }

    /// What the pod holds on its node: the app containers together, or the largest init
    /// container alone, whichever is more, per resource.
    fn requests(&self) -> (i64, i64) {
        let sum = |f: fn(&(i64, i64)) -> i64| self.containers.iter().map(f).sum::<i64>();
        let peak = |f: fn(&(i64, i64)) -> i64| self.inits.iter().map(f).max().unwrap_or(0);
        (
            sum(|r| r.0).max(peak(|r| r.0)),
            sum(|r| r.1).max(peak(|r| r.1)),
        )
    }

    fn selects(&self, node: &GenNode) -> bool {
        self.disk.is_none_or(|d| node.disk == Some(d))
    }

    fn tolerates(&self, taint: NodeTaint) -> bool {
        match taint {
            NodeTaint::None | NodeTaint::Soft => true,
            NodeTaint::Dedicated => {
                matches!(self.tolerates, Tolerates::Dedicated | Tolerates::Everything)
            }
            NodeTaint::Maintenance => {
                matches!(
                    self.tolerates,
                    Tolerates::Maintenance | Tolerates::Everything
                )
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Decide for a pending pod.
    Decide(Index),
    /// The API confirms an in-flight bind.
    Bind(Index),
    /// An in-flight bind fails; the pod is pending again.
    FailBind(Index),
    /// A bound pod is deleted.
    Delete(Index),
    AddNode(GenNode),
    Cordon(Index),
    /// A placed pod (assumed or bound) is offered to `assume` again, on some node.
    AssumeAgain(Index, Index),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    node: usize,
    assumed: bool,
}

/// The reference: the generated nodes and pods and where each pod is, kept apart from the
/// cache and consulted only through plain recomputation.
struct World {
    nodes: Vec<GenNode>,
    pods: Vec<GenPod>,
    /// The pods as the queue hands them out (no node yet).
    pending_infos: Vec<Arc<PodInfo>>,
    pending: Vec<usize>,
    in_flight: Vec<usize>,
    bound: Vec<usize>,
    placed: BTreeMap<usize, Placement>,
}

fn node_name(i: usize) -> String {
    format!("n{i}")
}

fn pod_name(i: usize) -> String {
    format!("p{i}")
}

fn pod_key(i: usize) -> String {
    format!("default/{}", pod_name(i))
}

impl World {
    fn new(pods: Vec<GenPod>) -> World {
        World {
            pending_infos: pods
                .iter()
                .enumerate()
                .map(|(i, p)| Arc::new(p.builder(&pod_name(i)).info()))
                .collect(),
            pending: (0..pods.len()).collect(),
            pods,
            nodes: Vec::new(),
            in_flight: Vec::new(),
            bound: Vec::new(),
            placed: BTreeMap::new(),
        }
    }

    fn add_node(&mut self, cache: &mut Cache, n: GenNode) {
        let name = node_name(self.nodes.len());
        cache.set_node(Arc::new(n.builder(&name).build()));
        self.nodes.push(n);
    }

    /// The placed pods on node `n`.
    fn on_node(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        self.placed
            .iter()
            .filter(move |(_, p)| p.node == n)
            .map(|(&i, _)| i)
    }

    /// (milli-cpu, MiB, pods) the placed pods hold on node `n`.
    fn held(&self, n: usize) -> (i64, i64, i64) {
        self.on_node(n).fold((0, 0, 0), |(c, m, k), i| {
            let (pc, pm) = self.pods[i].requests();
            (c + pc, m + pm, k + 1)
        })
    }

    /// The invariants that hold at every moment, from the placements alone.
    fn check(&self) -> Result<(), TestCaseError> {
        for (n, node) in self.nodes.iter().enumerate() {
            let (cpu, memory, count) = self.held(n);
            prop_assert!(
                cpu <= node.milli_cpu && memory <= node.memory_mi && count <= node.pods,
                "n{} overcommitted: holds {}m, {}Mi, {} pods of {}m, {}Mi, {} pods",
                n,
                cpu,
                memory,
                count,
                node.milli_cpu,
                node.memory_mi,
                node.pods
            );
            let mut ports = BTreeSet::new();
            for i in self.on_node(n) {
                if let Some(port) = self.pods[i].port {
                    prop_assert!(
                        ports.insert(port),
                        "n{} holds host port {:?} twice",
                        n,
                        port
                    );
                }
            }
            let apart = self
                .on_node(n)
                .filter(|&i| self.pods[i].group == Group::Apart)
                .count();
            prop_assert!(apart <= 1, "n{} holds {} pods kept apart", n, apart);
        }
        for (&i, p) in &self.placed {
            let (pod, node) = (&self.pods[i], &self.nodes[p.node]);
            prop_assert!(pod.selects(node), "p{} on n{}: selector", i, p.node);
            prop_assert!(pod.tolerates(node.taint), "p{} on n{}: taint", i, p.node);
        }
        Ok(())
    }

    /// What must hold of the node the scheduler chose for pod `i`, before it is placed.
    fn check_decision(&self, i: usize, n: usize) -> Result<(), TestCaseError> {
        let (pod, node) = (&self.pods[i], &self.nodes[n]);
        // The cordon's taint is tolerated by a pod tolerating every taint, as DaemonSet pods do.
        prop_assert!(
            !node.cordoned || pod.tolerates == Tolerates::Everything,
            "p{} placed on cordoned n{}",
            i,
            n
        );
        if pod.group == Group::Spread {
            let Some(zone) = node.zone else {
                return Err(TestCaseError::fail(format!(
                    "p{i} placed on zone-less n{n}"
                )));
            };
            // nodeAffinityPolicy Honor: only zones of nodes the pod may select count as
            // domains, and only pods on such nodes are counted; taints are ignored.
            let mut per_zone: BTreeMap<u8, i64> = BTreeMap::new();
            for (m, other) in self.nodes.iter().enumerate() {
                let Some(z) = other.zone.filter(|_| pod.selects(other)) else {
                    continue;
                };
                let spread = self
                    .on_node(m)
                    .filter(|&j| self.pods[j].group == Group::Spread)
                    .count() as i64;
                *per_zone.entry(z).or_default() += spread;
            }
            let min = per_zone.values().copied().min().unwrap_or(0);
            let here = per_zone.get(&zone).copied().unwrap_or(0);
            prop_assert!(
                here + 1 - min <= 1,
                "p{} placed in z{} with spread pods per zone {:?}: skew above 1",
                i,
                zone,
                per_zone
            );
        }
        Ok(())
    }

    /// The cache's books agree with the reference: every pod where the reference has it and
    /// every node counting exactly what the reference sums.
    fn check_books(&self, cache: &Cache) -> Result<(), TestCaseError> {
        for i in 0..self.pods.len() {
            let want = self.placed.get(&i).map(|p| (node_name(p.node), p.assumed));
            let got = cache
                .placement(&pod_key(i))
                .map(|(n, assumed)| (n.to_string(), assumed));
            prop_assert_eq!(got, want, "p{} placement", i);
        }
        prop_assert_eq!(cache.pod_keys().count(), self.placed.len());
        for n in 0..self.nodes.len() {
            let info = cache.node(&node_name(n));
            prop_assert!(info.is_some(), "n{} missing from the cache", n);
            let requested = info.map(|i| &i.requested);
            self.check_counts(n, requested, "cache")?;
        }
        Ok(())
    }

    /// The snapshot a decision sees has every node and counts every placed pod.
    fn check_snapshot(&self, snapshot: &Snapshot) -> Result<(), TestCaseError> {
        prop_assert_eq!(snapshot.len(), self.nodes.len());
        for n in 0..self.nodes.len() {
            let requested = snapshot.get(&node_name(n)).map(|i| &i.requested);
            self.check_counts(n, requested, "snapshot")?;
        }
        Ok(())
    }

    fn check_counts(
        &self,
        n: usize,
        requested: Option<&Resources>,
        whose: &str,
    ) -> Result<(), TestCaseError> {
        let (cpu, memory_mi, count) = self.held(n);
        let got = requested.map(|r| (r.milli_cpu, r.memory, r.pods));
        prop_assert_eq!(
            got,
            Some((cpu, memory_mi << 20, count)),
            "n{} as the {} counts it",
            n,
            whose
        );
        Ok(())
    }
}

/// Takes the element `at` selects out of `list`, if any.
fn take(list: &mut Vec<usize>, at: &Index) -> Option<usize> {
    (!list.is_empty()).then(|| list.remove(at.index(list.len())))
}

/// Runs `ops` over a cluster of `nodes` with `pods` to schedule, checking after every step.
fn run(
    nodes: Vec<GenNode>,
    pods: Vec<GenPod>,
    ops: Vec<Op>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut cache = Cache::new();
    let mut snapshot = Snapshot::default();
    let mut algorithm = Algorithm::new(default_profile(), 0, seed);
    let no_nominations = Nominated::new();
    let mut world = World::new(pods);
    for n in nodes {
        world.add_node(&mut cache, n);
    }
    for op in ops {
        match op {
            Op::Decide(at) => {
                if world.pending.is_empty() {
                    continue;
                }
                let slot = at.index(world.pending.len());
                let i = world.pending[slot];
                let info = world.pending_infos[i].clone();
                // A pending pod is placed nowhere; the shell's schedule_one skips one that is.
                prop_assert!(cache.placement(&info.key()).is_none());
                cache.update_snapshot(&mut snapshot);
                world.check_snapshot(&snapshot)?;
                let Ok(placement) = algorithm.schedule(&info, &snapshot, &no_nominations) else {
                    continue;
                };
                let Some(n) = (0..world.nodes.len()).find(|&n| node_name(n) == placement.node)
                else {
                    return Err(TestCaseError::fail(format!("placed on {}", placement.node)));
                };
                world.check_decision(i, n)?;
                prop_assert_eq!(cache.assume(info, &placement.node), Ok(()));
                world.pending.remove(slot);
                world.in_flight.push(i);
                world.placed.insert(
                    i,
                    Placement {
                        node: n,
                        assumed: true,
                    },
                );
            }
            Op::Bind(at) => {
                let Some(i) = take(&mut world.in_flight, &at) else {
                    continue;
                };
                let Some(p) = world.placed.get_mut(&i) else {
                    return Err(TestCaseError::fail(format!("p{i} in flight, not placed")));
                };
                p.assumed = false;
                let name = node_name(p.node);
                let bound = world.pods[i].builder(&pod_name(i)).node_name(&name);
                cache.set_bound_pod(Arc::new(bound.info()), &name);
                world.bound.push(i);
            }
            Op::FailBind(at) => {
                let Some(i) = take(&mut world.in_flight, &at) else {
                    continue;
                };
                cache.forget(&pod_key(i));
                world.placed.remove(&i);
                world.pending.push(i);
            }
            Op::Delete(at) => {
                let Some(i) = take(&mut world.bound, &at) else {
                    continue;
                };
                cache.remove_pod(&pod_key(i));
                world.placed.remove(&i);
            }
            Op::AddNode(n) => world.add_node(&mut cache, n),
            Op::Cordon(at) => {
                if world.nodes.is_empty() {
                    continue;
                }
                let n = at.index(world.nodes.len());
                world.nodes[n].cordoned = true;
                let node = world.nodes[n].builder(&node_name(n)).build();
                cache.set_node(Arc::new(node));
            }
            Op::AssumeAgain(which, to) => {
                let placed: Vec<usize> = world.placed.keys().copied().collect();
                if placed.is_empty() || world.nodes.is_empty() {
                    continue;
                }
                let i = placed[which.index(placed.len())];
                let to = node_name(to.index(world.nodes.len()));
                let again = Arc::new(world.pods[i].builder(&pod_name(i)).info());
                prop_assert_eq!(
                    cache.assume(again, &to),
                    Err(CacheError::AlreadyPlaced(pod_key(i)))
                );
            }
        }
        world.check()?;
        world.check_books(&cache)?;
    }
    Ok(())
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    (
        (2..=8i64).prop_map(|c| c * 500),
        (1..=8i64).prop_map(|m| m * 1024),
        1..=5i64,
        prop::option::weighted(0.85, 0..3u8),
        prop::option::of(prop::sample::select(vec!["ssd", "hdd"])),
        prop::sample::select(vec![
            NodeTaint::None,
            NodeTaint::None,
            NodeTaint::None,
            NodeTaint::Dedicated,
            NodeTaint::Maintenance,
            NodeTaint::Soft,
        ]),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(milli_cpu, memory_mi, pods, zone, disk, taint, cordoned)| GenNode {
                milli_cpu,
                memory_mi,
                pods,
                zone,
                disk,
                taint,
                cordoned,
            },
        )
}

fn gen_requests() -> impl Strategy<Value = (i64, i64)> {
    (
        (0..=12i64).prop_map(|c| c * 100),
        (0..=12i64).prop_map(|m| m * 256),
    )
}

fn gen_pod() -> impl Strategy<Value = GenPod> {
    (
        prop::collection::vec(gen_requests(), 1..3),
        prop::collection::vec(gen_requests(), 0..2),
        prop::option::weighted(0.25, Just("ssd")),
        prop::sample::select(vec![
            Tolerates::Nothing,
            Tolerates::Nothing,
            Tolerates::Dedicated,
            Tolerates::Maintenance,
            Tolerates::Everything,
        ]),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec![(8080, "TCP"), (8080, "UDP"), (9090, "TCP")]),
        ),
        prop::sample::select(vec![Group::None, Group::Apart, Group::Spread]),
    )
        .prop_map(|(containers, inits, disk, tolerates, port, group)| GenPod {
            containers,
            inits,
            disk,
            tolerates,
            port,
            group,
        })
}

fn gen_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<Index>().prop_map(Op::Decide),
        2 => any::<Index>().prop_map(Op::Bind),
        1 => any::<Index>().prop_map(Op::FailBind),
        1 => any::<Index>().prop_map(Op::Delete),
        1 => gen_node().prop_map(Op::AddNode),
        1 => any::<Index>().prop_map(Op::Cordon),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Op::AssumeAgain(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Over random nodes, pods and interleavings of concurrent decisions, bind outcomes,
    /// deletions and node changes, no pod is placed on a node that fails a filter and no node
    /// is ever overcommitted.
    #[test]
    fn concurrent_decisions_never_overcommit_a_node_or_break_a_filter(
        nodes in prop::collection::vec(gen_node(), 1..6),
        pods in prop::collection::vec(gen_pod(), 1..20),
        ops in prop::collection::vec(gen_op(), 1..80),
        seed in any::<u64>(),
    ) {
        run(nodes, pods, ops, seed)?;
    }
}
