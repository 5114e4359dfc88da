//! Typed access to one kind: `Api<Pod>`, `Api<Deployment>`, … in a namespace, in all, or
//! cluster-wide, with get/list/create/replace/patch/delete/watch, subresources created by POST,
//! and binding pods to nodes. An `Api` may also name its resource at run time (see
//! [`crate::dynamic`]).

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::Eviction;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::{ListableResource, Resource};
use keel_proto::keelapi::api_client::ApiClient;
use keel_proto::keelapi::{
    CreateRequest, DeleteRequest, Fence as FenceMsg, GetRequest, ListRequest, PatchRequest,
    ResourceRef, UpdateRequest, WatchRequest, WriteOptions,
};
use keel_types::k8s_openapi;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, Transport};
use crate::error::{Error, Status};

/// A fencing precondition: the write applies only while the Lease `namespace/name` still names
/// `holder` at `transitions` (see the leader election module).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease_namespace: String,
    pub lease_name: String,
    pub holder: String,
    pub transitions: i32,
}

#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub label_selector: String,
    pub field_selector: String,
    pub limit: i64,
    pub continue_token: String,
    pub resource_version: String,
}

#[derive(Debug, Clone, Default)]
pub struct WatchParams {
    pub label_selector: String,
    pub field_selector: String,
    pub allow_bookmarks: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Preconditions>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preconditions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// A patch and its format.
#[derive(Debug, Clone)]
pub enum Patch {
    /// RFC 7386 JSON merge patch.
    Merge(Value),
    /// RFC 6902 JSON patch (an array of operations).
    Json(Value),
}

/// A list as the server returned it.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectList<K> {
    pub items: Vec<K>,
    #[serde(default)]
    pub metadata: ListMeta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: String,
    #[serde(default, rename = "continue")]
    pub continue_token: String,
}

/// One watch event, typed.
#[derive(Debug, Clone)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Every change up to this resourceVersion has been sent.
    Bookmark(String),
    Error(Status),
}

pub type WatchStream<K> = Pin<Box<dyn Stream<Item = Result<WatchEvent<K>, Error>> + Send>>;

/// A resource named at run time (for [`crate::dynamic::DynamicObject`]), in place of the one
/// the type `K` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicResource {
    pub group: String,
    pub version: String,
    /// The plural resource name in paths ("pods").
    pub plural: String,
}

/// Typed access to kind `K`.
pub struct Api<K> {
    client: Client,
    namespace: String,
    fence: Option<Fence>,
    resource: Option<Arc<DynamicResource>>,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Api<K> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            fence: self.fence.clone(),
            resource: self.resource.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> Api<K>
where
    K: Resource + ListableResource + Serialize + DeserializeOwned + Send + 'static,
{
    /// Objects of a namespaced kind in `namespace`.
    pub fn namespaced(client: Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
            fence: None,
            resource: None,
            _kind: PhantomData,
        }
    }

    /// Every object of the kind: all namespaces, or the cluster for cluster-scoped kinds.
    pub fn all(client: Client) -> Self {
        Self::namespaced(client, "")
    }

