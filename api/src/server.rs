//! The API server's core: Kubernetes object semantics over [`Storage`] — create, get, update,
//! status updates, patch and delete, with uid, generateName, creationTimestamp, generation,
//! resourceVersion compare-and-swap, finalizers and namespace lifecycle. Lists and watches are in
//! [`crate::list`] and [`crate::watch`]; transports (gRPC, REST) are thin layers over this.

use keel_types::ResourceInfo;
use serde_json::{json, Value};

use crate::admission::{self, FieldValidation};
use crate::error::ApiError;
use crate::keys;
use crate::meta;
use crate::storage::{Change, Expect, Storage, StorageError, WriteOp};

/// How many times a write that lost a compare-and-swap race it did not ask for (an
/// unconditional update, a patch) is retried against the fresh object.
pub(crate) const RETRIES: usize = 5;

/// A leader's fencing precondition (see [`keys::fence`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease_namespace: String,
    pub lease_name: String,
    pub holder: String,
    pub transitions: i64,
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    pub fence: Option<Fence>,
    /// Who makes the write, for `metadata.managedFields`; without one they are carried over
    /// untouched.
    pub field_manager: Option<String>,
    /// The body's managedFields were computed by a server-side apply: keep them as they are.
    pub applied: bool,
    /// Who asks for the write, for admission that depends on the requester (RBAC escalation
    /// prevention); None for the server's own writes.
    pub requester: Option<crate::auth::UserInfo>,
}

impl WriteOptions {
    /// Records in `next` what this write changed from `current` (None: a create) under its
    /// field manager.
    fn track(
        &self,
        info: &ResourceInfo,
        custom: Option<&keel_types::crd::CustomVersion>,
        subresource: Option<&str>,
        current: Option<&Value>,
        next: &mut Value,
    ) {
        let Some(manager) = self.field_manager.as_deref().filter(|_| !self.applied) else {
            return;
        };
        let now = meta::now();
        let update = crate::managed::Update {
            manager,
            subresource: subresource.unwrap_or(""),
            with_status: !info.has_subresource("status"),
            now: &now,
            schema: custom.and_then(|v| v.schema.as_ref()),
        };
        crate::managed::track_update(current, next, &update);
    }
}

/// A meta/v1 DeleteOptions, the parts keel acts on.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub propagation_policy: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub dry_run: bool,
    pub fence: Option<Fence>,
    /// Who asks for the delete (for admission webhooks); None for the server's own.
    pub requester: Option<crate::auth::UserInfo>,
}

/// A successful write: the object as stored, and warnings for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
}

pub struct ApiServer<S> {
    pub(crate) storage: S,
    pub(crate) cache: Option<crate::cache::WatchCache>,
    pub(crate) auth: crate::auth::AuthConfig,
    /// The RBAC authorizer last built, and the cache's RBAC generation it was built at.
    pub(crate) rbac_memo:
        std::sync::Mutex<Option<(u64, std::sync::Arc<crate::auth::rbac::RbacAuthorizer>)>>,
    /// Signs and checks ServiceAccount tokens once the cluster's key is known.
    pub(crate) sa_signer: std::sync::RwLock<Option<crate::auth::service_accounts::TokenSigner>>,
    /// Where REST requests are audited, if anywhere.
    pub(crate) auditor: Option<std::sync::Arc<crate::audit::Auditor>>,
    /// The TLS client for node agents (logs, exec, attach, port-forward), once configured.
    pub(crate) kubelet: std::sync::RwLock<Option<crate::kubelet::KubeletClient>>,
    /// The ranges Services' cluster IPs and node ports come from.
    pub(crate) service_network: crate::services::ServiceNetwork,
    /// Whether writes of selecting objects are answered with the selector lint's warnings.
    pub(crate) selector_warnings: bool,
    /// The namespace objects the selector lint has decoded.
    pub(crate) lint_memo: crate::selector_warnings::ProjectionMemo,
    /// The custom kinds last built from the stored CustomResourceDefinitions.
    pub(crate) custom_memo: crate::crd::Memo,
    /// The admission webhooks last read from their configurations.
    pub(crate) webhook_memo: crate::webhooks::Memo,
}

