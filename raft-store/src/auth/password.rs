//! Password hashes for the auth store: PBKDF2-HMAC-SHA256 with a random salt, computed by the
//! member that receives the request before it is proposed, so neither the raft log nor the
//! store ever holds a password. (etcd uses bcrypt for the same job; the hash never leaves the
//! store, so its format is ours.)

use std::num::NonZeroU32;

use rand::Rng;
use ring::pbkdf2;

const ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA256;
const SCHEME: &str = "pbkdf2-sha256";
/// Iterations for new hashes: tens of milliseconds per check, as bcrypt's default cost.
const ITERATIONS: u32 = 100_000;
const SALT: usize = 16;
const OUTPUT: usize = 32;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The stored form of `password`: scheme, iterations, salt and derived key.
pub fn hash(password: &str) -> String {
    let salt: [u8; SALT] = rand::rng().random();
    let mut out = [0u8; OUTPUT];
    let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(ALGORITHM, iterations, &salt, password.as_bytes(), &mut out);
    format!("{SCHEME}${ITERATIONS}${}${}", hex(&salt), hex(&out))
}

/// Whether `password` matches `stored` (a value [`hash`] made); false for anything malformed.
pub fn verify(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(key), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Some(salt), Some(key)) = (
        iterations.parse::<u32>().ok().and_then(NonZeroU32::new),
        unhex(salt),
        unhex(key),
    ) else {
        return false;
    };
    pbkdf2::verify(ALGORITHM, iterations, &salt, password.as_bytes(), &key).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_is_salted() {
        let a = hash("secret");
        assert!(verify(&a, "secret"));
        assert!(!verify(&a, "Secret"));
        assert_ne!(a, hash("secret"), "each hash has its own salt");
        assert!(!a.contains("secret"));
    }

    #[test]
    fn malformed_hashes_verify_nothing() {
        for bad in [
            "",
            "secret",
            "pbkdf2-sha256$0$00$00",
            "pbkdf2-sha256$10$zz$00",
            "md5$1$00$00",
        ] {
            assert!(!verify(bad, "secret"), "{bad}");
        }
    }
}