    /// The same access, with every write fenced by `fence`.
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
    }

    /// The same access, to `resource` instead of the one `K` names.
    pub(crate) fn with_resource(mut self, resource: DynamicResource) -> Self {
        self.resource = Some(Arc::new(resource));
        self
    }

    fn reference(&self, name: &str, subresource: &str) -> Option<ResourceRef> {
        let (group, version, resource) = match &self.resource {
            Some(r) => (r.group.as_str(), r.version.as_str(), r.plural.as_str()),
            None => (K::GROUP, K::VERSION, K::URL_PATH_SEGMENT),
        };
        Some(ResourceRef {
            group: group.to_string(),
            version: version.to_string(),
            resource: resource.to_string(),
            namespace: self.namespace.clone(),
            name: name.to_string(),
            subresource: subresource.to_string(),
        })
    }

    fn fence_msg(&self) -> Option<FenceMsg> {
        self.fence.as_ref().map(|f| FenceMsg {
            lease_namespace: f.lease_namespace.clone(),
            lease_name: f.lease_name.clone(),
            holder: f.holder.clone(),
            transitions: f.transitions,
        })
    }

    fn options(&self) -> Option<WriteOptions> {
        Some(WriteOptions {
            fence: self.fence_msg(),
            ..Default::default()
        })
    }

    /// Sends `req` with `send` (failing over between masters) and decodes the object replied.
    async fn object<Req, F, Fut, T>(&self, req: Req, send: F) -> Result<T, Error>
    where
        Req: Clone,
        F: Fn(ApiClient<Transport>, Req) -> Fut,
        Fut: std::future::Future<
            Output = Result<tonic::Response<keel_proto::keelapi::ObjectReply>, tonic::Status>,
        >,
        T: DeserializeOwned,
    {
        let reply = self.client.call(|api| send(api, req.clone())).await?;
        Ok(serde_json::from_slice(&reply.into_inner().object)?)
    }

    pub async fn get(&self, name: &str) -> Result<K, Error> {
        let req = GetRequest {
            r#ref: self.reference(name, ""),
            resource_version: String::new(),
        };
        self.object(req, |mut api, req| async move { api.get(req).await })
            .await
    }

    pub async fn list(&self, params: &ListParams) -> Result<ObjectList<K>, Error> {
        let req = ListRequest {
            r#ref: self.reference("", ""),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            limit: params.limit,
            r#continue: params.continue_token.clone(),
            resource_version: params.resource_version.clone(),
            resource_version_match: String::new(),
        };
        self.object(req, |mut api, req| async move { api.list(req).await })
            .await
    }

    pub async fn create(&self, object: &K) -> Result<K, Error> {
        let req = CreateRequest {
            r#ref: self.reference("", ""),
            object: serde_json::to_vec(object)?,
            options: self.options(),
        };
        self.object(req, |mut api, req| async move { api.create(req).await })
            .await
    }

    /// Creates subresource `subresource` of `name` from `body` (a pod's `binding`, a
    /// ServiceAccount's `token`), fenced like every write of this Api. Returns what the server
    /// answered: a Status for a binding, the created object otherwise.
    pub async fn create_subresource<B: Serialize>(
        &self,
        name: &str,
        subresource: &str,
        body: &B,
    ) -> Result<Value, Error> {
        let req = CreateRequest {
            r#ref: self.reference(name, subresource),
            object: serde_json::to_vec(body)?,
            options: self.options(),
        };
        self.object(req, |mut api, req| async move { api.create(req).await })
            .await
    }

    /// Replaces `name`; conditional on the object's resourceVersion if it has one.
    pub async fn replace(&self, name: &str, object: &K) -> Result<K, Error> {
        self.update(name, "", object).await
    }

    /// Replaces only the status of `name`.
    pub async fn replace_status(&self, name: &str, object: &K) -> Result<K, Error> {
        self.update(name, "status", object).await
    }

    async fn update(&self, name: &str, subresource: &str, object: &K) -> Result<K, Error> {
        let req = UpdateRequest {
            r#ref: self.reference(name, subresource),
            object: serde_json::to_vec(object)?,
            options: self.options(),
        };
        self.object(req, |mut api, req| async move { api.update(req).await })
            .await
    }

    pub async fn patch(&self, name: &str, patch: &Patch) -> Result<K, Error> {
        self.patch_at(name, "", patch).await
    }

    /// Patches only the status of `name` (the `status` subresource).
    pub async fn patch_status(&self, name: &str, patch: &Patch) -> Result<K, Error> {
        self.patch_at(name, "status", patch).await
    }

    async fn patch_at(&self, name: &str, subresource: &str, patch: &Patch) -> Result<K, Error> {
        let (patch_type, body) = match patch {
            Patch::Merge(v) => ("application/merge-patch+json", v),
            Patch::Json(v) => ("application/json-patch+json", v),
        };
        let req = PatchRequest {
            r#ref: self.reference(name, subresource),
            patch_type: patch_type.to_string(),
            patch: serde_json::to_vec(body)?,
            options: self.options(),
            force: false,
        };
        self.object(req, |mut api, req| async move { api.patch(req).await })
            .await
    }

    /// Deletes `name`; returns the object as deleted (or as marked for deletion).
    pub async fn delete(&self, name: &str, params: &DeleteParams) -> Result<K, Error> {
        let req = DeleteRequest {
            r#ref: self.reference(name, ""),
            options: serde_json::to_vec(params)?,
            fence: self.fence_msg(),
        };
        self.object(req, |mut api, req| async move { api.delete(req).await })
            .await
    }

    /// Changes after `resource_version` ("" or "0": every current object as Added first). The
    /// stream ends when the connection does; [`crate::watcher`] resumes it.
    pub async fn watch(
        &self,
        params: &WatchParams,
        resource_version: &str,
    ) -> Result<WatchStream<K>, Error> {
        let req = WatchRequest {
            r#ref: self.reference("", ""),
            label_selector: params.label_selector.clone(),
            field_selector: params.field_selector.clone(),
            resource_version: resource_version.to_string(),
            allow_bookmarks: params.allow_bookmarks,
            send_initial_events: false,
        };
        let stream = self
            .client
            .call(|mut api| {
                let req = req.clone();
                async move { api.watch(req).await }
            })
            .await?
            .into_inner();
        Ok(Box::pin(stream.map(|item| {
            let ev = item.map_err(Error::from_grpc)?;
            Ok(match ev.r#type.as_str() {
                "ADDED" => WatchEvent::Added(serde_json::from_slice(&ev.object)?),
                "MODIFIED" => WatchEvent::Modified(serde_json::from_slice(&ev.object)?),
                "DELETED" => WatchEvent::Deleted(serde_json::from_slice(&ev.object)?),
                "BOOKMARK" => {
                    let v: Value = serde_json::from_slice(&ev.object)?;
                    WatchEvent::Bookmark(
                        v.pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                }
                _ => WatchEvent::Error(serde_json::from_slice(&ev.object)?),
            })
        })))
    }
}