pub(crate) use crate::stored::{
    decode_at, decode_stored, encode_for_store, guards, storage_error, with_revision,
};
use crate::stored::{next_generation, without_version};

impl<S: Storage> ApiServer<S> {
    /// An API server that reads the store for every list and watch.
    pub fn new(storage: S) -> Self {
        Self {
            storage,
            cache: None,
            auth: Default::default(),
            rbac_memo: Default::default(),
            sa_signer: Default::default(),
            auditor: None,
            kubelet: Default::default(),
            service_network: Default::default(),
            selector_warnings: true,
            lint_memo: Default::default(),
            custom_memo: Default::default(),
            webhook_memo: Default::default(),
        }
    }

    /// The same server, writing an audit log through `auditor`.
    pub fn with_auditor(mut self, auditor: crate::audit::Auditor) -> Self {
        self.auditor = Some(std::sync::Arc::new(auditor));
        self
    }

    /// The audit log's writer, if the server keeps one.
    pub fn auditor(&self) -> Option<std::sync::Arc<crate::audit::Auditor>> {
        self.auditor.clone()
    }

    /// The same server, giving Services numbers from `network`.
    pub fn with_service_network(mut self, network: crate::services::ServiceNetwork) -> Self {
        self.service_network = network;
        self
    }

    /// The same server, warning on writes whose selector matches nothing or overlaps
    /// another's (`enabled`, the default) or not.
    pub fn with_selector_warnings(mut self, enabled: bool) -> Self {
        self.selector_warnings = enabled;
        self
    }

    /// The same server, authenticating and authorizing as `auth` says.
    pub fn with_auth(mut self, auth: crate::auth::AuthConfig) -> Self {
        self.auth = auth;
        self
    }

    /// An API server that serves lists and watches from a watch cache; [`Self::run_cache`]
    /// must run for it to fill.
    pub fn with_cache(storage: S) -> Self {
        Self {
            cache: Some(crate::cache::WatchCache::new()),
            ..Self::new(storage)
        }
    }

    /// Keeps the watch cache (if any) current until `shutdown`.
    pub async fn run_cache(&self, shutdown: tokio_util::sync::CancellationToken) {
        if let Some(cache) = &self.cache {
            cache.run(&self.storage, shutdown).await;
        }
    }

    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The stored object, or NotFound.
    pub async fn get(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        Ok(self.current(info, namespace, name).await?.0)
    }

    /// The object as the watch cache holds it, else as the store does: for admission that may
    /// read a moment behind (as kube-apiserver's admission plugins read their informers'
    /// listers). The cache not holding it means nothing: it may be newer than the cache, so
    /// the store answers then.
    pub(crate) async fn get_cached(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = keys::object(info, namespace, name);
        match self.cache.as_ref().and_then(|c| c.get(&key)) {
            Some(stored) => decode_stored(&stored),
            None => self.get(info, namespace, name).await,
        }
    }

