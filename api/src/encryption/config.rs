//! kube-apiserver's EncryptionConfiguration (`apiserver.config.k8s.io/v1`), read from the file
//! `--encryption-provider-config` names, YAML or JSON: per list of resources, the providers in
//! order (the first encrypts new writes; every one can decrypt what it wrote).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;

use super::providers::{Cipher, Provider};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    api_version: String,
    kind: String,
    resources: Vec<ResourceRule>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceRule {
    resources: Vec<String>,
    providers: Vec<ProviderSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProviderSpec {
    aesgcm: Option<Keys>,
    aescbc: Option<Keys>,
    secretbox: Option<Keys>,
    identity: Option<serde_json::Value>,
    kms: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    keys: Vec<Key>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    name: String,
    secret: String,
}

/// How a provider type makes its cipher from a key.
type CipherOf = fn(&[u8]) -> Result<Cipher, String>;

/// The providers of one group of resources.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Plural resource names, `resource.group` for other groups (e.g. `secrets`,
    /// `configmaps`, `deployments.apps`), or `*.` / `*.group` wildcards.
    pub resources: Vec<String>,
    pub providers: Vec<Provider>,
}

/// Parses an EncryptionConfiguration; every error names what is wrong, as kube-apiserver
/// refuses to start on a bad file.
pub fn parse(text: &str) -> Result<Vec<Rule>, String> {
    let file: File = serde_norway::from_str(text)
        .map_err(|e| format!("invalid EncryptionConfiguration: {e}"))?;
    if file.kind != "EncryptionConfiguration" || file.api_version != "apiserver.config.k8s.io/v1" {
        return Err(format!(
            "expected kind EncryptionConfiguration of apiserver.config.k8s.io/v1, got {} of {}",
            file.kind, file.api_version
        ));
    }
    let mut rules = Vec::new();
    for (i, rule) in file.resources.into_iter().enumerate() {
        if rule.resources.is_empty() {
            return Err(format!(
                "resources[{i}].resources: must name at least one resource"
            ));
        }
        if rule.providers.is_empty() {
            return Err(format!(
                "resources[{i}].providers: must name at least one provider"
            ));
        }
        let mut providers = Vec::new();
        for (j, spec) in rule.providers.into_iter().enumerate() {
            let at = format!("resources[{i}].providers[{j}]");
            providers.extend(provider(&at, spec)?);
        }
        rules.push(Rule {
            resources: rule.resources,
            providers,
        });
    }
    Ok(rules)
}

fn provider(at: &str, spec: ProviderSpec) -> Result<Vec<Provider>, String> {
    let given = [
        spec.aesgcm.is_some(),
        spec.aescbc.is_some(),
        spec.secretbox.is_some(),
        spec.identity.is_some(),
        spec.kms.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(format!("{at}: exactly one provider type must be given"));
    }
    if spec.kms.is_some() {
        return Err(format!("{at}: kms providers are not supported"));
    }
    if spec.identity.is_some() {
        return Ok(vec![Provider::Identity]);
    }
    let (kind, keys): (CipherOf, Keys) = match (spec.aesgcm, spec.aescbc, spec.secretbox) {
        (Some(keys), _, _) => (Cipher::aes_gcm, keys),
        (_, Some(keys), _) => (Cipher::aes_cbc, keys),
        (_, _, Some(keys)) => (Cipher::secretbox, keys),
        _ => return Err(format!("{at}: no provider given")),
    };
    if keys.keys.is_empty() {
        return Err(format!("{at}.keys: must hold at least one key"));
    }
    keys.keys
        .into_iter()
        .enumerate()
        .map(|(k, key)| {
            if key.name.is_empty() || key.name.contains(':') {
                return Err(format!(
                    "{at}.keys[{k}].name: must be non-empty and contain no ':'"
                ));
            }
            let secret = STANDARD
                .decode(key.secret.trim())
                .map_err(|e| format!("{at}.keys[{k}].secret: not base64: {e}"))?;
            let cipher = kind(&secret).map_err(|e| format!("{at}.keys[{k}].secret: {e}"))?;
            Ok(Provider::Key {
                name: key.name,
                cipher,
            })
        })
        .collect()
}
