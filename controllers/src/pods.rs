//! What a pod's status means to the workload controllers, and how they make pods: readiness
//! and availability (minReadySeconds), active versus finished, the controlling
//! ownerReference, and a pod built from a template. Pure functions over the objects.

use keel_client::k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keel_client::k8s_openapi::chrono::{DateTime, Utc};
use keel_client::k8s_openapi::{Metadata, Resource};
use rand::Rng;

/// The characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Longest name prefix kept before a suffix (Kubernetes: 63 - 5).
const MAX_PREFIX: usize = 58;

/// `prefix` followed by five random characters, as the API server's generateName makes them.
/// Controllers name children themselves so that expectations can wait for exact names.
pub fn generate_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut name: String = prefix.chars().take(MAX_PREFIX).collect();
    for _ in 0..5 {
        let i = rng.random_range(0..SUFFIX_ALPHABET.len());
        name.push(char::from(SUFFIX_ALPHABET[i]));
    }
    name
}

/// The ownerReference naming `owner` as controller (blockOwnerDeletion set, as Kubernetes'
/// controllers set it).
pub fn controller_reference<K: Resource + Metadata<Ty = ObjectMeta>>(owner: &K) -> OwnerReference {
    let meta = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.into(),
        kind: K::KIND.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controlling ownerReference of `meta`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The key of `meta`'s controller if it is of kind `K` (a namespaced owner lives in its
/// child's namespace): how a child's event finds the owner to reconcile.
pub fn controller_key<K: Resource>(meta: &ObjectMeta) -> Option<keel_client::ObjectKey> {
    let owner = controller_of(meta)?;
    (owner.kind == K::KIND && owner.api_version == K::API_VERSION).then(|| {
        keel_client::ObjectKey::namespaced(
            meta.namespace.clone().unwrap_or_default(),
            owner.name.clone(),
        )
    })
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// A pod of `template`, named `name` in `namespace`, controlled by `owner`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    name: String,
    owner: OwnerReference,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Whether the pod is marked for deletion.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's phase ("" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Neither finished (Succeeded/Failed) nor marked for deletion: what a ReplicaSet counts.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !is_terminating(pod)
}

/// When the pod's Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<DateTime<Utc>> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")?;
    if condition.status != "True" {
        return None;
    }
    Some(
        condition
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    )
}

/// Whether the pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Whether the pod has been ready for at least `min_ready_seconds` at `now` (Kubernetes'
/// IsPodAvailable).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: DateTime<Utc>) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + chrono_seconds(min_ready_seconds) <= now,
    }
}

/// How long until a ready pod becomes available, if it is ready but not yet available.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: DateTime<Utc>,
) -> Option<std::time::Duration> {
    let since = ready_since(pod)?;
    let at = since + chrono_seconds(min_ready_seconds);
    (at > now).then(|| (at - now).to_std().unwrap_or_default())
}

fn chrono_seconds(seconds: i32) -> keel_client::k8s_openapi::chrono::TimeDelta {
    keel_client::k8s_openapi::chrono::TimeDelta::seconds(i64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_client::k8s_openapi::api::apps::v1::ReplicaSet;
    use keel_client::k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use keel_client::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use keel_client::k8s_openapi::chrono::TimeDelta;

    fn ready_pod(since: DateTime<Utc>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pod_is_available_once_ready_for_min_ready_seconds() {
        let now = Utc::now();
        let pod = ready_pod(now - TimeDelta::seconds(5));
        assert!(is_available(&pod, 0, now));
        assert!(is_available(&pod, 5, now));
        assert!(!is_available(&pod, 10, now));
        assert_eq!(
            until_available(&pod, 10, now),
            Some(std::time::Duration::from_secs(5))
        );
        assert!(!is_available(&Pod::default(), 0, now), "no Ready condition");
    }

    #[test]
    fn finished_and_terminating_pods_are_not_active() {
        let now = Utc::now();
        let mut pod = ready_pod(now);
        assert!(is_active(&pod));
        if let Some(status) = pod.status.as_mut() {
            status.phase = Some("Succeeded".into());
        }
        assert!(!is_active(&pod));
        let mut pod = ready_pod(now);
        pod.metadata.deletion_timestamp = Some(Time(now));
        assert!(!is_active(&pod));
    }

    #[test]
    fn generated_names_keep_the_prefix_and_add_five_safe_characters() {
        let name = generate_name("web-5d9c7b");
        assert!(name.starts_with("web-5d9c7b"));
        assert_eq!(name.len(), "web-5d9c7b".len() + 5);
        assert!(name["web-5d9c7b".len()..]
            .bytes()
            .all(|b| SUFFIX_ALPHABET.contains(&b)));
        assert_eq!(generate_name(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn a_controller_reference_names_its_owner_and_controls() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let owner = controller_reference(&rs);
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str()),
            ("apps/v1", "ReplicaSet")
        );
        let meta = ObjectMeta {
            owner_references: Some(vec![owner]),
            ..Default::default()
        };
        assert!(is_controlled_by(&meta, "u1"));
        assert!(!is_controlled_by(&meta, "u2"));
    }
}
