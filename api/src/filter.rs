//! Which objects a list or watch asks for: label and field selectors, parsed and checked once
//! per request.

use keel_types::{FieldSelector, ResourceInfo, Selector};
use serde_json::Value;

use crate::error::ApiError;
use crate::meta;

/// The selectors of one list or watch request.
#[derive(Debug, Clone)]
pub struct Filter {
    info: &'static ResourceInfo,
    labels: Selector,
    fields: FieldSelector,
}

impl Filter {
    pub fn parse(
        info: &'static ResourceInfo,
        label_selector: &str,
        field_selector: &str,
    ) -> Result<Self, ApiError> {
        let labels =
            Selector::parse(label_selector).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let fields = FieldSelector::parse(field_selector)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        fields
            .check_supported(info)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok(Self {
            info,
            labels,
            fields,
        })
    }

    /// Whether the filter lets every object through.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(&meta::labels(obj))
            && self.fields.matches_object(self.info, obj).unwrap_or(false)
    }
}
