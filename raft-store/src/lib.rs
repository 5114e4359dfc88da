//! keel's replicated MVCC key-value store: openraft + RocksDB, speaking the etcd v3 API.
//!
//! Layers, inside out: [`mvcc`] is the deterministic state machine core; [`storage`] puts it and
//! the raft log in one RocksDB; [`raft`] is the peer transport; [`node`] is a running member and the
//! operations clients use; [`server`] exposes them as the etcd v3 gRPC API.

pub mod auth;
pub mod backup;
pub mod codec;
pub mod compactor;
pub mod config;
pub mod error;
pub mod forward;
pub mod lessor;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod node;
pub mod quota;
pub mod raft;
pub mod read_index;
pub mod server;
pub mod storage;
pub mod tls;
pub mod types;
pub mod validate;
pub mod watch;

pub use config::{ClusterState, NodeConfig};
pub use error::StoreError;
pub use node::Node;
