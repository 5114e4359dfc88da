//! The simulated nodes as data: their names, addresses and pod CIDRs, and the Node objects
//! and statuses a kubelet on each would register and post. Pure: the flags and a clock
//! reading in, objects out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use keel_types::k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::flags::SimArgs;

/// The label every simulated node carries, so tools can tell them from real ones (KWOK marks
/// its nodes `type=kwok` for the same reason).
pub const SIM_LABEL: &str = "keel.dev/sim-node";
pub const KUBELET_VERSION: &str = "v1.32.0-keel-sim";
pub const RUNTIME_VERSION: &str = "sim://1.0";
/// Node `i`'s pod CIDR is the `i`-th /24 from here: 10.64.0.0/10 holds 16,384 of them.
const POD_CIDR_BASE: u32 = u32::from_be_bytes([10, 64, 0, 0]);
/// Node addresses come from 10.1.0.0/16, counting from 10.1.0.1.
const NODE_IP_BASE: u32 = u32::from_be_bytes([10, 1, 0, 0]);
/// The most nodes one address plan holds (the pod CIDRs run out first).
pub const MAX_NODES: usize = 1 << 14;
/// Pod addresses on a node: `.2` to `.254` of its /24 (`.1` is the bridge, as CNI plugins
/// keep it).
pub const FIRST_POD_HOST: u8 = 2;
pub const LAST_POD_HOST: u8 = 254;
/// Taints the node controllers put on and take off (not-ready, unreachable, uninitialized…):
/// a restarted sim leaves them to their owners.
const CONTROLLER_TAINT_PREFIXES: [&str; 2] =
    ["node.kubernetes.io/", "node.cloudprovider.kubernetes.io/"];

/// Why the flags describe no fleet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    #[error("--count must be between 1 and {MAX_NODES}, not {0}")]
    Count(usize),
    #[error("node name {name:?} is not a valid node name: {problems}")]
    Name { name: String, problems: String },
}

/// Every node's share of the flags: what each one offers and how it is labelled and tainted.
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    prefix: String,
    count: usize,
    /// Digits of the zero-padded index in every name.
    width: usize,
    zones: u32,
    capacity: BTreeMap<String, Quantity>,
    labels: Vec<(String, String)>,
    taints: Vec<Taint>,
}

/// The condition types a kubelet owns on its Node, with the status, reason and message it
/// posts for a healthy node.
const CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ),
];

