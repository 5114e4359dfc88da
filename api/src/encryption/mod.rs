//! Encryption at rest, as kube-apiserver's `--encryption-provider-config` does it: values of
//! the configured resources are encrypted by the first provider of their rule when written to
//! the store and decrypted by whichever provider's prefix they carry when read, so that
//! `etcdctl get /registry/secrets/…` shows only `k8s:enc:aesgcm:v1:<key>:` and ciphertext.
//! Keys rotate as on Kubernetes: put the new key first, restart, rewrite every object
//! (`kubectl get secrets -A -o json | kubectl replace -f -`; an unchanged object read with an
//! older key is written again), then drop the old key.

pub mod config;
pub mod providers;

use keel_types::kinds;

pub use config::Rule;
pub use providers::{Cipher, Provider};

/// Where the encrypted resources' keys start.
const REGISTRY: &str = "/registry/";
/// What every encrypted value starts with.
const ENCRYPTED: &[u8] = b"k8s:enc:";

/// Transforms values between what the API server holds and what the store keeps.
#[derive(Debug, Clone, Default)]
pub struct Transformer {
    rules: Vec<Rule>,
}

impl Transformer {
    /// The transformer an EncryptionConfiguration file describes.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        Ok(Self {
            rules: config::parse(&text)?,
        })
    }

    pub fn from_rules(rules: Vec<Rule>) -> Self {
        Self { rules }
    }

    /// The rule for the object stored at `key`: the first naming its resource.
    fn rule_for(&self, key: &[u8]) -> Option<&Rule> {
        let key = std::str::from_utf8(key).ok()?;
        let plural = key.strip_prefix(REGISTRY)?.split('/').next()?;
        let group = kinds::all()
            .iter()
            .find(|info| info.plural == plural)
            .map_or("", |info| info.group);
        let qualified = if group.is_empty() {
            plural.to_owned()
        } else {
            format!("{plural}.{group}")
        };
        self.rules.iter().find(|rule| {
            rule.resources.iter().any(|r| {
                r == &qualified
                    || r == "*.*"
                    || (group.is_empty() && r == "*.")
                    || r.strip_prefix("*.")
                        .is_some_and(|g| !g.is_empty() && g == group)
            })
        })
    }

    /// The value to store for `value` at `key`.
    pub fn to_storage(&self, key: &[u8], value: Vec<u8>) -> Result<Vec<u8>, String> {
        let Some(rule) = self.rule_for(key) else {
            return Ok(value);
        };
        match rule.providers.first() {
            None | Some(Provider::Identity) => Ok(value),
            Some(provider @ Provider::Key { cipher, .. }) => {
                let sealed = cipher.seal(&value, key)?;
                Ok([provider.prefix().as_bytes(), &sealed].concat())
            }
        }
    }

    /// The value held for what the store keeps at `key`.
    pub fn from_storage(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, String> {
        let rule = self.rule_for(key);
        if !stored.starts_with(ENCRYPTED) {
            // Plaintext reads only where identity is among the providers (or no rule applies),
            // as on Kubernetes.
            return match rule {
                Some(rule)
                    if !rule
                        .providers
                        .iter()
                        .any(|p| matches!(p, Provider::Identity)) =>
                {
                    Err(
                        "the value is not encrypted and identity is not a configured provider"
                            .into(),
                    )
                }
                _ => Ok(stored),
            };
        }
        // Any rule's key may have written it (the resource may have moved between rules).
        let providers = rule
            .into_iter()
            .chain(self.rules.iter())
            .flat_map(|r| r.providers.iter());
        for provider in providers {
            let Provider::Key { cipher, .. } = provider else {
                continue;
            };
            if let Some(sealed) = stored.strip_prefix(provider.prefix().as_bytes()) {
                return cipher.open(sealed, key);
            }
        }
        let prefix: String = String::from_utf8_lossy(&stored[..stored.len().min(64)])
            .split(':')
            .take(5)
            .collect::<Vec<_>>()
            .join(":");
        Err(format!(
            "no configured key decrypts values written as {prefix}:"
        ))
    }

    /// Whether the value stored at `key` was written other than the way a write would store
    /// it now (an older key, or plaintext where a key is first): a rewrite would change it.
    pub fn is_stale(&self, key: &[u8], stored: &[u8]) -> bool {
        let Some(rule) = self.rule_for(key) else {
            return false;
        };
        match rule.providers.first() {
            None | Some(Provider::Identity) => stored.starts_with(ENCRYPTED),
            Some(first) => !stored.starts_with(first.prefix().as_bytes()),
        }
    }

    /// Whether any resource is encrypted.
    pub fn is_active(&self) -> bool {
        !self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests;
