//! Binding a pod to a node, as kube-apiserver's BindingREST does for `pods/{name}/binding` and
//! the older `bindings` collection: one compare-and-swap on the pod that sets `spec.nodeName`,
//! copies the Binding's annotations onto the pod and marks it `PodScheduled=True`. A pod is
//! bound once: a pod already assigned, being deleted or still gated is refused as a Conflict.
//! The write carries the caller's fence, so a scheduler that lost its lease cannot bind.
//!
//! Reading the Binding and deciding the bound pod are plain functions; [`ApiServer::bind`]
//! reads the pod and writes it.

use std::collections::BTreeMap;

use keel_types::k8s_openapi::api::core::v1::Binding;
use serde_json::{json, Map, Value};

use crate::admission;
use crate::error::{ApiError, Cause};
use crate::keys;
use crate::meta;
use crate::server::{encode_for_store, guards, storage_error, ApiServer, WriteOptions, RETRIES};
use crate::storage::{Change, Expect, Storage, StorageError, WriteOp};

/// A Binding, read and checked: which pod goes to which node, on what conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRequest {
    pub pod: String,
    pub node: String,
    /// Preconditions on the pod, when the Binding states them.
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// Copied onto the pod.
    pub annotations: BTreeMap<String, String>,
}

/// Reads a Binding sent to namespace `namespace`, for the pod named in the URL (`None` for
/// the `bindings` collection, where the Binding's own name says which pod).
pub fn read_binding(
    mut body: Value,
    url_name: Option<&str>,
    namespace: &str,
) -> Result<BindRequest, ApiError> {
    admission::default_type_as("v1", "Binding", &mut body);
    admission::check_type_as("v1", "Binding", &body)?;
    let binding: Binding = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("the Binding does not decode: {e}")))?;
    let body_namespace = binding.metadata.namespace.as_deref().unwrap_or("");
    if !body_namespace.is_empty() && body_namespace != namespace {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let pod = binding.metadata.name.clone().unwrap_or_default();
    if url_name.is_some_and(|url| url != pod) {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    let causes = binding_causes(&binding);
    if !causes.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            name: pod,
            causes,
        });
    }
    if pod.is_empty() {
        return Err(ApiError::BadRequest("Name parameter required.".into()));
    }
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(BindRequest {
        pod,
        node: binding.target.name.unwrap_or_default(),
        uid: non_empty(binding.metadata.uid),
        resource_version: non_empty(binding.metadata.resource_version),
        annotations: binding.metadata.annotations.unwrap_or_default(),
    })
}

/// What Kubernetes' ValidatePodBinding finds wrong: a target that is not a Node (an empty
/// kind means Node), or no target name.
fn binding_causes(binding: &Binding) -> Vec<Cause> {
    let mut causes = Vec::new();
    let kind = binding.target.kind.as_deref().unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        causes.push(Cause {
            field: "target.kind".into(),
            reason: "FieldValueNotSupported".into(),
            message: format!(
                "Unsupported value: {}: supported values: \"Node\", \"<empty>\"",
                keel_types::field::go_quote(kind)
            ),
        });
    }
    if binding.target.name.as_deref().unwrap_or("").is_empty() {
        causes.push(Cause {
            field: "target.name".into(),
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
        });
    }
    causes
}

/// Why a pod cannot be bound, in Kubernetes' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindRefusal {
    #[error("pod {pod} is being deleted, cannot be assigned to a host")]
    BeingDeleted { pod: String },
    #[error("pod {pod} is already assigned to node \"{node}\"")]
    AlreadyAssigned { pod: String, node: String },
    #[error("pod {pod} has non-empty .spec.schedulingGates")]
    Gated { pod: String },
}

