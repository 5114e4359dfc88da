//! Test harness: start clusters of real keel or etcd processes on loopback, fault them, and talk
//! to them with the generated etcd v3 clients or the real etcdctl and kubectl.

pub mod agent;
pub mod api;
pub mod cluster;
pub mod differential;
pub mod etcdctl;
pub mod kubectl;
pub mod manifests;
pub mod pods;
pub mod registry;
pub mod rest;
pub mod sim;
pub mod up;
pub mod webhook;

pub use cluster::{Cluster, Flavor};
