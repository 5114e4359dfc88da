//! keel's Rust SDK over the `keelapi.Api` gRPC service: a [`Client`] that fails over between
//! masters, typed [`Api`] access for every kind, and a [`watcher`] that resumes from the last
//! resourceVersion it saw and relists when that history is gone.

pub mod api;
pub mod client;
pub mod error;
pub mod leader;
pub mod watcher;

pub use api::{Api, DeleteParams, Fence, ListParams, Patch, WatchParams};
pub use client::Client;
pub use error::Error;
pub use keel_types::k8s_openapi;
