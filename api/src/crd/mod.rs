//! The kinds CustomResourceDefinitions define, as this server serves them: a table built from
//! the stored definitions and rebuilt when one changes (the watch cache counts their changes),
//! the status the server writes on a definition, and the clean-up that deletes a definition's
//! objects before the definition goes.

pub mod cleanup;
pub mod columns;
pub mod openapi;

use std::sync::{Arc, Mutex, PoisonError};

use keel_types::crd::{served_versions, CustomVersion};
use keel_types::ResourceInfo;
use serde_json::Value;

use crate::cache::Derived;
use crate::error::ApiError;
use crate::server::ApiServer;
use crate::storage::{prefix_end, Storage};

/// Where definitions are stored.
pub(crate) const DEFINITIONS: &[u8] = b"/registry/customresourcedefinitions/";

/// Every served version of every established definition.
#[derive(Debug, Default)]
pub struct CustomKinds {
    versions: Vec<Arc<CustomVersion>>,
}

impl CustomKinds {
    /// The kinds `definitions` (stored CustomResourceDefinitions) serve. A kind a built-in
    /// already serves under the same group and resource is left to the built-in.
    pub fn from_definitions(definitions: &[Value]) -> Self {
        let versions = definitions
            .iter()
            .flat_map(served_versions)
            .filter(|v| keel_types::kinds::by_resource(v.info.group, v.info.plural).is_none())
            .map(Arc::new)
            .collect();
        Self { versions }
    }

    pub fn all(&self) -> &[Arc<CustomVersion>] {
        &self.versions
    }

    /// The version of `resource` in `group` served at `version`.
    pub fn by_resource(
        &self,
        group: &str,
        version: &str,
        resource: &str,
    ) -> Option<&Arc<CustomVersion>> {
        self.versions.iter().find(|v| {
            v.info.group == group && v.info.version == version && v.info.plural == resource
        })
    }

    /// The served version named by an object's `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&Arc<CustomVersion>> {
        self.versions
            .iter()
            .find(|v| v.info.api_version == api_version && v.info.kind == kind)
    }

    /// The version serving `info`, if `info` is a custom kind.
    pub fn of(&self, info: &ResourceInfo) -> Option<&Arc<CustomVersion>> {
        self.versions.iter().find(|v| std::ptr::eq(v.info, info))
    }

    /// One served version of each custom kind (its objects are the same at every version).
    pub fn one_version_each(&self) -> impl Iterator<Item = &'static ResourceInfo> + '_ {
        self.versions.iter().enumerate().filter_map(|(i, v)| {
            let first = !self.versions[..i]
                .iter()
                .any(|o| o.definition == v.definition);
            first.then_some(v.info)
        })
    }

    /// The definition named `name`'s versions.
    pub fn of_definition<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Arc<CustomVersion>> + 'a {
        self.versions.iter().filter(move |v| v.definition == name)
    }
}

/// The table last built, and the cache generation it was built at (None without a cache).
#[derive(Default)]
pub struct Memo(Mutex<Option<(Option<u64>, Arc<CustomKinds>)>>);

impl Memo {
    fn get(&self) -> Option<(Option<u64>, Arc<CustomKinds>)> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, generation: Option<u64>, kinds: Arc<CustomKinds>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((generation, kinds));
    }
}

impl<S: Storage> ApiServer<S> {
    /// The custom kinds served now, from the watch cache. Without a cache (or before it
    /// fills), the table [`Self::custom_kinds`] last read from the store.
    pub fn custom_kinds_now(&self) -> Arc<CustomKinds> {
        let memo = self.custom_memo.get();
        let Some(cache) = &self.cache else {
            return memo.map(|(_, k)| k).unwrap_or_default();
        };
        let generation = cache.generation(Derived::CustomKinds);
        if let Some((Some(seen), kinds)) = &memo {
            if *seen == generation {
                return kinds.clone();
            }
        }
        let Some(snapshot) = cache.list(DEFINITIONS, &prefix_end(DEFINITIONS)) else {
            return memo.map(|(_, k)| k).unwrap_or_default();
        };
        let kinds = Arc::new(CustomKinds::from_definitions(&decode_all(&snapshot.items)));
        self.custom_memo.set(Some(generation), kinds.clone());
        kinds
    }

    /// The custom kinds served, read so that a definition stored before this call (on any
    /// master) is seen: from the cache once it has caught up with the store, else from the
    /// store.
    pub async fn custom_kinds(&self) -> Result<Arc<CustomKinds>, ApiError> {
        if let Some(cache) = &self.cache {
            let revision = self
                .storage
                .revision()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            if cache.wait_for(revision, CATCH_UP).await {
                return Ok(self.custom_kinds_now());
            }
        }
        let items = self
            .storage
            .list(DEFINITIONS, &prefix_end(DEFINITIONS), 0, 0)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
            .items;
        let kinds = Arc::new(CustomKinds::from_definitions(&decode_all(&items)));
        if self.cache.is_none() {
            self.custom_memo.set(None, kinds.clone());
        }
        Ok(kinds)
    }