impl Fleet {
    pub fn from_args(args: &SimArgs) -> Result<Fleet, FleetError> {
        if args.count == 0 || args.count > MAX_NODES {
            return Err(FleetError::Count(args.count));
        }
        let mut capacity: BTreeMap<String, Quantity> = [
            ("cpu", &args.cpu),
            ("memory", &args.memory),
            ("pods", &args.pods),
            ("ephemeral-storage", &args.ephemeral_storage),
        ]
        .into_iter()
        .map(|(name, q)| (name.to_string(), Quantity(q.clone())))
        .collect();
        for (name, q) in &args.extended_resources {
            capacity.insert(name.clone(), Quantity(q.clone()));
        }
        let width = (args.count - 1).to_string().len().max(4);
        let fleet = Fleet {
            prefix: args.name_prefix.clone(),
            count: args.count,
            width,
            zones: args.zones.max(1),
            capacity,
            labels: args.labels.clone(),
            taints: args.taints.clone(),
        };
        // The last name is the longest: if it is valid, all are.
        let last = fleet.name(args.count - 1);
        let problems = keel_types::names::dns1123_subdomain(&last);
        if !problems.is_empty() {
            return Err(FleetError::Name {
                name: last,
                problems: problems.join("; "),
            });
        }
        Ok(fleet)
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn name(&self, i: usize) -> String {
        format!("{}{i:0width$}", self.prefix, width = self.width)
    }

    /// The index of the node called `name`, if it is one of this fleet's.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        let digits = name.strip_prefix(&self.prefix)?;
        if digits.len() != self.width || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().filter(|&i| i < self.count)
    }

    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(NODE_IP_BASE + 1 + i as u32)
    }

    /// The first address of node `i`'s /24.
    fn pod_network(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::from(POD_CIDR_BASE + ((i as u32) << 8))
    }

    pub fn pod_cidr(&self, i: usize) -> String {
        format!("{}/24", self.pod_network(i))
    }

    /// The address `host` (the last octet) in node `i`'s pod CIDR.
    pub fn pod_ip(&self, i: usize, host: u8) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.pod_network(i)) | u32::from(host))
    }

    /// The last octet of `ip` if it is a pod address in node `i`'s CIDR.
    pub fn pod_host(&self, i: usize, ip: &str) -> Option<u8> {
        let ip: Ipv4Addr = ip.parse().ok()?;
        let [a, b, c, host] = ip.octets();
        let [na, nb, nc, _] = self.pod_network(i).octets();
        ((a, b, c) == (na, nb, nc) && (FIRST_POD_HOST..=LAST_POD_HOST).contains(&host))
            .then_some(host)
    }

    fn labels(&self, i: usize) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = [
            ("kubernetes.io/hostname", self.name(i)),
            ("kubernetes.io/os", "linux".to_string()),
            ("kubernetes.io/arch", "amd64".to_string()),
            (SIM_LABEL, "true".to_string()),
            (
                "topology.kubernetes.io/zone",
                format!("zone-{}", i as u32 % self.zones),
            ),
            ("topology.kubernetes.io/region", "region-0".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Flag labels come last so a user can override a default (a zone, say).
        labels.extend(self.labels.iter().cloned());
        labels
    }

    /// Node `i` as registered: metadata and spec (the API server ignores a status on create;
    /// it is posted separately, as kubelet does).
    pub fn node(&self, i: usize) -> Node {
        let name = self.name(i);
        Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(self.labels(i)),
                annotations: Some(BTreeMap::from([(
                    "node.alpha.kubernetes.io/ttl".to_string(),
                    "0".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: Some(self.pod_cidr(i)),
                pod_cidrs: Some(vec![self.pod_cidr(i)]),
                provider_id: Some(format!("keel-sim://{name}")),
                taints: (!self.taints.is_empty()).then(|| self.taints.clone()),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// `existing` (a node of this name found at registration) as node `i` of this fleet:
    /// its labels and annotations with this fleet's set over them, the spec's addresses and
    /// taints replaced — keeping taints the node controllers manage, which they remove
    /// themselves, and a cordon someone set. The resourceVersion stays, so the write is
    /// conditional.
    pub fn updated(&self, i: usize, existing: Node) -> Node {
        let wanted = self.node(i);
        let mut node = existing;
        let labels = node.metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(wanted.metadata.labels.unwrap_or_default());
        let annotations = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.extend(wanted.metadata.annotations.unwrap_or_default());
        let mut spec = wanted.spec.unwrap_or_default();
        let old = node.spec.take().unwrap_or_default();
        let controlled = old.taints.unwrap_or_default().into_iter().filter(|t| {
            CONTROLLER_TAINT_PREFIXES
                .iter()
                .any(|p| t.key.starts_with(p))
                && !self
                    .taints
                    .iter()
                    .any(|own| own.key == t.key && own.effect == t.effect)
        });
        let taints: Vec<Taint> = self.taints.iter().cloned().chain(controlled).collect();
        spec.taints = (!taints.is_empty()).then_some(taints);
        spec.unschedulable = old.unschedulable;
        node.spec = Some(spec);
        node
    }

    /// Since when node `i`'s conditions have held, given the status found at registration:
    /// kept if the node was already healthy as posted, else `now` (they change now).
    pub fn unchanged_since(&self, i: usize, observed: Option<&NodeStatus>, now: &Time) -> Time {
        let ready_since = observed
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.clone());
        match ready_since {
            Some(since) if !self.status_drifted(i, observed) => since,
            _ => now.clone(),
        }
    }

    /// The status node `i`'s kubelet posts: healthy, heartbeat at `heartbeat`, conditions in
    /// their current state `since`.
    pub fn status(&self, i: usize, heartbeat: Time, since: Time) -> NodeStatus {
        let name = self.name(i);
        let conditions = CONDITIONS
            .iter()
            .map(|(type_, status, reason, message)| NodeCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_heartbeat_time: Some(heartbeat.clone()),
                last_transition_time: Some(since.clone()),
            })
            .collect();
        NodeStatus {
            capacity: Some(self.capacity.clone()),
            allocatable: Some(self.capacity.clone()),
            conditions: Some(conditions),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: self.node_ip(i).to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: name,
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                kubelet_version: KUBELET_VERSION.into(),
                kube_proxy_version: KUBELET_VERSION.into(),
                container_runtime_version: RUNTIME_VERSION.into(),
                kernel_version: "6.1.0-keel-sim".into(),
                os_image: "keel simulated node".into(),
                machine_id: format!("{i:032x}"),
                system_uuid: uuid_of(i),
                boot_id: uuid_of(i),
            }),
            phase: None,
            ..Default::default()
        }
    }

    /// Whether `observed` differs from what node `i`'s kubelet would post in a way a kubelet
    /// notices at once (a condition someone else flipped, capacity that changed), as opposed
    /// to only older heartbeat times.
    pub fn status_drifted(&self, i: usize, observed: Option<&NodeStatus>) -> bool {
        let Some(observed) = observed else {
            return true;
        };
        let posted = |type_: &str| {
            observed
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == type_)
                .map(|c| c.status.as_str())
        };
        let conditions_moved = CONDITIONS
            .iter()
            .any(|(type_, status, _, _)| posted(type_) != Some(*status));
        conditions_moved
            || observed.capacity.as_ref() != Some(&self.capacity)
            || observed.allocatable.as_ref() != Some(&self.capacity)
            || observed
                .addresses
                .as_ref()
                .and_then(|a| a.first())
                .map(|a| a.address.as_str())
                != Some(self.node_ip(i).to_string().as_str())
    }
}

