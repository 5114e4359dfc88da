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
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslices;
pub use keel_client::events;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod informer;
pub mod job;
pub mod manager;
pub mod metrics;
pub mod namespaces;
pub mod nodelifecycle;
pub mod podgc;
pub mod pods;
pub mod replicaset;
pub mod revision;
pub mod rootca;
pub mod selection;
pub mod service_pods;
pub mod serviceaccounts;
pub mod statefulset;
pub mod ttl_after_finished;

pub use context::Context;
pub use manager::{run, Config};
