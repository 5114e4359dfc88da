//! containerd as keel uses it: the configuration it writes, the CNI network of a node's pods,
//! and a private containerd process for tests and for nodes without one of their own.

pub mod cni;
pub mod config;
pub mod process;

pub use cni::BridgeNetwork;
pub use config::{ContainerdConfig, Snapshotter};
pub use process::{Placement, PrivateContainerd};
