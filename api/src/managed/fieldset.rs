//! Sets of fields, as server-side apply tracks who owns what: a tree of path elements in the
//! `fieldsV1` spelling (`f:name` for a field, `k:{"name":"web"}` for an element of a keyed
//! list, `v:"a"` for a value of a set, `i:0` for an index), each node possibly a member. The
//! fields of an object are computed with the kind's wire schema, which says how each list is
//! identified.

use std::collections::BTreeMap;

use keel_types::crd::{structural, Schema};
use keel_types::schema::{self, Cardinality, Field, Message};
use serde_json::{Map, Value};

/// Where in the schema a value sits: a message of a built-in kind, a map's values, a custom
/// kind's object or a value its structural schema describes, or nowhere known.
#[derive(Debug, Clone, Copy)]
pub enum Ctx<'a> {
    Message(&'static Message),
    MapOf(&'static str),
    /// A custom object itself: its metadata is ObjectMeta, the rest is its schema's.
    CustomRoot(&'a Schema),
    Custom(&'a Schema),
    Unknown,
}

impl<'a> Ctx<'a> {
    pub fn root(api_version: &str, kind: &str) -> Ctx<'static> {
        schema::schema()
            .kind(api_version, kind)
            .map_or(Ctx::Unknown, Ctx::Message)
    }

    /// The root of an object: its custom kind's schema when it has one, else its built-in
    /// kind's message.
    pub fn of_object(object: &Value, custom: Option<&'a Schema>) -> Ctx<'a> {
        match custom {
            Some(s) => Ctx::CustomRoot(s),
            None => Ctx::root(
                object["apiVersion"].as_str().unwrap_or_default(),
                object["kind"].as_str().unwrap_or_default(),
            ),
        }
    }

    fn of_type(ty: &str) -> Ctx<'a> {
        schema::schema()
            .message(ty)
            .map_or(Ctx::Unknown, Ctx::Message)
    }

    /// The field named `key` here, and the context of its value (of its elements, for lists).
    pub fn child(self, key: &str) -> (Slot<'a>, Ctx<'a>) {
        match self {
            Ctx::Message(m) => match m.field(key) {
                Some(f) => {
                    let ctx = match f.cardinality {
                        Cardinality::Map { .. } => Ctx::MapOf(f.ty),
                        _ => Ctx::of_type(f.ty),
                    };
                    (Slot::Builtin(Some(f)), ctx)
                }
                None => (Slot::Builtin(None), Ctx::Unknown),
            },
            Ctx::MapOf(ty) => (Slot::Builtin(None), Ctx::of_type(ty)),
            // ObjectMeta, as every built-in kind holds it.
            Ctx::CustomRoot(_) if key == "metadata" => Ctx::root("v1", "ConfigMap").child(key),
            Ctx::CustomRoot(s) | Ctx::Custom(s) => match structural::field(s, key) {
                Some(f) => {
                    let ctx = match structural::items(f) {
                        Some(items) if f.type_.as_deref() == Some("array") => Ctx::Custom(items),
                        _ => Ctx::Custom(f),
                    };
                    (Slot::Custom(f), ctx)
                }
                None => (Slot::Builtin(None), Ctx::Unknown),
            },
            Ctx::Unknown => (Slot::Builtin(None), Ctx::Unknown),
        }
    }
}

/// What a schema says of one field's value: a built-in field (None: one it does not know),
/// or a custom kind's schema.
#[derive(Debug, Clone, Copy)]
pub enum Slot<'a> {
    Builtin(Option<&'static Field>),
    Custom(&'a Schema),
}

impl<'a> Slot<'a> {
    /// The built-in field, if this is one.
    pub fn field(self) -> Option<&'static Field> {
        match self {
            Slot::Builtin(f) => f,
            Slot::Custom(_) => None,
        }
    }

    /// How the elements of a list here are told apart: as the field's list type and keys
    /// (or, on built-ins, its strategic-merge key) say; a custom kind's list without a list
    /// type is atomic, as Kubernetes reads its schema.
    pub fn list_kind(self) -> ListKind<'a> {
        let Slot::Custom(s) = self else {
            return list_kind(self.field());
        };
        let keys = s.x_kubernetes_list_map_keys.as_deref().unwrap_or_default();
        match s.x_kubernetes_list_type.as_deref() {
            Some("map") if !keys.is_empty() => {
                ListKind::Keyed(keys.iter().map(String::as_str).collect())
            }
            Some("set") => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }

    /// Whether an object here is one value (`x-kubernetes-map-type: atomic`, or an
    /// embedded resource's whole) rather than its fields.
    pub fn atomic_object(self) -> bool {
        match self {
            Slot::Custom(s) => s.x_kubernetes_map_type.as_deref() == Some("atomic"),
            Slot::Builtin(_) => false,
        }
    }

    /// Whether an object set here is itself a member of the field set: a map, a struct
    /// Kubernetes holds by pointer, any object of a custom kind; not a struct held by value.
    fn own_member(self) -> bool {
        match self {
            Slot::Builtin(field) => {
                field.is_none_or(|f| f.pointer || matches!(f.cardinality, Cardinality::Map { .. }))
            }
            Slot::Custom(_) => true,
        }
    }
}

/// How the elements of a list are told apart.
#[derive(Debug, Clone, PartialEq)]
pub enum ListKind<'a> {
    /// By the values of these fields.
    Keyed(Vec<&'a str>),
    /// By their own (scalar) value.
    Set,
    /// Not at all: the list is one value.
    Atomic,
}

pub fn list_kind(field: Option<&Field>) -> ListKind<'static> {
    let Some(f) = field else {
        return ListKind::Atomic;
    };
    match f.list_type {
        Some("map") if !f.list_map_keys.is_empty() => ListKind::Keyed(f.list_map_keys.clone()),
        Some("set") => ListKind::Set,
        Some("atomic") => ListKind::Atomic,
        _ => match (f.merge_key, f.patch_strategy) {
            (Some(k), _) => ListKind::Keyed(vec![k]),
            (None, Some(s)) if s.contains("merge") && f.is_scalar() => ListKind::Set,
            _ => ListKind::Atomic,
        },
    }
}

/// The path element naming `element` of a list of `kind`, at `index`.
pub fn element_key(kind: &ListKind<'_>, element: &Value, index: usize) -> String {
    match kind {
        ListKind::Keyed(keys) => {
            let mut k = Map::new();
            for key in keys {
                if let Some(v) = element.get(*key) {
                    k.insert((*key).to_string(), v.clone());
                }
            }
            format!("k:{}", Value::Object(k))
        }
        ListKind::Set => format!("v:{element}"),
        ListKind::Atomic => format!("i:{index}"),
    }
}

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// A path: elements in the `fieldsV1` spelling.
pub type Path = Vec<String>;

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Whether a member lies strictly below `path`.
    pub fn has_below(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => !self.children.values().all(FieldSet::is_empty),
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.has_below(rest)),
        }
    }

    /// Every member path, parents before children.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, child) in &self.children {
            prefix.push(k.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for p in other.paths() {
            out.insert(&p);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths().into_iter().filter(|p| !other.contains(p)) {
            out.insert(&p);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for p in self.paths().into_iter().filter(|p| other.contains(p)) {
            out.insert(&p);
        }
        out
    }

    /// The set in its `fieldsV1` JSON form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            if !child.is_empty() {
                m.insert(k.clone(), child.to_json());
            }
        }
        Value::Object(m)
    }

    /// A set from its `fieldsV1` JSON form; a node without children is a member.
    pub fn from_json(value: &Value) -> FieldSet {
        let mut out = FieldSet::default();
        if let Value::Object(m) = value {
            for (k, v) in m {
                if k == "." {
                    out.member = true;
                    continue;
                }
                let mut child = FieldSet::from_json(v);
                if v.as_object().is_some_and(Map::is_empty) {
                    child.member = true;
                }
                out.children.insert(k.clone(), child);
            }
        }
        out
    }
}

