//! keel's controller manager: the control loops that turn stored desired state into more
//! stored state (pods for a ReplicaSet, ReplicaSets for a Deployment, endpoints for a
//! Service …), as kube-controller-manager's do.
//!
//! Shape: each controller is a module with its decisions as pure functions over data (tested
//! without tokio) and a thin reconciler on the SDK's controller runtime. The pieces they share
//! own one job each: [`informer`] (one watch per kind, shared by every controller that reads
//! it), [`expectations`] (what a controller has asked for and not yet seen in its cache),
//! [`events`] (Events as kube-controller-manager writes them), [`pods`] (what a pod's status
//! means: ready, available, active). [`manager`] wires them together in one place: it campaigns
//! for the Lease `kube-system/kube-controller-manager` and, while it holds it, runs the selected
//! controllers ([`selection`]) with every write fenced by that Lease.

pub mod context;
pub mod disruption;
pub mod events;
pub mod expectations;
pub mod informer;
pub mod manager;
pub mod nodelifecycle;
pub mod pods;
pub mod replicaset;
pub mod selection;

pub use context::Context;
pub use manager::{run, Config};
