//! ResourceQuota enforcement in the write path: a create (or a pod update) that a quota of its
//! namespace covers carries the quota's new `status.used` in the same store transaction, with
//! compare-and-swap on the quota, so concurrent writes can never overrun it; a delete gives its
//! usage back the same way. A quota's own status (`hard` and `used`) is computed when the quota
//! is written, from the objects of its namespace, so a new quota is exact at once (Kubernetes
//! does this in its quota controller, asynchronously).

use keel_types::k8s_openapi::api::core::v1::ResourceQuota;
use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::keys;
use crate::list::ListOptions;
use crate::meta;
use crate::quota::{self, ResourceList};
use crate::server::ApiServer;
use crate::storage::{Change, Expect, Storage, WriteOp};

fn quota_list_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect(),
    )
}

fn quota_info() -> Option<&'static ResourceInfo> {
    keel_types::kinds::by_kind("v1", "ResourceQuota")
}

impl<S: Storage> ApiServer<S> {
    /// The quotas of `namespace` with their store revisions. A namespace the watch cache
    /// shows without quotas has none, as Kubernetes' quota admission reads its informer (most
    /// namespaces have none, and this is on every create); where there are quotas they are
    /// read as of now, since the write's charge must start from their current usage.
    async fn quotas(&self, namespace: &str) -> Result<Vec<(ResourceQuota, i64)>, ApiError> {
        let Some(info) = quota_info() else {
            return Ok(vec![]);
        };
        let cached = ListOptions {
            resource_version: "0".into(),
            ..Default::default()
        };
        let seen = self.list(info, Some(namespace), &cached).await?;
        if seen["items"].as_array().is_none_or(Vec::is_empty) {
            return Ok(vec![]);
        }
        let list = self
            .list(info, Some(namespace), &ListOptions::default())
            .await?;
        Ok(list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let rv = meta::resource_version(item).parse().ok()?;
                Some((serde_json::from_value(item.clone()).ok()?, rv))
            })
            .collect())
    }

    /// The quota updates a write of `obj` (replacing `old`) must carry, or Forbidden if a quota
    /// would be exceeded.
    pub(crate) async fn quota_charges(
        &self,
        info: &'static ResourceInfo,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<Vec<WriteOp>, ApiError> {
        let namespace = meta::namespace(obj);
        let (Some(quota_kind), false) = (quota_info(), namespace.is_empty()) else {
            return Ok(vec![]);
        };
        if info.kind == "ResourceQuota" {
            return Ok(vec![]);
        }
        let mut ops = Vec::new();
        for (q, rv) in self.quotas(namespace).await? {
            let used = quota::admit(&q, info, obj, old).map_err(|e| {
                ApiError::Forbidden(format!(
                    "{} \"{}\" is forbidden: {e}",
                    info.plural,
                    meta::name(obj)
                ))
            })?;
            if let Some(used) = used {
                ops.push(self.quota_write(quota_kind, &q, rv, &used)?);
            }
        }
        Ok(ops)
    }

    /// The quota updates that give back what `obj` used, for its delete.
    pub(crate) async fn quota_releases(
        &self,
        info: &'static ResourceInfo,
        obj: &Value,
    ) -> Result<Vec<WriteOp>, ApiError> {
        let namespace = meta::namespace(obj);
        let (Some(quota_kind), false) = (quota_info(), namespace.is_empty()) else {
            return Ok(vec![]);
        };
        if info.kind == "ResourceQuota" {
            return Ok(vec![]);
        }
        let charged = quota::usage(info, obj);
        let mut ops = Vec::new();
        for (q, rv) in self.quotas(namespace).await? {
            let name = q.metadata.name.clone().unwrap_or_default();
            let spec = q.spec.clone().unwrap_or_default();
            let status = q.status.clone().unwrap_or_default();
            if !quota::scopes_match(&name, &spec, info, obj).unwrap_or(false) {
                continue;
            }
            let Ok(used) = quota::resource_list(&name, status.used.as_ref()) else {
                continue;
            };
            if !used.keys().any(|r| charged.contains_key(r)) {
                continue;
            }
            let left = quota::subtract_non_negative(&used, &charged);
            let left: ResourceList = used
                .keys()
                .map(|k| (k.clone(), left.get(k).cloned().unwrap_or_else(quota::zero)))
                .collect();
            ops.push(self.quota_write(quota_kind, &q, rv, &left)?);
        }
        Ok(ops)
    }

    fn quota_write(
        &self,
        quota_kind: &'static ResourceInfo,
        q: &ResourceQuota,
        rv: i64,
        used: &ResourceList,
    ) -> Result<WriteOp, ApiError> {
        let mut value = serde_json::to_value(q)
            .map_err(|e| ApiError::Internal(format!("encoding quota: {e}")))?;
        value["status"]["used"] = quota_list_json(used);
        if let Some(m) = meta::metadata_mut(&mut value) {
            m.remove("resourceVersion");
        }
        let namespace = q.metadata.namespace.clone().unwrap_or_default();
        let name = q.metadata.name.clone().unwrap_or_default();
        Ok(WriteOp {
            key: keys::object(quota_kind, Some(&namespace), &name),
            change: Change::Put(
                serde_json::to_vec(&value)
                    .map_err(|e| ApiError::Internal(format!("encoding quota: {e}")))?,
            ),
            expect: Expect::Revision(rv),
        })
    }

    /// A quota's status as it is written: `hard` from its spec, `used` counted over its
    /// namespace now.
    pub(crate) async fn quota_status(&self, quota_obj: &mut Value) -> Result<(), ApiError> {
        let q: ResourceQuota = serde_json::from_value(quota_obj.clone())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let namespace = q.metadata.namespace.clone().unwrap_or_default();
        let mut objects: Vec<(&'static ResourceInfo, Value)> = Vec::new();
        for info in keel_types::kinds::all().iter().filter(|k| k.namespaced()) {
            let list = self
                .list(info, Some(&namespace), &ListOptions::default())
                .await?;
            for item in list["items"].as_array().into_iter().flatten() {
                objects.push((info, item.clone()));
            }
        }
        let used = quota::recalculate(&q, objects.iter().map(|(i, o)| (*i, o)))
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        quota_obj["status"] = json!({
            "hard": quota_obj.pointer("/spec/hard").cloned().unwrap_or(json!({})),
            "used": quota_list_json(&used),
        });
        Ok(())
    }
}
