//! keel's API server: Kubernetes-shaped objects on the store with Kubernetes semantics, served
//! over gRPC (for keel's Rust SDK) by [`grpc`].
//!
//! The core ([`server::ApiServer`]) speaks objects and errors; it reaches the store only
//! through the narrow [`storage::Storage`] trait it owns. Transports decode, call the core and
//! encode.

pub mod admission;
pub mod apply;
pub mod audit;
pub mod auth;
pub mod binding;
pub mod bootstrap;
pub mod cache;
pub mod crd;
mod delete;
pub mod encryption;
pub mod error;
pub mod eviction;
pub mod fairness;
pub mod filter;
pub mod grpc;
pub mod keys;
pub mod kubelet;
pub mod list;
pub mod managed;
pub mod meta;
mod namespace_conditions;
pub mod namespaces;
pub mod patch;
mod priority_admission;
pub mod quota;
mod quota_admission;
pub mod rest;
mod selector_warnings;
pub mod server;
mod serviceaccount_admission;
pub mod services;
pub mod storage;
mod stored;
mod toleration_admission;
pub mod watch;
pub mod webhooks;

pub use error::ApiError;
pub use server::ApiServer;
