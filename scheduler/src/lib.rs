//! keel's scheduler. The decisions are pure: a [`framework::Snapshot`] of nodes and the pods on
//! them, filter and score [`plugins`] over it (kube-scheduler's default profile), the
//! [`queue::SchedulingQueue`] with its backoff and unschedulable sets, the [`cache::Cache`] that
//! counts assumed pods, [`cycle`], which picks a node or explains why none fits, and
//! [`preemption`]. The async shell in [`run`] watches, binds and elects a leader; it reaches
//! the API only through the SDK.

pub mod cache;
pub mod cycle;
pub mod framework;
pub mod memo;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod run;
pub mod terms;

#[cfg(test)]
mod safety;

#[cfg(test)]
pub(crate) mod test_support;
