//! The descriptions Kubernetes gives its types and fields, as the `k8s-openapi` crate carries
//! them in its JSON schemas, keyed by OpenAPI type name (`io.k8s.api.core.v1.Container`).

use std::collections::HashMap;
use std::sync::OnceLock;

use k8s_openapi::schemars::gen::SchemaGenerator;
use k8s_openapi::schemars::schema::Schema;

/// Descriptions of types and of their fields.
#[derive(Debug, Default)]
pub struct Descriptions {
    types: HashMap<String, String>,
    fields: HashMap<(String, String), String>,
}

impl Descriptions {
    pub fn of_type(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    pub fn of_field(&self, type_name: &str, field: &str) -> Option<&str> {
        self.fields
            .get(&(type_name.to_string(), field.to_string()))
            .map(String::as_str)
    }
}

/// The descriptions of every served kind and what it references, computed on first use.
pub fn descriptions() -> &'static Descriptions {
    static DESCRIPTIONS: OnceLock<Descriptions> = OnceLock::new();
    DESCRIPTIONS.get_or_init(|| {
        let mut generator = SchemaGenerator::default();
        for info in crate::kinds::all() {
            info.describe(&mut generator);
        }
        let mut out = Descriptions::default();
        for (name, schema) in generator.definitions() {
            let Schema::Object(object) = schema else {
                continue;
            };
            if let Some(d) = object.metadata.as_ref().and_then(|m| m.description.clone()) {
                out.types.insert(name.clone(), d);
            }
            for (field, property) in object.object.iter().flat_map(|o| o.properties.iter()) {
                let Schema::Object(p) = property else {
                    continue;
                };
                if let Some(d) = p.metadata.as_ref().and_then(|m| m.description.clone()) {
                    out.fields.insert((name.clone(), field.clone()), d);
                }
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_the_types_they_reach_are_described() {
        let d = descriptions();
        assert!(d
            .of_type("io.k8s.api.core.v1.Container")
            .is_some_and(|t| t.contains("container")));
        assert!(d
            .of_field("io.k8s.api.core.v1.Container", "image")
            .is_some_and(|t| t.contains("Container image name")));
        assert!(d
            .of_field("io.k8s.api.apps.v1.DeploymentSpec", "replicas")
            .is_some());
    }
}
