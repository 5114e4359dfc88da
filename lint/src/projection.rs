//! Objects decoded for the selector checks alone: identity, owner references, and each kind's
//! selector and template labels (where the kinds table says they are), every other field
//! skipped unread. The API server lints a write against up to thousands of stored pods; a pod
//! decoded this way costs a scan of its bytes instead of a whole JSON tree.
//!
//! The selector classes ([`SELECTOR_CLASSES`]) come out of [`crate::lint`] the same over
//! projected objects as over whole ones; the port and Ingress checks need the fields skipped
//! here and must be given whole objects.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::finding::Class;
use crate::kinds::RULES;

/// The findings that read only what a projection keeps.
pub const SELECTOR_CLASSES: &[Class] = &[
    Class::SelectorMatchesNothing,
    Class::SelectorsOverlap,
    Class::SelectorTemplateMismatch,
    Class::SelectorMissing,
    Class::SelectorInvalid,
];

/// Fields the checks read on every object, beside those the kinds table names.
const ALWAYS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/generateName",
    "/metadata/namespace",
    "/metadata/ownerReferences",
    // (A Service of type ExternalName selects nothing.)
    "/spec/type",
];

/// The fields kept, as a tree of object keys: a leaf keeps its whole value.
#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<String, Node>,
}

impl Node {
    fn keep(&mut self, pointer: &str) {
        let mut node = self;
        for key in pointer.split('/').skip(1) {
            node = node.children.entry(key.to_owned()).or_default();
        }
        // Everything below a kept value is kept: a leaf has no children.
        node.children.clear();
    }

    fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// Which fields of a stored object the selector checks read.
#[derive(Debug)]
pub struct Projection {
    root: Node,
}

impl Projection {
    /// The fields of every kind in the kinds table that the selector checks read.
    pub fn for_selectors() -> Self {
        let mut pointers: Vec<String> = ALWAYS.iter().map(|p| (*p).to_owned()).collect();
        for rule in RULES {
            if let Some(selector) = rule.selector {
                pointers.push(selector.pointer.to_owned());
                pointers.extend(selector.only_if.map(str::to_owned));
            }
            if let Some(template) = rule.template {
                pointers.push(format!("{template}/metadata/labels"));
            }
        }
        // Shorter pointers first, so that a kept value is never narrowed by a longer one.
        pointers.sort_by_key(|p| p.matches('/').count());
        let mut root = Node::default();
        for pointer in &pointers {
            if !covered(&root, pointer) {
                root.keep(pointer);
            }
        }
        Projection { root }
    }

    /// `bytes` (one JSON object) with only the kept fields.
    pub fn decode(&self, bytes: &[u8]) -> serde_json::Result<Value> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = Kept(&self.root).deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }
}

/// Whether `pointer` already lies inside a kept value.
fn covered(root: &Node, pointer: &str) -> bool {
    let mut node = root;
    for key in pointer.split('/').skip(1) {
        match node.children.get(key) {
            Some(child) if child.is_leaf() => return true,
            Some(child) => node = child,
            None => return false,
        }
    }
    false
}

/// Decodes a value through `node`: an object keeps the children `node` names; anything else
/// where an object was expected becomes null.
struct Kept<'a>(&'a Node);

impl<'de> DeserializeSeed<'de> for Kept<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Kept<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.children.get(&key) {
                Some(child) if child.is_leaf() => {
                    kept.insert(key, map.next_value::<Value>()?);
                }
                Some(child) => {
                    kept.insert(key, map.next_value_seed(Kept(child))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_identity_owners_selectors_and_template_labels_are_kept() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "web"},
                "annotations": {"big": "x".repeat(1000)},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i"}], "type": 3},
            "status": {"phase": "Running"}
        });
        let kept = Projection::for_selectors()
            .decode(&serde_json::to_vec(&pod).expect("json"))
            .expect("decoded");
        assert_eq!(
            kept,
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "rs", "controller": true}]},
                "spec": {"type": 3}
            })
        );
        let job = json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"jobTemplate": {"spec": {"template": {
                "metadata": {"labels": {"app": "j"}, "annotations": {"a": "b"}},
                "spec": {"containers": []}}}}}
        });
        let kept = Projection::for_selectors()
            .decode(&serde_json::to_vec(&job).expect("json"))
            .expect("decoded");
        assert_eq!(
            kept.pointer("/spec/jobTemplate/spec/template"),
            Some(&json!({"metadata": {"labels": {"app": "j"}}}))
        );
    }

    #[test]
    fn a_whole_selector_is_kept_and_odd_shapes_become_null() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": [1, 2], "spec": {"selector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["a", "b"]}]},
                "template": "not an object"}});
        let kept = Projection::for_selectors()
            .decode(&serde_json::to_vec(&d).expect("json"))
            .expect("decoded");
        assert_eq!(kept["metadata"], Value::Null);
        assert_eq!(kept["spec"]["selector"], d["spec"]["selector"]);
        assert_eq!(kept["spec"]["template"], Value::Null);
        assert!(Projection::for_selectors().decode(b"{\"kind\": ").is_err());
        assert!(Projection::for_selectors().decode(b"{} trailing").is_err());
    }
}
