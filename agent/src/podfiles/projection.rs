//! Which files a configMap, secret, downwardAPI or projected volume holds, as kubelet's
//! volume plugins make their payloads: every key of the object (or the listed items, each at
//! its path with its mode), pod fields and container resources, a token.

use std::collections::{BTreeMap, BTreeSet};

use keel_client::k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::error::aggregate;
use super::fieldpath::{find_container, metadata_field, resource_value};
use super::{Fetched, FileProjection, NodeFacts, Payload};

/// 0644, what files get when the volume sets no `defaultMode`.
pub const DEFAULT_MODE: i32 = 0o644;

/// The ConfigMaps and Secrets (by name) the pod's volumes read.
pub fn volume_references(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for volume in volumes {
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        let sources = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for source in sources {
            if let Some(cm) = &source.config_map {
                config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    (config_maps, secrets)
}

fn mode(m: i32) -> u32 {
    u32::try_from(m).unwrap_or(0o644)
}

/// The files of a volume's keys: all of them, or `items` only (a missing key fails unless
/// `optional`, with `missing_key`'s message).
fn key_payload(
    entries: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
    missing_key: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, data) in entries {
                payload.insert(
                    key.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode: mode(default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = entries.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing_key(&item.key));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode: mode(item.mode.unwrap_or(default_mode)),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// A ConfigMap's keys (string and binary data) as bytes; an absent optional one has none.
fn config_map_entries(
    fetched: &Fetched,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match fetched.config_map(name) {
        Ok(cm) => {
            let text = cm.data.iter().flatten();
            let binary = cm.binary_data.iter().flatten();
            Ok(text
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .chain(binary.map(|(k, v)| (k.clone(), v.0.clone())))
                .collect())
        }
        Err(e) if e.is_not_found() && optional => Ok(BTreeMap::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn secret_entries(
    fetched: &Fetched,
    name: &str,
    optional: bool,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match fetched.secret(name) {
        Ok(secret) => Ok(secret
            .data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect()),
        Err(e) if e.is_not_found() && optional => Ok(BTreeMap::new()),
        Err(e) => Err(e.to_string()),
    }
}

fn config_map_missing_key(key: &str) -> String {
    format!("configmap references non-existent config key: {key}")
}

fn secret_missing_key(key: &str) -> String {
    format!("references non-existent secret key: {key}")
}

/// The files of downward API items; every failing item is reported, together.
fn downward_payload(
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    pod: &Pod,
    facts: &NodeFacts,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            metadata_field(pod, &field.field_path)
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or("");
            match find_container(pod, name) {
                Some(container) => resource_value(
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    container,
                    facts,
                ),
                None => Err(format!("container {name} not found")),
            }
        } else {
            Ok(String::new())
        };
        match value {
            Ok(value) => {
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: value.into_bytes(),
                        mode: mode(item.mode.unwrap_or(default_mode)),
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    match aggregate(&errors) {
        Some(message) => Err(message),
        None => Ok(payload),
    }
}

/// The files `volume` holds, or `None` for volumes that are not projections of objects
/// (emptyDir, hostPath, …). Errors are kubelet's SetUp messages.
pub fn volume_payload(
    volume: &Volume,
    pod: &Pod,
    facts: &NodeFacts,
    fetched: &Fetched,
) -> Option<Result<Payload, String>> {
    if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        return Some(
            config_map_entries(fetched, &source.name, optional).and_then(|entries| {
                key_payload(
                    &entries,
                    source.items.as_ref(),
                    source.default_mode.unwrap_or(DEFAULT_MODE),
                    optional,
                    config_map_missing_key,
                )
            }),
        );
    }
    if let Some(source) = &volume.secret {
        let optional = source.optional.unwrap_or(false);
        let name = source.secret_name.as_deref().unwrap_or("");
        return Some(secret_entries(fetched, name, optional).and_then(|entries| {
            key_payload(
                &entries,
                source.items.as_ref(),
                source.default_mode.unwrap_or(DEFAULT_MODE),
                optional,
                secret_missing_key,
            )
        }));
    }
    if let Some(source) = &volume.downward_api {
        let items = source.items.as_deref().unwrap_or_default();
        let default_mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        return Some(downward_payload(items, default_mode, pod, facts));
    }
    let projected = volume.projected.as_ref()?;
    let default_mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    let mut errors = Vec::new();
    for (index, source) in projected.sources.iter().flatten().enumerate() {
        let part = if let Some(s) = &source.config_map {
            let optional = s.optional.unwrap_or(false);
            config_map_entries(fetched, &s.name, optional).and_then(|entries| {
                key_payload(
                    &entries,
                    s.items.as_ref(),
                    default_mode,
                    optional,
                    config_map_missing_key,
                )
            })
        } else if let Some(s) = &source.secret {
            let optional = s.optional.unwrap_or(false);
            secret_entries(fetched, &s.name, optional).and_then(|entries| {
                key_payload(
                    &entries,
                    s.items.as_ref(),
                    default_mode,
                    optional,
                    secret_missing_key,
                )
            })
        } else if let Some(d) = &source.downward_api {
            downward_payload(
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                pod,
                facts,
            )
        } else if let Some(t) = &source.service_account_token {
            fetched
                .token(&volume.name, index)
                .map(|token| {
                    Payload::from([(
                        t.path.clone(),
                        FileProjection {
                            data: token.as_bytes().to_vec(),
                            mode: mode(default_mode),
                        },
                    )])
                })
                .map_err(|e| e.to_string())
        } else {
            Ok(Payload::new())
        };
        match part {
            Ok(part) => payload.extend(part),
            Err(e) => errors.push(e),
        }
    }
    Some(match aggregate(&errors) {
        Some(message) => Err(message),
        None => Ok(payload),
    })
}

#[cfg(test)]
#[path = "projection_tests.rs"]
mod tests;
