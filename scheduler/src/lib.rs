//! keel's scheduler. The decisions are pure: a [`framework::Snapshot`] of nodes and the pods on
//! them, filter and score [`plugins`] over it (kube-scheduler's default profile), the
//! [`queue::SchedulingQueue`] with its backoff and unschedulable sets, the [`cache::Cache`] that
//! counts assumed pods, and [`cycle`], which picks a node or explains why none fits. The async
//! shell that watches, binds and elects a leader lives in keel's binary crates and reaches the
//! API only through the SDK.

pub mod cache;
pub mod cycle;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod terms;
