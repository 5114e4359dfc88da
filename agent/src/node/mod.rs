//! The Node itself, as kubelet keeps it: registration, the heartbeat Lease, the status
//! (conditions, capacity and allocatable, addresses, node info, images) and image garbage
//! collection.
//!
//! [`NodeAgent::run`] does all of it until stopped; [`NodeAgent::node`] hands the pod side the
//! Node as last seen. Decisions are pure functions in [`config`], [`host`], [`resources`],
//! [`conditions`], [`status`], [`register`] and [`image_gc`]; the loops around them are thin.

mod agent;
pub mod conditions;
pub mod config;
mod cri;
pub mod host;
pub mod image_gc;
pub mod lease;
pub mod register;
pub mod resources;
pub mod status;

pub use agent::NodeAgent;
pub use config::{parse_node_labels, parse_taints, FlagError, NodeConfig};

use keel_types::k8s_openapi::api::core::v1::ObjectReference;

/// The reference kubelet's node Events make to their Node: kind and name, and the name again
/// as uid.
pub fn node_reference(name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".into()),
        name: Some(name.to_owned()),
        uid: Some(name.to_owned()),
        ..ObjectReference::default()
    }
}
