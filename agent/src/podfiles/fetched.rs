//! What was read for one pod: its ConfigMaps, Secrets and tokens by name, each as found or as
//! the error reading it gave, so the pure parts decide what a missing one means.

use std::collections::{BTreeMap, BTreeSet};

use keel_client::k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::{SourceError, Sources};

/// The objects one pod refers to, read from its namespace.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub config_maps: BTreeMap<String, Result<ConfigMap, SourceError>>,
    pub secrets: BTreeMap<String, Result<Secret, SourceError>>,
    /// Tokens of projected volumes by (volume name, index of the source in the volume).
    pub tokens: BTreeMap<(String, usize), Result<String, SourceError>>,
}

fn unread(kind: &str, name: &str) -> SourceError {
    SourceError::Failed(format!("{kind} {name:?} was not read"))
}

impl Fetched {
    /// Reads the named ConfigMaps and Secrets of `namespace`.
    pub async fn read<S: Sources>(
        sources: &S,
        namespace: &str,
        config_maps: &BTreeSet<String>,
        secrets: &BTreeSet<String>,
    ) -> Fetched {
        let mut fetched = Fetched::default();
        for name in config_maps {
            let found = sources.config_map(namespace, name).await;
            fetched.config_maps.insert(name.clone(), found);
        }
        for name in secrets {
            let found = sources.secret(namespace, name).await;
            fetched.secrets.insert(name.clone(), found);
        }
        fetched
    }

    pub fn config_map(&self, name: &str) -> Result<&ConfigMap, SourceError> {
        match self.config_maps.get(name) {
            Some(found) => found.as_ref().map_err(Clone::clone),
            None => Err(unread("configmap", name)),
        }
    }

    pub fn secret(&self, name: &str) -> Result<&Secret, SourceError> {
        match self.secrets.get(name) {
            Some(found) => found.as_ref().map_err(Clone::clone),
            None => Err(unread("secret", name)),
        }
    }

    pub fn token(&self, volume: &str, index: usize) -> Result<&str, SourceError> {
        match self.tokens.get(&(volume.to_owned(), index)) {
            Some(found) => found.as_deref().map_err(Clone::clone),
            None => Err(unread("token of volume", volume)),
        }
    }
}
