//! Revisions: the (main, sub) pair etcd orders every change by, and its on-disk key form.

/// A position in the store's history: `main` is bumped once per write request, `sub` counts the
/// changes inside that request (a txn may change several keys at one main revision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// Big-endian bytes, so RocksDB's byte order equals revision order.
    pub fn to_key(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        out[8..].copy_from_slice(&(self.sub as u64).to_be_bytes());
        out
    }

    pub fn from_key(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 16 {
            return None;
        }
        let main = u64::from_be_bytes(bytes[..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(bytes[8..].try_into().ok()?) as i64;
        Some(Self { main, sub })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn key_order_is_revision_order(a in (0i64..i64::MAX, 0i64..1000), b in (0i64..i64::MAX, 0i64..1000)) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(ra.cmp(&rb), ra.to_key().cmp(&rb.to_key()));
            prop_assert_eq!(Revision::from_key(&ra.to_key()), Some(ra));
        }
    }
}
