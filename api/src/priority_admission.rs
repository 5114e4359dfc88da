//! Kubernetes' Priority admission: a new pod's `spec.priorityClassName` is resolved to the
//! class's value and preemption policy (the global default class, or priority 0, when it names
//! none), so the scheduler reads a number and never a class; a pod may not claim a priority
//! its class does not give. An updated pod keeps what it was given. At most one PriorityClass
//! is the global default, and the built-in classes cannot be deleted.
//!
//! The decisions are plain functions over the classes; [`ApiServer`] reads the classes from
//! its lists (the watch cache when it has one), as quota admission reads quotas.

use keel_types::k8s_openapi::api::scheduling::v1::PriorityClass;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::list::ListOptions;
use crate::meta;
use crate::server::ApiServer;
use crate::storage::Storage;

/// The preemption policy of pods when no class gives one.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// What admission needs of one PriorityClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Class {
    pub name: String,
    pub value: i32,
    pub preemption_policy: Option<String>,
    pub global_default: bool,
}

impl Class {
    fn from_object(pc: PriorityClass) -> Class {
        Class {
            name: pc.metadata.name.unwrap_or_default(),
            value: pc.value,
            preemption_policy: pc.preemption_policy,
            global_default: pc.global_default.unwrap_or(false),
        }
    }
}

/// The class pods without a class name get: of the classes marked global default, the one
/// with the lowest value (there should be one, but a race between two creates can leave two).
pub fn default_class(classes: &[Class]) -> Option<&Class> {
    classes
        .iter()
        .filter(|c| c.global_default)
        .min_by_key(|c| c.value)
}

/// What a new pod is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The class name to record: the pod's own, or the default class's ("" if none).
    pub class_name: String,
    pub priority: i32,
    pub preemption_policy: Option<String>,
}

/// Why a pod may not be created with the priority it asks for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no PriorityClass with name {0} was found")]
    UnknownClass(String),
    #[error("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    Priority { given: i64, computed: i32 },
    #[error("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    PreemptionPolicy { given: String, computed: String },
}

/// The priority of a new pod naming `class_name` ("" for none), which itself set
/// `given_priority` and `given_policy`.
pub fn resolve(
    class_name: &str,
    given_priority: Option<i64>,
    given_policy: Option<&str>,
    classes: &[Class],
) -> Result<Resolved, Refusal> {
    let resolved = if class_name.is_empty() {
        match default_class(classes) {
            Some(c) => Resolved {
                class_name: c.name.clone(),
                priority: c.value,
                preemption_policy: c.preemption_policy.clone(),
            },
            None => Resolved {
                class_name: String::new(),
                priority: 0,
                preemption_policy: Some(DEFAULT_PREEMPTION_POLICY.into()),
            },
        }
    } else {
        let class = classes
            .iter()
            .find(|c| c.name == class_name)
            .ok_or_else(|| Refusal::UnknownClass(class_name.to_string()))?;
        Resolved {
            class_name: class.name.clone(),
            priority: class.value,
            preemption_policy: class.preemption_policy.clone(),
        }
    };
    if let Some(given) = given_priority.filter(|g| *g != i64::from(resolved.priority)) {
        return Err(Refusal::Priority {
            given,
            computed: resolved.priority,
        });
    }
    if let (Some(given), Some(computed)) = (given_policy, resolved.preemption_policy.as_deref()) {
        if given != computed {
            return Err(Refusal::PreemptionPolicy {
                given: given.to_string(),
                computed: computed.to_string(),
            });
        }
    }
    Ok(resolved)
}

/// Writes what `resolve` gave into a pod object.
pub fn apply(pod: &mut Value, resolved: &Resolved) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if !resolved.class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(resolved.class_name));
    }
    spec.insert("priority".into(), json!(resolved.priority));
    if let Some(policy) = &resolved.preemption_policy {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
}

/// An updated pod keeps the priority and preemption policy admission gave it when the update
/// leaves them out (a client replacing the pod from its manifest does), so the update is not
/// refused as a change of an immutable field.
pub fn keep_on_update(pod: &mut Value, old: &Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["priority", "preemptionPolicy"] {
        let unset = spec.get(field).is_none_or(Value::is_null);
        if let (true, Some(kept)) = (unset, old.pointer(&format!("/spec/{field}"))) {
            if !kept.is_null() {
                spec.insert(field.into(), kept.clone());
            }
        }
    }
}

