//! Field paths as Kubernetes writes them in errors: `spec.containers[0].ports[1].name`,
//! `metadata.labels[app]`.

use std::fmt;

/// A path to a field inside an object. Cheap to extend: each step returns a new path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at a top-level field (`metadata`, `spec`, …).
    pub fn new(root: &str) -> Self {
        FieldPath(root.to_string())
    }

    /// A path made of dotted names, e.g. `spec.template.spec`.
    pub fn parse_dotted(dotted: &str) -> Self {
        FieldPath(dotted.to_string())
    }

    /// The field `name` inside this one.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return FieldPath(name.to_string());
        }
        FieldPath(format!("{}.{name}", self.0))
    }

    /// The `index`th item of this list.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// The entry `key` of this map.
    pub fn key(&self, key: &str) -> Self {
        FieldPath(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_children_with_dots_and_subscripts_with_brackets() {
        let p = FieldPath::new("spec")
            .child("containers")
            .index(0)
            .child("ports");
        assert_eq!(p.to_string(), "spec.containers[0].ports");
        let l = FieldPath::new("metadata").child("labels").key("app");
        assert_eq!(l.to_string(), "metadata.labels[app]");
        assert_eq!(FieldPath::default().child("key").to_string(), "key");
    }
}
