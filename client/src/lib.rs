//! keel's Rust SDK over the `keelapi.Api` gRPC service: a [`Client`] that fails over between
//! masters (or reaches one as a [`Kubeconfig`] names it, over TLS with its credentials), typed
//! [`Api`] access for every kind, a [`watcher`] that resumes from the last resourceVersion it saw
//! and relists when that history is gone, a [`reflector()`] that caches what a watch reports, a
//! controller [`runtime`], and [`leader`] election whose writes the store fences.

pub mod api;
mod bearer;
pub mod client;
pub mod dynamic;
pub mod error;
pub mod events;
pub mod kubeconfig;
pub mod leader;
pub mod node_lease;
pub mod object_key;
pub mod reflector;
pub mod runtime;
pub mod store;
mod tls;
pub mod watcher;

pub use api::{Api, DeleteParams, Fence, ListParams, Patch, WatchParams};
pub use client::Client;
pub use dynamic::DynamicObject;
pub use error::Error;
pub use keel_types::k8s_openapi;
pub use kubeconfig::Kubeconfig;
pub use object_key::ObjectKey;
pub use reflector::reflector;
pub use store::{Store, Writer};