/// The pod `current` bound as `request` says, at time `now`.
pub fn bind_pod(current: &Value, request: &BindRequest, now: &str) -> Result<Value, BindRefusal> {
    let pod = meta::name(current).to_string();
    if meta::has_deletion_timestamp(current) {
        return Err(BindRefusal::BeingDeleted { pod });
    }
    let assigned = meta::str_field(current, &["spec", "nodeName"]).unwrap_or("");
    if !assigned.is_empty() {
        return Err(BindRefusal::AlreadyAssigned {
            pod,
            node: assigned.to_string(),
        });
    }
    let gated = current
        .pointer("/spec/schedulingGates")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty());
    if gated {
        return Err(BindRefusal::Gated { pod });
    }
    let mut bound = current.clone();
    bound["spec"]["nodeName"] = json!(request.node);
    if !request.annotations.is_empty() {
        if let Some(m) = meta::metadata_mut(&mut bound) {
            let annotations = m
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if !annotations.is_object() {
                *annotations = Value::Object(Map::new());
            }
            if let Some(a) = annotations.as_object_mut() {
                for (k, v) in &request.annotations {
                    a.insert(k.clone(), json!(v));
                }
            }
        }
    }
    set_scheduled(&mut bound, now);
    Ok(bound)
}

/// Sets the pod's `PodScheduled` condition to True, replacing any earlier one; its transition
/// time moves only if its status changes, as Kubernetes' UpdatePodCondition does.
fn set_scheduled(pod: &mut Value, now: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status["conditions"].as_array_mut() else {
        return;
    };
    let existing = conditions
        .iter()
        .position(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"));
    let transition = match existing.map(|i| &conditions[i]) {
        Some(old) if old.get("status").and_then(Value::as_str) == Some("True") => old
            .get("lastTransitionTime")
            .cloned()
            .unwrap_or_else(|| json!(now)),
        _ => json!(now),
    };
    let condition = json!({
        "type": "PodScheduled",
        "status": "True",
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    });
    match existing {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
}

/// What a successful bind answers: a Status, as Kubernetes returns for a Binding.
pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

fn binding_conflict(pod: &str, refusal: &BindRefusal) -> ApiError {
    ApiError::Conflict {
        group: String::new(),
        resource: "pods/binding".into(),
        name: pod.to_string(),
        detail: refusal.to_string(),
    }
}

impl<S: Storage> ApiServer<S> {
    /// Binds a pod of `namespace` to a node as the Binding `body` says; `url_name` is the pod
    /// named in the URL (`None` for the `bindings` collection). Returns the Status to answer.
    pub async fn bind(
        &self,
        namespace: &str,
        url_name: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let info = keel_types::kinds::by_kind("v1", "Pod").ok_or(ApiError::UnknownResource)?;
        let request = read_binding(body, url_name, namespace)?;
        let name = request.pod.as_str();
        let key = keys::object(info, Some(namespace), name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The first attempt starts from the watch cache (the write is conditional on the
            // revision read); anything that copy refuses is judged again against the store's.
            let cached = match attempt {
                1 if !opts.dry_run => self.current_cached(info, Some(namespace), name),
                _ => None,
            };
            let from_cache = cached.is_some();
            let (current, current_rev) = match cached {
                Some(c) => c?,
                None => self.current(info, Some(namespace), name).await?,
            };
            let judged = crate::delete::check_preconditions(
                info,
                name,
                &current,
                current_rev,
                request.uid.as_deref(),
                request.resource_version.as_deref(),
            )
            .and_then(|()| {
                bind_pod(&current, &request, &meta::now())
                    .map_err(|refusal| binding_conflict(name, &refusal))
            });
            let bound = match judged {
                Ok(bound) => bound,
                Err(_) if from_cache => continue,
                Err(e) => return Err(e),
            };
            if opts.dry_run {
                return Ok(success_status());
            }
            let op = WriteOp {
                key: key.clone(),
                change: Change::Put(encode_for_store(&bound)?),
                expect: Expect::Revision(current_rev),
            };
            match self
                .storage
                .write(vec![op], guards(opts.fence.as_ref()))
                .await
            {
                Ok(_) => return Ok(success_status()),
                // The pod changed since it was read: read it again, and judge it afresh (it
                // may have been bound meanwhile).
                Err(StorageError::Conflict { .. }) if from_cache || attempt < RETRIES => continue,
                Err(e) => return Err(storage_error(info, name, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, target: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": "default"}, "target": target})
    }

    fn request(node: &str) -> BindRequest {
        BindRequest {
            pod: "web".into(),
            node: node.into(),
            uid: None,
            resource_version: None,
            annotations: BTreeMap::new(),
        }
    }

    fn pending_pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending"}})
    }

    #[test]
    fn a_binding_names_its_pod_node_and_preconditions() {
        let mut body = binding("web", json!({"kind": "Node", "name": "n1"}));
        body["metadata"]["uid"] = json!("u1");
        body["metadata"]["annotations"] = json!({"scheduler": "keel"});
        let read = read_binding(body, Some("web"), "default").expect("reads");
        assert_eq!(read.pod, "web");
        assert_eq!(read.node, "n1");
        assert_eq!(read.uid.as_deref(), Some("u1"));
        assert_eq!(read.resource_version, None);
        assert_eq!(read.annotations["scheduler"], "keel");
        // The collection form takes the pod from the Binding; an empty kind means Node.
        let legacy =
            read_binding(binding("web", json!({"name": "n2"})), None, "default").expect("reads");
        assert_eq!((legacy.pod.as_str(), legacy.node.as_str()), ("web", "n2"));
    }

    #[test]
    fn a_binding_must_target_a_named_node() {
        let err = read_binding(
            binding("web", json!({"kind": "Pod", "name": ""})),
            None,
            "default",
        )
        .expect_err("invalid");
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "Binding \"web\" is invalid: [target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]"
        );
    }

    #[test]
    fn a_binding_must_name_the_pod_in_the_url_and_namespace() {
        let other = read_binding(
            binding("other", json!({"name": "n1"})),
            Some("web"),
            "default",
        );
        assert_eq!(
            other.expect_err("mismatch").to_string(),
            "name in URL does not match name in Binding object"
        );
        let elsewhere = read_binding(binding("web", json!({"name": "n1"})), None, "team-a");
        assert_eq!(elsewhere.expect_err("namespace").code(), 400);
        let unnamed = read_binding(binding("", json!({"name": "n1"})), None, "default");
        assert_eq!(
            unnamed.expect_err("no name").to_string(),
            "Name parameter required."
        );
        let pod = read_binding(json!({"apiVersion": "v1", "kind": "Pod"}), None, "default");
        assert_eq!(
            pod.expect_err("kind").to_string(),
            "the kind in the data (Pod) does not match the expected kind (Binding)"
        );
    }

    #[test]
    fn binding_sets_the_node_annotations_and_the_scheduled_condition() {
        let mut req = request("n1");
        req.annotations.insert("note".into(), "placed".into());
        let bound = bind_pod(&pending_pod(), &req, "2025-01-01T00:00:00Z").expect("binds");
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["metadata"]["annotations"]["note"], "placed");
        assert_eq!(
            bound["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                    "lastTransitionTime": "2025-01-01T00:00:00Z"}])
        );
        assert_eq!(bound["status"]["phase"], "Pending");
    }

    #[test]
    fn an_unschedulable_condition_is_replaced_and_its_transition_time_moves() {
        let mut pod = pending_pod();
        pod["status"]["conditions"] = json!([
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available", "lastTransitionTime": "2024-01-01T00:00:00Z"}
        ]);
        let bound = bind_pod(&pod, &request("n1"), "2025-01-01T00:00:00Z").expect("binds");
        let condition = &bound["status"]["conditions"][0];
        assert_eq!(condition["status"], "True");
        assert_eq!(condition["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert!(condition.get("reason").is_none(), "{condition}");
    }

    #[test]
    fn a_pod_is_bound_once_and_never_while_deleted_or_gated() {
        let mut assigned = pending_pod();
        assigned["spec"]["nodeName"] = json!("n0");
        assert_eq!(
            bind_pod(&assigned, &request("n1"), "t")
                .expect_err("assigned")
                .to_string(),
            "pod web is already assigned to node \"n0\""
        );
        let mut deleted = pending_pod();
        deleted["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert_eq!(
            bind_pod(&deleted, &request("n1"), "t")
                .expect_err("deleted")
                .to_string(),
            "pod web is being deleted, cannot be assigned to a host"
        );
        let mut gated = pending_pod();
        gated["spec"]["schedulingGates"] = json!([{"name": "wait"}]);
        assert_eq!(
            bind_pod(&gated, &request("n1"), "t"),
            Err(BindRefusal::Gated { pod: "web".into() })
        );
    }

    #[test]
    fn refusals_are_conflicts_on_pods_binding() {
        let err = binding_conflict(
            "web",
            &BindRefusal::AlreadyAssigned {
                pod: "web".into(),
                node: "n0".into(),
            },
        );
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.to_string(),
            "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n0\""
        );
        assert_eq!(err.status()["details"]["kind"], "pods/binding");
    }
}
