//! Shipping a snapshot to a follower in checksummed chunks.
//!
//! The leader cuts the snapshot into [`CHUNK_BYTES`] pieces; each carries its offset and an
//! FNV-1a checksum of its bytes, and the first carries the vote and snapshot metadata. The
//! follower's [`Assembler`] refuses a chunk that is out of order, damaged or beyond the announced
//! size, and hands over the snapshot only once all of it arrived and the snapshot's own checksum
//! holds: openraft treats a failed install as fatal, so nothing doubtful may reach it.

use keel_proto::keelpb::SnapshotChunk;

use crate::codec;
use crate::storage::snapshot::checksum;
use crate::types::{SnapshotMeta, Vote};

/// Bytes per chunk: small enough to keep memory per message modest, large enough that a
/// gigabyte is a thousand messages.
pub const CHUNK_BYTES: usize = 1 << 20;

/// The largest snapshot a follower accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 16 << 30;

/// Why a chunked transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("snapshot transfer: the first chunk carries no vote and metadata")]
    NoHeader,
    #[error("snapshot transfer: undecodable header: {0}")]
    BadHeader(String),
    #[error("snapshot transfer: chunk at offset {got}, expected {expected}")]
    OutOfOrder { expected: u64, got: u64 },
    #[error("snapshot transfer: chunk at offset {offset} fails its checksum")]
    Checksum { offset: u64 },
    #[error("snapshot transfer: {total} bytes is more than the {limit} accepted")]
    TooLarge { total: u64, limit: u64 },
    #[error("snapshot transfer: chunks overrun the announced {total} bytes")]
    Overrun { total: u64 },
    #[error("snapshot transfer: ended at {received} of {total} bytes")]
    Incomplete { received: u64, total: u64 },
    #[error("snapshot transfer: {0}")]
    Corrupt(String),
}

/// Cuts a snapshot into the chunks that carry it.
pub fn chunks(vote: &Vote, meta: &SnapshotMeta, data: &[u8]) -> Result<Vec<SnapshotChunk>, String> {
    let header = codec::encode(&(vote, meta)).map_err(|e| e.to_string())?;
    let total = data.len() as u64;
    let mut out: Vec<SnapshotChunk> = data
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, piece)| SnapshotChunk {
            header: Vec::new(),
            offset: (i * CHUNK_BYTES) as u64,
            data: piece.to_vec(),
            checksum: checksum(piece),
            total,
        })
        .collect();
    if out.is_empty() {
        out.push(SnapshotChunk {
            header: Vec::new(),
            offset: 0,
            data: Vec::new(),
            checksum: checksum(&[]),
            total,
        });
    }
    out[0].header = header;
    Ok(out)
}

/// Reassembles a snapshot from its chunks, checking each as it arrives.
#[derive(Debug, Default)]
pub struct Assembler {
    header: Option<(Vote, SnapshotMeta)>,
    total: u64,
    data: Vec<u8>,
}

impl Assembler {
    pub fn push(&mut self, chunk: SnapshotChunk) -> Result<(), TransferError> {
        if self.header.is_none() {
            if chunk.header.is_empty() {
                return Err(TransferError::NoHeader);
            }
            let header = codec::decode(&chunk.header)
                .map_err(|e| TransferError::BadHeader(e.to_string()))?;
            if chunk.total > MAX_SNAPSHOT_BYTES {
                return Err(TransferError::TooLarge {
                    total: chunk.total,
                    limit: MAX_SNAPSHOT_BYTES,
                });
            }
            self.header = Some(header);
            self.total = chunk.total;
            // The announced size is the sender's word: reserve a bounded amount, grow as bytes
            // actually arrive.
            self.data
                .reserve((chunk.total as usize).min(CHUNK_BYTES * 64));
        }
        let expected = self.data.len() as u64;
        if chunk.offset != expected {
            return Err(TransferError::OutOfOrder {
                expected,
                got: chunk.offset,
            });
        }
        if checksum(&chunk.data) != chunk.checksum {
            return Err(TransferError::Checksum {
                offset: chunk.offset,
            });
        }
        if expected + chunk.data.len() as u64 > self.total {
            return Err(TransferError::Overrun { total: self.total });
        }
        self.data.extend_from_slice(&chunk.data);
        Ok(())
    }

    /// The whole snapshot, once every byte arrived and the snapshot verifies.
    pub fn finish(self) -> Result<(Vote, SnapshotMeta, Vec<u8>), TransferError> {
        let (vote, meta) = self.header.ok_or(TransferError::NoHeader)?;
        let received = self.data.len() as u64;
        if received != self.total {
            return Err(TransferError::Incomplete {
                received,
                total: self.total,
            });
        }
        crate::storage::verify_snapshot(&self.data)
            .map_err(|e| TransferError::Corrupt(e.to_string()))?;
        Ok((vote, meta, self.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real (empty-state) snapshot's bytes would need a database; the assembler's own checks
    /// run before the snapshot's, so any bytes exercise them.
    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn vote() -> Vote {
        Vote::new(3, 1)
    }

    fn assemble(chunks: Vec<SnapshotChunk>) -> Result<Assembler, TransferError> {
        let mut a = Assembler::default();
        for c in chunks {
            a.push(c)?;
        }
        Ok(a)
    }

    #[test]
    fn chunks_in_order_reassemble_byte_for_byte() {
        let data = sample(CHUNK_BYTES * 2 + 123);
        let parts = chunks(&vote(), &SnapshotMeta::default(), &data).unwrap();
        assert_eq!(parts.len(), 3);
        let a = assemble(parts).unwrap();
        assert_eq!(a.data, data);
        // The bytes are not a snapshot, so the last check refuses them.
        assert!(matches!(a.finish(), Err(TransferError::Corrupt(_))));
    }

    #[test]
    fn a_damaged_chunk_is_refused() {
        let data = sample(CHUNK_BYTES + 10);
        let mut parts = chunks(&vote(), &SnapshotMeta::default(), &data).unwrap();
        parts[1].data[3] ^= 0x10;
        assert_eq!(
            assemble(parts).unwrap_err(),
            TransferError::Checksum {
                offset: CHUNK_BYTES as u64
            }
        );
    }

    #[test]
    fn a_missing_or_repeated_chunk_is_refused() {
        let data = sample(CHUNK_BYTES * 3);
        let parts = chunks(&vote(), &SnapshotMeta::default(), &data).unwrap();
        let skipped = vec![parts[0].clone(), parts[2].clone()];
        assert!(matches!(
            assemble(skipped),
            Err(TransferError::OutOfOrder { .. })
        ));
        let repeated = vec![parts[0].clone(), parts[1].clone(), parts[1].clone()];
        assert!(matches!(
            assemble(repeated),
            Err(TransferError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_transfer_without_its_header_or_end_is_refused() {
        let data = sample(CHUNK_BYTES + 1);
        let parts = chunks(&vote(), &SnapshotMeta::default(), &data).unwrap();
        assert_eq!(
            assemble(vec![parts[1].clone()]).unwrap_err(),
            TransferError::NoHeader
        );
        let first_only = assemble(vec![parts[0].clone()]).unwrap();
        assert!(matches!(
            first_only.finish(),
            Err(TransferError::Incomplete { .. })
        ));
    }

    #[test]
    fn an_oversized_announcement_is_refused_up_front() {
        let mut parts = chunks(&vote(), &SnapshotMeta::default(), &sample(10)).unwrap();
        parts[0].total = MAX_SNAPSHOT_BYTES + 1;
        assert!(matches!(
            assemble(parts),
            Err(TransferError::TooLarge { .. })
        ));
    }
}
