//! Resource amounts as the scheduler counts them: milli-CPU, bytes of memory and
//! ephemeral-storage, a pod count, and extended resources by name; and what a pod requests,
//! computed as Kubernetes computes it (init containers, sidecars, overhead).

use std::collections::BTreeMap;

use keel_types::k8s_openapi::api::core::v1::{Container, Pod};
use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use keel_types::Quantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// CPU a container without a CPU request counts as when spreading load (scoring only), as
/// kube-scheduler's `DefaultMilliCPURequest`.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request counts as when scoring (`DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`, …) in their integer units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// Reads a ResourceList (capacity, allocatable, requests). Unparseable quantities count as
    /// zero: validation refuses them on pods, and a node reporting one is the node's problem.
    pub fn from_list(list: Option<&BTreeMap<String, K8sQuantity>>) -> Resources {
        let mut out = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let Ok(q) = Quantity::parse(&q.0) else {
                continue;
            };
            out.set(name, q);
        }
        out
    }

    fn set(&mut self, name: &str, q: Quantity) {
        match name {
            CPU => self.milli_cpu = q.milli_value(),
            MEMORY => self.memory = q.value(),
            EPHEMERAL_STORAGE => self.ephemeral_storage = q.value(),
            PODS => self.pods = q.value(),
            other if is_scalar(other) => {
                self.scalar.insert(other.to_string(), q.value());
            }
            _ => {}
        }
    }

    /// Adds `other` to this amount.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.pods += other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) += v;
        }
    }

    /// Subtracts `other` from this amount.
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.pods -= other.pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_insert(0) -= v;
        }
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_insert(0);
            *e = (*e).max(*v);
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar.get(name).copied().unwrap_or(0)
    }
}

/// Whether a resource name is an extended resource (counted by name, as integers): anything
/// with a domain prefix outside `kubernetes.io`, hugepages, and attachable volumes.
pub fn is_scalar(name: &str) -> bool {
    if name.starts_with("hugepages-") || name.starts_with("attachable-volumes-") {
        return true;
    }
    match name.split_once('/') {
        Some((domain, _)) => {
            !(domain == "kubernetes.io" || domain.ends_with(".kubernetes.io"))
                || domain == "requests"
        }
        None => false,
    }
}

fn container_requests(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

/// What a pod requests, as kube-scheduler computes it (`resource.PodRequests`):
/// - the app containers' requests summed, plus sidecars (init containers with
///   `restartPolicy: Always`), which run beside them;
/// - each regular init container runs alone with the sidecars started before it, so the pod
///   needs at least the largest of those moments;
/// - plus `spec.overhead`. `pods` is not counted here (one pod is one pod).
pub fn pod_requests(pod: &Pod) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut app = Resources::default();
    for c in &spec.containers {
        app.add(&container_requests(c));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let req = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&req);
            // A sidecar starting also runs with every sidecar before it.
            init_peak.max_with(&sidecars);
        } else {
            let mut moment = req;
            moment.add(&sidecars);
            init_peak.max_with(&moment);
        }
    }
    app.add(&sidecars);
    app.max_with(&init_peak);
    app.add(&Resources::from_list(spec.overhead.as_ref()));
    app
}

/// A pod's CPU and memory requests for scoring, where a container that requests none counts as
/// the defaults (`DefaultMilliCPURequest`, `DefaultMemoryRequest`), so empty pods still spread.
pub fn pod_non_zero_requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else {
        return (0, 0);
    };
    let non_zero = |c: &Container| {
        let r = container_requests(c);
        let requested = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let has = |name: &str| requested.is_some_and(|m| m.contains_key(name));
        (
            if has(CPU) {
                r.milli_cpu
            } else {
                DEFAULT_MILLI_CPU_REQUEST
            },
            if has(MEMORY) {
                r.memory
            } else {
                DEFAULT_MEMORY_REQUEST
            },
        )
    };
    let (mut cpu, mut mem) = (0, 0);
    let (mut side_cpu, mut side_mem) = (0, 0);
    let (mut init_cpu, mut init_mem) = (0, 0);
    for c in &spec.containers {
        let (c_cpu, c_mem) = non_zero(c);
        cpu += c_cpu;
        mem += c_mem;
    }
    for c in spec.init_containers.iter().flatten() {
        let (c_cpu, c_mem) = non_zero(c);
        if c.restart_policy.as_deref() == Some("Always") {
            side_cpu += c_cpu;
            side_mem += c_mem;
            init_cpu = init_cpu.max(side_cpu);
            init_mem = init_mem.max(side_mem);
        } else {
            init_cpu = init_cpu.max(c_cpu + side_cpu);
            init_mem = init_mem.max(c_mem + side_mem);
        }
    }
    cpu = (cpu + side_cpu).max(init_cpu);
    mem = (mem + side_mem).max(init_mem);
    let overhead = Resources::from_list(spec.overhead.as_ref());
    (cpu + overhead.milli_cpu, mem + overhead.memory)
}
