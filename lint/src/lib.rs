//! The selector lint: finds, in a set of Kubernetes objects, selectors that match no pod
//! template, workloads whose selector disagrees with their own template, controllers that
//! would fight over the same pods, Service ports no selected container exposes and Ingress
//! backends that do not exist. Pure: `keel lint` feeds it manifests read from files, the API
//! server the objects of one namespace.

pub mod check;
pub mod finding;
pub mod kinds;
pub mod projection;

pub use check::{lint, Manifest, Options};
pub use finding::{Class, Finding, Severity, Source};
