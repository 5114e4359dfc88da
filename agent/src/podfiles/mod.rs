//! What a pod's containers see of the cluster: their environment (`env`, `envFrom`) and their
//! volumes, set up under the pod's directory and handed to the runtime as CRI mounts.
//!
//! - [`Sources`]: where ConfigMaps, Secrets and ServiceAccount tokens come from;
//!   [`ApiSources`] reads them from keel's API through a short-lived cache.
//! - [`resolve_env`]: a container's environment as CRI key/values, in kubelet's order.
//! - [`VolumeManager`]: sets up, refreshes and tears down a pod's volumes, and gives a
//!   container's CRI mounts.
//!
//! The decisions (which variables, which files with which contents, which mounts) are plain
//! functions over the pod and what was read for it ([`Fetched`]); reading and writing happen
//! at the edges.

mod api_sources;
mod atomic;
mod env;
mod error;
mod expand;
mod fetched;
mod fieldpath;
mod hostpath;
mod manager;
mod mounts;
mod projection;
mod sources;
mod tmpfs;
mod tokens;

pub use api_sources::ApiSources;
pub use atomic::{write_atomically, FileProjection, Payload};
pub use env::{container_env, env_references, resolve_env, Env, EnvWarning};
pub use error::{EnvError, MountError, SourceError};
pub use expand::expand;
pub use fetched::Fetched;
pub use fieldpath::NodeFacts;
pub use manager::{plugin_dir, VolumeManager};
pub use mounts::container_mounts;
pub use projection::volume_payload;
pub use sources::{Sources, Token, TokenSpec};
