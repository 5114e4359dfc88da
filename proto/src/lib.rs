//! Generated gRPC/protobuf code for keel: the etcd v3 client API (wire-compatible with etcd 3.4), keel's internal peer protocol and keel's API service.
//!
//! The packages are sibling modules at the crate root so that the
//! cross-package references emitted by prost (`super::mvccpb::…`,
//! `super::authpb::…`) resolve.

/// etcd MVCC types: `KeyValue`, `Event`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd auth records: `User`, `Permission`, `Role`, `UserAddOptions`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance, Auth) and messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// keel's internal peer protocol (`RaftPeer` service); payloads are opaque bytes.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod keelpb {
    tonic::include_proto!("keelpb");
}

/// keel's API service (`Api`): Kubernetes-shaped objects as JSON, for the Rust SDK.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod keelapi {
    tonic::include_proto!("keelapi");
}