/// Metadata fields the server owns; nobody manages them.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields `object` sets, as a set; `with_status` says whether its status counts (it does
/// not for the main resource of a kind with a status subresource).
pub fn fields_of(object: &Value, root: Ctx<'_>, with_status: bool) -> FieldSet {
    let mut set = FieldSet::default();
    let Value::Object(m) = object else {
        return set;
    };
    for (k, v) in m {
        if matches!(k.as_str(), "apiVersion" | "kind") || (k == "status" && !with_status) {
            continue;
        }
        let (slot, ctx) = root.child(k);
        let mut path = vec![format!("f:{k}")];
        if k == "metadata" {
            let mut meta = v.clone();
            if let Some(mm) = meta.as_object_mut() {
                for owned in SERVER_METADATA {
                    mm.remove(*owned);
                }
            }
            if meta.as_object().is_some_and(|mm| !mm.is_empty()) {
                walk(&meta, slot, ctx, &mut path, &mut set);
            }
        } else {
            walk(v, slot, ctx, &mut path, &mut set);
        }
    }
    set
}

fn walk(value: &Value, slot: Slot<'_>, ctx: Ctx<'_>, path: &mut Path, set: &mut FieldSet) {
    match value {
        Value::Object(_) if slot.atomic_object() => set.insert(path),
        Value::Object(m) if !m.is_empty() => {
            if slot.own_member() && !path.is_empty() {
                set.insert(path);
            }
            for (k, v) in m {
                let (s, c) = ctx.child(k);
                path.push(format!("f:{k}"));
                walk(v, s, c, path, set);
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = slot.list_kind();
            if kind == ListKind::Atomic || items.is_empty() {
                set.insert(path);
                return;
            }
            for (i, item) in items.iter().enumerate() {
                path.push(element_key(&kind, item, i));
                set.insert(path);
                if let (ListKind::Keyed(_), Value::Object(m)) = (&kind, item) {
                    for (k, v) in m {
                        let (s, c) = ctx.child(k);
                        path.push(format!("f:{k}"));
                        walk(v, s, c, path, set);
                        path.pop();
                    }
                }
                path.pop();
            }
        }
        _ => set.insert(path),
    }
}

/// The element of `list` that path element `key` names.
fn find_element(list: &[Value], key: &str) -> Option<usize> {
    if let Some(k) = key.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(k).ok()?;
        return list
            .iter()
            .position(|e| wanted.iter().all(|(f, v)| e.get(f) == Some(v)));
    }
    if let Some(v) = key.strip_prefix("v:") {
        let wanted: Value = serde_json::from_str(v).ok()?;
        return list.iter().position(|e| *e == wanted);
    }
    let i: usize = key.strip_prefix("i:")?.parse().ok()?;
    (i < list.len()).then_some(i)
}

/// The value at `path` in `object`.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = object;
    for element in path {
        at = match (at, element.strip_prefix("f:")) {
            (Value::Object(m), Some(name)) => m.get(name)?,
            (Value::Array(list), None) => &list[find_element(list, element)?],
            _ => return None,
        };
    }
    Some(at)
}

/// Removes the value at `path` from `object`, if it is there.
pub fn remove_at(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for element in parents {
        let next = match (at, element.strip_prefix("f:")) {
            (Value::Object(m), Some(name)) => m.get_mut(name),
            (Value::Array(list), None) => match find_element(list, element) {
                Some(i) => list.get_mut(i),
                None => None,
            },
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        at = next;
    }
    match (at, last.strip_prefix("f:")) {
        (Value::Object(m), Some(name)) => {
            m.remove(name);
        }
        (Value::Array(list), None) => {
            if let Some(i) = find_element(list, last) {
                list.remove(i);
            }
        }
        _ => {}
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(name) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(k) = element.strip_prefix("k:") {
            let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = keys.iter().map(|(f, v)| format!("{f}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = element.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = element.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}
