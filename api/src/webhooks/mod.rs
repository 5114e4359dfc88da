//! Admission webhooks: the stored Validating- and MutatingWebhookConfigurations, called over
//! HTTPS with an AdmissionReview v1 as kube-apiserver calls them. Mutating webhooks run
//! after the server's own defaulting admission and before validation, in the order of their
//! configurations' names, each patch applied before the next call; a webhook with
//! `reinvocationPolicy: IfNeeded` is called once more when a later one changed the object.
//! Validating webhooks run after validation, before the write. A webhook that cannot be
//! reached, times out or answers nonsense fails the request under `failurePolicy: Fail` (the
//! default) and is skipped under `Ignore`; a dry run reaches only webhooks without side
//! effects. Writes of webhook configurations themselves are never sent to webhooks (no
//! configuration can lock itself in), nor are the server's own bookkeeping writes.

pub mod client;
pub mod review;
pub mod rules;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keel_types::ResourceInfo;
use serde_json::Value;

use self::client::Endpoint;
use self::rules::{Hook, Request};
use crate::auth::UserInfo;
use crate::cache::Derived;
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage};

const MUTATING: &[u8] = b"/registry/mutatingwebhookconfigurations/";
const VALIDATING: &[u8] = b"/registry/validatingwebhookconfigurations/";

/// Kubernetes' default webhook timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhooks configured, each list in the order they are called.
#[derive(Debug, Default)]
pub struct Configured {
    mutating: Vec<Hook>,
    validating: Vec<Hook>,
}

impl Configured {
    fn from_stored(mutating: &[Value], validating: &[Value]) -> Self {
        let hooks = |configs: &[Value]| -> Vec<Hook> {
            // Stored configurations come in key order, which is name order, as Kubernetes
            // sorts them.
            configs
                .iter()
                .flat_map(|c| {
                    c.get("webhooks")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .filter_map(|h| serde_json::from_value(h).ok())
                .collect()
        };
        Self {
            mutating: hooks(mutating),
            validating: hooks(validating),
        }
    }
}

/// The configurations last read, and the cache generation they were read at.
#[derive(Default)]
pub struct Memo(Mutex<Option<(u64, Arc<Configured>)>>);

/// Who asks, and whether the request is a dry run: what a review says of the request beyond
/// the object.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub user: Option<&'a UserInfo>,
    pub dry_run: bool,
}

/// The request as rules see it, but for its objects and namespace labels.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub operation: &'static str,
    pub info: &'static ResourceInfo,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub subresource: Option<&'a str>,
}

fn decode_all(items: &[crate::storage::Stored]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect()
}

impl<S: Storage> ApiServer<S> {
    async fn read_configs(&self, prefix: &[u8]) -> Result<Vec<Value>, ApiError> {
        let end = prefix_end(prefix);
        let items = match self.cache.as_ref().and_then(|c| c.list(prefix, &end)) {
            Some(snapshot) => snapshot.items,
            None => {
                self.storage
                    .list(prefix, &end, 0, 0)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?
                    .items
            }
        };
        Ok(decode_all(&items))
    }

    async fn webhooks(&self) -> Result<Arc<Configured>, ApiError> {
        let generation = self.cache.as_ref().map(|c| c.generation(Derived::Webhooks));
        if let Some(g) = generation {
            let memo = self
                .webhook_memo
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some((seen, configured)) = memo.as_ref() {
                if *seen == g {
                    return Ok(configured.clone());
                }
            }
        }
        let configured = Arc::new(Configured::from_stored(
            &self.read_configs(MUTATING).await?,
            &self.read_configs(VALIDATING).await?,
        ));
        if let Some(g) = generation {
            *self
                .webhook_memo
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((g, configured.clone()));
        }
        Ok(configured)
    }

