//! Field management, as Kubernetes records it in `metadata.managedFields`: which manager set
//! which fields, by an Apply (server-side apply) or an Update (any other write). Applying a
//! configuration merges it into the live object, removes fields the manager applied before and
//! no longer does, and refuses — unless forced — to change a field another manager set to a
//! different value. Pure: objects in, objects out.

mod fieldset;
mod merge;

pub use fieldset::{display, fields_of, Ctx, FieldSet, Path};

use keel_types::crd::Schema;
use serde_json::{json, Value};

use fieldset::{remove_at, value_at};

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_json(),
        });
        if !self.subresource.is_empty() {
            v["subresource"] = json!(self.subresource);
        }
        v
    }

    fn from_json(v: &Value) -> Entry {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Entry {
            manager: s("manager"),
            operation: s("operation"),
            api_version: s("apiVersion"),
            time: s("time"),
            subresource: s("subresource"),
            fields: FieldSet::from_json(v.get("fieldsV1").unwrap_or(&Value::Null)),
        }
    }

    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// The manager as Kubernetes names it in conflicts.
    fn describe(&self) -> String {
        let mut out = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == UPDATE {
            out.push_str(&format!(" using {}", self.api_version));
            if !self.time.is_empty() {
                out.push_str(&format!(" at {}", self.time));
            }
        }
        out
    }
}

/// The managedFields of `object`.
pub fn entries_of(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| list.iter().map(Entry::from_json).collect())
        .unwrap_or_default()
}

fn set_entries(object: &mut Value, entries: Vec<Entry>) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// One field an apply would take from another manager.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The other manager, as Kubernetes describes it (`"kubectl-edit" using v1 at …`).
    pub manager: String,
    pub path: Path,
}

/// The message of a 409 for `conflicts`, worded as Kubernetes words it.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            only.manager,
            display(&only.path)
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", display(&c.path)));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// What an apply is about.
#[derive(Debug, Clone)]
pub struct Apply<'a> {
    pub manager: &'a str,
    pub force: bool,
    /// Whether status counts as the object's fields (not for the main resource of a kind with
    /// a status subresource).
    pub with_status: bool,
    pub now: &'a str,
    /// A custom kind's schema (None for built-in kinds, whose wire schema is known).
    pub schema: Option<&'a Schema>,
}

/// Applies `config` as `apply.manager` to `live` (None: the object does not exist yet).
/// Returns the object to write, managedFields included, or the conflicts.
pub fn apply(live: Option<&Value>, config: &Value, apply: &Apply) -> Result<Value, Vec<Conflict>> {
    let api_version = config["apiVersion"].as_str().unwrap_or_default();
    let ctx = Ctx::of_object(config, apply.schema);
    let mut config = config.clone();
    if let Some(m) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    let empty = json!({});
    let base = live.unwrap_or(&empty);
    let mut entries = entries_of(base);
    let applied = fields_of(&config, ctx, apply.with_status);
    let previous = entries
        .iter()
        .find(|e| e.is(apply.manager, APPLY, ""))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    for e in entries.iter_mut().filter(|e| e.manager != apply.manager) {
        let mut taken = FieldSet::default();
        for path in applied.intersection(&e.fields).paths() {
            let wanted = value_at(&config, &path);
            if wanted.is_some_and(Value::is_object) {
                continue;
            }
            if value_at(base, &path) != wanted {
                conflicts.push(Conflict {
                    manager: e.describe(),
                    path: path.clone(),
                });
                taken.insert(&path);
            }
        }
        if apply.force {
            e.fields = e.fields.difference(&taken);
        }
    }
    if !conflicts.is_empty() && !apply.force {
        return Err(conflicts);
    }

    let mut object = base.clone();
    let others = entries
        .iter()
        .filter(|e| !e.is(apply.manager, APPLY, ""))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
    // Parents before children: a list element is found by its keys before anything in it
    // goes, and what goes with its parent needs no removal of its own.
    let dropped = previous.difference(&applied).difference(&others).paths();
    let kept = applied.union(&others);
    let mut removed: Vec<Path> = Vec::new();
    for path in dropped {
        if removed.iter().any(|r| path.starts_with(r)) {
            continue;
        }
        // Something in it is still someone's: only the dropped parts inside go (and never a
        // kept element's keys).
        if kept.has_below(&path) || is_element_key(&path) {
            continue;
        }
        remove_at(&mut object, &path);
        removed.push(path.clone());
        // A map or object emptied by the removal goes too, unless someone set it empty.
        for depth in (1..path.len()).rev() {
            let parent = &path[..depth];
            let emptied = value_at(&object, parent)
                .is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
            if !emptied || kept.contains(parent) {
                break;
            }
            remove_at(&mut object, parent);
        }
    }
    merge::merge(&mut object, &config, ctx);

    // An apply that changes nothing leaves the object as it was, time of last apply included.
    let unchanged = strip_managed(&object) == strip_managed(base);
    let time = entries
        .iter()
        .find(|e| e.is(apply.manager, APPLY, "") && unchanged && e.fields == applied)
        .map_or_else(|| apply.now.to_string(), |e| e.time.clone());
    entries.retain(|e| !e.is(apply.manager, APPLY, ""));
    entries.push(Entry {
        manager: apply.manager.to_string(),
        operation: APPLY.into(),
        api_version: api_version.to_string(),
        time,
        subresource: String::new(),
        fields: applied,
    });
    set_entries(&mut object, entries);
    Ok(object)
}

