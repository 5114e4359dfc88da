//! The conditions a Terminating namespace carries while its content is deleted, as
//! Kubernetes' namespace controller writes them, so `kubectl describe ns` says what is holding
//! a deletion up: content remaining (per resource), finalizers remaining (per finalizer), and
//! failed deletions. Pure: built from what one deletion pass found.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// What one pass over a namespace's content found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Objects found, per group-resource (`pods`, `deployments.apps`).
    pub remaining: BTreeMap<String, usize>,
    /// Objects holding each finalizer.
    pub finalizers: BTreeMap<String, usize>,
    /// Deletions that failed, as messages.
    pub failures: Vec<String>,
}

impl Pass {
    /// Counts one object found of `group_resource`, with its finalizers.
    pub fn found(&mut self, group_resource: &str, object: &Value) {
        *self
            .remaining
            .entry(group_resource.to_string())
            .or_default() += 1;
        for f in object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            *self.finalizers.entry(f.to_string()).or_default() += 1;
        }
    }
}

/// `plural` as Kubernetes prints a group-resource: `pods`, `deployments.apps`.
pub fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn condition(type_: &str, status: bool, reason: &str, message: String, now: &str) -> Value {
    json!({
        "type": type_,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    })
}

/// The namespace's conditions after `pass`, merged into `existing` (a condition keeps its
/// transition time while its status stays the same).
pub fn conditions(existing: &[Value], pass: &Pass, now: &str) -> Vec<Value> {
    let content_failure = if pass.failures.is_empty() {
        condition(
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into(),
            now,
        )
    } else {
        condition(
            "NamespaceDeletionContentFailure",
            true,
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                pass.failures.len(),
                pass.failures.join(", ")
            ),
            now,
        )
    };
    let remaining = if pass.remaining.is_empty() {
        condition(
            "NamespaceContentRemaining",
            false,
            "ContentRemoved",
            "All content successfully removed".into(),
            now,
        )
    } else {
        let list: Vec<String> = pass
            .remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
            now,
        )
    };
    let finalizers = if pass.finalizers.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
            now,
        )
    } else {
        let list: Vec<String> = pass
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            true,
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
            now,
        )
    };
    let fresh = [
        condition(
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
            now,
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
            now,
        ),
        content_failure,
        remaining,
        finalizers,
    ];
    fresh
        .into_iter()
        .map(|mut c| {
            let same = existing.iter().find(|e| e["type"] == c["type"]);
            if let Some(e) = same.filter(|e| e["status"] == c["status"]) {
                c["lastTransitionTime"] = e["lastTransitionTime"].clone();
            }
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_type<'a>(conditions: &'a [Value], t: &str) -> &'a Value {
        conditions
            .iter()
            .find(|c| c["type"] == t)
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn remaining_content_and_finalizers_are_named_with_their_counts() {
        let mut pass = Pass::default();
        pass.found("pods", &json!({"metadata": {"name": "a"}}));
        pass.found(
            "pods",
            &json!({"metadata": {"name": "b", "finalizers": ["example.com/hold"]}}),
        );
        pass.found(
            &group_resource("apps", "deployments"),
            &json!({"metadata": {"name": "d"}}),
        );
        let c = conditions(&[], &pass, "2026-01-01T00:00:00Z");
        let remaining = by_type(&c, "NamespaceContentRemaining");
        assert_eq!(remaining["status"], "True");
        assert_eq!(
            remaining["message"],
            "Some resources are remaining: deployments.apps has 1 resource instances, pods has 2 resource instances"
        );
        let finalizers = by_type(&c, "NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            by_type(&c, "NamespaceDeletionContentFailure")["status"],
            "False"
        );
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn a_failed_deletion_is_reported_and_transition_times_are_kept() {
        let pass = Pass {
            failures: vec!["pods \"a\" is forbidden".into()],
            ..Default::default()
        };
        let first = conditions(&[], &pass, "t1");
        let again = conditions(&first, &pass, "t2");
        let failure = by_type(&again, "NamespaceDeletionContentFailure");
        assert_eq!(failure["status"], "True");
        assert_eq!(failure["reason"], "ContentDeletionFailed");
        assert_eq!(failure["lastTransitionTime"], "t1");
        let cleared = conditions(&again, &Pass::default(), "t3");
        assert_eq!(
            by_type(&cleared, "NamespaceDeletionContentFailure")["lastTransitionTime"],
            "t3"
        );
    }
}
