//! Field selectors: `metadata.name=web,status.phase!=Running`, with Kubernetes' escaping
//! (`\,` `\=` `\\`), and the fields each kind lets clients select on.

use std::fmt;

use serde_json::Value;

use crate::kinds::ResourceInfo;

/// A field selector that cannot be parsed, or names a field its kind does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    CannotUnderstand { selector: String, term: String },
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    /// Kubernetes prints the character's code point, not the character.
    #[error("invalid field selector: unescaped character in value: {}", *.0 as u32)]
    UnescapedCharacter(char),
    #[error("field label not supported: {0}")]
    Unsupported(String),
}

/// Whether a term wants the field equal or unequal to its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOp {
    Equals,
    NotEquals,
}

/// One `field=value` or `field!=value` condition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldTerm {
    pub field: String,
    pub op: FieldOp,
    pub value: String,
}

impl FieldTerm {
    fn matches(&self, actual: &str) -> bool {
        match self.op {
            FieldOp::Equals => actual == self.value,
            FieldOp::NotEquals => actual != self.value,
        }
    }
}

impl fmt::Display for FieldTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOp::Equals => "=",
            FieldOp::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_value(&self.value))
    }
}

/// A conjunction of field terms; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    pub fn everything() -> FieldSelector {
        FieldSelector::default()
    }

    /// Parses comma-separated `f=v`, `f==v` and `f!=v` terms. Terms are taken in sorted order
    /// of their text, as Kubernetes takes them; empty terms are skipped.
    pub fn parse(selector: &str) -> Result<FieldSelector, FieldSelectorError> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            let Some((field, op, raw_value)) = split_term(part) else {
                return Err(FieldSelectorError::CannotUnderstand {
                    selector: selector.to_string(),
                    term: part.to_string(),
                });
            };
            terms.push(FieldTerm {
                field: field.to_string(),
                op,
                value: unescape_value(raw_value)?,
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether an object whose fields `get` looks up satisfies every term. A field the object
    /// does not set compares as the empty string.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms
            .iter()
            .all(|t| t.matches(get(&t.field).as_deref().unwrap_or("")))
    }

    /// The value a term requires `field` to equal, if any (`spec.nodeName=n1` → `n1`): lets a
    /// caller narrow a list before matching.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && t.op == FieldOp::Equals)
            .map(|t| t.value.as_str())
    }

    /// Checks that every field named is one `info`'s kind can be selected on.
    pub fn check_supported(&self, info: &ResourceInfo) -> Result<(), FieldSelectorError> {
        for t in &self.terms {
            if !supported_fields(info).contains(&t.field.as_str()) {
                return Err(FieldSelectorError::Unsupported(t.field.clone()));
            }
        }
        Ok(())
    }

    /// Matches an object of kind `info`; fails if a term names a field the kind does not offer.
    pub fn matches_object(
        &self,
        info: &ResourceInfo,
        obj: &Value,
    ) -> Result<bool, FieldSelectorError> {
        for t in &self.terms {
            let actual = field_value(info, obj, &t.field)?;
            if !t.matches(actual.as_deref().unwrap_or("")) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` so a value survives inside a selector.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Reverses [`escape_value`]; a bare `,` or `=`, or `\` before anything else, is an error.
pub fn unescape_value(value: &str) -> Result<String, FieldSelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(FieldSelectorError::InvalidEscape(format!("\\{c}")));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(FieldSelectorError::UnescapedCharacter(c)),
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscape("\\".to_string()));
    }
    Ok(out)
}

/// Splits at commas that are not escaped.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator, trying `!=` then `==` then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOp, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (text, op) in [
            ("!=", FieldOp::NotEquals),
            ("==", FieldOp::Equals),
            ("=", FieldOp::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(text) {
                return Some((&term[..i], op, value));
            }
        }
    }
    None
}

/// The fields of `info`'s kind that selectors may name.
pub fn supported_fields(info: &ResourceInfo) -> &'static [&'static str] {
    match (info.group, info.kind) {
        ("", "Pod") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Node") => &["metadata.name", "metadata.namespace", "spec.unschedulable"],
        ("", "Secret") => &["metadata.name", "metadata.namespace", "type"],
        ("", "Namespace") => &[
            "metadata.name",
            "metadata.namespace",
            "status.phase",
            "name",
        ],
        ("", "Event") => &[
            "metadata.name",
            "metadata.namespace",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("batch", "Job") => &["metadata.name", "metadata.namespace", "status.successful"],
        _ => &["metadata.name", "metadata.namespace"],
    }
}

fn value_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(key))
}

fn string_at(obj: &Value, path: &[&str]) -> Option<String> {
    value_at(obj, path)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Kubernetes formats booleans and counts even when unset (`false`, `0`).
fn bool_at(obj: &Value, path: &[&str]) -> Option<String> {
    Some(
        value_at(obj, path)
            .and_then(Value::as_bool)
            .unwrap_or(false)
            .to_string(),
    )
}

fn int_at(obj: &Value, path: &[&str]) -> Option<String> {
    Some(
        value_at(obj, path)
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
    )
}

/// The value of a selectable `field` in `obj` of kind `info`: `None` when the object leaves it
/// unset (it then compares as ""), an error when the kind does not offer the field.
pub fn field_value(
    info: &ResourceInfo,
    obj: &Value,
    field: &str,
) -> Result<Option<String>, FieldSelectorError> {
    if !supported_fields(info).contains(&field) {
        return Err(FieldSelectorError::Unsupported(field.to_string()));
    }
    let value = match field {
        "metadata.name" => string_at(obj, &["metadata", "name"]),
        "metadata.namespace" if info.namespaced() => string_at(obj, &["metadata", "namespace"]),
        "metadata.namespace" => None,
        "name" => string_at(obj, &["metadata", "name"]),
        "spec.hostNetwork" => bool_at(obj, &["spec", "hostNetwork"]),
        "spec.unschedulable" => bool_at(obj, &["spec", "unschedulable"]),
        "status.replicas" => int_at(obj, &["status", "replicas"]),
        "status.successful" => int_at(obj, &["status", "succeeded"]),
        // The first of the pod's IPs, as Kubernetes reports it.
        "status.podIP" => obj
            .get("status")
            .and_then(|s| s.get("podIPs"))
            .and_then(|ips| ips.get(0))
            .and_then(|ip| ip.get("ip"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| string_at(obj, &["status", "podIP"])),
        "source" => string_at(obj, &["source", "component"]),
        other => {
            let path: Vec<&str> = other.split('.').collect();
            string_at(obj, &path)
        }
    };
    Ok(value)
}

#[cfg(test)]
#[path = "field_selector_tests.rs"]
mod tests;