/// A stable UUID-shaped identifier for node `i`.
fn uuid_of(i: usize) -> String {
    let hex = format!("{i:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use keel_types::k8s_openapi::chrono::{TimeZone, Utc};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    fn fleet(flags: &[&str]) -> Fleet {
        let cli = Cli::try_parse_from(["sim"].iter().chain(flags)).unwrap();
        Fleet::from_args(&cli.args).unwrap()
    }

    fn at(secs: i64) -> Time {
        Time(Utc.timestamp_opt(secs, 0).unwrap())
    }

    #[test]
    fn names_are_zero_padded_so_they_sort_and_map_back_to_their_index() {
        let fleet = fleet(&["--count", "50"]);

        assert_eq!(fleet.name(0), "sim-node-0000");
        assert_eq!(fleet.name(49), "sim-node-0049");
        assert_eq!(fleet.index_of("sim-node-0049"), Some(49));
        assert_eq!(fleet.index_of("sim-node-0050"), None, "beyond the count");
        assert_eq!(fleet.index_of("sim-node-49"), None, "not padded");
        assert_eq!(fleet.index_of("real-node-0001"), None);
    }

    #[test]
    fn names_widen_beyond_four_digits_for_large_fleets() {
        let fleet = fleet(&["--count", "12000", "--name-prefix", "n-"]);

        assert_eq!(fleet.name(7), "n-00007");
        assert_eq!(fleet.index_of("n-11999"), Some(11999));
    }

    #[test]
    fn a_node_carries_the_kubelet_labels_zone_region_and_flag_labels() {
        let fleet = fleet(&["--count", "5", "--zones", "2", "--label", "tier=gold"]);

        let labels = fleet.node(3).metadata.labels.unwrap();

        assert_eq!(labels["kubernetes.io/hostname"], "sim-node-0003");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels[SIM_LABEL], "true");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(labels["topology.kubernetes.io/region"], "region-0");
        assert_eq!(labels["tier"], "gold");
    }

    #[test]
    fn zones_go_round_robin() {
        let fleet = fleet(&["--count", "7"]);

        let zones: Vec<String> = (0..7)
            .map(|i| fleet.node(i).metadata.labels.unwrap()["topology.kubernetes.io/zone"].clone())
            .collect();

        assert_eq!(
            zones,
            ["zone-0", "zone-1", "zone-2", "zone-0", "zone-1", "zone-2", "zone-0"]
        );
    }

    #[test]
    fn a_node_carries_the_flag_taints_and_its_own_pod_cidr() {
        let fleet = fleet(&[
            "--count",
            "300",
            "--taint",
            "dedicated=sim:NoSchedule",
            "--taint",
            "spot:PreferNoSchedule",
        ]);

        let spec = fleet.node(257).spec.unwrap();

        let taints = spec.taints.unwrap();
        assert_eq!(taints.len(), 2);
        assert_eq!(taints[0].key, "dedicated");
        assert_eq!(taints[1].effect, "PreferNoSchedule");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.65.1.0/24"));
        assert_eq!(spec.pod_cidrs, Some(vec!["10.65.1.0/24".to_string()]));
        assert_eq!(
            fleet.node(0).spec.unwrap().pod_cidr.as_deref(),
            Some("10.64.0.0/24")
        );
    }

    #[test]
    fn capacity_equals_allocatable_and_includes_extended_resources() {
        let fleet = fleet(&[
            "--count",
            "1",
            "--cpu",
            "8",
            "--memory",
            "32Gi",
            "--extended-resource",
            "example.com/gpu=4",
        ]);

        let status = fleet.status(0, at(100), at(50));

        let capacity = status.capacity.clone().unwrap();
        assert_eq!(capacity["cpu"].0, "8");
        assert_eq!(capacity["memory"].0, "32Gi");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(capacity["ephemeral-storage"].0, "100Gi");
        assert_eq!(capacity["example.com/gpu"].0, "4");
        assert_eq!(status.allocatable, status.capacity);
    }

    #[test]
    fn the_status_is_a_healthy_kubelet_s() {
        let fleet = fleet(&["--count", "3"]);

        let status = fleet.status(2, at(100), at(50));

        let conditions = status.conditions.unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(ready.last_heartbeat_time, Some(at(100)));
        assert_eq!(ready.last_transition_time, Some(at(50)));
        for pressure in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            let c = conditions.iter().find(|c| c.type_ == pressure).unwrap();
            assert_eq!(c.status, "False", "{pressure}");
        }
        let addresses = status.addresses.unwrap();
        assert_eq!(addresses[0].type_, "InternalIP");
        assert_eq!(addresses[0].address, "10.1.0.3");
        assert_eq!(addresses[1].type_, "Hostname");
        assert_eq!(addresses[1].address, "sim-node-0002");
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.32.0-keel-sim");
        assert_eq!(info.container_runtime_version, "sim://1.0");
        assert_eq!(
            (info.operating_system.as_str(), info.architecture.as_str()),
            ("linux", "amd64")
        );
    }

    #[test]
    fn addresses_are_distinct_across_the_fleet() {
        let fleet = fleet(&["--count", "16384"]);

        let node_ips: std::collections::HashSet<_> =
            (0..fleet.count()).map(|i| fleet.node_ip(i)).collect();
        let cidrs: std::collections::HashSet<_> =
            (0..fleet.count()).map(|i| fleet.pod_cidr(i)).collect();

        assert_eq!(node_ips.len(), 16384);
        assert_eq!(cidrs.len(), 16384);
        assert_eq!(fleet.pod_cidr(16383), "10.127.255.0/24");
    }

    #[test]
    fn pod_addresses_belong_to_their_node_s_cidr() {
        let fleet = fleet(&["--count", "3"]);

        assert_eq!(fleet.pod_ip(1, 2).to_string(), "10.64.1.2");
        assert_eq!(fleet.pod_host(1, "10.64.1.2"), Some(2));
        assert_eq!(fleet.pod_host(2, "10.64.1.2"), None, "another node's");
        assert_eq!(fleet.pod_host(1, "10.64.1.1"), None, "the bridge");
        assert_eq!(fleet.pod_host(1, "garbage"), None);
    }

    #[test]
    fn too_many_nodes_or_an_invalid_prefix_is_refused() {
        let parse = |flags: &[&str]| {
            let cli = Cli::try_parse_from(["sim"].iter().chain(flags)).unwrap();
            Fleet::from_args(&cli.args)
        };

        assert_eq!(parse(&["--count", "16385"]), Err(FleetError::Count(16385)));
        assert_eq!(parse(&["--count", "0"]), Err(FleetError::Count(0)));
        assert!(matches!(
            parse(&["--count", "1", "--name-prefix", "Bad_"]),
            Err(FleetError::Name { .. })
        ));
    }

    #[test]
    fn an_existing_node_is_taken_over_keeping_what_others_own() {
        let fleet = fleet(&["--count", "2", "--taint", "dedicated=sim:NoSchedule"]);
        let mut existing = fleet.node(1);
        existing.metadata.resource_version = Some("42".into());
        existing.metadata.uid = Some("uid-1".into());
        existing.metadata.labels = Some(BTreeMap::from([
            ("team".to_string(), "infra".to_string()),
            (
                "topology.kubernetes.io/zone".to_string(),
                "elsewhere".to_string(),
            ),
        ]));
        existing.spec = Some(NodeSpec {
            pod_cidr: Some("192.168.0.0/24".into()),
            unschedulable: Some(true),
            taints: Some(vec![
                Taint {
                    key: "old-flag".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                },
                Taint {
                    key: "node.kubernetes.io/unreachable".into(),
                    effect: "NoExecute".into(),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        });

        let node = fleet.updated(1, existing);

        assert_eq!(node.metadata.resource_version.as_deref(), Some("42"));
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels["team"], "infra");
        assert_eq!(labels["topology.kubernetes.io/zone"], "zone-1");
        assert_eq!(labels[SIM_LABEL], "true");
        let spec = node.spec.unwrap();
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.64.1.0/24"));
        assert_eq!(spec.unschedulable, Some(true));
        let keys: Vec<String> = spec.taints.unwrap().into_iter().map(|t| t.key).collect();
        assert_eq!(keys, ["dedicated", "node.kubernetes.io/unreachable"]);
    }

    #[test]
    fn conditions_found_healthy_keep_their_transition_time() {
        let fleet = fleet(&["--count", "1"]);
        let healthy = fleet.status(0, at(100), at(50));
        let mut not_ready = healthy.clone();
        if let Some(c) = not_ready.conditions.as_mut() {
            c[3].status = "Unknown".into();
        }

        assert_eq!(fleet.unchanged_since(0, Some(&healthy), &at(200)), at(50));
        assert_eq!(
            fleet.unchanged_since(0, Some(&not_ready), &at(200)),
            at(200)
        );
        assert_eq!(fleet.unchanged_since(0, None, &at(200)), at(200));
    }

    #[test]
    fn drift_is_a_changed_condition_or_capacity_not_an_old_heartbeat() {
        let fleet = fleet(&["--count", "2"]);
        let posted = fleet.status(1, at(100), at(50));
        let older = fleet.status(1, at(10), at(5));
        let mut not_ready = posted.clone();
        if let Some(c) = not_ready.conditions.as_mut() {
            c[3].status = "Unknown".into();
        }
        let mut smaller = posted.clone();
        if let Some(c) = smaller.capacity.as_mut() {
            c.insert("cpu".into(), Quantity("1".into()));
        }

        assert!(!fleet.status_drifted(1, Some(&posted)));
        assert!(!fleet.status_drifted(1, Some(&older)));
        assert!(fleet.status_drifted(1, Some(&not_ready)));
        assert!(fleet.status_drifted(1, Some(&smaller)));
        assert!(fleet.status_drifted(1, None));
        assert!(
            fleet.status_drifted(0, Some(&posted)),
            "another node's address"
        );
    }
}
