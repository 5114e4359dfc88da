//! Warnings on write from the selector lint (`keel-lint`): a Service, workload, NetworkPolicy
//! or PodDisruptionBudget whose selector matches no pod and no pod template of its namespace,
//! and a controller whose selector overlaps another's. They go back to the client as
//! `Warning:` headers; the write itself never depends on them.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use keel_lint::kinds::{rule_for, RULES};
use keel_lint::projection::Projection;
use keel_lint::{lint, Class, Manifest, Options, Source};
use keel_types::ResourceInfo;
use serde_json::Value;

use crate::keys;
use crate::meta;
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage, Stored};

/// At most this many objects of each kind are read from the namespace, so that a write into a
/// namespace of many pods stays as fast as any other; beyond it, "matches nothing" is not
/// claimed, since the pods not read might match.
const PER_KIND: usize = 2000;

/// How long a write waits for the watch cache to hold everything written before it. Past it
/// the lint still runs, but does not claim "matches nothing" on what may be stale.
const CACHE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The namespace's objects are decoded with only what the selector checks read: a pod's
/// containers, status and managed fields are skipped unparsed.
static PROJECTION: LazyLock<Projection> = LazyLock::new(Projection::for_selectors);

/// At most this many projected objects are remembered; past it the memo starts over.
const MEMO_ENTRIES: usize = 50_000;

/// Projected objects by key, each with the revision it was decoded at, so that a namespace's
/// pods are decoded once rather than on every write linted against them. An entry is used
/// only while the cache holds that same revision of the key.
#[derive(Debug, Default)]
pub(crate) struct ProjectionMemo {
    entries: Mutex<HashMap<Vec<u8>, Memoized>>,
}

/// A projected object and the revision it was decoded at.
#[derive(Debug)]
struct Memoized {
    revision: i64,
    object: Arc<Value>,
}

impl ProjectionMemo {
    fn get(&self, stored: &Stored) -> Option<Arc<Value>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&stored.key)
            .filter(|m| m.revision == stored.mod_revision)
            .map(|m| m.object.clone())
    }

    fn put(&self, stored: Stored, object: Arc<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MEMO_ENTRIES {
            entries.clear();
        }
        entries.insert(
            stored.key,
            Memoized {
                revision: stored.mod_revision,
                object,
            },
        );
    }
}

/// The lint's findings that concern a write: the rest are refused by validation (a template
/// mismatch) or are about ports, which the API leaves to `keel lint`.
const WARNED: &[Class] = &[Class::SelectorMatchesNothing, Class::SelectorsOverlap];

/// Whether the object's kind carries a selector the lint checks.
fn is_selecting(object: &Value) -> bool {
    rule_for(object).is_some_and(|r| r.selector.is_some())
}

/// Whether an update changes what the object selects or offers to selectors: its selector or
/// its template's labels. Updates that change neither (a controller's annotations, a new image)
/// are not linted again, which keeps the namespace reads off the controllers' write path.
fn selection_changed(previous: &Value, next: &Value) -> bool {
    let Some(rule) = rule_for(next) else {
        return false;
    };
    let selector = |o: &Value| rule.selector.and_then(|s| o.pointer(s.pointer).cloned());
    let labels = |o: &Value| {
        rule.template
            .and_then(|t| o.pointer(&format!("{t}/metadata/labels")).cloned())
    };
    selector(previous) != selector(next) || labels(previous) != labels(next)
}

/// An object kept by a controller (a Deployment's ReplicaSet): its owner answers for its
/// selector, and nobody reads the controller manager's warnings.
fn is_controlled(object: &Value) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
}

/// The served kinds whose objects are pod templates or controllers: what a selector can match
/// and what it can overlap with.
fn context_kinds() -> impl Iterator<Item = &'static ResourceInfo> {
    RULES
        .iter()
        .filter(|r| r.template.is_some() || r.controller)
        .filter_map(|r| {
            keel_types::kinds::all()
                .iter()
                .find(|i| i.group == r.group && i.kind == r.kind)
        })
}

impl<S: Storage> ApiServer<S> {
    /// The warnings for writing `object` (as admitted) into its namespace over `previous` (None
    /// for a create).
    pub(crate) async fn selector_warnings(
        &self,
        info: &ResourceInfo,
        object: &Value,
        previous: Option<&Value>,
    ) -> Vec<String> {
        let namespace = meta::namespace(object);
        if !self.selector_warnings
            || !info.namespaced()
            || previous.is_some_and(|p| !selection_changed(p, object))
            || namespace.is_empty()
            || !is_selecting(object)
            || is_controlled(object)
            || meta::has_deletion_timestamp(object)
        {
            return Vec::new();
        }
        let (name, kind) = (meta::name(object), info.kind);
        let mut manifests = Vec::new();
        // A workload written just before (`kubectl apply` of a directory) must be seen, or its
        // Service would be warned of falsely.
        let mut complete = self.cache_is_current().await;
        for kind_info in context_kinds() {
            let prefix = keys::collection(kind_info, Some(namespace));
            let (items, all) = self.read_at_most(&prefix).await;
            complete &= all;
            manifests.extend(
                items
                    .into_iter()
                    // The stored version of the object being written is replaced by the new one.
                    .filter(|o| !(kind_info.kind == kind && meta::name(o) == name))
                    .map(|object| Manifest {
                        object,
                        source: Source::default(),
                    }),
            );
        }
        manifests.push(Manifest {
            object: Arc::new(object.clone()),
            source: Source::default(),
        });
        let options = Options {
            default_namespace: namespace.to_string(),
            subject: Some(manifests.len() - 1),
        };
        lint(&manifests, &options)
            .into_iter()
            .filter(|f| WARNED.contains(&f.class))
            .filter(|f| complete || f.class != Class::SelectorMatchesNothing)
            .map(|f| format!("{}: {}", f.object, f.message))
            .collect()
    }

