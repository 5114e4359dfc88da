//! The Node's capacity and allocatable resources, computed as kubelet computes them with no
//! reservations: allocatable is capacity less kubelet's default hard eviction thresholds
//! (memory.available 100Mi, nodefs.available 10 %) and less the memory huge pages hold.

use std::collections::BTreeMap;

use keel_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::host::{FsStats, HostFacts};

/// kubelet's default hard eviction threshold for memory.available.
pub const EVICTION_MEMORY_AVAILABLE_BYTES: u64 = 100 * 1024 * 1024;
/// kubelet's default hard eviction threshold for nodefs.available, in percent of the
/// filesystem.
pub const EVICTION_NODEFS_AVAILABLE_PERCENT: u64 = 10;

/// Resources by name, in the order Kubernetes prints them.
pub type Resources = BTreeMap<String, Quantity>;

/// The node's capacity: CPUs, memory, the node filesystem, pods and huge pages.
pub fn capacity(facts: &HostFacts, nodefs: FsStats, max_pods: u32) -> Resources {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(facts.cpus.to_string())),
        ("memory".to_owned(), bytes(facts.memory_bytes)),
        ("ephemeral-storage".to_owned(), bytes(nodefs.capacity_bytes)),
        ("pods".to_owned(), Quantity(max_pods.to_string())),
        ("hugepages-2Mi".to_owned(), bytes(facts.hugepages_2mi_bytes)),
        ("hugepages-1Gi".to_owned(), bytes(facts.hugepages_1gi_bytes)),
    ])
}

/// What pods may be given: capacity less the hard eviction thresholds, memory also less the
/// huge pages, never below zero.
pub fn allocatable(facts: &HostFacts, nodefs: FsStats, max_pods: u32) -> Resources {
    let mut resources = capacity(facts, nodefs, max_pods);
    let memory = facts
        .memory_bytes
        .saturating_sub(EVICTION_MEMORY_AVAILABLE_BYTES)
        .saturating_sub(facts.hugepages_2mi_bytes)
        .saturating_sub(facts.hugepages_1gi_bytes);
    resources.insert("memory".to_owned(), bytes(memory));
    let reserved = nodefs_reservation(nodefs.capacity_bytes);
    resources.insert(
        "ephemeral-storage".to_owned(),
        bytes(nodefs.capacity_bytes.saturating_sub(reserved)),
    );
    resources
}

/// The share of the node filesystem the eviction threshold keeps free.
pub fn nodefs_reservation(capacity_bytes: u64) -> u64 {
    let reserved = u128::from(capacity_bytes) * u128::from(EVICTION_NODEFS_AVAILABLE_PERCENT) / 100;
    u64::try_from(reserved).unwrap_or(u64::MAX)
}

/// A byte count as Kubernetes writes it: in Ki when it is whole kibibytes (as kubelet's
/// memory reads `8029412Ki`), else in plain bytes.
pub fn bytes(value: u64) -> Quantity {
    if value != 0 && value.is_multiple_of(1024) {
        Quantity(format!("{}Ki", value / 1024))
    } else {
        Quantity(value.to_string())
    }
}

/// The value of a quantity this module wrote (plain, `Ki`, `Mi`, `Gi`), in bytes or units.
pub fn parse_bytes(quantity: &Quantity) -> Option<u64> {
    let text = quantity.0.as_str();
    let (number, factor) = [("Ki", 1u64 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)]
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1));
    number.parse::<u64>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 4,
            memory_bytes: 8_029_412 * 1024,
            ..HostFacts::default()
        }
    }

    const NODEFS: FsStats = FsStats {
        capacity_bytes: 100_000_000_000,
        available_bytes: 50_000_000_000,
    };

    #[test]
    fn capacity_lists_cpu_memory_storage_pods_and_absent_huge_pages_as_zero() {
        let c = capacity(&facts(), NODEFS, 110);
        assert_eq!(c["cpu"], Quantity("4".into()));
        assert_eq!(c["memory"], Quantity("8029412Ki".into()));
        assert_eq!(c["ephemeral-storage"], Quantity("97656250Ki".into()));
        assert_eq!(c["pods"], Quantity("110".into()));
        assert_eq!(c["hugepages-2Mi"], Quantity("0".into()));
        assert_eq!(c["hugepages-1Gi"], Quantity("0".into()));
    }

    #[test]
    fn allocatable_is_capacity_less_the_hard_eviction_thresholds() {
        let a = allocatable(&facts(), NODEFS, 110);
        assert_eq!(a["cpu"], Quantity("4".into()));
        assert_eq!(a["pods"], Quantity("110".into()));
        assert_eq!(a["memory"], Quantity(format!("{}Ki", 8_029_412 - 102_400)));
        assert_eq!(
            parse_bytes(&a["ephemeral-storage"]),
            Some(90_000_000_000),
            "10 % of the node filesystem kept"
        );
    }

    #[test]
    fn huge_pages_come_out_of_allocatable_memory_and_nothing_goes_negative() {
        let mut f = facts();
        f.hugepages_2mi_bytes = 512 * 1024 * 1024;
        let a = allocatable(&f, NODEFS, 110);
        assert_eq!(
            parse_bytes(&a["memory"]),
            Some(8_029_412 * 1024 - 100 * 1024 * 1024 - 512 * 1024 * 1024)
        );
        let tiny = HostFacts {
            memory_bytes: 1024,
            ..f
        };
        assert_eq!(
            allocatable(&tiny, FsStats::default(), 1)["memory"],
            Quantity("0".into())
        );
    }

    #[test]
    fn quantities_round_trip() {
        for value in [0, 1, 1023, 1024, 3 << 20, 7 << 30, 1_000_000_007] {
            assert_eq!(parse_bytes(&bytes(value)), Some(value));
        }
        assert_eq!(parse_bytes(&Quantity("100Mi".into())), Some(100 << 20));
        assert_eq!(parse_bytes(&Quantity("1.5Gi".into())), None);
    }
}