    /// The labels of the namespace a request is in (of the namespace itself, for one).
    async fn namespace_labels(
        &self,
        target: &Target<'_>,
        object: Option<&Value>,
    ) -> std::collections::BTreeMap<String, String> {
        let labels_of = |v: &Value| -> std::collections::BTreeMap<String, String> {
            v.pointer("/metadata/labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default()
        };
        if target.info.group.is_empty() && target.info.kind == "Namespace" {
            return object.map(labels_of).unwrap_or_default();
        }
        let (Some(ns), Some(ns_info)) = (
            target.namespace,
            keel_types::kinds::by_kind("v1", "Namespace"),
        ) else {
            return Default::default();
        };
        match self.get_cached(ns_info, None, ns).await {
            Ok(ns) => labels_of(&ns),
            Err(_) => Default::default(),
        }
    }

    /// Whether a request reaches webhooks at all.
    fn reaches_webhooks(target: &Target<'_>, caller: &Caller<'_>) -> bool {
        caller.user.is_some() && target.info.group != "admissionregistration.k8s.io"
    }

    /// Runs the mutating webhooks the request matches over `object`; returns the object as
    /// they left it, and their warnings.
    pub(crate) async fn mutate_by_webhooks(
        &self,
        target: Target<'_>,
        caller: Caller<'_>,
        mut object: Value,
        old: Option<&Value>,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if !Self::reaches_webhooks(&target, &caller) {
            return Ok((object, Vec::new()));
        }
        let configured = self.webhooks().await?;
        if configured.mutating.is_empty() {
            return Ok((object, Vec::new()));
        }
        let namespace_labels = self.namespace_labels(&target, Some(&object)).await;
        let mut warnings = Vec::new();
        // For each webhook called: whether a later one changed the object since.
        let mut called: Vec<(usize, bool)> = Vec::new();
        for (i, hook) in configured.mutating.iter().enumerate() {
            let changed = self
                .call_one(
                    hook,
                    true,
                    &target,
                    &caller,
                    &namespace_labels,
                    &mut object,
                    old,
                    &mut warnings,
                )
                .await?;
            if let Some(changed) = changed {
                if changed {
                    called.iter_mut().for_each(|(_, later)| *later = true);
                }
                called.push((i, false));
            }
        }
        let again: Vec<usize> = called
            .iter()
            .filter(|(i, later)| {
                *later && configured.mutating[*i].reinvocation_policy.as_deref() == Some("IfNeeded")
            })
            .map(|(i, _)| *i)
            .collect();
        for i in again {
            let hook = &configured.mutating[i];
            self.call_one(
                hook,
                true,
                &target,
                &caller,
                &namespace_labels,
                &mut object,
                old,
                &mut warnings,
            )
            .await?;
        }
        Ok((object, warnings))
    }

    /// Runs the validating webhooks the request matches (`object` None for a delete);
    /// returns their warnings, or the first denial.
    pub(crate) async fn validate_by_webhooks(
        &self,
        target: Target<'_>,
        caller: Caller<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<Vec<String>, ApiError> {
        if !Self::reaches_webhooks(&target, &caller) {
            return Ok(Vec::new());
        }
        let configured = self.webhooks().await?;
        if configured.validating.is_empty() {
            return Ok(Vec::new());
        }
        let namespace_labels = self.namespace_labels(&target, object.or(old)).await;
        let mut warnings = Vec::new();
        let mut object = object.cloned().unwrap_or(Value::Null);
        for hook in &configured.validating {
            self.call_one(
                hook,
                false,
                &target,
                &caller,
                &namespace_labels,
                &mut object,
                old,
                &mut warnings,
            )
            .await?;
        }
        Ok(warnings)
    }

    /// Calls `hook` if the request matches it. None when it was not called; else whether it
    /// changed `object` (always false for a validating webhook).
    #[allow(clippy::too_many_arguments)]
    async fn call_one(
        &self,
        hook: &Hook,
        mutating: bool,
        target: &Target<'_>,
        caller: &Caller<'_>,
        namespace_labels: &std::collections::BTreeMap<String, String>,
        object: &mut Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<bool>, ApiError> {
        let info = target.info;
        let request = Request {
            operation: target.operation,
            group: info.group,
            version: info.version,
            kind: info.kind,
            resource: info.plural,
            subresource: target.subresource.unwrap_or(""),
            namespaced: info.namespaced(),
            namespace: target.namespace.unwrap_or(""),
            name: target.name,
            object: (!object.is_null()).then_some(&*object),
            old_object: old,
            namespace_labels: namespace_labels.clone(),
        };
        let fail_closed = hook.failure_policy.as_deref() != Some("Ignore");
        let failed = |why: String| -> Result<Option<bool>, ApiError> {
            if fail_closed {
                Err(ApiError::Internal(format!(
                    "Internal error occurred: failed calling webhook {:?}: {why}",
                    hook.name
                )))
            } else {
                tracing::warn!(webhook = %hook.name, error = %why, "webhook failed; its failurePolicy is Ignore");
                Ok(None)
            }
        };
        match rules::hook_matches(hook, &request) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(rules::BadSelector(e)) => return failed(format!("invalid selector: {e}")),
        }
        if caller.dry_run && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
            return Err(ApiError::BadRequest(format!(
                "admission webhook {:?} does not support dry run",
                hook.name
            )));
        }
        let timeout = hook
            .timeout_seconds
            .filter(|t| *t > 0)
            .map(|t| Duration::from_secs(t as u64))
            .unwrap_or(DEFAULT_TIMEOUT);
        let mut endpoint = match self.webhook_endpoint(hook).await {
            Ok(e) => e,
            Err(why) => return failed(format!("failed to call webhook: {why}")),
        };
        let query = format!("timeout={}s", timeout.as_secs());
        endpoint.path = if endpoint.path.contains('?') {
            format!("{}&{query}", endpoint.path)
        } else {
            format!("{}?{query}", endpoint.path)
        };
        endpoint.url = format!(
            "https://{}{}",
            crate::kubelet::join_host_port(&endpoint.server_name, endpoint.port),
            endpoint.path
        );
        let uid = crate::meta::new_uid();
        let anonymous = UserInfo::default();
        let review = review::request(
            &request,
            &uid,
            caller.user.unwrap_or(&anonymous),
            caller.dry_run,
        );
        let body = serde_json::to_vec(&review).map_err(|e| ApiError::Internal(e.to_string()))?;
        let ca = hook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let answer = match client::post(&endpoint, &ca, body, timeout).await {
            Ok(a) => a,
            Err(why) => return failed(format!("failed to call webhook: {why}")),
        };
        match review::verdict(&hook.name, &uid, mutating, &answer) {
            Ok(verdict) => {
                warnings.extend(verdict.warnings);
                let Some(patch) = verdict.patch else {
                    return Ok(Some(false));
                };
                let before = object.clone();
                if let Err(e) = json_patch::patch(object, &patch) {
                    *object = before;
                    return failed(format!("JSONPatch failed to apply: {e}"));
                }
                Ok(Some(*object != before))
            }
            Err(Ok(denial)) => Err(denial),
            Err(Err(why)) => failed(format!("failed to call webhook: {why}")),
        }
    }

    /// Where `hook` is reached: its URL, or its Service's first ready endpoint (the pod
    /// behind the port named), verified as `<service>.<namespace>.svc`.
    async fn webhook_endpoint(&self, hook: &Hook) -> Result<Endpoint, String> {
        let config = &hook.client_config;
        if let Some(url) = &config.url {
            return Endpoint::from_url(url);
        }
        let Some(svc) = &config.service else {
            return Err("the webhook names neither a url nor a service".into());
        };
        let port = svc.port.unwrap_or(443);
        let not_found = |what: &str| format!("service \"{}/{}\": {what}", svc.namespace, svc.name);
        let service_info = keel_types::kinds::by_kind("v1", "Service")
            .ok_or_else(|| not_found("no Service kind"))?;
        let endpoints_info = keel_types::kinds::by_kind("v1", "Endpoints")
            .ok_or_else(|| not_found("no Endpoints kind"))?;
        let service = self
            .get_cached(service_info, Some(&svc.namespace), &svc.name)
            .await
            .map_err(|_| not_found("not found"))?;
        let spec_port = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)))
            .cloned()
            .ok_or_else(|| not_found(&format!("no port {port}")))?;
        let port_name = spec_port.get("name").and_then(Value::as_str).unwrap_or("");
        let endpoints = self
            .get_cached(endpoints_info, Some(&svc.namespace), &svc.name)
            .await
            .map_err(|_| not_found("no endpoints available"))?;
        for subset in endpoints
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let target_port = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
                .and_then(|p| p.get("port").and_then(Value::as_u64));
            let address = subset
                .get("addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|a| a.get("ip").and_then(Value::as_str));
            if let (Some(ip), Some(target_port)) = (address, target_port) {
                return Ok(Endpoint {
                    host: ip.to_string(),
                    port: target_port as u16,
                    server_name: format!("{}.{}.svc", svc.name, svc.namespace),
                    path: svc.path.clone().unwrap_or_else(|| "/".into()),
                    url: String::new(),
                });
            }
        }
        Err(not_found("no endpoints available"))
    }
}
