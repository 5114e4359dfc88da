//! `meta.k8s.io/v1` Tables, what `kubectl get` asks for (`Accept:
//! application/json;as=Table;v=v1;g=meta.k8s.io`): column definitions for the kind and one row
//! of cells per object, with the object itself as PartialObjectMetadata (or whole, or not at
//! all, as `includeObject` says). The cells of each kind are in [`super::columns`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use keel_types::crd::CustomVersion;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use super::columns;

/// Whose columns a Table has: a built-in kind's (compiled in), or a custom kind's (from its
/// definition).
#[derive(Debug, Clone)]
pub enum Columns {
    BuiltIn(&'static ResourceInfo),
    Custom(Arc<CustomVersion>),
}

impl Columns {
    /// The columns of `info`, a custom kind when `custom` is its definition's version.
    pub fn of(info: &'static ResourceInfo, custom: Option<&Arc<CustomVersion>>) -> Self {
        match custom {
            Some(version) => Columns::Custom(version.clone()),
            None => Columns::BuiltIn(info),
        }
    }

    fn definitions(&self) -> Vec<Value> {
        match self {
            Columns::BuiltIn(info) => columns::columns(info)
                .iter()
                .map(Column::definition)
                .collect(),
            Columns::Custom(version) => crate::crd::columns::definitions(version),
        }
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        match self {
            Columns::BuiltIn(info) => columns::cells(info, obj, now),
            Columns::Custom(version) => crate::crd::columns::cells(version, obj, now),
        }
    }
}

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    /// The object's metadata as a PartialObjectMetadata (the default).
    #[default]
    Metadata,
    Object,
}

/// One column: its name as Kubernetes spells it (kubectl prints it upper-cased), its type,
/// and its priority (0 always shown, 1 only with `-o wide`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

impl Column {
    pub const fn new(name: &'static str, kind: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            format: "",
            description,
            priority: 0,
        }
    }

    pub const fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    pub const fn name_format(mut self) -> Self {
        self.format = "name";
        self
    }

    fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.kind,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// Whether an `Accept` header asks for a meta.k8s.io/v1 Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && params.contains(&"v=v1")
    })
}

fn row(kind: &Columns, obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let mut row = json!({ "cells": kind.cells(obj, now) });
    match include {
        IncludeObject::None => {}
        IncludeObject::Object => row["object"] = obj.clone(),
        IncludeObject::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            })
        }
    }
    row
}

/// A Table of `items`; `list_metadata` (resourceVersion, continue, …) carries over.
pub fn table(
    kind: &Columns,
    items: &[Value],
    list_metadata: Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_metadata,
        "columnDefinitions": kind.definitions(),
        "rows": items.iter().map(|o| row(kind, o, include, now)).collect::<Vec<_>>(),
    })
}

/// A Table of one object (a get, or one watch event).
pub fn single(kind: &Columns, obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let rv = obj
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    table(
        kind,
        std::slice::from_ref(obj),
        json!({ "resourceVersion": rv }),
        include,
        now,
    )
}

/// A Table of a List object the core returned.
pub fn of_list(kind: &Columns, list: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let metadata = list.get("metadata").cloned().unwrap_or(json!({}));
    table(kind, items, metadata, include, now)
}

/// A duration as kubectl shows ages: "45s", "5m3s", "3h", "2d5h", "3y" (apimachinery's
/// HumanDuration).
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The time since an RFC 3339 timestamp, as an age; "<unknown>" without one.
pub fn since(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    match timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(5 * 60 + 3), "5m3s");
        assert_eq!(human_duration(30 * 60), "30m");
        assert_eq!(human_duration(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(human_duration(20 * 3600), "20h");
        assert_eq!(human_duration(2 * 86400 + 5 * 3600), "2d5h");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(3 * 365 * 86400), "3y");
        assert_eq!(human_duration(-5), "<invalid>");
    }

    #[test]
    fn table_accept_headers_are_recognised() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
        ));
    }
}
