//! Crash-time disk faults: while a member is down, cut or flip bytes in the tail of its most
//! recently written files (the write-ahead log, the newest table), as a crash in the middle of a
//! write or a bad sector would leave them.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::Serialize;

use crate::Error;

/// What was done to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Damage {
    pub file: PathBuf,
    pub len: u64,
    /// Bytes cut off the end.
    pub truncated: u64,
    /// Offsets whose byte was flipped.
    pub flipped: Vec<u64>,
}

fn files(dir: &Path, out: &mut Vec<(std::time::SystemTime, PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            files(&path, out);
        } else if meta.len() > 0 {
            let name = e.file_name().to_string_lossy().into_owned();
            // Lock files and human-readable logs say nothing about the data.
            if name == "LOCK" || name.starts_with("LOG") {
                continue;
            }
            out.push((
                meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                path,
                meta.len(),
            ));
        }
    }
}

/// The `n` most recently modified non-empty files under `dir`.
pub fn newest_files(dir: &Path, n: usize) -> Vec<(PathBuf, u64)> {
    let mut all = Vec::new();
    files(dir, &mut all);
    all.sort_by_key(|f| std::cmp::Reverse(f.0));
    all.into_iter().take(n).map(|(_, p, l)| (p, l)).collect()
}

/// Truncates (`truncate`) or flips a few bytes within the last 4 KiB of `file`.
pub fn damage(file: &Path, len: u64, truncate: bool, rng: &mut impl Rng) -> Result<Damage, Error> {
    let window = len.min(4096);
    let mut d = Damage {
        file: file.to_path_buf(),
        len,
        truncated: 0,
        flipped: Vec::new(),
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| Error::io(file, e))?;
    if truncate {
        let cut = rng.random_range(1..=window.max(1)).min(len);
        f.set_len(len - cut).map_err(|e| Error::io(file, e))?;
        d.truncated = cut;
    } else {
        for _ in 0..rng.random_range(1..=8) {
            let at = len - 1 - rng.random_range(0..window);
            let mut b = [0u8];
            f.seek(SeekFrom::Start(at))
                .map_err(|e| Error::io(file, e))?;
            f.read_exact(&mut b).map_err(|e| Error::io(file, e))?;
            b[0] ^= rng.random_range(1..=255u8);
            f.seek(SeekFrom::Start(at))
                .map_err(|e| Error::io(file, e))?;
            f.write_all(&b).map_err(|e| Error::io(file, e))?;
            d.flipped.push(at);
        }
    }
    f.sync_all().map_err(|e| Error::io(file, e))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn damage_cuts_or_changes_only_the_tail() -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("kj-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let path = dir.join("000012.log");
        let original = vec![7u8; 10_000];
        std::fs::write(&path, &original).map_err(|e| Error::io(&path, e))?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let d = damage(&path, 10_000, false, &mut rng)?;
        let after = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        assert_eq!(after.len(), 10_000);
        assert_eq!(after[..10_000 - 4096], original[..10_000 - 4096]);
        assert!(d.flipped.iter().all(|o| after[*o as usize] != 7));
        let d = damage(&path, 10_000, true, &mut rng)?;
        assert!(d.truncated >= 1 && d.truncated <= 4096);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        assert_eq!(len, 10_000 - d.truncated);
        assert_eq!(newest_files(&dir, 5), vec![(path.clone(), len)]);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
