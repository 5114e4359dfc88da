//! The wire schema of the built-in kinds: every message with its fields' JSON names, protobuf
//! numbers and types, whether a zero value means "unset", and the list semantics Kubernetes
//! declares on them (strategic-merge keys and strategies, list types and map keys). Read once
//! from `table.txt`, which `scripts/gen-schema-table.py` derives from the Kubernetes API
//! definitions of the served release. Protobuf decoding, strategic merge, server-side apply and
//! the OpenAPI documents all read it.

mod descriptions;

use std::collections::HashMap;
use std::sync::OnceLock;

pub use descriptions::{descriptions, Descriptions};

const TABLE: &str = include_str!("table.txt");

/// Messages the wire carries in a form of their own, not as their fields.
pub mod special {
    pub const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
    pub const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
    pub const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
    pub const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
    pub const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";
    pub const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
    pub const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
    /// Lists of strings wrapped in a message on the wire, plain arrays in JSON.
    pub const STRING_LISTS: &[&str] = &[
        "k8s.io.api.authentication.v1.ExtraValue",
        "k8s.io.api.authorization.v1.ExtraValue",
    ];
}

/// How many values a field holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    One,
    Repeated,
    /// A map; the field's type is the value type, keys are of `key` type.
    Map {
        key: &'static str,
    },
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    pub number: u32,
    pub json: &'static str,
    /// A scalar type (`string`, `int32`, `int64`, `bool`, `double`, `bytes`) or the full name
    /// of a message.
    pub ty: &'static str,
    pub cardinality: Cardinality,
    /// Embedded in Kubernetes' types: its fields are the enclosing JSON object's.
    pub inline: bool,
    /// A pointer in Kubernetes' types: a zero value is a value, not "unset".
    pub pointer: bool,
    /// The JSON form leaves the zero value out.
    pub omit_empty: bool,
    /// Strategic merge: the key list elements merge on.
    pub merge_key: Option<&'static str>,
    /// Strategic merge: `merge`, `retainKeys`, `merge,retainKeys`, or none (replace).
    pub patch_strategy: Option<&'static str>,
    /// Server-side apply: `atomic`, `set` or `map`.
    pub list_type: Option<&'static str>,
    /// Server-side apply: the keys identifying an element of a `map` list.
    pub list_map_keys: Vec<&'static str>,
}

impl Field {
    pub fn is_scalar(&self) -> bool {
        is_scalar(self.ty)
    }
}

pub fn is_scalar(ty: &str) -> bool {
    matches!(
        ty,
        "string" | "int32" | "int64" | "bool" | "double" | "float" | "bytes" | "uint32" | "uint64"
    )
}

/// One message: its fields in declaration order.
#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: Vec<Field>,
}

impl Message {
    pub fn by_number(&self, number: u64) -> Option<&Field> {
        self.fields.iter().find(|f| u64::from(f.number) == number)
    }

    /// The field with JSON name `json`, looking through embedded (inline) messages.
    pub fn field(&self, json: &str) -> Option<&'static Field> {
        let schema = schema();
        let this = schema.message(self.name)?;
        for f in &this.fields {
            if f.inline {
                if let Some(found) = schema.message(f.ty).and_then(|m| m.field(json)) {
                    return Some(found);
                }
            } else if f.json == json {
                return Some(f);
            }
        }
        None
    }

    /// Every JSON field of the message, embedded messages' fields in their place.
    pub fn json_fields(&self) -> Vec<&'static Field> {
        let schema = schema();
        let Some(this) = schema.message(self.name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for f in &this.fields {
            match (f.inline, schema.message(f.ty)) {
                (true, Some(m)) => out.extend(m.json_fields()),
                _ => out.push(f),
            }
        }
        out
    }

    /// The message's short name (`Container`).
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('.').next().unwrap_or(self.name)
    }
}

/// Every message of the table, by full name.
#[derive(Debug)]
pub struct Schema {
    messages: HashMap<&'static str, Message>,
}

/// The schema, read on first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse(TABLE))
}

