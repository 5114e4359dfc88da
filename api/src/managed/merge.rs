//! Merging an applied configuration into the live object, list by list as the schema says:
//! objects merge field by field, keyed lists element by element, sets by value, and anything
//! else (scalars, atomic lists) is replaced by the configuration's value.

use serde_json::Value;

use super::fieldset::{Ctx, ListKind, Slot};

/// Merges `config` into `live`.
pub fn merge(live: &mut Value, config: &Value, ctx: Ctx<'_>) {
    let (Value::Object(target), Value::Object(source)) = (&mut *live, config) else {
        *live = config.clone();
        return;
    };
    for (k, v) in source {
        let (slot, child) = ctx.child(k);
        match target.get_mut(k) {
            Some(existing) => merge_value(existing, v, slot, child),
            None => {
                target.insert(k.clone(), v.clone());
            }
        }
    }
}

fn merge_value(live: &mut Value, config: &Value, slot: Slot<'_>, ctx: Ctx<'_>) {
    match (&mut *live, config) {
        (Value::Object(_), Value::Object(_)) if !slot.atomic_object() => merge(live, config, ctx),
        (Value::Array(target), Value::Array(source)) => match slot.list_kind() {
            ListKind::Atomic => *live = config.clone(),
            ListKind::Set => {
                for v in source {
                    if !target.contains(v) {
                        target.push(v.clone());
                    }
                }
            }
            kind @ ListKind::Keyed(_) => {
                for element in source {
                    let found = target.iter().position(|t| same_element(&kind, element, t));
                    match found {
                        Some(j) => merge(&mut target[j], element, ctx),
                        None => target.push(element.clone()),
                    }
                }
            }
        },
        _ => *live = config.clone(),
    }
}

/// Whether `live` is the element `config` names: the key fields the configuration gives all
/// match (a key it leaves out, such as a defaulted protocol, does not tell them apart).
fn same_element(kind: &ListKind<'_>, config: &Value, live: &Value) -> bool {
    let ListKind::Keyed(keys) = kind else {
        return config == live;
    };
    let mut given = keys.iter().filter_map(|k| config.get(*k).map(|v| (k, v)));
    let first = given.next();
    first.is_some()
        && first
            .into_iter()
            .chain(given)
            .all(|(k, v)| live.get(*k) == Some(v))
}