    /// The object and its revision as the watch cache holds them, if it does: the starting
    /// point of a write, as Kubernetes' GuaranteedUpdate starts from its cache. The write is
    /// conditional on that revision, so a stale copy costs a retry from the store, never a
    /// lost update.
    pub(crate) fn current_cached(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Result<(Value, i64), ApiError>> {
        let key = keys::object(info, namespace, name);
        let stored = self.cache.as_ref()?.get(&key)?;
        Some(decode_stored(&stored).map(|v| (v, stored.mod_revision)))
    }

    pub(crate) async fn current(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(Value, i64), ApiError> {
        let key = keys::object(info, namespace, name);
        match self.storage.get(&key).await {
            Ok(Some(stored)) => Ok((decode_stored(&stored)?, stored.mod_revision)),
            Ok(None) => Err(storage_error(info, name, StorageError::NotFound { key })),
            Err(e) => Err(storage_error(info, name, e)),
        }
    }

    /// Namespace lifecycle: new objects go only into namespaces that exist and are not
    /// being deleted; a create in a namespace being deleted is refused naming the object, as
    /// Kubernetes' NamespaceLifecycle admission does.
    async fn check_namespace_open(
        &self,
        info: &'static ResourceInfo,
        namespace: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !info.namespaced() {
            return Ok(());
        }
        let Some(ns_info) = keel_types::kinds::by_kind("v1", "Namespace") else {
            return Ok(());
        };
        // From the watch cache, as Kubernetes' NamespaceLifecycle reads its informer; a
        // namespace the cache lacks is looked up in the store.
        let ns = self.get_cached(ns_info, None, namespace).await?;
        if meta::has_deletion_timestamp(&ns)
            || meta::str_field(&ns, &["status", "phase"]) == Some("Terminating")
        {
            let resource = match info.group {
                "" => info.plural.to_string(),
                group => format!("{}.{group}", info.plural),
            };
            return Err(ApiError::Forbidden(format!(
                "{resource} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated"
            )));
        }
        Ok(())
    }

    /// Creates an object in `namespace` (ignored for cluster-scoped kinds).
    pub async fn create(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut obj = body;
        admission::default_type(info, &mut obj);
        admission::check_type(info, &obj)?;
        let ns = if info.namespaced() {
            let in_body = meta::namespace(&obj).to_string();
            let ns = match (namespace, in_body.as_str()) {
                (Some(path), "") => path.to_string(),
                (Some(path), body_ns) if path != body_ns => {
                    return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
                }
                (_, body_ns) if !body_ns.is_empty() => body_ns.to_string(),
                _ => "default".to_string(),
            };
            Some(ns)
        } else {
            None
        };
        let Some(m) = meta::metadata_mut(&mut obj) else {
            return Err(ApiError::BadRequest(
                "the object is not a JSON object".into(),
            ));
        };
        match &ns {
            Some(ns) => {
                m.insert("namespace".into(), Value::String(ns.clone()));
            }
            None => {
                m.remove("namespace");
            }
        }
        let name_empty = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty();
        if name_empty {
            if let Some(prefix) = m.get("generateName").and_then(Value::as_str) {
                if !prefix.is_empty() {
                    let generated = meta::generate_name(prefix);
                    m.insert("name".into(), Value::String(generated));
                }
            }
        }
        // Fields the server owns.
        m.insert("uid".into(), Value::String(meta::new_uid()));
        m.insert("creationTimestamp".into(), Value::String(meta::now()));
        if info.tracks_generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        for owned in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(owned);
        }
        admission::prepare_create(info, &mut obj)?;
        self.admit_new_pod_priority(info, &mut obj).await?;
        self.admit_service_account(info, &mut obj).await?;
        crate::toleration_admission::add_default_tolerations(info, &mut obj);
        let requested_name = meta::name(&obj).to_string();
        let hook_target = crate::webhooks::Target {
            operation: "CREATE",
            info,
            namespace: ns.as_deref(),
            name: &requested_name,
            subresource: None,
        };
        let caller = crate::webhooks::Caller {
            user: opts.requester.as_ref(),
            dry_run: opts.dry_run,
        };
        let (obj, hook_warnings) = self
            .mutate_by_webhooks(hook_target, caller, obj, None)
            .await?;
        let (mut obj, mut warnings) = self.admit(info, obj, None, opts.field_validation)?;
        warnings.splice(0..0, hook_warnings);
        self.refuse_while_terminating(info)?;
        self.definition_status(info, &mut obj).await?;
        self.check_escalation(info, ns.as_deref(), &obj, opts.requester.as_ref())
            .await?;
        self.restrict_node_create(info, ns.as_deref(), &obj, opts.requester.as_ref())?;
        self.admit_priority_class(info, &obj, None).await?;
        opts.track(
            info,
            self.custom_version(info).as_deref(),
            None,
            None,
            &mut obj,
        );
        let name = meta::name(&obj).to_string();
        if let Some(ns) = &ns {
            if info.kind != "Namespace" {
                self.check_namespace_open(info, ns, &name).await?;
            }
        }
        // Dry runs are warned too, as Kubernetes warns them.
        warnings.extend(self.selector_warnings(info, &obj, None).await);
        warnings.extend(
            self.validate_by_webhooks(hook_target, caller, Some(&obj), None)
                .await?,
        );
        if opts.dry_run {
            // A dry run shows the numbers a Service would get, as Kubernetes' does.
            let mut obj = obj;
            self.allocate(info, &mut obj, None).await?;
            return Ok(Written {
                object: obj,
                warnings,
            });
        }
        if info.kind == "ResourceQuota" {
            self.quota_status(&mut obj).await?;
        }
        let key = keys::object(info, ns.as_deref(), &name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut obj = obj.clone();
            let allocations = self.allocate(info, &mut obj, None).await?;
            let mut ops = vec![WriteOp {
                key: key.clone(),
                change: Change::Put(encode_for_store(&obj)?),
                expect: Expect::Absent,
            }];
            ops.extend(allocations);
            ops.extend(lease_fence_op(info, &json!({}), &obj));
            ops.extend(self.quota_charges(info, &obj, None).await?);
            match self.storage.write(ops, guards(opts.fence.as_ref())).await {
                Ok(revision) => {
                    return Ok(Written {
                        object: with_revision(obj, revision),
                        warnings,
                    })
                }
                // A quota changed under us: charge it again from its new state.
                Err(StorageError::Conflict { key: k, .. }) if k != key && attempt < RETRIES => {
                    continue
                }
                // Another write took the cluster IP or node port picked: pick again (a number
                // the user chose is then found taken, with Kubernetes' error).
                Err(StorageError::AlreadyExists { key: k })
                    if crate::services::is_allocation_key(&k) && attempt < RETRIES =>
                {
                    continue
                }
                Err(e) => return Err(storage_error(info, &name, e)),
            }
        }
    }

    /// Replaces an object, or (`subresource` = "status") only its status. The body's
    /// resourceVersion, if set, must be the stored one; without it the update applies to
    /// whatever is current.
    pub async fn update(
        &self,
        info: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut body = body;
        admission::default_type(info, &mut body);
        admission::check_type(info, &body)?;
        let body_name = meta::name(&body);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if info.namespaced() {
            let body_ns = meta::namespace(&body);
            if !body_ns.is_empty() && Some(body_ns) != namespace {
                return Err(ApiError::BadRequest("the namespace of the provided object does not match the namespace sent on the request".into()));
            }
        }
        let wanted: Option<i64> = match meta::resource_version(&body) {
            "" => None,
            rv => Some(
                rv.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {rv:?}")))?,
            ),
        };
        let mut attempt = 0;
        let mut from_store = false;
        loop {
            attempt += 1;
            let cached = match from_store {
                false => self.current_cached(info, namespace, name).transpose()?,
                true => None,
            };
            let from_cache = cached.is_some();
            let (current, current_rev) = match cached {
                Some(c) => c,
                None => self.current(info, namespace, name).await?,
            };
            from_store = true;
            if let Some(w) = wanted {
                // The cache may be behind: only the store's revision can refuse the write.
                if w != current_rev && from_cache {
                    continue;
                }
                if w != current_rev {
                    return Err(storage_error(
                        info,
                        name,
                        StorageError::Conflict {
                            key: vec![],
                            expected: w,
                            found: current_rev,
                        },
                    ));
                }
            }
            let next = self.next_version(info, subresource, &current, body.clone())?;
            match self
                .replace(
                    info,
                    (namespace, name, subresource),
                    &current,
                    current_rev,
                    next,
                    opts,
                )
                .await
            {
                // Written against a stale cached copy: once more from the store, which decides.
                Err(ApiError::Conflict { .. }) if from_cache => continue,
                // Nothing written (no change, or a dry run): that is only known against the
                // store's copy.
                Ok(w)
                    if from_cache
                        && meta::resource_version(&w.object) == current_rev.to_string() =>
                {
                    continue
                }
                Err(ApiError::Conflict { .. }) if wanted.is_none() && attempt < RETRIES => continue,
                other => return other,
            }
        }
    }

    /// Builds the object an update writes from the current one and the request body.
    fn next_version(
        &self,
        info: &'static ResourceInfo,
        subresource: Option<&str>,
        current: &Value,
        body: Value,
    ) -> Result<Value, ApiError> {
        let mut next = match subresource {
            Some("status") => {
                if !info.has_subresource("status") {
                    return Err(ApiError::UnknownResource);
                }
                let mut next = current.clone();
                next["status"] = body.get("status").cloned().unwrap_or(json!({}));
                next
            }
            // A namespace's /finalize changes only its spec.finalizers.
            Some("finalize") if info.kind == "Namespace" && info.group.is_empty() => {
                let mut next = current.clone();
                next["spec"]["finalizers"] = body
                    .pointer("/spec/finalizers")
                    .cloned()
                    .unwrap_or(json!([]));
                next
            }
            Some(_) => return Err(ApiError::UnknownResource),
            None => {
                let mut next = body;
                if info.has_subresource("status") {
                    // The main resource does not change status; the status subresource does.
                    match current.get("status") {
                        Some(s) => next["status"] = s.clone(),
                        None => {
                            if let Some(m) = next.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                next
            }
        };
        // Fields the server owns are carried over from the stored object.
        let Some(m) = meta::metadata_mut(&mut next) else {
            return Err(ApiError::BadRequest(
                "the object is not a JSON object".into(),
            ));
        };
        for owned in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match current.pointer(&format!("/metadata/{owned}")) {
                Some(v) => {
                    m.insert(owned.into(), v.clone());
                }
                None => {
                    m.remove(owned);
                }
            }
        }
        m.remove("resourceVersion");
        if !m.contains_key("managedFields") {
            if let Some(managed) = current.pointer("/metadata/managedFields") {
                m.insert("managedFields".into(), managed.clone());
            }
        }
        Ok(next)
    }

    /// Writes `next` over `current` (at `current_rev`); an object being deleted whose last
    /// finalizer is gone is deleted instead.
    #[allow(clippy::too_many_arguments)]
    async fn replace(
        &self,
        info: &'static ResourceInfo,
        (namespace, name, subresource): (Option<&str>, &str, Option<&str>),
        current: &Value,
        current_rev: i64,
        next: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let hook_target = crate::webhooks::Target {
            operation: "UPDATE",
            info,
            namespace,
            name,
            subresource,
        };
        let caller = crate::webhooks::Caller {
            user: opts.requester.as_ref(),
            dry_run: opts.dry_run,
        };
        let (next, hook_warnings) = self
            .mutate_by_webhooks(hook_target, caller, next, Some(current))
            .await?;
        let (mut next, mut warnings) =
            self.admit(info, next, Some(current), opts.field_validation)?;
        warnings.splice(0..0, hook_warnings);
        self.definition_status(info, &mut next).await?;
        // After admission, which writes the object as it is stored (defaults, canonical
        // quantities): a change of form alone is no new generation.
        next_generation(info, current, &mut next);
        self.check_escalation(info, namespace, &next, opts.requester.as_ref())
            .await?;
        self.admit_priority_class(info, &next, Some(current))
            .await?;
        if subresource.is_none() {
            warnings.extend(self.selector_warnings(info, &next, Some(current)).await);
        }
        warnings.extend(
            self.validate_by_webhooks(hook_target, caller, Some(&next), Some(current))
                .await?,
        );
        let custom = self.custom_version(info);
        opts.track(
            info,
            custom.as_deref(),
            subresource,
            Some(current),
            &mut next,
        );
        if info.kind == "ResourceQuota" {
            self.quota_status(&mut next).await?;
        }
        let allocations = if meta::has_deletion_timestamp(&next) {
            Vec::new()
        } else {
            self.allocate(info, &mut next, Some(current)).await?
        };
        if opts.dry_run {
            return Ok(Written {
                object: with_revision(next, current_rev),
                warnings,
            });
        }
        let key = keys::object(info, namespace, name);
        let finished = meta::has_deletion_timestamp(&next)
            && meta::finalizers(&next).is_empty()
            && next
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty() || info.kind != "Namespace");
        if !finished
            && without_version(&next) == without_version(current)
            && !self.storage.needs_rewrite(&key).await
        {
            // Nothing changes: Kubernetes writes nothing and the version stays (unless the
            // stored value is encrypted with a retired key: rotation rewrites it).
            return Ok(Written {
                object: current.clone(),
                warnings,
            });
        }
        let mut ops = vec![WriteOp {
            key,
            change: if finished {
                Change::Delete
            } else {
                Change::Put(encode_for_store(&next)?)
            },
            expect: Expect::Revision(current_rev),
        }];
        if finished {
            ops.extend(lease_fence_delete(info, current));
            ops.extend(self.release(info, current));
        } else {
            ops.extend(lease_fence_op(info, current, &next));
            ops.extend(allocations);
        }
        if finished {
            ops.extend(self.quota_releases(info, current).await?);
        } else if crate::quota::handles(info, crate::quota::Operation::Update, "") {
            ops.extend(self.quota_charges(info, &next, Some(current)).await?);
        }
        let revision = self
            .storage
            .write(ops, guards(opts.fence.as_ref()))
            .await
            .map_err(|e| match e {
                // Another write took a number picked here: a conflict, which an update
                // without a resourceVersion retries.
                StorageError::AlreadyExists { key } if crate::services::is_allocation_key(&key) => {
                    storage_error(
                        info,
                        name,
                        StorageError::Conflict {
                            key,
                            expected: current_rev,
                            found: current_rev,
                        },
                    )
                }
                e => storage_error(info, name, e),
            })?;
        Ok(Written {
            object: with_revision(next, revision),
            warnings,
        })
    }
}

fn is_lease(info: &ResourceInfo) -> bool {
    info.kind == "Lease" && info.group == "coordination.k8s.io"
}

/// When a coordination Lease is deleted, its fencing token goes with it in the same
/// transaction: a fence naming the last holder must not keep admitting its writes.
pub(crate) fn lease_fence_delete(info: &ResourceInfo, current: &Value) -> Option<WriteOp> {
    is_lease(info).then(|| WriteOp {
        key: keys::fence(meta::namespace(current), meta::name(current)),
        change: Change::Delete,
        expect: Expect::Any,
    })
}

/// When a coordination Lease changes holder or transitions, its fencing token changes in the
/// same transaction.
fn lease_fence_op(info: &ResourceInfo, current: &Value, next: &Value) -> Option<WriteOp> {
    if !is_lease(info) {
        return None;
    }
    let token = |obj: &Value| {
        (
            meta::str_field(obj, &["spec", "holderIdentity"])
                .unwrap_or("")
                .to_string(),
            obj.pointer("/spec/leaseTransitions")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        )
    };
    let (holder, transitions) = token(next);
    if token(current) == (holder.clone(), transitions) {
        return None;
    }
    Some(WriteOp {
        key: keys::fence(meta::namespace(next), meta::name(next)),
        change: Change::Put(keys::fence_token(&holder, transitions)),
        expect: Expect::Any,
    })
}
