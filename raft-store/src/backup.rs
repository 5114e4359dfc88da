//! Backups: the file `etcdctl snapshot save` writes from Maintenance Snapshot, and restoring one
//! into the data dir of a new member.
//!
//! The file is framed as etcd frames its snapshot stream: a body whose size is a multiple of 512
//! bytes (etcdctl checks this) followed by the SHA-256 of the body, so a truncated or damaged
//! download is caught before anything is written. The body is the store snapshot's length (8
//! bytes, big-endian), the snapshot, and zero padding.

use std::path::Path;

use ring::digest::{digest, SHA256, SHA256_OUTPUT_LEN};

use crate::storage::snapshot::{self, Restored};
use crate::storage::{StorageError, StoreState};

fn corrupt(detail: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what: "snapshot file",
        detail: detail.to_string(),
    }
}

/// Body sizes are multiples of this (a bolt page in etcd's files).
const BLOCK: usize = 512;
const LEN_BYTES: usize = 8;

/// A snapshot of `state` as it is now, framed as a backup file.
pub fn save(state: &StoreState) -> Result<Vec<u8>, StorageError> {
    Ok(frame(&snapshot::export(state)?))
}

fn frame(snapshot: &[u8]) -> Vec<u8> {
    let body_len = (LEN_BYTES + snapshot.len()).div_ceil(BLOCK) * BLOCK;
    let mut out = Vec::with_capacity(body_len + SHA256_OUTPUT_LEN);
    out.extend_from_slice(&(snapshot.len() as u64).to_be_bytes());
    out.extend_from_slice(snapshot);
    out.resize(body_len, 0);
    let sum = digest(&SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    out
}

/// Checks a backup's trailing SHA-256 and returns the snapshot before it.
pub fn verify(file: &[u8]) -> Result<&[u8], StorageError> {
    if file.len() <= SHA256_OUTPUT_LEN {
        return Err(corrupt(format!("{} bytes is too short", file.len())));
    }
    let (body, sum) = file.split_at(file.len() - SHA256_OUTPUT_LEN);
    if digest(&SHA256, body).as_ref() != sum {
        return Err(corrupt("integrity check failed: SHA-256 mismatch"));
    }
    let (len, rest) = body.split_at(LEN_BYTES.min(body.len()));
    let len = u64::from_be_bytes(len.try_into().map_err(|_| corrupt("no length"))?) as usize;
    let snapshot = rest
        .get(..len)
        .ok_or_else(|| corrupt(format!("length {len} exceeds the file")))?;
    snapshot::verify(snapshot)?;
    Ok(snapshot)
}

/// Restores the backup at `file` into `data_dir`, which must not exist or be empty. Nothing is
/// left behind when the backup is refused.
pub fn restore(file: &Path, data_dir: &Path) -> Result<Restored, StorageError> {
    let bytes = std::fs::read(file)?;
    let body = verify(&bytes)?;
    if data_dir.exists() && std::fs::read_dir(data_dir)?.next().is_some() {
        return Err(StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("data dir {} exists and is not empty", data_dir.display()),
        )));
    }
    match snapshot::restore(body, data_dir) {
        Ok(done) => Ok(done),
        Err(e) => {
            let _ = std::fs::remove_dir_all(data_dir);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_whole_blocks_plus_a_checksum_and_unwrap_to_the_snapshot() {
        for len in [0usize, 1, 503, 504, 505, 4096] {
            let framed = frame(&vec![7u8; len]);
            assert_eq!(framed.len() % BLOCK, SHA256_OUTPUT_LEN, "len {len}");
        }
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let framed = frame(b"not a real snapshot, but framed");
        for i in (0..framed.len()).step_by(37) {
            let mut bad = framed.clone();
            bad[i] ^= 1;
            assert!(verify(&bad).is_err(), "byte {i}");
        }
    }
}
