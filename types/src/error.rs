//! The crate's error type: any failure of a keel-types operation, for callers that handle
//! them together (the API server maps each variant to one HTTP status).

use crate::decode::DecodeError;
use crate::defaults::DefaultError;
use crate::field::{aggregate_message, FieldError};
use crate::field_selector::FieldSelectorError;
use crate::quantity::QuantityError;
use crate::selector::SelectorError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    LabelSelector(#[from] SelectorError),
    #[error(transparent)]
    FieldSelector(#[from] FieldSelectorError),
    #[error(transparent)]
    Quantity(#[from] QuantityError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Default(#[from] DefaultError),
    /// The object failed validation; every problem found is listed.
    #[error("{}", aggregate_message(.0))]
    Invalid(Vec<FieldError>),
}