    /// The custom kinds to route a request with: those served now, or, when the request names
    /// a resource they lack, those served once this server has seen every stored definition
    /// (a definition just created through another master).
    pub async fn custom_kinds_for(
        &self,
        known: impl Fn(&CustomKinds) -> bool,
    ) -> Result<Arc<CustomKinds>, ApiError> {
        let now = self.custom_kinds_now();
        if known(&now) {
            return Ok(now);
        }
        self.custom_kinds().await
    }
}

/// A custom object read from the store, as `version` serves it: at its apiVersion, with its
/// schema's defaults applied as Kubernetes applies them on every read. Anything else (a
/// Status) is left alone.
pub fn present(version: &CustomVersion, obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    if m.get("kind").and_then(Value::as_str) != Some(version.info.kind) {
        return;
    }
    m.insert("apiVersion".into(), version.info.api_version.into());
    keel_types::crd::default_on_read(version, obj);
}

/// How long a lookup waits for the cache to reach the store's revision.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(3);

fn decode_all(items: &[crate::storage::Stored]) -> Vec<Value> {
    items
        .iter()
        .filter_map(|s| serde_json::from_slice(&s.value).ok())
        .collect()
}

impl<S: Storage> ApiServer<S> {
    /// Decodes, defaults and validates an object as its kind: a custom kind against its
    /// definition's schema, a built-in one as [`crate::admission::admit`] does.
    pub(crate) fn admit(
        &self,
        info: &'static ResourceInfo,
        obj: Value,
        old: Option<&Value>,
        field_validation: crate::admission::FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if !info.custom {
            return crate::admission::admit(info, obj, old, field_validation);
        }
        let kinds = self.custom_kinds_now();
        let version = kinds.of(info).ok_or(ApiError::UnknownResource)?;
        crate::admission::admit_custom(version, obj, old, field_validation)
    }

    /// The served version `info` is, if it is a custom kind.
    pub(crate) fn custom_version(&self, info: &ResourceInfo) -> Option<Arc<CustomVersion>> {
        if !info.custom {
            return None;
        }
        self.custom_kinds_now().of(info).cloned()
    }

    /// No object of a custom kind is created while its definition is being deleted.
    pub(crate) fn refuse_while_terminating(&self, info: &ResourceInfo) -> Result<(), ApiError> {
        if !info.custom {
            return Ok(());
        }
        match self.custom_kinds_now().of(info) {
            Some(v) if v.terminating => Err(ApiError::NotAllowedNow(
                "create not allowed while custom resource definition is terminating".into(),
            )),
            _ => Ok(()),
        }
    }

    /// On a definition about to be written, the status the server keeps: its names accepted
    /// unless another definition of its group (or a built-in kind there) holds one.
    pub(crate) async fn definition_status(
        &self,
        info: &ResourceInfo,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        if info.kind != "CustomResourceDefinition" || info.group != "apiextensions.k8s.io" {
            return Ok(());
        }
        let group = obj
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = crate::meta::name(obj).to_string();
        let mut taken = keel_types::crd::definition::TakenNames::default();
        for builtin in keel_types::kinds::all().iter().filter(|k| k.group == group) {
            taken.plurals.push(builtin.plural.to_string());
            taken.singulars.push(builtin.singular());
            taken.kinds.push(builtin.kind.to_string());
            taken.list_kinds.push(builtin.list_kind.to_string());
            taken
                .short_names
                .extend(builtin.short_names.iter().map(|s| s.to_string()));
        }
        let stored = match self
            .cache
            .as_ref()
            .and_then(|c| c.list(DEFINITIONS, &prefix_end(DEFINITIONS)))
        {
            Some(snapshot) => snapshot.items,
            None => {
                self.storage
                    .list(DEFINITIONS, &prefix_end(DEFINITIONS), 0, 0)
                    .await
                    .map_err(|e| ApiError::Unavailable(e.to_string()))?
                    .items
            }
        };
        for other in decode_all(&stored) {
            let same_group = other.pointer("/spec/group").and_then(Value::as_str) == Some(&group);
            if same_group && crate::meta::name(&other) != name {
                taken.add_definition(&other);
            }
        }
        keel_types::crd::definition::set_status(obj, &taken, &crate::meta::now());
        Ok(())
    }
}
