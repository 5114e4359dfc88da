//! The one place that picks the binary codec for raft messages, log entries and snapshots.
//!
//! bincode is pinned at 2.0.1 (its 3.x line is an empty crate); keeping every call here means a
//! codec change touches one file.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Failure to encode or decode a value with the store's binary codec.
#[derive(Debug, thiserror::Error)]
#[error("codec: {0}")]
pub struct CodecError(String);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value` with the store's binary codec.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value written by [`encode`]; trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError(format!("{} trailing bytes", bytes.len() - read)));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_then_decode_returns_the_value(v in proptest::collection::vec((any::<u64>(), any::<Vec<u8>>()), 0..20)) {
            let bytes = encode(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back: Vec<(u64, Vec<u8>)> = decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, v);
        }
    }

    #[test]
    fn decode_rejects_trailing_bytes() {
        let mut bytes = encode(&7u64).expect("encode");
        bytes.push(0);
        assert!(decode::<u64>(&bytes).is_err());
    }
}
