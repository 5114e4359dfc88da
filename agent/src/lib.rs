//! keel's node agent: the parts that run pods as real containers on a node.
//!
//! The agent speaks CRI v1 to a container runtime (containerd's `cri` plugin) and leaves
//! sandboxes, network namespaces, CNI, image unpacking and log files to it. This crate holds
//! the ground that the pod logic stands on:
//!
//! - [`cri`]: the CRI v1 protocol, generated from Kubernetes' `api.proto`;
//! - [`runtime`]: [`RuntimeClient`], a typed client over a unix socket with errors by gRPC code;
//! - [`containerd`]: a containerd 1.6 configuration and a private containerd process of our own;
//! - [`image`]: OCI image archives built locally from busybox-static, since no registry is
//!   reachable where keel is tested.

/// The CRI v1 API (`runtime.v1`): RuntimeService and ImageService clients and their messages.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod cri {
    tonic::include_proto!("runtime.v1");
}

pub mod containerd;
mod error;
pub mod host;
pub mod image;
pub mod labels;
pub mod node;
pub mod podfiles;
pub mod pods;
pub mod prober;
pub mod proxy;
pub mod runtime;
pub mod runtime_exec;
pub mod runtime_streaming;
pub mod server;
pub mod testing;

pub use error::Error;
pub use runtime::RuntimeClient;
