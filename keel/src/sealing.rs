//! The cluster's private keys sealed in the store, as kubeadm's `--upload-certs` keeps the
//! control plane's certificates: the CA's key, the admin token and the ServiceAccount signing
//! key are stored encrypted (AES-256-GCM, the key's name bound in as associated data) under a
//! 32-byte certificate key that lives only in the masters' data dirs or where the operator puts
//! it, never in the keyspace. Someone with the store's client credentials, or a copy of its
//! files, reads ciphertext.
//!
//! The first master of a cluster makes the key (`<data-dir>/pki/certificate.key`); every other
//! master needs a copy, given with `--certificate-key-file` (`keel certificate-key` prints a
//! fresh one to share before the first start).

use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use anyhow::{bail, Context};
use rand::Rng;

/// What every sealed value starts with.
const SEALED: &[u8] = b"keel:sealed:aes256gcm:v1:";
const NONCE: usize = 12;

/// The key sealing the cluster's private keys.
pub struct CertificateKey {
    key: [u8; 32],
    /// Where it was read from (or written to), for messages.
    pub path: PathBuf,
    /// Made on this start (no file was there before).
    pub created: bool,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateKey({})", self.path.display())
    }
}

/// A stored value once opened.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// It was sealed, and this key opened it.
    Sealed(Vec<u8>),
    /// It was stored in the clear (by a version before sealing): seal it.
    Plain(Vec<u8>),
}

/// A new key, as the 64 hexadecimal digits its file holds.
pub fn new_key_hex() -> String {
    crate::rest::random_hex()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Where a master keeps its certificate key when not told otherwise.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join("certificate.key")
}

impl CertificateKey {
    /// The key in `file` if given (it must exist), else the one in the data dir, made there if
    /// there is none yet.
    pub fn load(data_dir: &Path, file: Option<&Path>) -> anyhow::Result<Self> {
        let (path, must_exist) = match file {
            Some(f) => (f.to_path_buf(), true),
            None => (default_path(data_dir), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = parse_hex(&text).with_context(|| {
                    format!(
                        "{}: a certificate key is 64 hexadecimal digits (keel certificate-key prints one)",
                        path.display()
                    )
                })?;
                Ok(Self {
                    key,
                    path,
                    created: false,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                let text = new_key_hex();
                if let Some(dir) = path.parent() {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(dir)?;
                }
                crate::rest::write_private(&path, &format!("{text}\n"))?;
                let key = parse_hex(&text).context("a fresh key")?;
                Ok(Self {
                    key,
                    path,
                    created: true,
                })
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    #[cfg(test)]
    fn from_bytes(key: [u8; 32]) -> Self {
        Self {
            key,
            path: PathBuf::from("test"),
            created: false,
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.key).into())
    }

    /// `value`, sealed for the store key `name`.
    pub fn seal(&self, name: &[u8], value: &[u8]) -> anyhow::Result<Vec<u8>> {
        let nonce: [u8; NONCE] = rand::rng().random();
        let sealed = self
            .cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: value,
                    aad: name,
                },
            )
            .map_err(|_| anyhow::anyhow!("sealing {}", String::from_utf8_lossy(name)))?;
        Ok([SEALED, &nonce[..], &sealed].concat())
    }

    /// The value stored at `name`, opened.
    pub fn open(&self, name: &[u8], stored: &[u8]) -> anyhow::Result<Opened> {
        let Some(body) = stored.strip_prefix(SEALED) else {
            return Ok(Opened::Plain(stored.to_vec()));
        };
        if body.len() < NONCE {
            bail!("{} is sealed but truncated", String::from_utf8_lossy(name));
        }
        let (nonce, sealed) = body.split_at(NONCE);
        match self.cipher().decrypt(
            nonce.into(),
            Payload {
                msg: sealed,
                aad: name,
            },
        ) {
            Ok(value) => Ok(Opened::Sealed(value)),
            Err(_) => bail!(
                "{} in the store is sealed with another certificate key than {}: every master \
                 needs the same key; start this one with --certificate-key-file pointing at a \
                 copy of the first master's <data-dir>/pki/certificate.key",
                String::from_utf8_lossy(name),
                self.path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_name_only() -> anyhow::Result<()> {
        let key = CertificateKey::from_bytes([7; 32]);
        let sealed = key.seal(b"/keel/pki/ca.key", b"-----BEGIN PRIVATE KEY-----")?;
        assert!(sealed.starts_with(SEALED));
        assert!(!sealed.windows(7).any(|w| w == b"PRIVATE"));
        assert_eq!(
            key.open(b"/keel/pki/ca.key", &sealed)?,
            Opened::Sealed(b"-----BEGIN PRIVATE KEY-----".to_vec())
        );
        // Moved to another key's place, it does not open.
        assert!(key.open(b"/keel/pki/admin-token", &sealed).is_err());
        let other = CertificateKey::from_bytes([8; 32]);
        let refused = other
            .open(b"/keel/pki/ca.key", &sealed)
            .expect_err("wrong key");
        assert!(
            refused.to_string().contains("--certificate-key-file"),
            "{refused}"
        );
        Ok(())
    }

    #[test]
    fn a_value_stored_in_the_clear_is_returned_to_be_sealed() -> anyhow::Result<()> {
        let key = CertificateKey::from_bytes([7; 32]);
        assert_eq!(
            key.open(b"/keel/pki/admin-token", b"abc")?,
            Opened::Plain(b"abc".to_vec())
        );
        Ok(())
    }

    #[test]
    fn a_key_is_made_once_in_the_data_dir_and_a_given_file_must_exist() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = CertificateKey::load(dir.path(), None)?;
        assert!(first.created);
        let again = CertificateKey::load(dir.path(), None)?;
        assert!(!again.created);
        assert_eq!(first.key, again.key);
        assert!(CertificateKey::load(dir.path(), Some(&dir.path().join("missing"))).is_err());
        let file = dir.path().join("shared.key");
        std::fs::write(&file, "not hex")?;
        assert!(CertificateKey::load(dir.path(), Some(&file)).is_err());
        std::fs::write(&file, format!("{}\n", new_key_hex()))?;
        assert!(!CertificateKey::load(dir.path(), Some(&file))?.created);
        Ok(())
    }
}
