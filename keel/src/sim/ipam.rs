//! Pod addresses: which address in its node's pod CIDR each live pod holds, so that no two
//! live pods on a node share one. Pure: fed the pod watch's events and asked for addresses;
//! the caller holds it behind a lock.
//!
//! A pod holds its address from start until it ends (Succeeded or Failed) or is deleted, as a
//! kubelet's sandbox holds it; an ended pod keeps the address in its status, but the address
//! may go to a new pod, as in a real cluster.

use std::collections::HashMap;

use keel_client::watcher::Event;
use keel_types::k8s_openapi::api::core::v1::Pod;

use super::nodes::{Fleet, FIRST_POD_HOST, LAST_POD_HOST};

/// Addresses held, per node and per pod.
#[derive(Debug, Default)]
pub struct Ipam {
    /// Node index → a bit per last octet, set while a pod holds it.
    used: HashMap<usize, [u64; 4]>,
    /// Pod UID → (node index, last octet).
    held: HashMap<String, (usize, u8)>,
}

impl Ipam {
    /// The address `uid` holds on node `node`, assigning the lowest free one if it holds
    /// none. None if every address of the node is taken.
    pub fn assign(&mut self, node: usize, uid: &str) -> Option<u8> {
        match self.held.get(uid) {
            Some(&(n, host)) if n == node => return Some(host),
            // A pod never moves between nodes; if the books say otherwise, they are stale.
            Some(_) => self.release(uid),
            None => {}
        }
        let bits = self.used.entry(node).or_default();
        let host = (FIRST_POD_HOST..=LAST_POD_HOST).find(|&h| !is_set(bits, h))?;
        set(bits, host, true);
        self.held.insert(uid.to_string(), (node, host));
        Some(host)
    }

    /// Records that `uid` holds `host` on `node` (read back from a pod's status). Returns
    /// false, recording nothing, if another pod holds it.
    pub fn learn(&mut self, node: usize, uid: &str, host: u8) -> bool {
        if self.held.get(uid) == Some(&(node, host)) {
            return true;
        }
        let bits = self.used.entry(node).or_default();
        if is_set(bits, host) {
            return false;
        }
        set(bits, host, true);
        self.release(uid);
        self.held.insert(uid.to_string(), (node, host));
        true
    }

    /// Frees whatever `uid` holds.
    pub fn release(&mut self, uid: &str) {
        if let Some((node, host)) = self.held.remove(uid) {
            if let Some(bits) = self.used.get_mut(&node) {
                set(bits, host, false);
            }
        }
    }

    /// Addresses held on `node`.
    #[cfg(test)]
    pub fn held_on(&self, node: usize) -> usize {
        self.used
            .get(&node)
            .map_or(0, |bits| bits.iter().map(|w| w.count_ones() as usize).sum())
    }

    /// Follows one event of the pod watch: live pods on `fleet`'s nodes hold the addresses
    /// their status shows, ended and deleted pods hold none, and a restart (relist) replaces
    /// everything with what the list shows.
    pub fn observe(&mut self, fleet: &Fleet, event: &Event<Pod>) {
        match event {
            Event::Applied(pod) => self.follow(fleet, pod),
            Event::Deleted(pod) => self.release(uid_of(pod)),
            Event::Restarted(pods) => {
                // An address assigned but not yet written is forgotten here and may be given
                // twice; a relist is rare (compacted history), and a clash only cosmetic.
                self.used.clear();
                self.held.clear();
                for pod in pods {
                    self.follow(fleet, pod);
                }
            }
        }
    }

    fn follow(&mut self, fleet: &Fleet, pod: &Pod) {
        let uid = uid_of(pod);
        let status = pod.status.as_ref();
        let ended = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if ended {
            self.release(uid);
            return;
        }
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .and_then(|n| fleet.index_of(n));
        let ip = status.and_then(|s| s.pod_ip.as_deref());
        if let (Some(node), Some(ip)) = (node, ip) {
            if let Some(host) = fleet.pod_host(node, ip) {
                // A clash can only come from outside writes: the pod keeps its status, and
                // the address stays with whoever held it first.
                self.learn(node, uid, host);
            }
        }
    }
}

fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn is_set(bits: &[u64; 4], host: u8) -> bool {
    bits[usize::from(host / 64)] & (1 << (host % 64)) != 0
}

fn set(bits: &mut [u64; 4], host: u8, on: bool) {
    let word = &mut bits[usize::from(host / 64)];
    if on {
        *word |= 1 << (host % 64);
    } else {
        *word &= !(1 << (host % 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::flags::SimArgs;
    use clap::Parser;
    use keel_types::k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use keel_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimArgs,
    }

    fn fleet() -> Fleet {
        let cli = Cli::try_parse_from(["sim", "--count", "4"]).unwrap();
        Fleet::from_args(&cli.args).unwrap()
    }

    fn pod(uid: &str, node: &str, ip: Option<&str>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(uid.into()),
                uid: Some(uid.into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                pod_ip: ip.map(str::to_string),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn each_pod_gets_the_lowest_free_address_and_keeps_it() {
        let mut ipam = Ipam::default();

        let a = ipam.assign(0, "a");
        let b = ipam.assign(0, "b");
        let a_again = ipam.assign(0, "a");
        let other_node = ipam.assign(1, "c");

        assert_eq!(
            (a, b, a_again, other_node),
            (Some(2), Some(3), Some(2), Some(2))
        );
    }

    #[test]
    fn a_released_address_is_reused() {
        let mut ipam = Ipam::default();
        ipam.assign(0, "a");
        ipam.assign(0, "b");

        ipam.release("a");

        assert_eq!(ipam.assign(0, "c"), Some(2));
        assert_eq!(ipam.held_on(0), 2);
    }

    #[test]
    fn a_full_node_has_no_address_to_give() {
        let mut ipam = Ipam::default();
        let capacity = usize::from(LAST_POD_HOST - FIRST_POD_HOST) + 1;
        let hosts: Vec<Option<u8>> = (0..capacity)
            .map(|i| ipam.assign(0, &format!("p{i}")))
            .collect();

        assert!(hosts.iter().all(Option::is_some));
        assert_eq!(hosts.last(), Some(&Some(LAST_POD_HOST)));
        assert_eq!(ipam.assign(0, "one-too-many"), None);
    }

    #[test]
    fn a_relist_learns_the_addresses_live_pods_hold() {
        let fleet = fleet();
        let mut ipam = Ipam::default();
        ipam.assign(0, "forgotten");

        ipam.observe(
            &fleet,
            &Event::Restarted(vec![
                pod("a", "sim-node-0000", Some("10.64.0.2"), "Running"),
                pod("done", "sim-node-0000", Some("10.64.0.3"), "Succeeded"),
                pod("b", "sim-node-0001", Some("10.64.1.7"), "Running"),
                pod("elsewhere", "real-node", Some("10.64.0.4"), "Running"),
            ]),
        );

        assert_eq!(ipam.held_on(0), 1);
        assert_eq!(
            ipam.assign(0, "new"),
            Some(3),
            "the ended pod's address is free"
        );
        assert_eq!(ipam.assign(1, "b"), Some(7), "b keeps what it held");
    }

    #[test]
    fn ending_or_deleting_a_pod_frees_its_address() {
        let fleet = fleet();
        let mut ipam = Ipam::default();
        ipam.observe(
            &fleet,
            &Event::Applied(pod("a", "sim-node-0000", Some("10.64.0.2"), "Running")),
        );
        ipam.observe(
            &fleet,
            &Event::Applied(pod("b", "sim-node-0000", Some("10.64.0.3"), "Running")),
        );

        ipam.observe(
            &fleet,
            &Event::Applied(pod("a", "sim-node-0000", Some("10.64.0.2"), "Failed")),
        );
        ipam.observe(
            &fleet,
            &Event::Deleted(pod("b", "sim-node-0000", Some("10.64.0.3"), "Running")),
        );

        assert_eq!(ipam.held_on(0), 0);
    }

    #[test]
    fn an_address_held_by_another_pod_is_not_learnt() {
        let mut ipam = Ipam::default();
        ipam.assign(0, "a");

        assert!(!ipam.learn(0, "b", 2));
        assert!(ipam.learn(0, "a", 2));
        assert_eq!(ipam.assign(0, "b"), Some(3));
    }
}
