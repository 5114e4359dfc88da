//! A container's environment as kubelet makes it (`makeEnvironmentVariables`): first every
//! key of each `envFrom` ConfigMap or Secret (prefixed; names that are not valid variable
//! names skipped and reported), then each `env` entry in order, later ones replacing earlier
//! ones of the same name. Literal values expand `$(VAR)` references to the variables defined
//! before them; `valueFrom` reads a ConfigMap or Secret key, a pod field or a container
//! resource. Service-link variables (`enableServiceLinks`) are not made.

use std::collections::{BTreeSet, HashMap};

use keel_client::k8s_openapi::api::core::v1::{Container, Pod};

use super::fieldpath::{env_field, find_container, resource_value};
use super::{expand, EnvError, Fetched, NodeFacts, SourceError, Sources};
use crate::cri::KeyValue;

/// A problem with a pod's environment that does not stop its container, reported as a
/// Warning Event on the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvWarning {
    /// The Event reason: `InvalidEnvironmentVariableNames`.
    pub reason: &'static str,
    pub message: String,
}

/// A container's environment and what was skipped in making it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub vars: Vec<KeyValue>,
    pub warnings: Vec<EnvWarning>,
}

/// The ConfigMaps and Secrets (by name) a container's environment reads.
pub fn env_references(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            config_maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (config_maps, secrets)
}

/// Reads what `container`'s environment refers to and makes it.
pub async fn resolve_env<S: Sources>(
    sources: &S,
    pod: &Pod,
    container: &Container,
    facts: &NodeFacts,
) -> Result<Env, EnvError> {
    let (config_maps, secrets) = env_references(container);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let fetched = Fetched::read(sources, namespace, &config_maps, &secrets).await;
    container_env(pod, container, facts, &fetched)
}

/// Variables in the order they were first defined, a later definition replacing the value.
#[derive(Default)]
struct Ordered {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl Ordered {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&at) => self.vars[at].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<String> {
        self.index.get(name).map(|&at| self.vars[at].1.clone())
    }
}

/// Kubernetes' `IsEnvVarName`: letters, digits, `_`, `-` and `.`, not starting with a digit.
pub(crate) fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    chars
        .next()
        .is_some_and(|c| allowed(c) && !c.is_ascii_digit())
        && chars.all(allowed)
}

/// Whether a read failure of an `optional` reference is skipped rather than failing.
fn skip(error: &SourceError, optional: Option<bool>) -> bool {
    error.is_not_found() && optional.unwrap_or(false)
}

/// Makes `container`'s environment from what was read for the pod.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &NodeFacts,
    fetched: &Fetched,
) -> Result<Env, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut vars = Ordered::default();
    let mut warnings = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (source, name, entries): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &from.config_map_ref {
                match fetched.config_map(&r.name) {
                    Ok(cm) => (
                        "configMap",
                        r.name.as_str(),
                        cm.data.clone().unwrap_or_default().into_iter().collect(),
                    ),
                    Err(e) if skip(&e, r.optional) => continue,
                    Err(e) => return Err(EnvError(e.to_string())),
                }
            } else if let Some(r) = &from.secret_ref {
                match fetched.secret(&r.name) {
                    Ok(secret) => (
                        "secret",
                        r.name.as_str(),
                        secret
                            .data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    Err(e) if skip(&e, r.optional) => continue,
                    Err(e) => return Err(EnvError(e.to_string())),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (key, value) in entries {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                vars.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(EnvWarning {
                reason: "InvalidEnvironmentVariableNames",
                message: format!(
                    "Keys [{}] from the EnvFrom {source} {namespace}/{name} were skipped since they are considered invalid environment variable names.",
                    invalid.join(", ")
                ),
            });
        }
    }
    for var in container.env.iter().flatten() {
        let literal = var.value.as_deref().unwrap_or("");
        let value = if !literal.is_empty() {
            expand(literal, |name| vars.get(name))
        } else if let Some(from) = &var.value_from {
            match value_from(pod, container, facts, fetched, namespace, from)? {
                Some(value) => value,
                None => continue,
            }
        } else {
            String::new()
        };
        vars.set(var.name.clone(), value);
    }
    Ok(Env {
        vars: vars
            .vars
            .into_iter()
            .map(|(key, value)| KeyValue { key, value })
            .collect(),
        warnings,
    })
}

/// The value of one `valueFrom`, or `None` when an optional source or key is absent.
fn value_from(
    pod: &Pod,
    container: &Container,
    facts: &NodeFacts,
    fetched: &Fetched,
    namespace: &str,
    from: &keel_client::k8s_openapi::api::core::v1::EnvVarSource,
) -> Result<Option<String>, EnvError> {
    if let Some(field) = &from.field_ref {
        return env_field(pod, &field.field_path, facts)
            .map(Some)
            .map_err(EnvError);
    }
    if let Some(r) = &from.resource_field_ref {
        // A reference may name another container of the pod; by default it is this one.
        let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => find_container(pod, name)
                .ok_or_else(|| EnvError(format!("container {name} not found")))?,
            None => container,
        };
        let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
        return resource_value(&r.resource, divisor, target, facts)
            .map(Some)
            .map_err(EnvError);
    }
    if let Some(r) = &from.config_map_key_ref {
        let cm = match fetched.config_map(&r.name) {
            Ok(cm) => cm,
            Err(e) if skip(&e, r.optional) => return Ok(None),
            Err(e) => return Err(EnvError(e.to_string())),
        };
        return match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(value) => Ok(Some(value.clone())),
            None if r.optional.unwrap_or(false) => Ok(None),
            None => Err(EnvError(format!(
                "couldn't find key {} in ConfigMap {namespace}/{}",
                r.key, r.name
            ))),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let secret = match fetched.secret(&r.name) {
            Ok(secret) => secret,
            Err(e) if skip(&e, r.optional) => return Ok(None),
            Err(e) => return Err(EnvError(e.to_string())),
        };
        return match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(value) => Ok(Some(String::from_utf8_lossy(&value.0).into_owned())),
            None if r.optional.unwrap_or(false) => Ok(None),
            None => Err(EnvError(format!(
                "couldn't find key {} in Secret {namespace}/{}",
                r.key, r.name
            ))),
        };
    }
    Ok(Some(String::new()))
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