/// A Binding of pod `pod_name` in `namespace` to `node_name`; with `uid`, only that pod (not
/// a later one of the same name) may be bound by it.
pub fn binding(namespace: &str, pod_name: &str, uid: Option<&str>, node_name: &str) -> Binding {
    Binding {
        metadata: ObjectMeta {
            name: Some(pod_name.to_string()),
            namespace: Some(namespace.to_string()).filter(|n| !n.is_empty()),
            uid: uid.map(str::to_string),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node_name.to_string()),
            ..ObjectReference::default()
        },
    }
}

impl Api<Pod> {
    /// Binds pod `pod_name` to node `node_name`, as a scheduler does. A pod already bound is a
    /// Conflict (409); with a fence, a bind after the lease moved is refused too.
    pub async fn bind(&self, pod_name: &str, node_name: &str) -> Result<(), Error> {
        let body = binding(&self.namespace, pod_name, None, node_name);
        self.create_subresource(pod_name, "binding", &body).await?;
        Ok(())
    }

    /// Binds `pod` to `node_name` only if the stored pod is still the one that was read (the
    /// same uid), as Kubernetes' default binder does.
    pub async fn bind_pod(&self, pod: &Pod, node_name: &str) -> Result<(), Error> {
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let body = binding(
            &self.namespace,
            name,
            pod.metadata.uid.as_deref(),
            node_name,
        );
        self.create_subresource(name, "binding", &body).await?;
        Ok(())
    }

    /// Evicts pod `pod_name` through the eviction subresource, as `kubectl drain` does: a pod
    /// covered by a PodDisruptionBudget goes only if the budget allows it, else the answer is
    /// 429 (TooManyRequests) and the caller may retry later.
    pub async fn evict(&self, pod_name: &str, delete: Option<DeleteOptions>) -> Result<(), Error> {
        let body = Eviction {
            metadata: ObjectMeta {
                name: Some(pod_name.to_string()),
                namespace: Some(self.namespace.clone()).filter(|n| !n.is_empty()),
                ..ObjectMeta::default()
            },
            delete_options: delete,
        };
        self.create_subresource(pod_name, "eviction", &body).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_targets_a_node_and_may_pin_the_pods_uid() {
        let b = binding("default", "web", Some("u1"), "node-1");
        let v = serde_json::to_value(&b).expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
            })
        );
        let unpinned = serde_json::to_value(binding("", "web", None, "n")).expect("encodes");
        assert!(unpinned["metadata"].get("uid").is_none());
        assert!(unpinned["metadata"].get("namespace").is_none());
    }
}