/// The existing global default that class `name`, marked `global_default`, would be a second
/// of, if any. On create (`creating`) every existing default counts; on update, only one of
/// another name.
pub fn other_default<'a>(
    name: &str,
    global_default: bool,
    creating: bool,
    classes: &'a [Class],
) -> Option<&'a str> {
    if !global_default {
        return None;
    }
    default_class(classes)
        .filter(|d| creating || d.name != name)
        .map(|d| d.name.as_str())
}

/// The built-in classes are never deleted: pods of the control plane name them.
pub(crate) fn refuse_system_class_delete(info: &ResourceInfo, name: &str) -> Result<(), ApiError> {
    let system = keel_types::validation::SYSTEM_PRIORITY_CLASSES
        .iter()
        .any(|c| c.name == name);
    if is_priority_class(info) && system {
        return Err(ApiError::Forbidden(format!(
            "priorityclasses.scheduling.k8s.io \"{name}\" is forbidden: this is a system priority class and cannot be deleted"
        )));
    }
    Ok(())
}

pub(crate) fn is_pod(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Pod"
}

fn is_priority_class(info: &ResourceInfo) -> bool {
    info.group == "scheduling.k8s.io" && info.kind == "PriorityClass"
}

impl<S: Storage> ApiServer<S> {
    /// Every PriorityClass, as admission sees them.
    /// The stored classes: as the watch cache holds them (`cached`, as Kubernetes' Priority
    /// admission reads its informer), or as of now.
    async fn priority_classes(&self, cached: bool) -> Result<Vec<Class>, ApiError> {
        let Some(info) = keel_types::kinds::by_kind("scheduling.k8s.io/v1", "PriorityClass") else {
            return Ok(Vec::new());
        };
        let opts = ListOptions {
            resource_version: if cached { "0".into() } else { String::new() },
            ..Default::default()
        };
        let list = self.list(info, None, &opts).await?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| serde_json::from_value::<PriorityClass>(item.clone()).ok())
            .map(Class::from_object)
            .collect())
    }

    /// Resolves a new pod's priority (other kinds pass untouched). Runs before the pod is
    /// validated, as Kubernetes' mutating admission does.
    pub(crate) async fn admit_new_pod_priority(
        &self,
        info: &'static ResourceInfo,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        if !is_pod(info) {
            return Ok(());
        }
        let given_priority = match pod.pointer("/spec/priority") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_i64() {
                Some(p) => Some(p),
                // Not a number: decoding the pod refuses it, with the field named.
                None => return Ok(()),
            },
        };
        let class_name = meta::str_field(pod, &["spec", "priorityClassName"])
            .unwrap_or("")
            .to_string();
        let given_policy = meta::str_field(pod, &["spec", "preemptionPolicy"]).map(str::to_string);
        let mut classes = self.priority_classes(true).await?;
        // A class the cache does not hold yet may have been created a moment ago (perhaps
        // through another master): the store has the last word before a pod is refused.
        if !class_name.is_empty() && !classes.iter().any(|c| c.name == class_name) {
            classes = self.priority_classes(false).await?;
        }
        let resolved = resolve(
            &class_name,
            given_priority,
            given_policy.as_deref(),
            &classes,
        )
        .map_err(|refusal| {
            ApiError::Forbidden(format!(
                "pods \"{}\" is forbidden: {refusal}",
                meta::name(pod)
            ))
        })?;
        apply(pod, &resolved);
        Ok(())
    }

    /// Refuses a second global default PriorityClass (other kinds pass). `old` is the stored
    /// class on update.
    pub(crate) async fn admit_priority_class(
        &self,
        info: &'static ResourceInfo,
        class: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if !is_priority_class(info) {
            return Ok(());
        }
        let global_default = class
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if !global_default {
            return Ok(());
        }
        let name = meta::name(class);
        let classes = self.priority_classes(false).await?;
        match other_default(name, global_default, old.is_none(), &classes) {
            Some(existing) => Err(ApiError::Forbidden(format!(
                "priorityclasses.scheduling.k8s.io \"{name}\" is forbidden: PriorityClass {existing} is already marked as default. Only one default can exist"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, value: i32, policy: Option<&str>, global_default: bool) -> Class {
        Class {
            name: name.into(),
            value,
            preemption_policy: policy.map(str::to_string),
            global_default,
        }
    }

    fn classes() -> Vec<Class> {
        vec![
            class("high", 1000, Some("PreemptLowerPriority"), false),
            class("batch", 10, Some("Never"), false),
        ]
    }

    #[test]
    fn a_named_class_gives_its_value_and_preemption_policy() {
        assert_eq!(
            resolve("batch", None, None, &classes()),
            Ok(Resolved {
                class_name: "batch".into(),
                priority: 10,
                preemption_policy: Some("Never".into()),
            })
        );
    }

    #[test]
    fn without_a_class_or_default_pods_get_priority_zero_and_preempt_lower_priorities() {
        assert_eq!(
            resolve("", None, None, &classes()),
            Ok(Resolved {
                class_name: String::new(),
                priority: 0,
                preemption_policy: Some("PreemptLowerPriority".into()),
            })
        );
    }

    #[test]
    fn without_a_class_pods_get_the_lowest_global_default() {
        let mut all = classes();
        all.push(class("default-b", 7, Some("Never"), true));
        all.push(class("default-a", 5, None, true));
        let resolved = resolve("", None, None, &all).expect("resolves");
        assert_eq!(resolved.class_name, "default-a");
        assert_eq!(resolved.priority, 5);
        assert_eq!(resolved.preemption_policy, None);
    }

    #[test]
    fn an_unknown_class_is_refused_in_kubernetes_words() {
        let refusal = resolve("foo", None, None, &classes()).expect_err("unknown");
        assert_eq!(
            refusal.to_string(),
            "no PriorityClass with name foo was found"
        );
    }

    #[test]
    fn a_pod_may_repeat_its_class_value_but_not_claim_another() {
        assert!(resolve("high", Some(1000), None, &classes()).is_ok());
        let refusal = resolve("high", Some(5), None, &classes()).expect_err("claims 5");
        assert_eq!(
            refusal.to_string(),
            "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
        // Without a class the computed priority is 0, so any other number is refused too.
        assert_eq!(
            resolve("", Some(3), None, &classes()),
            Err(Refusal::Priority {
                given: 3,
                computed: 0
            })
        );
    }

    #[test]
    fn a_pod_may_not_set_a_preemption_policy_its_class_does_not_give() {
        assert!(resolve("batch", None, Some("Never"), &classes()).is_ok());
        let refusal =
            resolve("batch", None, Some("PreemptLowerPriority"), &classes()).expect_err("differs");
        assert_eq!(
            refusal.to_string(),
            "the string value of PreemptionPolicy (PreemptLowerPriority) must not be provided in pod spec; priority admission controller computed Never from the given PriorityClass name"
        );
    }

    #[test]
    fn resolution_is_written_into_the_pod_spec() {
        let mut pod = json!({"spec": {"containers": []}});
        let resolved =
            resolve("", None, None, &[class("d", 42, Some("Never"), true)]).expect("resolves");
        apply(&mut pod, &resolved);
        assert_eq!(pod["spec"]["priorityClassName"], "d");
        assert_eq!(pod["spec"]["priority"], 42);
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");
    }

    #[test]
    fn an_update_that_leaves_priority_out_keeps_the_admitted_one() {
        let old = json!({"spec": {"priority": 1000, "preemptionPolicy": "Never"}});
        let mut replaced = json!({"spec": {"containers": []}});
        keep_on_update(&mut replaced, &old);
        assert_eq!(replaced["spec"]["priority"], 1000);
        assert_eq!(replaced["spec"]["preemptionPolicy"], "Never");
        // A value the update does give is left for validation to judge.
        let mut changed = json!({"spec": {"priority": 7}});
        keep_on_update(&mut changed, &old);
        assert_eq!(changed["spec"]["priority"], 7);
    }

    #[test]
    fn only_one_priority_class_is_the_global_default() {
        let all = vec![
            class("default", 5, None, true),
            class("other", 6, None, false),
        ];
        assert_eq!(other_default("new", true, true, &all), Some("default"));
        assert_eq!(other_default("other", true, false, &all), Some("default"));
        assert_eq!(other_default("default", true, false, &all), None);
        assert_eq!(other_default("new", false, true, &all), None);
        assert_eq!(other_default("new", true, true, &all[1..]), None);
    }
}