impl Schema {
    fn parse(text: &'static str) -> Schema {
        let mut messages = HashMap::new();
        let mut current: Option<Message> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("message ") {
                if let Some(m) = current.take() {
                    messages.insert(m.name, m);
                }
                current = Some(Message {
                    name,
                    fields: Vec::new(),
                });
                continue;
            }
            let (Some(message), Some(field)) = (current.as_mut(), parse_field(line)) else {
                continue;
            };
            message.fields.push(field);
        }
        if let Some(m) = current.take() {
            messages.insert(m.name, m);
        }
        Schema { messages }
    }

    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }

    /// The message of a kind by its apiVersion and kind; kinds of meta/v1 (DeleteOptions, …)
    /// are found under any version.
    pub fn kind(&self, api_version: &str, kind: &str) -> Option<&Message> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let package = match group {
            "" => "core",
            g => g.split('.').next().unwrap_or(g),
        };
        self.message(&format!("k8s.io.api.{package}.{version}.{kind}"))
            .or_else(|| {
                // The aggregator's and apiextensions' groups are defined outside k8s.io/api.
                self.message(&format!(
                    "k8s.io.kube_aggregator.pkg.apis.{package}.{version}.{kind}"
                ))
            })
            .or_else(|| {
                self.message(&format!(
                    "k8s.io.apiextensions_apiserver.pkg.apis.{package}.{version}.{kind}"
                ))
            })
            .or_else(|| self.message(&format!("k8s.io.apimachinery.pkg.apis.meta.v1.{kind}")))
    }

    /// The field at `path` (JSON field names; list elements are passed through) below
    /// `root`, if the schema knows it.
    pub fn field_at<'a>(&'a self, root: &'a Message, path: &[&str]) -> Option<&'a Field> {
        let (last, parents) = path.split_last()?;
        let mut message = root;
        for name in parents {
            let field = message.field(name)?;
            message = self.message(field.ty)?;
        }
        message.field(last)
    }
}

fn parse_field(line: &'static str) -> Option<Field> {
    let mut parts = line.split(' ');
    let number = parts.next()?.parse().ok()?;
    let json = parts.next()?;
    let ty = parts.next()?;
    let card = parts.next()?;
    let (ty, cardinality) = match card {
        "map" => {
            let (key, value) = ty.split_once(':')?;
            (value, Cardinality::Map { key })
        }
        "rep" => (ty, Cardinality::Repeated),
        _ => (ty, Cardinality::One),
    };
    let mut field = Field {
        number,
        json,
        ty,
        cardinality,
        inline: false,
        pointer: false,
        omit_empty: false,
        merge_key: None,
        patch_strategy: None,
        list_type: None,
        list_map_keys: Vec::new(),
    };
    for flag in parts {
        match flag.split_once('=') {
            None if flag == "inline" => field.inline = true,
            None if flag == "ptr" => field.pointer = true,
            None if flag == "omit" => field.omit_empty = true,
            Some(("mk", v)) => field.merge_key = Some(v),
            Some(("ps", v)) => field.patch_strategy = Some(v),
            Some(("lt", v)) => field.list_type = Some(v),
            Some(("lk", v)) => field.list_map_keys = v.split(',').collect(),
            _ => {}
        }
    }
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_message() {
        for info in crate::kinds::all() {
            let m = schema().kind(info.api_version, info.kind);
            assert!(m.is_some(), "{} {}", info.api_version, info.kind);
        }
        assert!(schema().kind("v1", "DeleteOptions").is_some());
    }

    #[test]
    fn container_lists_carry_their_merge_keys_and_list_types() {
        let pod = schema().kind("v1", "Pod").expect("pod");
        let ports = schema()
            .field_at(pod, &["spec", "containers", "ports"])
            .expect("ports");
        assert_eq!(ports.number, 6);
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(ports.list_map_keys, vec!["containerPort", "protocol"]);
        assert_eq!(ports.cardinality, Cardinality::Repeated);
        let containers = schema()
            .field_at(pod, &["spec", "containers"])
            .expect("containers");
        assert_eq!(containers.merge_key, Some("name"));
        assert_eq!(containers.patch_strategy, Some("merge"));
        let args = schema()
            .field_at(pod, &["spec", "containers", "args"])
            .expect("args");
        assert_eq!(args.merge_key, None);
        assert_eq!(args.list_type, Some("atomic"));
    }

    #[test]
    fn pointers_and_maps_are_marked() {
        let deploy = schema().kind("apps/v1", "Deployment").expect("deployment");
        let replicas = schema()
            .field_at(deploy, &["spec", "replicas"])
            .expect("replicas");
        assert!(replicas.pointer);
        let secret = schema().kind("v1", "Secret").expect("secret");
        let data = secret.field("data").expect("data");
        assert_eq!(data.ty, "bytes");
        assert_eq!(data.cardinality, Cardinality::Map { key: "string" });
    }

    #[test]
    fn embedded_fields_are_found_where_json_has_them() {
        let pod = schema().kind("v1", "Pod").expect("pod");
        let claim = schema()
            .field_at(pod, &["spec", "volumes", "configMap", "name"])
            .expect("configMap.name through VolumeSource and LocalObjectReference");
        assert_eq!(claim.ty, "string");
        let volume = schema()
            .message("k8s.io.api.core.v1.Volume")
            .expect("volume");
        assert!(volume.json_fields().iter().any(|f| f.json == "emptyDir"));
    }
}
