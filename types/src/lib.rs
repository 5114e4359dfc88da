//! keel's API objects: the Kubernetes kinds keel serves, and what is decided about an object
//! without I/O — which kinds exist and how they are named, defaulting, validation, and label and
//! field selectors.
//!
//! Objects travel as JSON [`serde_json::Value`]s between the API server, the store and clients;
//! each kind's typed form (from `k8s-openapi`, Kubernetes 1.32 field for field) is what decoding,
//! defaulting and validation use.

pub mod crd;
pub mod decode;
pub mod defaults;
pub mod error;
pub mod field;
pub mod field_selector;
pub mod kinds;
pub mod names;
pub mod path;
pub mod quantity;
pub mod schema;
pub mod selector;
pub mod validation;

pub use decode::{decode, DecodeError, Decoded};
pub use defaults::{default_object, prepare_for_create, DefaultError};
pub use error::Error;
pub use field::{ErrorKind, FieldError};
pub use field_selector::{field_value, FieldSelector, FieldSelectorError};
pub use k8s_openapi;
pub use kinds::{ResourceInfo, Scope};
pub use path::FieldPath;
pub use quantity::{Quantity, QuantityError};
pub use selector::{Selector, SelectorError};
pub use validation::validate;
