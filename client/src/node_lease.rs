//! The Lease a kubelet holds for its node in `kube-node-lease`: the object as first written and
//! as renewed, as pure functions shared by the node agent and the simulated nodes, so both
//! heartbeat the same way.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Utc};
use keel_types::k8s_openapi;

/// Where kubelets keep their node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The Lease node `node`'s kubelet holds, renewed at `now`; owned by the Node (uid
/// `node_uid`) so that it goes when the node does, as kubelet's does.
pub fn lease(node: &str, node_uid: &str, duration: Duration, now: DateTime<Utc>) -> Lease {
    let owner = (!node_uid.is_empty()).then(|| OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        ..Default::default()
    });
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(
                i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// `current` renewed at `now` by `node`'s kubelet: its holder and duration set again (a
/// Lease found with someone else's is taken over, as kubelet takes its own back), the rest
/// of the object — resourceVersion included, so the write is conditional — kept.
pub fn renewed(
    current: Lease,
    node: &str,
    node_uid: &str,
    duration: Duration,
    now: DateTime<Utc>,
) -> Lease {
    let fresh = lease(node, node_uid, duration, now);
    let mut next = current;
    if next
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        next.metadata.owner_references = fresh.metadata.owner_references;
    }
    let mut spec = next.spec.unwrap_or_default();
    let wanted = fresh.spec.unwrap_or_default();
    spec.holder_identity = wanted.holder_identity;
    spec.lease_duration_seconds = wanted.lease_duration_seconds;
    spec.renew_time = wanted.renew_time;
    next.spec = Some(spec);
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_types::k8s_openapi::chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_node_lease_is_held_by_the_node_and_owned_by_it() {
        let l = lease("sim-node-0001", "uid-1", Duration::from_secs(40), at(0));

        assert_eq!(l.metadata.name.as_deref(), Some("sim-node-0001"));
        assert_eq!(l.metadata.namespace.as_deref(), Some("kube-node-lease"));
        let owner = &l.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "uid-1"));
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("sim-node-0001"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.renew_time, Some(MicroTime(at(0))));
    }

    #[test]
    fn renewing_moves_the_renew_time_and_keeps_the_version_to_write_against() {
        let mut current = lease("n", "uid-1", Duration::from_secs(40), at(0));
        current.metadata.resource_version = Some("17".into());

        let next = renewed(current, "n", "uid-1", Duration::from_secs(40), at(10));

        assert_eq!(next.metadata.resource_version.as_deref(), Some("17"));
        assert_eq!(next.spec.unwrap().renew_time, Some(MicroTime(at(10))));
    }

    #[test]
    fn renewing_a_lease_someone_else_wrote_takes_it_back() {
        let mut current = lease("n", "", Duration::from_secs(15), at(0));
        if let Some(spec) = current.spec.as_mut() {
            spec.holder_identity = Some("intruder".into());
            spec.lease_transitions = Some(3);
        }

        let next = renewed(current, "n", "uid-1", Duration::from_secs(40), at(10));

        assert_eq!(next.metadata.owner_references.unwrap()[0].uid, "uid-1");
        let spec = next.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        assert_eq!(spec.lease_transitions, Some(3), "untouched");
    }
}