    /// Whether the watch cache (if any) holds every write the store has committed.
    async fn cache_is_current(&self) -> bool {
        let Some(cache) = &self.cache else {
            return true;
        };
        match self.storage.revision().await {
            Ok(revision) => cache.wait_for(revision, CACHE_WAIT).await,
            Err(_) => false,
        }
    }

    /// Up to [`PER_KIND`] objects under `prefix`, projected, and whether that is all of them:
    /// from the watch cache when it is filled (through the memo: only objects changed since
    /// they were last read are decoded), else from the store. A failed read gives nothing,
    /// which warns of nothing.
    async fn read_at_most(&self, prefix: &[u8]) -> (Vec<Arc<Value>>, bool) {
        let end = prefix_end(prefix);
        let memo = &self.lint_memo;
        if let Some((found, all)) = self.cache.as_ref().and_then(|c| {
            c.scan_at_most(prefix, &end, PER_KIND, |stored| {
                memo.get(stored).ok_or_else(|| stored.clone())
            })
        }) {
            // Decoded outside the cache's lock.
            let objects = found
                .into_iter()
                .filter_map(|read| match read {
                    Ok(object) => Some(object),
                    Err(stored) => {
                        let object = Arc::new(PROJECTION.decode(&stored.value).ok()?);
                        memo.put(stored, object.clone());
                        Some(object)
                    }
                })
                .collect();
            return (objects, all);
        }
        match self.storage.list(prefix, &end, PER_KIND as i64, 0).await {
            Ok(page) => (
                page.items
                    .iter()
                    .filter_map(|s| PROJECTION.decode(&s.value).ok().map(Arc::new))
                    .collect(),
                !page.more,
            ),
            Err(_) => (Vec::new(), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::server::{ApiServer, WriteOptions};
    use crate::storage::memory::MemoryStorage;

    fn service(selector: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": selector, "ports": [{"port": 80}]}})
    }

    fn deployment(name: &str) -> serde_json::Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    async fn server() -> ApiServer<MemoryStorage> {
        let core = ApiServer::new(MemoryStorage::new());
        crate::bootstrap::ensure_namespaces(&core).await;
        core
    }

    fn kind(api_version: &str, kind: &str) -> &'static keel_types::ResourceInfo {
        keel_types::kinds::by_kind(api_version, kind).expect("a served kind")
    }

    /// Service `web` in `default`, selecting app=web; the write succeeds whatever the lint
    /// says.
    async fn write_web_service(core: &ApiServer<MemoryStorage>) -> crate::server::Written {
        core.create(
            kind("v1", "Service"),
            Some("default"),
            service(json!({"app": "web"})),
            &WriteOptions::default(),
        )
        .await
        .expect("the write succeeds whatever the lint says")
    }

    #[tokio::test]
    async fn a_service_selecting_nothing_is_written_with_a_warning() {
        let written = write_web_service(&server().await).await;
        assert_eq!(written.warnings.len(), 1, "{:?}", written.warnings);
        assert!(
            written.warnings[0].starts_with(
                "Service/default/web: selector app=web matches no pod template in namespace default"
            ),
            "{:?}",
            written.warnings
        );
    }

    #[test]
    fn every_warned_class_reads_only_what_the_projection_keeps() {
        for class in super::WARNED {
            assert!(
                keel_lint::projection::SELECTOR_CLASSES.contains(class),
                "{class:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_server_with_the_warnings_off_writes_without_them() {
        let written = write_web_service(&server().await.with_selector_warnings(false)).await;
        assert!(written.warnings.is_empty(), "{:?}", written.warnings);
    }

    #[tokio::test]
    async fn a_service_selecting_a_workloads_template_is_not_warned() {
        let core = server().await;
        let deployments = kind("apps/v1", "Deployment");
        let first = core
            .create(
                deployments,
                Some("default"),
                deployment("web"),
                &WriteOptions::default(),
            )
            .await
            .expect("deployment");
        assert_eq!(first.warnings, Vec::<String>::new());
        let written = core
            .create(
                kind("v1", "Service"),
                Some("default"),
                service(json!({"app": "web"})),
                &WriteOptions::default(),
            )
            .await
            .expect("service");
        assert_eq!(written.warnings, Vec::<String>::new());

        // A second controller for the same pods is warned of; a dry run too.
        let dry = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        let rival = core
            .create(deployments, Some("default"), deployment("rival"), &dry)
            .await
            .expect("rival");
        assert_eq!(rival.warnings.len(), 1, "{:?}", rival.warnings);
        assert!(
            rival.warnings[0].contains("overlaps")
                && rival.warnings[0].contains("Deployment/default/web"),
            "{:?}",
            rival.warnings
        );
    }

    #[tokio::test]
    async fn an_update_that_leaves_the_selector_alone_is_not_linted_again() {
        let core = server().await;
        let services = kind("v1", "Service");
        core.create(
            services,
            Some("default"),
            service(json!({"app": "web"})),
            &WriteOptions::default(),
        )
        .await
        .expect("service");
        let mut same = service(json!({"app": "web"}));
        same["spec"]["ports"] = json!([{"port": 81}]);
        let updated = core
            .update(
                services,
                Some("default"),
                "web",
                None,
                same,
                &WriteOptions::default(),
            )
            .await
            .expect("update");
        assert_eq!(updated.warnings, Vec::<String>::new());
        let moved = core
            .update(
                services,
                Some("default"),
                "web",
                None,
                service(json!({"app": "api"})),
                &WriteOptions::default(),
            )
            .await
            .expect("update");
        assert_eq!(moved.warnings.len(), 1, "{:?}", moved.warnings);
    }
}
