//! CustomResourceDefinitions (apiextensions.k8s.io/v1): what a definition makes servable (one
//! [`CustomVersion`] per served version), the checks a definition must pass, the status the
//! server keeps on it, and how a custom object is admitted against its version's schema.

pub mod cel;
pub mod definition;
pub mod structural;

/// The schema type of a definition's versions, for the server's schema-driven code.
pub use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps as Schema;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::field::FieldError;
use crate::kinds::{CustomNames, ResourceInfo, Scope};

/// The finalizer the server puts on a definition being deleted; it comes off once every
/// object of the kind is gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Where a custom kind's scale subresource reads and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    /// JSON paths as the definition gives them (`.spec.replicas`).
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served version of a custom kind: its names, schema, printer columns and subresources.
#[derive(Debug, Clone)]
pub struct CustomVersion {
    pub info: &'static ResourceInfo,
    /// The definition's name (`widgets.example.com`).
    pub definition: String,
    /// The apiVersion objects are stored as (the storage version's).
    pub storage_api_version: String,
    pub schema: Option<JSONSchemaProps>,
    pub columns: Vec<CustomResourceColumnDefinition>,
    pub scale: Option<ScalePaths>,
    /// The warning a request to a deprecated version gets.
    pub deprecation_warning: Option<String>,
    /// The definition is being deleted: its objects may be read and deleted, not created.
    pub terminating: bool,
}

impl CustomVersion {
    /// Whether objects carry a status written only through the status subresource.
    pub fn has_status(&self) -> bool {
        self.info.has_subresource("status")
    }
}

/// The versions a stored definition serves, once its names are accepted (Established, as
/// Kubernetes serves a kind only then). A definition that does not decode serves nothing.
pub fn served_versions(definition: &Value) -> Vec<CustomVersion> {
    let Ok(crd) = serde_json::from_value::<CustomResourceDefinition>(definition.clone()) else {
        return Vec::new();
    };
    if !definition::is_established(definition) {
        return Vec::new();
    }
    let spec = &crd.spec;
    let names = &spec.names;
    let storage = spec
        .versions
        .iter()
        .find(|v| v.storage)
        .map(|v| format!("{}/{}", spec.group, v.name))
        .unwrap_or_default();
    let terminating = crd.metadata.deletion_timestamp.is_some();
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| {
            let sub = v.subresources.as_ref();
            let mut subresources = Vec::new();
            if sub.and_then(|s| s.status.as_ref()).is_some() {
                subresources.push("status".to_string());
            }
            let scale = sub.and_then(|s| s.scale.as_ref()).map(|s| ScalePaths {
                spec_replicas: s.spec_replicas_path.clone(),
                status_replicas: s.status_replicas_path.clone(),
                label_selector: s.label_selector_path.clone(),
            });
            if scale.is_some() {
                subresources.push("scale".to_string());
            }
            let info = crate::kinds::custom(CustomNames {
                group: spec.group.clone(),
                version: v.name.clone(),
                kind: names.kind.clone(),
                list_kind: names
                    .list_kind
                    .clone()
                    .unwrap_or_else(|| format!("{}List", names.kind)),
                plural: names.plural.clone(),
                scope: if spec.scope == "Cluster" {
                    Scope::Cluster
                } else {
                    Scope::Namespaced
                },
                short_names: names.short_names.clone().unwrap_or_default(),
                categories: names.categories.clone().unwrap_or_default(),
                subresources,
            });
            let deprecation_warning = (v.deprecated == Some(true)).then(|| {
                v.deprecation_warning.clone().unwrap_or_else(|| {
                    format!("{}/{} {} is deprecated", spec.group, v.name, names.kind)
                })
            });
            CustomVersion {
                info,
                definition: crd.metadata.name.clone().unwrap_or_default(),
                storage_api_version: storage.clone(),
                schema: v.schema.as_ref().and_then(|s| s.open_api_v3_schema.clone()),
                columns: v.additional_printer_columns.clone().unwrap_or_default(),
                scale,
                deprecation_warning,
                terminating,
            }
        })
        .collect()
}

/// A custom object made ready to store: pruned, defaulted, and the paths of what was pruned.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub object: Value,
    pub unknown_fields: Vec<String>,
}

/// Prunes, defaults and validates `obj` against `version`'s schema and its CEL rules (`old`
/// is the stored object on update; the object's metadata is checked as every object's, by
/// [`crate::validate`]). `Err` holds every field error.
pub fn admit(
    version: &CustomVersion,
    mut obj: Value,
    old: Option<&Value>,
) -> Result<Admitted, Vec<FieldError>> {
    let mut unknown_fields = Vec::new();
    if let Some(schema) = &version.schema {
        unknown_fields = structural::prune(schema, &mut obj, true);
    }
    unknown_fields.extend(prune_metadata(&mut obj));
    if let Some(schema) = &version.schema {
        structural::default(schema, &mut obj);
    }
    let mut errors = Vec::new();
    if let Some(schema) = &version.schema {
        // The object's own apiVersion, kind and metadata are checked as every object's; the
        // schema speaks of the rest.
        let mut body = obj.clone();
        if let Some(m) = body.as_object_mut() {
            for field in ["apiVersion", "kind", "metadata"] {
                m.remove(field);
            }
        }
        errors.extend(structural::validate(schema, &body));
        if errors.is_empty() {
            errors.extend(cel::check(schema, &body, old));
        }
    }
    if errors.is_empty() {
        Ok(Admitted {
            object: obj,
            unknown_fields,
        })
    } else {
        Err(errors)
    }
}

/// Applies the defaults of `version`'s schema to a stored object, as Kubernetes does on every
/// read, so a default added to a definition shows on objects stored before it.
pub fn default_on_read(version: &CustomVersion, obj: &mut Value) {
    if let Some(schema) = &version.schema {
        structural::default(schema, obj);
    }
}

/// Metadata is ObjectMeta whatever the schema says: fields it does not have are dropped
/// (returned as `metadata.<field>`).
fn prune_metadata(obj: &mut Value) -> Vec<String> {
    let Some(meta) = obj.get_mut("metadata") else {
        return Vec::new();
    };
    let Ok(typed) = serde_json::from_value::<ObjectMeta>(meta.clone()) else {
        // Left for validation to name.
        return Vec::new();
    };
    let Ok(kept) = serde_json::to_value(typed) else {
        return Vec::new();
    };
    let dropped: Vec<String> = meta
        .as_object()
        .into_iter()
        .flat_map(|m| m.iter())
        .filter(|(k, v)| !v.is_null() && kept.get(k.as_str()).is_none())
        .map(|(k, _)| format!("metadata.{k}"))
        .collect();
    *meta = kept;
    dropped
}

#[cfg(test)]
mod tests;
