//! The encryption providers of kube-apiserver, with its storage format so that data written
//! by one reads in the other: `k8s:enc:<provider>:v1:<key name>:` followed by
//! - aesgcm: a 12-byte random nonce, then AES-GCM ciphertext and tag, the storage key as
//!   additional authenticated data (a value moved to another key does not decrypt);
//! - aescbc: a 16-byte random IV, then AES-CBC ciphertext with PKCS#7 padding;
//! - secretbox: a 24-byte random nonce, then XSalsa20-Poly1305 ciphertext and tag.
//!
//! identity stores plaintext.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use crypto_secretbox::XSalsa20Poly1305;
use rand::RngCore;

type Aes192Gcm = AesGcm<aes::Aes192, aes_gcm::aead::consts::U12>;

/// A symmetric cipher with its key.
#[derive(Clone)]
pub enum Cipher {
    AesGcm(Vec<u8>),
    AesCbc(Vec<u8>),
    Secretbox(Vec<u8>),
}

impl std::fmt::Debug for Cipher {
    // Keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

/// One provider: a named key of a cipher, or identity.
#[derive(Debug, Clone)]
pub enum Provider {
    Identity,
    Key { name: String, cipher: Cipher },
}

impl Cipher {
    /// AES-GCM with a 16, 24 or 32-byte key.
    pub fn aes_gcm(key: &[u8]) -> Result<Cipher, String> {
        match key.len() {
            16 | 24 | 32 => Ok(Cipher::AesGcm(key.to_vec())),
            n => Err(format!("aesgcm keys are 16, 24 or 32 bytes, not {n}")),
        }
    }

    /// AES-CBC with a 32-byte key, as kube-apiserver requires.
    pub fn aes_cbc(key: &[u8]) -> Result<Cipher, String> {
        match key.len() {
            32 => Ok(Cipher::AesCbc(key.to_vec())),
            n => Err(format!("aescbc keys are 32 bytes, not {n}")),
        }
    }

    /// XSalsa20-Poly1305 with a 32-byte key.
    pub fn secretbox(key: &[u8]) -> Result<Cipher, String> {
        match key.len() {
            32 => Ok(Cipher::Secretbox(key.to_vec())),
            n => Err(format!("secretbox keys are 32 bytes, not {n}")),
        }
    }

    /// The provider's name in the storage prefix.
    pub fn kind(&self) -> &'static str {
        match self {
            Cipher::AesGcm(_) => "aesgcm",
            Cipher::AesCbc(_) => "aescbc",
            Cipher::Secretbox(_) => "secretbox",
        }
    }

    /// `plaintext` encrypted (nonce or IV first), `context` (the storage key) authenticated
    /// where the cipher can.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| "encryption failed".to_owned();
        match self {
            Cipher::AesGcm(key) => {
                let mut nonce = [0u8; 12];
                rand::rng().fill_bytes(&mut nonce);
                let payload = Payload {
                    msg: plaintext,
                    aad: context,
                };
                let sealed = match key.len() {
                    16 => Aes128Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .encrypt(&nonce.into(), payload),
                    24 => Aes192Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .encrypt(&nonce.into(), payload),
                    _ => Aes256Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .encrypt(&nonce.into(), payload),
                }
                .map_err(failed)?;
                Ok([nonce.as_slice(), &sealed].concat())
            }
            Cipher::AesCbc(key) => {
                let mut iv = [0u8; 16];
                rand::rng().fill_bytes(&mut iv);
                let sealed = cbc::Encryptor::<aes::Aes256>::new_from_slices(key, &iv)
                    .map_err(|_| "bad key".to_owned())?
                    .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
                Ok([iv.as_slice(), &sealed].concat())
            }
            Cipher::Secretbox(key) => {
                let mut nonce = [0u8; 24];
                rand::rng().fill_bytes(&mut nonce);
                let sealed = XSalsa20Poly1305::new_from_slice(key)
                    .map_err(|_| "bad key".to_owned())?
                    .encrypt(&nonce.into(), plaintext)
                    .map_err(failed)?;
                Ok([nonce.as_slice(), &sealed].concat())
            }
        }
    }

    /// The inverse of [`seal`](Cipher::seal).
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, String> {
        let failed = |_| {
            format!(
                "{} decryption failed (wrong key, or the data was altered)",
                self.kind()
            )
        };
        let short = || format!("{} data is too short", self.kind());
        match self {
            Cipher::AesGcm(key) => {
                if sealed.len() < 12 {
                    return Err(short());
                }
                let (nonce, body) = sealed.split_at(12);
                let nonce = aes_gcm::Nonce::from_slice(nonce);
                let payload = Payload {
                    msg: body,
                    aad: context,
                };
                match key.len() {
                    16 => Aes128Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .decrypt(nonce, payload),
                    24 => Aes192Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .decrypt(nonce, payload),
                    _ => Aes256Gcm::new_from_slice(key)
                        .map_err(|_| "bad key".to_owned())?
                        .decrypt(nonce, payload),
                }
                .map_err(failed)
            }
            Cipher::AesCbc(key) => {
                if sealed.len() < 32 || !sealed.len().is_multiple_of(16) {
                    return Err(short());
                }
                let (iv, body) = sealed.split_at(16);
                cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
                    .map_err(|_| "bad key".to_owned())?
                    .decrypt_padded_vec_mut::<Pkcs7>(body)
                    .map_err(|_| {
                        format!(
                            "{} decryption failed (wrong key, or the data was altered)",
                            self.kind()
                        )
                    })
            }
            Cipher::Secretbox(key) => {
                if sealed.len() < 24 {
                    return Err(short());
                }
                let (nonce, body) = sealed.split_at(24);
                XSalsa20Poly1305::new_from_slice(key)
                    .map_err(|_| "bad key".to_owned())?
                    .decrypt(crypto_secretbox::Nonce::from_slice(nonce), body)
                    .map_err(failed)
            }
        }
    }
}

impl Provider {
    /// The storage prefix of what this provider writes (empty for identity).
    pub fn prefix(&self) -> String {
        match self {
            Provider::Identity => String::new(),
            Provider::Key { name, cipher } => format!("k8s:enc:{}:v1:{name}:", cipher.kind()),
        }
    }
}
