//! NodePorts: a pod asking for host ports fits only a node where none of them is already bound
//! by a pod counted there.

use crate::framework::{ClusterEvent, CycleState, Filter, NodeInfo, PodInfo, Rejection};

/// kube-scheduler's `NodePorts` filter.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodePorts;

impl NodePorts {
    pub const NAME: &'static str = "NodePorts";
    pub const REASON: &'static str = "node(s) didn't have free ports for the requested pod ports";
}

/// Whether every host port `pod` asks for is free on `node`. Ports the pod repeats among its
/// own containers are validation's business, not a conflict with the node.
pub fn fits_ports(pod: &PodInfo, node: &NodeInfo) -> bool {
    pod.host_ports
        .iter()
        .all(|want| !node.used_ports.iter().any(|used| used.conflicts(want)))
}

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// A pod asking for no host port conflicts with nothing.
    fn skips_filter(&self, pod: &PodInfo, _state: &CycleState) -> bool {
        pod.host_ports.is_empty()
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if fits_ports(pod, node) {
            Ok(())
        } else {
            // Resolvable: evicting the pod holding the port frees it.
            Err(Rejection::new(Self::NAME, Self::REASON))
        }
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdded, ClusterEvent::AssignedPodDeleted]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_types::k8s_openapi::api::core::v1::{Container, ContainerPort};

    use super::*;
    use crate::test_support::{node, pod, PodBuilder};

    fn run(incoming: PodBuilder, existing: Vec<PodBuilder>) -> Result<(), Rejection> {
        let n = node("n").with_pods(existing);
        NodePorts.filter(&CycleState::default(), &incoming.info(), &n)
    }

    #[test]
    fn host_port_conflicts_follow_kubernetes() {
        // (name, wanted (port, protocol, ip), used (port, protocol, ip), fits)
        let cases = [
            ("no ports asked", None, Some((80, "TCP", "")), true),
            (
                "free port",
                Some((8080, "TCP", "")),
                Some((80, "TCP", "")),
                true,
            ),
            (
                "same port, both every address",
                Some((80, "TCP", "")),
                Some((80, "TCP", "")),
                false,
            ),
            (
                "unset protocol is TCP",
                Some((80, "", "")),
                Some((80, "TCP", "")),
                false,
            ),
            (
                "same port, other protocol",
                Some((80, "UDP", "")),
                Some((80, "TCP", "")),
                true,
            ),
            (
                "same port, two specific addresses",
                Some((80, "TCP", "10.0.0.1")),
                Some((80, "TCP", "10.0.0.2")),
                true,
            ),
            (
                "same port, same address",
                Some((80, "TCP", "10.0.0.1")),
                Some((80, "TCP", "10.0.0.1")),
                false,
            ),
            (
                "wanting every address conflicts with a specific one",
                Some((80, "TCP", "")),
                Some((80, "TCP", "10.0.0.1")),
                false,
            ),
            (
                "a specific address conflicts with every address in use",
                Some((80, "TCP", "10.0.0.1")),
                Some((80, "TCP", "0.0.0.0")),
                false,
            ),
        ];
        for (name, want, used, fits) in cases {
            let mut incoming = pod("in");
            if let Some((port, proto, ip)) = want {
                incoming = incoming.host_port(port, proto, ip);
            }
            let existing = match used {
                Some((port, proto, ip)) => vec![pod("old").host_port(port, proto, ip)],
                None => vec![],
            };
            assert_eq!(run(incoming, existing).is_ok(), fits, "{name}");
        }
    }

    #[test]
    fn conflict_is_resolvable_with_kubernetes_reason() {
        let err = run(
            pod("in").host_port(80, "TCP", ""),
            vec![pod("old").host_port(80, "TCP", "")],
        )
        .unwrap_err();
        assert!(!err.unresolvable);
        assert_eq!(err.plugin, "NodePorts");
        assert_eq!(
            err.reasons,
            vec!["node(s) didn't have free ports for the requested pod ports"]
        );
    }

    #[test]
    fn port_freed_by_a_deleted_pod_fits_again() {
        let mut n = node("n").with_pods(vec![pod("old").host_port(80, "TCP", "")]);
        let incoming = pod("in").host_port(80, "TCP", "").info();
        assert!(!fits_ports(&incoming, &n));
        assert!(n.remove_pod("uid-old"));
        assert!(fits_ports(&incoming, &n));
    }

    #[test]
    fn sidecar_host_ports_are_held_but_regular_init_container_ports_are_not() {
        // An init container asking for host port 9000, regular or a sidecar.
        let holder = |restart_policy: Option<&str>| {
            let mut p = pod("old").container(&[]).build();
            let spec = p.spec.get_or_insert_with(Default::default);
            spec.init_containers = Some(vec![Container {
                name: "init".to_string(),
                restart_policy: restart_policy.map(str::to_string),
                ports: Some(vec![ContainerPort {
                    container_port: 9000,
                    host_port: Some(9000),
                    ..Default::default()
                }]),
                ..Default::default()
            }]);
            Arc::new(PodInfo::new(Arc::new(p)))
        };
        let incoming = pod("in").host_port(9000, "TCP", "").info();
        let mut n = node("n").info();
        n.add_pod(holder(None));
        assert!(fits_ports(&incoming, &n), "a regular init container's port");
        let mut n = node("n").info();
        n.add_pod(holder(Some("Always")));
        assert!(!fits_ports(&incoming, &n), "a sidecar's port");
    }
}