/// Whether `path` names a key field of the list element it is in (`k:{"name":"a"}` then
/// `f:name`).
fn is_element_key(path: &[String]) -> bool {
    let [.., element, field] = path else {
        return false;
    };
    let (Some(keys), Some(field)) = (element.strip_prefix("k:"), field.strip_prefix("f:")) else {
        return false;
    };
    serde_json::from_str::<serde_json::Map<String, Value>>(keys)
        .is_ok_and(|k| k.contains_key(field))
}

fn strip_managed(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    o
}

/// What a write other than apply is about.
#[derive(Debug, Clone)]
pub struct Update<'a> {
    pub manager: &'a str,
    pub subresource: &'a str,
    pub with_status: bool,
    pub now: &'a str,
    /// A custom kind's schema (None for built-in kinds).
    pub schema: Option<&'a Schema>,
}

/// Records an update from `old` (None: a create) to `new` by `update.manager`: the manager
/// owns what it changed, the others lose it. `new`'s managedFields are set from `old`'s.
pub fn track_update(old: Option<&Value>, new: &mut Value, update: &Update) {
    let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
    let ctx = Ctx::of_object(new, update.schema);
    let empty = json!({});
    let before = old.unwrap_or(&empty);
    let mut entries = match old {
        Some(o) => entries_of(o),
        None => entries_of(new),
    };
    let counts_status = update.with_status || update.subresource == "status";
    let after = fields_of(new, ctx, counts_status);
    let removed = fields_of(before, ctx, counts_status).difference(&after);
    let mut changed = removed.clone();
    for path in after.paths() {
        let (was, is) = (value_at(before, &path), value_at(new, &path));
        if was.is_none() || (!is.is_some_and(Value::is_object) && was != is) {
            changed.insert(&path);
        }
    }
    if !changed.is_empty() {
        for e in entries.iter_mut() {
            e.fields = e.fields.difference(&changed);
        }
        let mine = entries
            .iter()
            .position(|e| e.is(update.manager, UPDATE, update.subresource));
        let owned = changed.intersection(&after);
        match mine {
            Some(i) => {
                entries[i].fields = entries[i].fields.union(&owned);
                entries[i].time = update.now.to_string();
                entries[i].api_version = api_version;
            }
            None => entries.push(Entry {
                manager: update.manager.to_string(),
                operation: UPDATE.into(),
                api_version,
                time: update.now.to_string(),
                subresource: update.subresource.to_string(),
                fields: owned,
            }),
        }
    }
    set_entries(new, entries);
}

#[cfg(test)]
mod tests;
