//! Deletes: preconditions, propagation policy, finalizers and graceful pod deletion — the
//! object goes at once, or is marked with a deletionTimestamp for whoever finishes it.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::keys;
use crate::meta;
use crate::server::{
    encode_for_store, guards, storage_error, with_revision, ApiServer, DeleteOptions, Written,
    RETRIES,
};
use crate::storage::{Change, Expect, Storage, WriteOp};

impl<S: Storage> ApiServer<S> {
    /// Deletes an object: at once, or — with finalizers, or for a pod on a node with a grace
    /// period — by marking it with a deletionTimestamp and leaving the rest to whoever holds
    /// the finalizers. Returns the object as deleted or as marked.
    pub async fn delete(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        crate::priority_admission::refuse_system_class_delete(info, name)?;
        crate::namespaces::refuse_immortal_delete(info, name)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (current, current_rev) = self.current(info, namespace, name).await?;
            check_preconditions(
                info,
                name,
                &current,
                current_rev,
                opts.uid.as_deref(),
                opts.resource_version.as_deref(),
            )?;
            let hook_target = crate::webhooks::Target {
                operation: "DELETE",
                info,
                namespace,
                name,
                subresource: None,
            };
            let caller = crate::webhooks::Caller {
                user: opts.requester.as_ref(),
                dry_run: opts.dry_run,
            };
            let warnings = self
                .validate_by_webhooks(hook_target, caller, None, Some(&current))
                .await?;
            let result = self
                .delete_once(info, namespace, name, current, current_rev, opts)
                .await
                .map(|mut w| {
                    w.warnings.extend(warnings);
                    w
                });
            match result {
                Err(ApiError::Conflict { .. })
                    if opts.resource_version.is_none() && attempt < RETRIES =>
                {
                    continue
                }
                other => return other,
            }
        }
    }

    async fn delete_once(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        current: Value,
        current_rev: i64,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        let plan = self
            .plan_delete(info, namespace, name, current, current_rev, opts)
            .await?;
        if plan.ops.is_empty() || opts.dry_run {
            return Ok(Written {
                object: plan.object,
                warnings: vec![],
            });
        }
        let revision = self
            .storage
            .write(plan.ops, guards(opts.fence.as_ref()))
            .await
            .map_err(|e| storage_error(info, name, e))?;
        let object = if plan.marked {
            with_revision(plan.object, revision)
        } else {
            plan.object
        };
        Ok(Written {
            object,
            warnings: vec![],
        })
    }

    /// What deleting `current` (stored at `current_rev`) writes, without writing it: the
    /// object goes at once, or is marked with a deletionTimestamp. A caller may add writes of
    /// its own to the plan's (an eviction spends a disruption budget in the same transaction).
    pub(crate) async fn plan_delete(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        current: Value,
        current_rev: i64,
        opts: &DeleteOptions,
    ) -> Result<DeletePlan, ApiError> {
        let key = keys::object(info, namespace, name);
        let mut finalizers = meta::finalizers(&current);
        match opts.propagation_policy.as_deref() {
            Some("Foreground") => push_unique(&mut finalizers, "foregroundDeletion"),
            Some("Orphan") => push_unique(&mut finalizers, "orphan"),
            Some("Background") | None => {}
            Some(other) => {
                return Err(ApiError::Invalid {
                    group: "meta.k8s.io".into(),
                    kind: "DeleteOptions".into(),
                    name: String::new(),
                    causes: vec![crate::error::Cause {
                        field: "propagationPolicy".into(),
                        reason: "FieldValueNotSupported".into(),
                        message: format!("Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
                    }],
                })
            }
        }
        let definition =
            info.kind == "CustomResourceDefinition" && info.group == "apiextensions.k8s.io";
        if definition {
            // Its objects go first; the server's clean-up takes this finalizer off after.
            push_unique(&mut finalizers, keel_types::crd::CLEANUP_FINALIZER);
        }
        let namespace_content = info.kind == "Namespace"
            && current
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        let grace = pod_grace_period(info, &current, opts);
        let graceful = !finalizers.is_empty() || namespace_content || grace.is_some();
        if graceful {
            if meta::has_deletion_timestamp(&current) && grace.is_none() {
                // Already being deleted: nothing more to record.
                return Ok(DeletePlan {
                    ops: vec![],
                    object: current,
                    marked: false,
                });
            }
            let mut next = current.clone();
            let grace_seconds = grace.unwrap_or(0);
            if let Some(m) = meta::metadata_mut(&mut next) {
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(meta::now_plus(grace_seconds)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace_seconds));
                if !finalizers.is_empty() {
                    m.insert("finalizers".into(), json!(finalizers));
                }
                m.remove("resourceVersion");
            }
            if namespace_content {
                next["status"]["phase"] = json!("Terminating");
            }
            if definition {
                keel_types::crd::definition::mark_terminating(&mut next, &meta::now());
            }
            let ops = vec![WriteOp {
                key,
                change: Change::Put(encode_for_store(&next)?),
                expect: Expect::Revision(current_rev),
            }];
            return Ok(DeletePlan {
                ops,
                object: with_revision(next, current_rev),
                marked: true,
            });
        }
        let mut ops = vec![WriteOp {
            key,
            change: Change::Delete,
            expect: Expect::Revision(current_rev),
        }];
        ops.extend(self.quota_releases(info, &current).await?);
        ops.extend(crate::server::lease_fence_delete(info, &current));
        ops.extend(self.release(info, &current));
        Ok(DeletePlan {
            ops,
            object: current,
            marked: false,
        })
    }
}

/// The writes of one delete, and the object to answer with.
pub(crate) struct DeletePlan {
    pub ops: Vec<WriteOp>,
    /// The object as marked for deletion (at the read revision until written), or as it was
    /// when it goes at once.
    pub object: Value,
    /// Whether the object stays, marked with a deletionTimestamp.
    pub marked: bool,
}

fn push_unique(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|f| f == item) {
        list.push(item.to_string());
    }
}

/// A write's preconditions on the stored object (a delete's, a binding's): its uid and
/// resourceVersion, when given, must be the stored ones.
pub(crate) fn check_preconditions(
    info: &ResourceInfo,
    name: &str,
    current: &Value,
    current_rev: i64,
    uid: Option<&str>,
    resource_version: Option<&str>,
) -> Result<(), ApiError> {
    let conflict = |detail: String| ApiError::Conflict {
        group: info.group.to_string(),
        resource: info.plural.to_string(),
        name: name.to_string(),
        detail,
    };
    if let Some(uid) = uid {
        let actual = meta::str_field(current, &["metadata", "uid"]).unwrap_or("");
        if uid != actual {
            return Err(conflict(format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
            )));
        }
    }
    if let Some(rv) = resource_version {
        if rv != current_rev.to_string() {
            return Err(conflict(format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {current_rev}"
            )));
        }
    }
    Ok(())
}

/// A pod bound to a node is deleted gracefully: the node's agent stops it, then deletes it
/// for good. Returns the grace period to record, if any.
fn pod_grace_period(info: &ResourceInfo, pod: &Value, opts: &DeleteOptions) -> Option<i64> {
    if info.kind != "Pod" || !info.group.is_empty() {
        return None;
    }
    let on_node = meta::str_field(pod, &["spec", "nodeName"]).is_some_and(|n| !n.is_empty());
    let finished = matches!(
        meta::str_field(pod, &["status", "phase"]),
        Some("Succeeded" | "Failed")
    );
    if !on_node || finished {
        return None;
    }
    let grace = opts.grace_period_seconds.unwrap_or_else(|| {
        pod.pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (grace > 0).then_some(grace)
}
