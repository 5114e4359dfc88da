//! A master's data dir is its owner's alone, as etcd keeps its own (directories 0700, files
//! 0600): the store's files hold every Secret and the cluster's keys. New files are created
//! private by the process's file-creation mask, and a data dir left open by an older version or
//! by hand is closed again at start.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Bits no file or directory in the data dir keeps: everything for group and others.
const OPEN_BITS: u32 = 0o077;

/// From now on this process creates files and directories for its owner only (RocksDB and the
/// write-ahead log create theirs with the library's default of 0644).
pub fn restrict_new_files() {
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(OPEN_BITS));
}

/// Creates `dir` (0700) or closes it and everything under it to everyone but its owner.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the data dir {}", dir.display()))?;
    let opened = close_tree(dir).with_context(|| format!("making {} private", dir.display()))?;
    if opened > 0 {
        tracing::warn!(
            dir = %dir.display(),
            entries = opened,
            "the data dir was open to others; made it private (directories 700, files 600)"
        );
    }
    Ok(())
}

/// Removes group and other permissions from `path` and everything under it; returns how many
/// entries had any. Symbolic links are not followed.
fn close_tree(path: &Path) -> std::io::Result<usize> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(0);
    }
    let mut opened = 0;
    let mode = meta.permissions().mode();
    if mode & OPEN_BITS != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !OPEN_BITS))?;
        opened += 1;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            opened += close_tree(&entry?.path())?;
        }
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn the_data_dir_is_created_private() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let fresh = root.path().join("fresh");
        private_dir(&fresh)?;
        assert_eq!(mode(&fresh), 0o700);
        Ok(())
    }

    #[test]
    fn an_open_data_dir_and_everything_in_it_are_made_private() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("open");
        let db = dir.join("db");
        std::fs::create_dir_all(&db)?;
        let sst = db.join("000123.sst");
        std::fs::write(&sst, b"data")?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&sst, std::fs::Permissions::from_mode(0o644))?;
        private_dir(&dir)?;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o700);
        assert_eq!(mode(&sst), 0o600);
        Ok(())
    }
}
