//! Decoding a JSON object as its kind: the object as the kind defines it, the fields the kind
//! does not have (named as Kubernetes' strict decoding names them), and type errors that say
//! which field is wrong.

use serde_json::{Map, Value};

use crate::kinds::ResourceInfo;

/// An object that decoded as its kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The object as the kind defines it: unknown fields dropped, `apiVersion` and `kind` set.
    pub object: Value,
    /// Paths of input fields the kind does not have (`spec.containers[0].imagePullPolcy`), in
    /// document order. Fields whose value is null are not counted.
    pub unknown_fields: Vec<String>,
}

impl Decoded {
    /// The unknown fields as Kubernetes words them in strict-decoding errors and warnings:
    /// `unknown field "spec.bogus"`.
    pub fn unknown_field_messages(&self) -> Vec<String> {
        self.unknown_fields
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect()
    }
}

/// Why a body cannot be an object of the kind it was sent as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: the body must be a JSON object")]
    NotAnObject {
        kind: &'static str,
        version: &'static str,
    },
    #[error("the API version in the data ({found}) does not match the expected API version ({expected})")]
    ApiVersionMismatch {
        found: String,
        expected: &'static str,
    },
    #[error("the kind in the data ({found}) does not match the expected kind ({expected})")]
    KindMismatch {
        found: String,
        expected: &'static str,
    },
    /// A value of the wrong shape; `path` is where it was found (empty for the object itself).
    #[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {}{message}", path_prefix(.path))]
    Type {
        kind: &'static str,
        version: &'static str,
        path: String,
        message: String,
    },
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Decodes `value` as an object of `info`'s kind. `apiVersion` and `kind`, when given, must
/// be the kind's own; when absent they are filled in.
pub fn decode(info: &ResourceInfo, mut value: Value) -> Result<Decoded, DecodeError> {
    let Value::Object(map) = &value else {
        return Err(DecodeError::NotAnObject {
            kind: info.kind,
            version: info.version,
        });
    };
    check_type_meta(info, map)?;
    if let Some(message) = crate::schema::schema()
        .kind(info.api_version, info.kind)
        .filter(|_| !info.custom)
    {
        canonical_quantities(message, &mut value);
    }
    let object = match info.round_trip(value.clone()) {
        Ok(object) => object,
        Err(err) => {
            let path = locate_error(info, &value, &err.to_string());
            return Err(DecodeError::Type {
                kind: info.kind,
                version: info.version,
                path: render_path(&path),
                message: err.to_string(),
            });
        }
    };
    let mut unknown_fields = Vec::new();
    collect_unknown(&value, &object, "", &mut unknown_fields);
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// The schema's name for resource quantities.
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

/// Rewrites every resource quantity in `value` (an object of `message`) as Kubernetes stores
/// it: a JSON number (`cpu: 0.5`) becomes a string, and a quantity its canonical form
/// (`2000m` is `2`, `0.1` is `100m`). Text that is no quantity is left for validation to
/// name.
pub fn canonical_quantities(message: &crate::schema::Message, value: &mut Value) {
    use crate::schema::Cardinality;
    let Value::Object(map) = value else {
        return;
    };
    for field in message.json_fields() {
        let Some(v) = map.get_mut(field.json) else {
            continue;
        };
        let each: Vec<&mut Value> = match (&field.cardinality, v) {
            (Cardinality::One, v) => vec![v],
            (Cardinality::Repeated, Value::Array(items)) => items.iter_mut().collect(),
            (Cardinality::Map { .. }, Value::Object(entries)) => entries.values_mut().collect(),
            _ => continue,
        };
        if field.ty == QUANTITY {
            each.into_iter().for_each(canonical_quantity);
        } else if let Some(inner) = crate::schema::schema().message(field.ty) {
            for v in each {
                canonical_quantities(inner, v);
            }
        }
    }
}

fn canonical_quantity(v: &mut Value) {
    let text = match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return,
    };
    match crate::quantity::Quantity::parse(&text) {
        Ok(q) => *v = Value::String(q.to_canonical_string()),
        // Validation reports it, under the field's name, as a quantity it cannot read.
        Err(_) if v.is_number() => *v = Value::String(text),
        Err(_) => {}
    }
}

fn check_type_meta(info: &ResourceInfo, map: &Map<String, Value>) -> Result<(), DecodeError> {
    match map.get("apiVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v == info.api_version => {}
        Some(other) => {
            return Err(DecodeError::ApiVersionMismatch {
                found: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
                expected: info.api_version,
            })
        }
    }
    match map.get("kind") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(k)) if k == info.kind => Ok(()),
        Some(other) => Err(DecodeError::KindMismatch {
            found: other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string),
            expected: info.kind,
        }),
    }
}

/// Walks input and decoded output together; an input key the output lacks is unknown.
fn collect_unknown(input: &Value, output: &Value, path: &str, out: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(inp), Value::Object(outp)) => {
            for (key, value) in inp {
                if value.is_null() {
                    continue;
                }
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match outp.get(key) {
                    None => out.push(child),
                    Some(decoded) => collect_unknown(value, decoded, &child, out),
                }
            }
        }
        (Value::Array(inp), Value::Array(outp)) => {
            for (i, (a, b)) in inp.iter().zip(outp).enumerate() {
                collect_unknown(a, b, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

fn render_path(path: &[Segment]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn node_at<'a>(root: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| match seg {
        Segment::Key(k) => v.get(k),
        Segment::Index(i) => v.get(i),
    })
}

fn node_at_mut<'a>(root: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |v, seg| match seg {
        Segment::Key(k) => v.get_mut(k),
        Segment::Index(i) => v.get_mut(i),
    })
}

/// Finds the field a decode error is about. The typed decoder reports the first wrong value
/// without saying where it is, so this narrows it down: a child is the culprit when removing
/// it changes the error (the decoder no longer reaches the same wrong value). Runs only on
/// the error path, at most a few decodes per level.
fn locate_error(info: &ResourceInfo, root: &Value, original: &str) -> Vec<Segment> {
    let mut path: Vec<Segment> = Vec::new();
    'descend: loop {
        let children: Vec<Segment> = match node_at(root, &path) {
            Some(Value::Object(m)) => m.keys().map(|k| Segment::Key(k.clone())).collect(),
            Some(Value::Array(a)) => (0..a.len()).map(Segment::Index).collect(),
            _ => return path,
        };
        for child in children {
            let mut trial = root.clone();
            let removed = match node_at_mut(&mut trial, &path) {
                Some(Value::Object(m)) => match &child {
                    Segment::Key(k) => m.remove(k).is_some(),
                    Segment::Index(_) => false,
                },
                Some(Value::Array(a)) => match &child {
                    Segment::Index(i) if *i < a.len() => {
                        a.remove(*i);
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !removed {
                continue;
            }
            let same = matches!(info.round_trip(trial), Err(e) if e.to_string() == original);
            if !same {
                path.push(child);
                continue 'descend;
            }
        }
        return path;
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
